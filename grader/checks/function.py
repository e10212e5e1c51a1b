"""A function graded by what it returns: called with the same arguments as the
reference's function, it must return the same tensor (for example a barebones
forward pass `three_layer_convnet(x, params)`, with the same images and weights).

Arguments are written in the rubric: numbers and lists as they are, tensors as
{randn: [shape]} (also rand, zeros, ones), optionally with `scale`.  They are drawn
once from the item's seed, so the student's and the reference's function see the
very same values.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from grader.checks.base import Context, ItemBase, Target, Verdict
from grader.reference import ReferenceUnavailable

_MAKERS = ("randn", "rand", "zeros", "ones")


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    args: list[Any] = Field(description="arguments; tensors as {randn: [shape], scale: 0.1}")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Item(ItemBase):
    check: Literal["function"]
    target: Target
    cases: list[Case] = Field(min_length=1)
    rtol: float = Field(1e-4, description="allowed difference, relative to the largest expected value")
    atol: float = 1e-5
    seed: int = 0

    def needs_reference(self) -> bool:
        return True


def make_value(spec: Any, generator: torch.Generator) -> Any:
    """A rubric argument as a Python value: tensors drawn from `generator`."""
    if isinstance(spec, list):
        return [make_value(v, generator) for v in spec]
    if isinstance(spec, dict):
        kinds = [k for k in _MAKERS if k in spec]
        if len(kinds) == 1 and set(spec) <= {kinds[0], "scale"}:
            shape = [int(s) for s in spec[kinds[0]]]
            maker = {"randn": lambda: torch.randn(*shape, generator=generator),
                     "rand": lambda: torch.rand(*shape, generator=generator),
                     "zeros": lambda: torch.zeros(*shape), "ones": lambda: torch.ones(*shape)}[kinds[0]]
            return maker() * float(spec.get("scale", 1.0))
        return {k: make_value(v, generator) for k, v in spec.items()}
    return spec


def describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, list):
        return "[" + ", ".join(describe_value(v) for v in value) + "]"
    return repr(value)


def run(item: Item, ctx: Context) -> Verdict:
    reference = ctx.require_reference()
    t = item.target
    function = getattr(reference.module(t.file), t.name, None)
    if not callable(function):
        raise ReferenceUnavailable(f"the reference {t.file} has no function {t.name}")
    for number, case in enumerate(item.cases, start=1):
        generator = torch.Generator().manual_seed(item.seed + number)
        args = make_value(case.args, generator)
        kwargs = make_value(case.kwargs, generator)
        call = f"{t.name}({', '.join([describe_value(a) for a in args] + [f'{k}={describe_value(v)}' for k, v in kwargs.items()])})"
        with torch.no_grad():
            expected = function(*args, **kwargs)
        out = ctx.student.call("call", file=t.file, name=t.name, args=args, kwargs=kwargs, seed=item.seed,
                               timeout=ctx.timeout(item))
        got = out.get("tensor")
        if got is None:
            return Verdict.zero(f"{call} returns {len(out.get('tensors', []))} tensors; expected one")
        if tuple(got.shape) != tuple(expected.shape):
            return Verdict.zero(f"{call} returns shape {list(got.shape)}; expected {list(expected.shape)}")
        gap = (got.double() - expected.double()).abs().max().item()
        scale = expected.double().abs().max().item()
        if not gap <= item.atol + item.rtol * scale:  # also catches NaN
            return Verdict.zero(f"{call} returns other values than the reference with the same inputs and "
                                f"weights (largest difference {gap:.3g}, values up to {scale:.3g})",
                                details=["same shape, different numbers: compare each step with the question "
                                         "(layer order, padding, activations, which weight multiplies what)"])
    cases = len(item.cases)
    return Verdict.full(item, f"same values as the reference on the same inputs and weights "
                              f"({cases} case{'s' * (cases > 1)})")
