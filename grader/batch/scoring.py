"""Points from records: what each item measured (grader.batch.records) scored under the
current rubric, then the instructor's overrides and the late policy, then the student's files.

    scorer = Scorer.open(out, rubric, deadline=..., device=...)
    record = scorer.finish(record)      # rescored; results.json, feedback.md, record.json written

No student code runs here: a change of points, thresholds, credit policy, overrides or late
policy costs milliseconds per student.  An item whose check itself changed since it was
measured (other inputs, targets, reference) cannot be rescored: it keeps its old verdict, is
listed in record["stale"], and `grader batch` regrades it.

The order, for each student: items (rescored) -> item overrides -> late penalty on their sum
-> overrides of the total.  record["total"] is the final score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from grader import atomic, fingerprint
from grader.batch import gradebook, late, overrides, records
from grader.checks import accuracy, structure
from grader.results import ERROR, FAILED, PARTIAL, PASSED, SKIPPED, UNCERTAIN, GradeReport, ItemResult

SETTINGS = "scoring.json"  # in OUT/.grader: the rubric and deadline of the last batch, for rescore


# -- one item -----------------------------------------------------------------------


def score_item(item, measured: dict) -> ItemResult:
    """The item's result under the rubric's item, from what its check measured."""
    raw = ItemResult(**measured["result"])
    result = replace(raw, title=item.title or item.id, max_points=item.points, visibility=item.visibility,
                     extra=dict(raw.extra), details=list(raw.details))
    if raw.status in (SKIPPED, ERROR):
        result.points = 0.0
        return result
    extra = raw.extra or {}
    if item.check == "accuracy" and "accuracy" in extra:
        verdict = accuracy.decide(item, extra)
        message = verdict.message
        if (extra.get("training") or {}).get("stopped_by_budget"):
            message += accuracy.budget_note(extra["training"])
        result.points = max(0.0, min(item.points, verdict.points))
        result.message, result.details, result.extra = message, verdict.details, {**extra, **verdict.extra}
        result.status = verdict.status or _status(result.points, item.points)
        return result
    if item.check == "structure" and "matched" in extra:
        points = structure.credit(item, extra)
    elif item.check in ("blanks", "variables") and extra.get("total"):
        points = round(item.points * extra["right"] / extra["total"], 4)
    elif item.check == "model_setup" and "facets" in extra:
        facets = {"outputs": item.outputs, "init": item.init, "optimizer": item.optimizer}
        points = round(sum(f.points for name, f in facets.items() if f is not None and extra["facets"].get(name)), 4)
    else:  # all or nothing, or a failure: the same share of the new points
        share = raw.points / raw.max_points if raw.max_points else float(raw.ok)
        points = round(item.points * share, 4)
    result.points = points
    if raw.status != UNCERTAIN:
        result.status = _status(points, item.points)
    return result


def _status(points: float, max_points: float) -> str:
    return PASSED if points >= max_points else PARTIAL if points > 0 else FAILED


# -- one student --------------------------------------------------------------------


@dataclass
class Scorer:
    out: Path
    rubric: object
    keys: dict[str, str]
    overrides: dict[str, list[overrides.Override]]
    deadline: datetime | None
    provenance: dict
    device: str | None = None
    unapplied: list[str] = field(default_factory=list)  # overrides that found nothing to adjust

    @classmethod
    def open(cls, out: Path, rubric, *, deadline: str | None = None, device: str | None = None,
             students: set[str] | None = None) -> "Scorer":
        """deadline: --deadline (else the rubric's late.deadline); students: the class, to check overrides."""
        out = Path(out)
        hashes = fingerprint.FileHashes(out / ".grader" / "file-hashes.json")
        keys = records.check_keys(rubric, hashes)
        hashes.save()
        found = overrides.load(out, students, {i.id for i in rubric.items})
        by_student: dict[str, list[overrides.Override]] = {}
        for o in found:
            by_student.setdefault(o.student, []).append(o)
        text = deadline or (rubric.late.deadline if rubric.late else None)
        when = late.parse_time(text) if text else None
        return cls(out, rubric, keys, by_student, when, records.provenance(rubric, device), device)

    def measured(self, record: dict) -> dict:
        """The record's measurements; a record from before they were kept is measured from its report
        (only valid when the caller knows it was graded under this rubric's checks)."""
        if record.get("measured"):
            return record["measured"]
        report = gradebook.report_of(record)
        return records.measure(report, self.keys) if report else {}

    def rescore(self, record: dict) -> tuple[GradeReport | None, list[str]]:
        """The record's report under the current rubric, and the items whose check changed."""
        measured = record.get("measured") or {}
        if not measured:
            return gradebook.report_of(record), []
        results, stale = [], []
        for item in self.rubric.items:
            m = measured.get(item.id)
            if m is None:
                continue
            if m.get("key") != self.keys.get(item.id):
                stale.append(item.id)
            results.append(score_item(item, m))
        old = record.get("report") or {}
        report = GradeReport(assignment=self.rubric.assignment, submission=old.get("submission", ""), results=results,
                             seconds=old.get("seconds", 0.0), isolation=old.get("isolation") or {},
                             notes=list(old.get("notes") or []), output=old.get("output", ""),
                             problems=list(old.get("problems") or []), incomplete=list(old.get("incomplete") or []))
        return report, stale

    def finish(self, record: dict, *, fresh: bool = False, info: dict | None = None) -> dict:
        """Score the record and write the student's results.json, feedback.md and record.json.

        fresh: graded under this rubric's checks in this run (measure it when it is not yet);
        info: what the download says about the submission (grader.batch.submissions.describe)."""
        if info is not None:
            record["submission"] = info
        if record.get("status") != gradebook.GRADED or not record.get("report"):
            return record
        if fresh and not record.get("measured"):
            record["measured"] = self.measured(record)
            record.setdefault("provenance", {})["graded"] = self.provenance
        report, stale = self.rescore(record)
        record["stale"] = stale
        adjustments: list[dict] = []
        mine = self.overrides.get(record["student"], [])
        results = {r.id: r for r in report.results}
        for o in [o for o in mine if o.item is not None]:
            r = results.get(o.item)
            if r is None:
                self.unapplied.append(f"{self.out / overrides.FILENAME}:{o.line}: {o.student} has no result for "
                                      f"{o.item} (not graded): not applied")
                continue
            before = r.points
            r.points = o.apply(before)
            r.extra = {**r.extra, "adjusted": True}
            adjustments.append({"item": o.item, "before": before, "after": r.points, "line": o.line,
                                "text": o.describe(before, r.points), "reason": o.reason, "by": o.by})
        earned = report.score
        lateness = late.assess(self.rubric.late, self.deadline, record.get("submission") or {})
        penalty = lateness.points(earned) if lateness else 0.0
        total = round(earned - penalty, 4)
        for o in [o for o in mine if o.item is None]:
            before = total
            total = o.apply(before)
            adjustments.append({"item": None, "before": before, "after": total, "line": o.line,
                                "text": o.describe(before, total), "reason": o.reason, "by": o.by})
        record["report"] = report.to_dict()
        record["late"] = {**lateness.to_dict(), "penalty": penalty} if lateness else None
        record["adjustments"] = adjustments
        record["total"] = total
        record.setdefault("provenance", {})["scored"] = self.provenance
        write(self.out, record, report, self.rubric)
        return record


def write(out: Path, record: dict, report: GradeReport, rubric) -> None:
    """results.json (Gradescope's, with the leaderboard), feedback.md, then record.json (it marks the student done)."""
    folder = gradebook.student_dir(out, record["student"])
    results = report.to_gradescope()
    results["score"] = record["total"]
    notes = [line for line in gradebook.adjustment_lines(record) if line]
    if notes:
        results["output"] = "\n".join([results.get("output") or "", *notes]).strip()
    board = leaderboard_entries(rubric, report)
    if board:
        results["leaderboard"] = board
    results["extra_data"] = {**results.get("extra_data", {}), "provenance": record.get("provenance"),
                             "late": record.get("late"), "adjustments": record.get("adjustments")}
    atomic.write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    atomic.write_text(folder / "feedback.md", gradebook.feedback(report, rubric.title, record))
    atomic.write_text(folder / "record.json", json.dumps(record, indent=1) + "\n")


# -- what feedback.md, grades.csv and summary.md add ---------------------------------


# -- the leaderboard --------------------------------------------------------------------


def leaderboard_entries(rubric, report: GradeReport) -> list[dict]:
    """Gradescope's `leaderboard` entries for the rubric's challenge item."""
    board = getattr(rubric, "leaderboard", None)
    if board is None:
        return []
    result = next((r for r in report.results if r.id == board.item), None)
    extra = (result.extra if result else {}) or {}
    if "accuracy" not in extra:
        return []
    entries = [{"name": "Accuracy", "value": round(100 * extra["accuracy"], 2)}]
    if extra.get("params") is not None:
        entries.append({"name": "Parameters", "value": extra["params"], "order": "asc"})
    seconds = (extra.get("training") or {}).get("seconds")
    if seconds is not None:
        entries.append({"name": "Training time (s)", "value": round(seconds, 1), "order": "asc"})
    return entries


@dataclass
class Standing:
    rank: int
    student: str
    name: str
    accuracy: float
    interval: list[float] | None
    params: int | None
    training_s: float | None


def standings(rubric, records_: list[dict]) -> list[Standing]:
    """The class ranked by the challenge's accuracy (then fewer parameters), best first."""
    board = getattr(rubric, "leaderboard", None)
    if board is None:
        return []
    rows = []
    for record in records_:
        report = gradebook.report_of(record) if record.get("status") == gradebook.GRADED else None
        result = next((r for r in report.results if r.id == board.item), None) if report else None
        extra = (result.extra if result else {}) or {}
        if "accuracy" in extra:
            rows.append((record, extra))
    size = lambda e: e["params"] if e.get("params") is not None else float("inf")  # noqa: E731
    rows.sort(key=lambda re: (-re[1]["accuracy"], size(re[1]), re[0]["student"]))
    return [Standing(n, r["student"], r.get("name") or "", e["accuracy"], e.get("interval95"), e.get("params"),
                     (e.get("training") or {}).get("seconds")) for n, (r, e) in enumerate(rows, 1)]


def leaderboard_lines(rubric, records_: list[dict], markdown: bool) -> list[str]:
    table = standings(rubric, records_)[: rubric.leaderboard.top] if getattr(rubric, "leaderboard", None) else []
    if not table:
        return []

    def row(s: Standing) -> list[str]:
        interval = f" ({100 * s.interval[0]:.1f}-{100 * s.interval[1]:.1f})" if s.interval else ""
        return [str(s.rank), s.student, s.name, f"{100 * s.accuracy:.2f}%{interval}",
                f"{s.params:,}" if s.params is not None else "", f"{s.training_s:.0f}" if s.training_s else ""]

    title = f"Leaderboard: {rubric.leaderboard.item} (top {len(table)})"
    if markdown:
        lines = [f"## {title}", "", "| # | Student | Name | Accuracy (95% interval) | Parameters | Training s |",
                 "|---:|---|---|---:|---:|---:|"]
        lines += ["| " + " | ".join(gradebook._md(c) for c in row(s)) + " |" for s in table]
        return lines + [""]
    return [f"{title}:"] + [f"  {r[0]:>3}. {r[1]:<14} {r[3]:<22} {r[4]:>12} params {r[5] + ' s' if r[5] else ''}"
                            .rstrip() for r in map(row, table)]


def summary_sections(scorer: Scorer, records_: list[dict]) -> list[str]:
    """summary.md's sections on rescoring: the leaderboard, late work, adjustments, stale items, provenance."""
    lines = leaderboard_lines(scorer.rubric, records_, markdown=True)
    late_ones = [r for r in records_ if r.get("late")]
    if late_ones:
        lines += ["## Late submissions", ""]
        by_file_time = [r for r in late_ones if "file times" in ((r.get("submission") or {}).get("time_source") or "")]
        if len(by_file_time) >= 3 and len(by_file_time) == len([r for r in records_ if r.get("status") == "graded"]):
            lines += [f"> **Warning:** all {len(by_file_time)} submissions are late by their files' times. Were "
                      "the files copied or unpacked without their dates? Grade the LMS's zip itself, or check "
                      "the deadline.", ""]
        lines += ["| Student | Days | Penalty | Why |", "|---|---:|---:|---|"]
        lines += [f"| {gradebook._md(r['student'])} | {r['late']['days']:g} | -{gradebook.number(r['late']['penalty'])} "
                  f"| {gradebook._md(r['late']['note'])} |" for r in late_ones]
        lines.append("")
    adjusted = [(r["student"], a) for r in records_ for a in r.get("adjustments") or []]
    if adjusted or scorer.unapplied:
        lines += ["## Adjustments (overrides.yaml)", ""]
        lines += [f"- {gradebook._md(s)}: {gradebook._md(a['text'])}" + (f" on `{a['item']}`" if a["item"] else "")
                  for s, a in adjusted]
        lines += [f"- {gradebook._md(u)}" for u in scorer.unapplied] + [""]
    stale = stale_items(records_)
    if stale:
        lines += ["## Checks changed since grading", "", "These items' checks changed in the rubric (inputs, "
                  "targets, data or reference): their old verdicts are shown until `grader batch` regrades them.", ""]
        lines += [f"- `{item}`: {len(students)} student{'s' * (len(students) != 1)}" for item, students in stale.items()]
        lines.append("")
    lines += ["## Provenance", "", f"Scored with {records.provenance_line(scorer.provenance)}.", ""]
    return lines


def terminal_lines(scorer: Scorer, records_: list[dict]) -> list[str]:
    """What the terminal summary adds: the leaderboard, late work and adjustments in one line each."""
    lines = leaderboard_lines(scorer.rubric, records_, markdown=False)
    late_ones = [r for r in records_ if r.get("late")]
    if late_ones:
        lines.append(f"late: {len(late_ones)} student{'s' * (len(late_ones) != 1)} lost points to the late policy "
                     "(summary.md lists them)")
    adjusted = sum(len(r.get("adjustments") or []) for r in records_)
    if adjusted:
        lines.append(f"adjusted: {adjusted} override{'s' * (adjusted != 1)} from {overrides.FILENAME} applied")
    lines += [f"warning: {u}" for u in scorer.unapplied]
    return lines


def stale_items(records_: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in records_:
        for item in record.get("stale") or []:
            out.setdefault(item, []).append(record["student"])
    return out


def save_settings(out: Path, rubric_path: Path | None, deadline: str | None, device: str | None) -> None:
    atomic.write_text(Path(out) / ".grader" / SETTINGS, json.dumps(
        {"rubric": str(rubric_path) if rubric_path else None, "deadline": deadline, "device": device}) + "\n")


def load_settings(out: Path) -> dict:
    try:
        return json.loads((Path(out) / ".grader" / SETTINGS).read_text())
    except (OSError, ValueError):
        return {}
