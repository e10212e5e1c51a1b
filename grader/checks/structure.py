"""A fill-in-the-body question graded by what it builds: the children of one module
(for example layer3's blocks) against the reference's, in order.

Classes in target.isolate are stand-ins that record their constructor arguments, so
layer3 is judged by the ResidualBlock calls the student wrote, not by whether their
ResidualBlock (another question) is right.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from grader import structure_diff
from grader.checks.base import Context, ItemBase, Target, Verdict
from grader.introspect import call_text


class Item(ItemBase):
    check: Literal["structure"]
    target: Target
    module: str = Field(description="module path whose children are compared, e.g. layer3")
    credit: Literal["all_or_nothing", "per_child"] = Field(
        "all_or_nothing", description="per_child: points shared equally among the reference's children")

    def needs_reference(self) -> bool:
        return True


def run(item: Item, ctx: Context) -> Verdict:
    reference = ctx.require_reference()
    t = item.target
    ref = reference.describe(t.file, t.name, t.args, t.kwargs, t.isolate)["nodes"]
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             isolate=reference.isolation(t.file, t.isolate), timeout=ctx.timeout(item))
    student = ctx.student.call("describe", handle=built["handle"], timeout=ctx.timeout(item))["nodes"]
    path = item.module
    if path not in student:
        return Verdict.zero(f"your model has no {path}")
    r_children = [f"{path}.{c}" for c in ref[path]["children"]]
    s_children = [f"{path}.{c}" for c in student[path]["children"]]
    matched, problems = 0, []
    for index, r_path in enumerate(r_children):
        if index >= len(s_children):
            problems.append(f"{path}[{index}] is missing; expected {call_text(ref[r_path])}")
            continue
        s_path = s_children[index]
        if _subtree_same(student, s_path, ref, r_path):
            matched += 1
        else:
            problems.append(f"{path}[{index}] is {call_text(student[s_path])}; expected {call_text(ref[r_path])}")
    for index in range(len(r_children), len(s_children)):
        problems.append(f"{path}[{index}] {call_text(student[s_children[index]])} is one too many")
    n_ref, n_student = len(r_children), len(s_children)
    # per child, and the counts: what rescoring (grader.batch.scoring) needs under either credit policy
    extra = {"matched": matched, "reference_children": n_ref, "student_children": n_student, "children": children}
    if not problems:
        return Verdict.full(item, f"{path}: all {n_ref} blocks as expected", extra=extra)
    head = (f"{path} has {n_student} blocks; expected {n_ref}" if n_student != n_ref
            else f"{path}: {matched} of {n_ref} blocks right")
    return Verdict(credit(item, extra), f"{head}: {problems[0]}", details=problems, extra=extra)


def credit(item: Item, extra: dict) -> float:
    """Points for what was matched, under the item's credit policy (also used when rescoring)."""
    whole = max(extra["reference_children"], extra["student_children"])
    if extra["matched"] == extra["reference_children"] == extra["student_children"]:
        return item.points
    if item.credit == "per_child" and whole:
        return round(item.points * extra["matched"] / whole, 4)
    return 0.0


def _subtree_same(student: dict, s_path: str, ref: dict, r_path: str) -> bool:
    s_node, r_node = student[s_path], ref[r_path]
    if s_node["type"] != r_node["type"]:
        return False
    s_args, r_args = structure_diff.arguments(s_node, r_node), structure_diff.arguments(r_node)
    if set(s_args) != set(r_args) or not all(structure_diff.same(s_args[k], r_args[k]) for k in r_args):
        return False
    if len(s_node["children"]) != len(r_node["children"]):
        return False
    return all(_subtree_same(student, f"{s_path}.{a}", ref, f"{r_path}.{b}")
               for a, b in zip(s_node["children"], r_node["children"]))
