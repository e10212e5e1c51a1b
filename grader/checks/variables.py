"""Variables a notebook section creates (for example the weights of Question 2): each
must have the reference's shape, be initialised as the rubric says (checked on the
distribution of its values, see grader.initialization) and track gradients when the
reference's does.  Each variable earns an equal share of the points.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from grader.checks.base import Context, ItemBase, Verdict
from grader.reference import ReferenceUnavailable
from grader.initialization import Expectation, Scheme, judge

TAKES_SECTIONS = True


class Variable(Expectation):
    init: Scheme | None = None  # shape (and gradients) only when omitted
    shape: list[int] | None = Field(None, description="default: the reference's shape")
    requires_grad: bool | None = Field(None, description="default: as the reference's")


class Item(ItemBase):
    check: Literal["variables"]
    file: str
    section: str = Field(description="the notebook section whose variables these are")
    variables: dict[str, Variable] = Field(min_length=1)
    tolerance: float = Field(0.1, gt=0, description="relative tolerance on a standard deviation")

    def files(self) -> list[str]:
        return [self.file]

    def needs_reference(self) -> bool:
        return True


def run(item: Item, ctx: Context) -> Verdict:
    reference = ctx.require_reference()
    names = list(item.variables)
    got = ctx.student.call("values", file=item.file, section=item.section, names=names, timeout=ctx.timeout(item))
    right, problems, verdicts = 0, [], {}
    for name, expected in item.variables.items():
        ref = reference.section_value(item.file, item.section, name)
        if not isinstance(ref, torch.Tensor):
            raise ReferenceUnavailable(f"the reference's {name} in {item.section} is a {type(ref).__name__}, not a tensor")
        problem = _problem(name, got[name], expected, ref, item.tolerance)
        verdicts[name] = problem is None
        if problem:
            problems.append(problem)
        else:
            right += 1
    total = len(names)
    points = round(item.points * right / total, 4)
    if not problems:
        return Verdict.full(item, f"all {total} variables have the expected shape and initialisation",
                            extra={"right": right, "total": total, "variables": verdicts})
    message = f"{right}/{total} variables right: {problems[0]}" + (
        f"; and {len(problems) - 1} more" if len(problems) > 1 else "")
    return Verdict(points, message, details=problems, extra={"right": right, "total": total, "variables": verdicts})


def _problem(name: str, got: dict, expected: Variable, ref, tolerance: float) -> str | None:
    if "missing" in got:
        return got["missing"]
    if "tensor" not in got:
        return f"{name} is a {got['type']}, not a tensor"
    value = got["tensor"]
    shape = expected.shape or list(ref.shape)
    if list(value.shape) != list(shape):
        return f"{name} has shape {list(value.shape)}; expected {shape}"
    wants_grad = expected.requires_grad if expected.requires_grad is not None else bool(ref.requires_grad)
    if wants_grad and not (got["requires_grad"] and got["is_leaf"]):
        why = "is computed from another tensor" if got["requires_grad"] else "does not track gradients"
        return f"{name} {why}: training needs a leaf tensor with requires_grad=True"
    if expected.init is not None:
        ok, looks = judge(value, expected, ref.detach().cpu(), tolerance)
        if not ok:
            return f"{name} {looks}"
    return None
