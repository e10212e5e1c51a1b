"""A fill-in-the-body question graded by what it builds: the children of one module
(for example layer3's blocks) against the reference's, in order, aligned as a diff aligns
lines: one block left out or added costs one block, not every block after it.

Classes in target.isolate are stand-ins that record their constructor arguments, so
layer3 is judged by the ResidualBlock calls the student wrote, not by whether their
ResidualBlock (another question) is right.

Where the messages must not state the answer (a handout, grader.structure_diff), the
reference's blocks are digests: a message names the student's block and which argument
differs, and says whether the question needs more or fewer blocks, never how many.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
    ref = ctx.expected_layers(item, t.file, t.name, t.args, t.kwargs, t.isolate, module=item.module)
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             isolate=reference.isolation(t.file, t.isolate), timeout=ctx.timeout(item))
    student = ctx.student.call("describe", handle=built["handle"], timeout=ctx.timeout(item))["nodes"]
    path = item.module
    if path not in ref:
        raise ReferenceUnavailable(f"the reference {t.name} has no module {path}")
    if path not in student:
        return Verdict.zero(f"your model has no {path}")
    r_children = [f"{path}.{c}" for c in ref.children(path)]
    s_children = [f"{path}.{c}" for c in student[path]["children"]]
    steps = align(len(s_children), len(r_children),
                  lambda i, j: ref.same_subtree(student, s_children[i], r_children[j]))
    say = _sealed_problem if ref.sealed else _plain_problem
    matched, problems = 0, []
    for op, i, j in steps:
        if op == "same":
            matched += 1
        else:
            problems.append(say(op, path, student, s_children, i, ref, r_children, j))
    n_ref, n_student = len(r_children), len(s_children)
    # per child, and the counts: what rescoring (grader.batch.scoring) needs under either credit policy
    extra = {"matched": matched, "reference_children": n_ref, "student_children": n_student,
             "errors": len(problems), "children": [op for op, _, _ in steps]}
    if not problems:
        return Verdict.full(item, f"{path}: all {n_ref} blocks as expected", extra=extra)
    if ref.sealed:  # "a block is missing" four times would say how many the question has
        problems = list(dict.fromkeys(problems))
    if n_student == n_ref:
        head = f"{path}: {matched} of {n_ref} blocks right"
    elif ref.sealed:  # the count is an answer too: say which way, not how many
        head = f"{path} has {n_student} blocks; the question needs {'more' if n_ref > n_student else 'fewer'}"
    else:
        head = f"{path} has {n_student} blocks; expected {n_ref}"
    return Verdict(credit(item, extra), f"{head}: {problems[0]}", details=problems, extra=extra)


def _plain_problem(op: str, path: str, student: dict, s_children: list, i: int, ref, r_children: list,
                   j: int) -> str:
    """One difference, quoting the reference's block (the instructor's grading)."""
    if op == "wrong":
        return f"{path}[{i}] is {call_text(student[s_children[i]])}; expected {ref.text(r_children[j])}"
    if op == "missing":
        return f"{path}: a block is missing {_place(i, len(s_children), path)}; expected {ref.text(r_children[j])}"
    return f"{path}[{i}] {call_text(student[s_children[i]])} is one too many"


def _sealed_problem(op: str, path: str, student: dict, s_children: list, i: int, ref, r_children: list,
                    j: int) -> str:
    """One difference, naming the student's block and what differs in kind, never a value."""
    if op == "missing":
        return f"{path}: a block is missing {_place(i, len(s_children), path)}"
    if op == "extra":
        return f"{path}[{i}] is one too many"
    s_node = student[s_children[i]]
    if not ref.same_type(s_node, r_children[j]):
        return f"{path}[{i}] is a {s_node['type']}; the question needs another kind of block there"
    wrong = ref.wrong_args(s_node, r_children[j])
    if wrong:
        return f"{path}[{i}]: its {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not what the question needs"
    return f"{path}[{i}] is not the block the question needs there (its arguments or layers differ)"


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
