"""How a run is made: device, precision, data and checkpoint folders, training, isolation.

The same settings reach a class's jobs as a JSON dict (`to_job` / `from_job`), the one
way they travel to a worker process or a cluster node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Precision(str, Enum):
    """The number format models are evaluated in."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class Options:
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int | None = None
    data_dir: str | None = None
    download: bool = False
    checkpoint_dirs: list[Path] = field(default_factory=list)
    train_if_missing: bool = True
    train_budget_s: float | None = None
    # Students' code runs inside the OS sandbox or not at all (grader.sandbox.fail_closed), unless
    # --unsafe-no-isolation was given for this run, or this is a self-check of one's own code.
    unsafe_no_isolation: bool = False
    self_check: bool = False  # never carried by a job: grading a class is not a self-check

    def may_run_unisolated(self) -> bool:
        return self.unsafe_no_isolation or self.self_check

    def to_job(self) -> dict:
        """What a job carries: absolute paths (it runs elsewhere), and never a download."""
        return {"device": self.device, "precision": self.precision, "batch_size": self.batch_size,
                "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else None, "download": False,
                "checkpoint_dirs": [str(Path(p).resolve()) for p in self.checkpoint_dirs],
                "unsafe_no_isolation": self.unsafe_no_isolation}

    @classmethod
    def from_job(cls, data: dict) -> "Options":
        return cls(**{**data, "checkpoint_dirs": [Path(p) for p in data.get("checkpoint_dirs", [])]})
