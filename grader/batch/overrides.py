"""The instructor's manual adjustments: OUT/overrides.yaml, applied on top of the records.

    - student: "1001"
      item: residual_block.plain      # leave out for an adjustment of the total
      delta: 2                        # or points: 18 (sets the item's points)
      reason: equivalent formulation, accepted on regrade request
      by: TA Kim

The file is the instructor's: grader never writes it, so every rerun of `grader batch` and
every `grader rescore` applies it again.  Mistakes are errors that name the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from grader.errors import GraderError

FILENAME = "overrides.yaml"
TOTAL = None  # item of an adjustment of the total
_KEYS = {"student", "item", "points", "delta", "reason", "by"}


class OverridesError(GraderError):
    """overrides.yaml cannot be used; the message names the line."""


@dataclass
class Override:
    student: str
    item: str | None
    points: float | None
    delta: float | None
    reason: str
    by: str
    line: int

    def apply(self, before: float) -> float:
        after = self.points if self.points is not None else before + self.delta
        return round(max(0.0, after), 4)

    def describe(self, before: float, after: float) -> str:
        """'Adjusted by TA Kim: +2 (reason)' or 'Adjusted by TA Kim: set to 18, was 15 (reason)'."""
        change = f"set to {after:g}, was {before:g}" if self.points is not None else f"{self.delta:+g}"
        return f"Adjusted by {self.by}: {change} ({self.reason})"


def load(out: Path, students: set[str] | None = None, items: set[str] | None = None) -> list[Override]:
    """The overrides of OUT/overrides.yaml (none when there is no such file), checked against the
    class's students and the rubric's items when given."""
    path = Path(out) / FILENAME
    if not path.is_file():
        return []
    return parse(path.read_text(), str(path), students, items)


def parse(text: str, where: str, students: set[str] | None = None, items: set[str] | None = None) -> list[Override]:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise OverridesError(f"{where}{f':{mark.line + 1}' if mark else ''}: not valid YAML: "
                             f"{getattr(e, 'problem', e)}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise OverridesError(f"{where}:1: a list of overrides, each `- student: ID` with item, points or delta, "
                             "reason and by")
    found, problems = [], []
    for index, entry in enumerate(data):
        line = root.value[index].start_mark.line + 1
        at = f"{where}:{line}"
        if not isinstance(entry, dict):
            problems.append(f"{at}: each override is a mapping (student, item, points or delta, reason, by)")
            continue
        unknown = sorted(set(map(str, entry)) - _KEYS)
        if unknown:
            problems.append(f"{at}: unknown key {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
            continue
        student = entry.get("student")
        item = entry.get("item")
        points, delta = entry.get("points"), entry.get("delta")
        reason, by = str(entry.get("reason") or "").strip(), str(entry.get("by") or "").strip()
        if student is None or str(student).strip() == "":
            problems.append(f"{at}: `student` is missing")
            continue
        student = str(student)
        if students is not None and student not in students:
            problems.append(f"{at}: no student {student!r} in this class")
        if item is not None and items is not None and str(item) not in items:
            problems.append(f"{at}: no item {item!r} in the rubric (items: {', '.join(sorted(items))})")
        if (points is None) == (delta is None):
            problems.append(f"{at}: give either `points` (the item's new points) or `delta` (points added)")
        for name, value in (("points", points), ("delta", delta)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.append(f"{at}: `{name}` is a number, not {value!r}")
        if not reason:
            problems.append(f"{at}: `reason` is missing: the student is shown why their score changed")
        if not problems or not problems[-1].startswith(at):
            found.append(Override(student, None if item is None else str(item),
                                  None if points is None else float(points), None if delta is None else float(delta),
                                  reason, by or "your instructor", line))
    if problems:
        raise OverridesError("\n".join(problems))
    return found
