"""Where models run: CUDA if present, else Apple's MPS, else the CPU; --device overrides."""

from __future__ import annotations

import torch


def resolve(requested: str = "auto") -> str:
    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is available here")
        if requested == "mps" and not _mps_available():
            raise ValueError("--device mps: Apple MPS is not available here")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
