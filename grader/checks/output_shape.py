"""Output shape: build the target, run it on inputs of the given shapes, compare the
output's shape with the rubric's (or, when the rubric gives none, the reference's)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from grader.checks.base import Context, ItemBase, Target, Verdict


class Item(ItemBase):
    check: Literal["output_shape"]
    target: Target
    inputs: list[list[int]] = Field(min_length=1, description="input shapes, one per forward argument")
    expected: list[int] | None = Field(None, description="expected output shape; default: the reference's")

    def needs_reference(self) -> bool:
        return self.expected is None


def run(item: Item, ctx: Context) -> Verdict:
    t = item.target
    expected = item.expected
    if expected is None:
        model = ctx.require_reference().build(t.file, t.name, t.args, t.kwargs, t.isolate, seed=0)
        with torch.inference_mode():
            expected = list(model.eval()(*[torch.zeros(*s) for s in item.inputs]).shape)
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             timeout=ctx.timeout(item))
    inputs = [torch.randn(*s, generator=torch.Generator().manual_seed(0)) for s in item.inputs]
    out = ctx.student.call("forward", handle=built["handle"], inputs=inputs, timeout=ctx.timeout(item))
    ctx.release(built)
    got = out.get("tensor")
    if got is None:
        return Verdict.zero(f"{t.call_text()} returns several tensors; expected one of shape {expected}")
    if list(got.shape) != list(expected):
        return Verdict.zero(f"{t.call_text()} on input {item.inputs[0]} gives shape {list(got.shape)}; "
                            f"expected {expected}")
    return Verdict.full(item, f"output shape {expected} on input {item.inputs[0]}")
