"""Parameter count of what the target builds, against the rubric's number (or the reference's)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from grader.checks.base import Context, ItemBase, Target, Verdict
from grader.structure_diff import fingerprint


class Item(ItemBase):
    check: Literal["param_count"]
    target: Target
    expected: int | None = Field(None, description="default: the reference's parameter count")
    tolerance: int = Field(0, ge=0, description="accepted difference, in parameters")

    def needs_reference(self) -> bool:
        return self.expected is None


def run(item: Item, ctx: Context) -> Verdict:
    t = item.target
    expected = item.expected
    sealed = None
    if expected is None and ctx.conceals(item):  # a digest of the reference's count, not the count
        sealed = ctx.require_reference().sealed(t.file, t.name, t.args, t.kwargs, t.isolate)
    elif expected is None:
        expected = ctx.require_reference().describe(t.file, t.name, t.args, t.kwargs, t.isolate)["param_count"]
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             timeout=ctx.timeout(item))
    count = built["param_count"]
    ctx.release(built)
    if sealed is not None:
        if fingerprint(sealed["salt"], count) != sealed["param_count"]:
            return Verdict.zero(f"{t.call_text()} has {count:,} parameters, not the number the question expects")
        return Verdict.full(item, f"{count:,} parameters")
    if abs(count - expected) > item.tolerance:
        return Verdict.zero(f"{t.call_text()} has {count:,} parameters; expected {expected:,} "
                            f"({count - expected:+,})")
    return Verdict.full(item, f"{count:,} parameters")
