"""Recognising how weights were initialised, from the values alone.

A Kaiming-initialised weight has mean 0 and standard deviation sqrt(2 / fan_in); a
normal one has kurtosis 3, a uniform one 1.8.  These are measured with a tolerance
that grows for small tensors (the spread of a sample's deviation is about
1/sqrt(2n)), so an answer is judged by its distribution, not by its random draw.
When the scale is off, the message names the scheme the values do match (PyTorch's
default, unit normal, LeCun, ...) when one does: that is usually the mistake.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

Scheme = Literal["kaiming", "kaiming_normal", "kaiming_uniform", "zeros", "reference"]


class Expectation(BaseModel):
    """How one tensor should be initialised."""

    model_config = ConfigDict(extra="forbid")
    init: Scheme = Field(description=(
        "kaiming: std sqrt(2/fan_in), normal or uniform; kaiming_normal / kaiming_uniform: that and the "
        "distribution's shape; zeros; reference: the same mean and spread as the reference's values"))
    fan_in: int | Literal["rows", "columns"] | None = Field(None, description=(
        "default: the product of all dimensions but the first (PyTorch's convention: (out, in, kh, kw), "
        "nn.Linear's (out, in)); rows: the first dimension, for weights used as x.mm(w) with w (in, out)"))


def fan_in(shape: tuple[int, ...], rule: int | str | None) -> int:
    if isinstance(rule, int):
        return rule
    if len(shape) < 2:
        return max(1, shape[0] if shape else 1)
    if rule == "rows":
        return shape[0]
    return math.prod(shape[1:])


def _stats(values: torch.Tensor) -> tuple[float, float, float]:
    x = values.detach().double().flatten()
    mean = x.mean().item()
    std = x.std(unbiased=False).item()
    kurtosis = (((x - mean) / std) ** 4).mean().item() if std > 0 else float("nan")
    return mean, std, kurtosis


def _relative_tolerance(count: int, tolerance: float) -> float:
    return max(tolerance, 4.0 / math.sqrt(2.0 * max(count, 1)))


def judge(values: torch.Tensor, expected: Expectation, reference: torch.Tensor | None = None,
          tolerance: float = 0.1) -> tuple[bool, str]:
    """(ok, what the values look like) for one tensor."""
    n = values.numel()
    if n == 0:
        return False, "is empty"
    if not values.dtype.is_floating_point:
        return False, f"holds {str(values.dtype).replace('torch.', '')} values, not floating point"
    finite = torch.isfinite(values)
    if not bool(finite.all()):  # NaN would make every statistic below compare False, i.e. pass
        nan = int(torch.isnan(values).sum())
        inf = n - int(finite.sum()) - nan
        what = " and ".join(part for part in (f"{nan:,} NaN" if nan else "", f"{inf:,} infinite" if inf else "")
                            if part)
        return False, f"holds {what} values (of {n:,}); initialised weights must be finite numbers"
    mean, std, kurtosis = _stats(values)
    if expected.init == "zeros":
        if std == 0 and mean == 0:
            return True, "zeros"
        return False, f"is not all zeros (mean {mean:.3g}, std {std:.3g})"
    if expected.init == "reference":
        ref_mean, ref_std, _ = _stats(reference)
        allowed = _relative_tolerance(n, tolerance) * max(ref_std, 1e-12)
        if abs(std - ref_std) <= allowed and abs(mean - ref_mean) <= 4 * ref_std / math.sqrt(n) + 1e-12:
            return True, f"std {std:.3g} like the reference's {ref_std:.3g}"
        return False, f"has mean {mean:.3g} and std {std:.3g}; the reference's has {ref_mean:.3g} and {ref_std:.3g}"

    fan = fan_in(tuple(values.shape), expected.fan_in)
    target = math.sqrt(2.0 / fan)
    if std == 0:
        return False, f"is constant ({mean:.3g}); Kaiming with fan-in {fan} has std {target:.3g}"
    allowed = _relative_tolerance(n, tolerance)
    if abs(std / target - 1) > allowed:
        hint = _known_scheme(std, fan, allowed)
        return False, (f"has std {std:.3g}; Kaiming with fan-in {fan} gives {target:.3g}"
                       + (f" (it looks like {hint})" if hint else ""))
    if abs(mean) > 4 * target / math.sqrt(n):
        return False, f"has mean {mean:.3g}; Kaiming initialisation is centred on 0"
    shape = "uniform" if kurtosis < 2.4 else "normal"
    if n >= 500 and expected.init in ("kaiming_normal", "kaiming_uniform") and expected.init != f"kaiming_{shape}":
        return False, (f"has Kaiming's std {std:.3g} but a {shape} distribution (kurtosis {kurtosis:.2f}); "
                       f"expected {expected.init}")
    return True, f"Kaiming ({shape}, std {std:.3g}, fan-in {fan})"


def _known_scheme(std: float, fan: int, tolerance: float) -> str | None:
    candidates = {
        "PyTorch's default initialisation (no Kaiming call)": math.sqrt(1.0 / (3 * fan)),
        "torch.randn without scaling": 1.0,
        "a scale of sqrt(1 / fan_in), without the factor 2": math.sqrt(1.0 / fan),
    }
    for name, value in candidates.items():
        if abs(std / value - 1) <= tolerance:
            return name
    return None
