"""`grader rescore OUT`: points, totals, feedback, grades.csv, summary.md and every export
again from the records a batch left, under the rubric as it is now; no student code runs.

    result = rescore.run(Path("graded"), rubric=None, deadline=None)
    result.stale     # item -> students whose check changed since grading: `grader batch` regrades them
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from grader import atomic
from grader.batch import class_report, exports, gradebook, intake, scoring
from grader.errors import GraderError
from grader.rubric import load as load_rubric

EXIT_STALE = 3  # some items' checks changed: `grader batch` must regrade them


class NothingToRescore(GraderError):
    """OUT holds no records of a batch."""


@dataclass
class RescoreResult:
    records: list[dict]
    summary: gradebook.Summary
    stale: dict[str, list[str]]
    leaderboard: list[str] = field(default_factory=list)
    exports: list[Path] = field(default_factory=list)
    rubric: Path | None = None
    unmeasured: list[str] = field(default_factory=list)  # graded before measurements were kept


def run(out: Path, rubric: Path | None = None, deadline: str | None = None) -> RescoreResult:
    started = time.monotonic()
    out = Path(out)
    settings = scoring.load_settings(out)
    folder = out / "students"
    students = sorted((p.name for p in folder.iterdir() if (p / "record.json").is_file()),
                      key=intake.natural_key) if folder.is_dir() else []
    if not students:
        raise NothingToRescore(f"{out} holds no graded students (students/<id>/record.json): run grader batch first")
    rubric_path = Path(rubric) if rubric else Path(settings["rubric"]) if settings.get("rubric") else None
    if rubric_path is None:
        raise NothingToRescore(f"{out} does not say which rubric graded it: pass --rubric")
    the_rubric = load_rubric(rubric_path)
    deadline = deadline or settings.get("deadline")
    scorer = scoring.Scorer.open(out, the_rubric, deadline=deadline, device=settings.get("device"),
                                 students=set(students))
    records, unmeasured = [], []
    for student in students:
        record = gradebook.load_record(out, student)
        if record is None:
            continue
        if record.get("status") == gradebook.GRADED and not record.get("measured"):
            # graded before measurements were kept: nothing to rescore from
            record["stale"] = [r["id"] for r in (record.get("report") or {}).get("results", [])]
            records.append(record)
            unmeasured.append(student)
            continue
        records.append(scorer.finish(record))
    have = {r["id"] for record in records for r in (record.get("report") or {}).get("results", [])}
    items = [(i.id, i.title or i.id, i.points) for i in the_rubric.items if i.id in have]
    gradebook.write_grades(out, [i for i, _, _ in items], records)
    summary = gradebook.summarize(the_rubric.assignment, items, records, seconds=time.monotonic() - started,
                                  students=len(records))
    summary.intake = [f"rescored from the records with {rubric_path}; no submission was run again"]
    atomic.write_text(out / "summary.md", gradebook.summary_markdown(summary) + "\n".join(
        scoring.summary_sections(scorer, records)))
    scoring.save_settings(out, the_rubric.path, deadline, settings.get("device"))
    written = exports.rewrite_all(out)
    class_report.write(out, rubric=the_rubric, device=settings.get("device"))
    return RescoreResult(records, summary, scoring.stale_items(records),
                         scoring.terminal_lines(scorer, records), written, rubric_path, unmeasured)
