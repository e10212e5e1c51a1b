"""A fill-in-the-body question graded by what it builds: the children of one module
(for example layer3's blocks) against the reference's, in order, aligned as a diff aligns
lines: one block left out or added costs one block, not every block after it.

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
from grader.reference import ReferenceUnavailable


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
    ref = reference.describe_module(t.file, t.name, t.args, t.kwargs, t.isolate, module=item.module)["nodes"]
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             isolate=reference.isolation(t.file, t.isolate), timeout=ctx.timeout(item))
    student = ctx.student.call("describe", handle=built["handle"], timeout=ctx.timeout(item))["nodes"]
    path = item.module
    if path not in ref:
        raise ReferenceUnavailable(f"the reference {t.name} has no module {path}")
    if path not in student:
        return Verdict.zero(f"your model has no {path}")
    r_children = [f"{path}.{c}" for c in ref[path]["children"]]
    s_children = [f"{path}.{c}" for c in student[path]["children"]]
    steps = align(len(s_children), len(r_children),
                  lambda i, j: _subtree_same(student, s_children[i], ref, r_children[j]))
    matched, problems = 0, []
    for op, i, j in steps:
        if op == "same":
            matched += 1
        elif op == "wrong":
            problems.append(f"{path}[{i}] is {call_text(student[s_children[i]])}; "
                            f"expected {call_text(ref[r_children[j]])}")
        elif op == "missing":
            problems.append(f"{path}: a block is missing {_place(i, len(s_children), path)}; "
                            f"expected {call_text(ref[r_children[j]])}")
        else:
            problems.append(f"{path}[{i}] {call_text(student[s_children[i]])} is one too many")
    n_ref, n_student = len(r_children), len(s_children)
    # per child, and the counts: what rescoring (grader.batch.scoring) needs under either credit policy
    extra = {"matched": matched, "reference_children": n_ref, "student_children": n_student,
             "errors": len(problems), "children": [op for op, _, _ in steps]}
    if not problems:
        return Verdict.full(item, f"{path}: all {n_ref} blocks as expected", extra=extra)
    head = (f"{path} has {n_student} blocks; expected {n_ref}" if n_student != n_ref
            else f"{path}: {matched} of {n_ref} blocks right")
    return Verdict(credit(item, extra), f"{head}: {problems[0]}", details=problems, extra=extra)


def credit(item: Item, extra: dict) -> float:
    """Points under the item's credit policy (also used when rescoring): with per_child, each
    missing, extra or wrong block (aligned as diff aligns lines) costs one share."""
    n_ref = extra["reference_children"]
    # Records written before the count of errors was kept: each unmatched place is one error.
    errors = extra.get("errors", max(n_ref, extra["student_children"]) - extra["matched"])
    if not errors:
        return item.points
    if item.credit == "per_child":
        return round(item.points * max(0, n_ref - errors) / max(1, n_ref), 4)
    return 0.0


def _place(i: int, count: int, path: str) -> str:
    """Where, in the student's list, the reference's block would go."""
    if count == 0:
        return "(it has none)"
    return f"after {path}[{i - 1}]" if i > 0 else f"before {path}[0]"


def align(n_student: int, n_ref: int, same) -> list[tuple[str, int, int]]:
    """The cheapest way to turn the student's children into the reference's (edit distance;
    a missing, extra or wrong child costs 1): steps (op, student index, reference index),
    op one of same | wrong | missing | extra.  For 'missing', the student index is where the
    reference's child would go.  Compared by position instead, one block left out would
    shift every later block and cost them all."""
    equal = [[bool(same(i, j)) for j in range(n_ref)] for i in range(n_student)]
    cost = [[0] * (n_ref + 1) for _ in range(n_student + 1)]
    for i in range(n_student + 1):
        for j in range(n_ref + 1):
            if i == 0 or j == 0:
                cost[i][j] = i + j
            else:
                cost[i][j] = min(cost[i - 1][j - 1] + (0 if equal[i - 1][j - 1] else 1),
                                 cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    steps = []
    i, j = n_student, n_ref
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (0 if equal[i - 1][j - 1] else 1):
            steps.append(("same" if equal[i - 1][j - 1] else "wrong", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif j > 0 and cost[i][j] == cost[i][j - 1] + 1:
            steps.append(("missing", i, j - 1))
            j -= 1
        else:
            steps.append(("extra", i - 1, j))
            i -= 1
    return steps[::-1]


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
