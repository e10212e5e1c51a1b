"""What a batch leaves in its output folder, and the summary of a class.

    OUT/grades.csv                      one row per student, one column per item, the total
    OUT/summary.md                      pass rates, score histogram, failures by reason, slowest
    OUT/students/<id>/results.json      Gradescope's format
    OUT/students/<id>/feedback.md       what failed and why, for the student
    OUT/students/<id>/record.json       the full report and its fingerprint (for resuming)

Every file is written atomically (a temporary file renamed over the old one), so
a run killed at any moment leaves each file whole: old or new, never half written.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader import atomic
from grader.batch import records
from grader.results import ERROR, PARTIAL, SKIPPED, UNCERTAIN, GradeReport, ItemResult
from grader.safe_text import code_span, csv_cell, fence, md, shown

GRADED, NOT_GRADED = "graded", "error"

# Failure kinds (StudentFailure.kind, and "submission" for unreadable uploads) with the
# label instructors see and the explanation students get.
REASONS: dict[str, tuple[str, str]] = {
    "submission": ("submission unreadable", "Your upload could not be read as a submission. Check that it is a "
                   "plain .zip (no password) or the files themselves, with the names the assignment asks for."),
    "empty": ("empty submission", "Your submission holds no files. Upload the files the assignment names "
              "(or one .zip of them) and ask your instructor to grade it again."),
    "missing": ("missing file or name", "A file, class or function the assignment asks for was not found. Check "
                "the file names and the names of your classes and functions against the handout."),
    "syntax": ("syntax error", "Python could not read this file. Fix the line shown; the real mistake is often "
               "just before it (a missing ':', bracket or quote)."),
    "exception": ("raised an error", "Your code raised an error at the line shown. Run that part yourself "
                  "with a small input to see why."),
    "timeout": ("time limit (endless loop?)", "Your code was stopped because it ran past its time limit. Look "
                "for a loop that never ends, or for work that runs when the file is imported (training, "
                "downloads): put such code under `if __name__ == \"__main__\":`."),
    "memory": ("out of memory", "Your code tried to use more memory than a submission may. Check the sizes "
               "of the tensors you create; nothing in this assignment needs gigabytes."),
    "disk": ("wrote too much", "Your code wrote more to files than a submission may (/tmp, /dev/shm and your "
             "folder together). Keep what you save small; graded code should not need to write files."),
    "processes": ("too many processes", "Your code started more processes or threads than a submission may. "
                  "Use a DataLoader with num_workers=0, and do not start processes or threads in a loop."),
    "files": ("too many open files", "Your code held more files open at once than a submission may. Open "
              "files with `with open(...)` so that each is closed."),
    "cpu": ("CPU time limit", "Your code used more CPU time than a submission may. Look for work that runs "
            "when the file is imported, or a loop that never ends."),
    "exit": ("ended its own process", "Your code ended the program (sys.exit, os._exit or killing its own "
             "process). Files that are graded must only define things; put script code under "
             "`if __name__ == \"__main__\":`."),
    "crash": ("crashed", "The Python process running your code crashed. This usually comes from native code "
              "(ctypes, a C extension) or from a signal; plain PyTorch code does not do this."),
    "output": ("printed too much", "Your code printed more than the grader accepts. Remove prints inside "
               "loops and forward()."),
    "violation": ("blocked by the sandbox", "Your code tried something graded code may not do: read or write "
                  "files outside your submission, start processes or use the network."),
    "tamper": ("changed PyTorch", "Your code replaced functions of PyTorch itself. Graded code may not change "
               "PyTorch; write your own functions instead."),
    "checkpoint": ("checkpoint refused", "Your checkpoint file could not be loaded safely. Save the weights "
                   "alone with torch.save(model.state_dict(), PATH) and submit that file."),
    "environment": ("grading environment lacks a package", "Your code imports a package that the grading "
                    "environment does not have. This is not counted as a mistake in your code: your instructor "
                    "sees it and decides (the course may provide the package, or ask you to do without it)."),
    "internal": ("grader error", "The grader failed on this item; your instructor has been told."),
}
_OTHER_REASONS = {"wrong": "wrong result", "partial": "partial credit", "uncertain": "uncertain",
                  "skipped": "not graded (skipped)", "error": "grader error"}


# -- files ------------------------------------------------------------------------


def student_dir(out: Path, student: str) -> Path:
    return Path(out) / "students" / student


def load_record(out: Path, student: str) -> dict | None:
    path = student_dir(out, student) / "record.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def report_of(record: dict) -> GradeReport | None:
    data = record.get("report")
    if not data:
        return None
    fields = {k: v for k, v in data.items() if k in GradeReport.__dataclass_fields__ and k != "results"}
    results = [ItemResult(**{k: v for k, v in r.items() if k in ItemResult.__dataclass_fields__})
               for r in data.get("results", [])]
    return GradeReport(results=results, **fields)


def write_student(out: Path, record: dict, report: GradeReport | None, title: str) -> None:
    """results.json and feedback.md for the student, then the record (last: it marks the student done)."""
    folder = student_dir(out, record["student"])
    if report is not None:
        atomic.write_text(folder / "results.json", json.dumps(report.to_gradescope(), indent=2) + "\n")
        atomic.write_text(folder / "feedback.md", feedback(report, title, record))
    atomic.write_text(folder / "record.json", json.dumps(record, indent=1) + "\n")


def number(value: float | None) -> str:
    if value is None:
        return ""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def grades_csv(items: list[str], records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extra = extra_columns(records)
    writer.writerow(["student", "name", *items, *extra, "total"])
    for record in records:
        report = report_of(record) if record.get("status") == GRADED else None
        points = {r.id: r.points for r in report.results} if report else {}
        writer.writerow([csv_cell(record["student"]), csv_cell(record.get("name", "")),
                         *[number(points.get(i)) for i in items], *extra_cells(record, extra),
                         number(record.get("total", report.score)) if report else ""])
    return buf.getvalue()


def write_grades(out: Path, items: list[str], records: list[dict]) -> None:
    atomic.write_text(Path(out) / "grades.csv", grades_csv(items, records))


# -- feedback for one student -------------------------------------------------------


def reason_of(r: ItemResult) -> str | None:
    """Why an item lost points, as a key of REASONS or _OTHER_REASONS; None when it did not."""
    if r.ok:
        return None
    if r.status == SKIPPED:
        return "skipped"
    failure = (r.extra or {}).get("failure")
    if failure:
        return failure if failure in REASONS else "exception"
    if r.status == ERROR:
        return "error"
    if r.status == UNCERTAIN:
        return "uncertain"
    return "partial" if r.status == PARTIAL or r.points > 0 else "wrong"


def reason_label(reason: str) -> str:
    """'timeout' -> 'time limit (endless loop?)'; 'wrong|vgg16.accuracy' -> 'wrong result: vgg16.accuracy'."""
    reason, _, item = reason.partition("|")
    label = REASONS[reason][0] if reason in REASONS else _OTHER_REASONS.get(reason, reason)
    return f"{label}: {item}" if item else label


def feedback(report: GradeReport, title: str, record: dict) -> str:
    who = record.get("name") or record["student"]
    lines = [f"# {_md(title or report.assignment)}", "", f"Feedback for **{_md(who)}**", "",
             f"**Score: {number(record.get('total', report.score))} / {number(report.max_score)}**", ""]
    lines += ["| Item | Points | Result |", "|---|---:|---|"]
    for r in report.results:
        if r.visibility == "hidden":
            lines.append(f"| {_md(r.title)} | hidden | graded by your instructor |")
            continue
        reason = reason_of(r)
        result = "passed" if reason is None else reason_label(reason)
        lines.append(f"| {_md(r.title)} | {number(r.points)} / {number(r.max_points)} | {result} |")
    lines.append("")
    adjusted = adjustment_lines(record)
    if adjusted:
        lines += [f"- {_md(line)}" for line in adjusted] + [""]
    lost = [r for r in report.results if reason_of(r) is not None and r.visibility != "hidden"]
    whole = whole_submission_failure(report)
    if whole is not None:
        lines += ["## What to fix", "", _md(whole.message), "", f"*What this means:* {REASONS[reason_of(whole)][1]}",
                  ""]
    elif lost:
        lines += ["## What to fix", ""]
        explained: set[str] = set()
        for r in lost:
            lines += _item_feedback(r, explained)
    else:
        lines += ["Every item passed. Well done.", ""]
    notes = list(record.get("notes") or []) + list(report.notes)
    if notes:
        lines += ["## Notes", ""] + [f"- {_md(n)}" for n in notes] + [""]
    output = report.output.strip()
    if output and lost:
        tail = shown(output[-3000:], keep_newlines=True).splitlines()[-30:]
        lines += ["## What your code printed (last lines)", "", fence(tail), *tail, fence(tail), ""]
    lines += provenance_footer(record)
    lines += [f"*OS boundary: {_md(report.boundary)}.*", ""]
    return "\n".join(lines)


def whole_submission_failure(report: GradeReport) -> ItemResult | None:
    """The one result that stands for all, when no item could be graded for one reason
    (an empty or unreadable upload): said once, not once per item."""
    results = report.results
    if not results or any((r.extra or {}).get("failure") not in ("submission", "empty") for r in results):
        return None
    return results[0] if len({r.message for r in results}) == 1 else None


def _item_feedback(r: ItemResult, explained: set[str]) -> list[str]:
    lines = [f"### {_md(r.title)} ({number(r.points)} / {number(r.max_points)})", "", _md(r.message)]
    if r.where and r.where not in r.message:
        lines[-1] += f" (in {code_span(r.where)})"  # a backtick in a file name cannot end the code span
    lines.append("")
    code = [d for d in r.details if " | " in d[:8]]
    other = [d for d in r.details if d not in code]
    if code:
        code = [shown(line) for line in code]
        lines += [fence(code), *code, fence(code), ""]
    if other:
        lines += [f"- {_md(d)}" for d in other[:12]]
        if len(other) > 12:
            lines.append(f"- ... and {len(other) - 12} more")
        lines.append("")
    reason = reason_of(r)
    if reason in REASONS and reason not in explained:
        explained.add(reason)
        lines += [f"*What this means:* {REASONS[reason][1]}", ""]
    return lines


def _md(text: str) -> str:
    """One line of Markdown from text that may come from a student: shown as text by every
    renderer (no HTML, link, image or emphasis of the student's), no table breaks."""
    return md(text)


# -- the class summary ------------------------------------------------------------


@dataclass
class ItemStats:
    id: str
    title: str
    max_points: float
    graded: int = 0
    passed: int = 0
    points: float = 0.0

    @property
    def rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0

    @property
    def mean(self) -> float:
        return self.points / self.graded if self.graded else 0.0


@dataclass
class Summary:
    assignment: str
    max_score: float
    students: int
    graded: int
    regraded: int
    errors: list[tuple[str, str]] = field(default_factory=list)  # (student, why)
    items: list[ItemStats] = field(default_factory=list)
    histogram: list[tuple[str, int]] = field(default_factory=list)
    failures: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # reason -> student -> items
    examples: dict[str, str] = field(default_factory=dict)  # reason -> one message
    slowest: list[tuple[str, float]] = field(default_factory=list)
    mean: float = 0.0
    median: float = 0.0
    isolation: dict[str, list[str]] = field(default_factory=dict)
    boundaries: dict[str, list[str]] = field(default_factory=dict)  # OS boundary -> students graded in it
    stopped: str | None = None  # why the batch refused its remaining students (the sandbox was lost)
    warnings: list[str] = field(default_factory=list)
    reused: list[tuple[str, str, str, str]] = field(default_factory=list)  # (student, item, from whom, how)
    lookups: list[tuple[str, str, str]] = field(default_factory=list)  # (student, item, the numbers)
    duplicates: int = 0
    instructor_copies: int = 0
    intake: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(assignment: str, items: list[tuple[str, str, float]], records: list[dict], *,
              regraded: int = 0, seconds: float = 0.0, students: int | None = None) -> Summary:
    """items: (id, title, max points) of the graded items, in rubric order;
    students: how many there are (more than records when a run was interrupted)."""
    stats = {i: ItemStats(i, title, mx) for i, title, mx in items}
    max_score = sum(mx for _, _, mx in items)
    summary = Summary(assignment, max_score, students=max(students or 0, len(records)), graded=0, regraded=regraded,
                      seconds=seconds)
    scores, timings, isolation = [], [], {}
    for record in records:
        report = report_of(record) if record.get("status") == GRADED else None
        if report is None:
            summary.errors.append((record["student"], record.get("error") or "not graded"))
            continue
        summary.graded += 1
        scores.append(record.get("total", report.score))  # after late penalty and adjustments
        timings.append((record["student"], float(record.get("seconds") or report.seconds)))
        for key, value in (report.isolation or {}).items():
            isolation.setdefault(key, set()).add(str(value))
        summary.boundaries.setdefault(report.boundary, []).append(record["student"])
        for r in report.results:
            if (r.extra or {}).get("reused_from"):
                summary.reused.append((record["student"], r.id, r.extra["reused_from"], r.extra.get("reuse", "")))
            if (r.extra or {}).get("lookup_suspect"):
                summary.lookups.append((record["student"], r.id, r.extra["lookup_suspect"]))
            s = stats.get(r.id)
            if s is not None and r.status != SKIPPED:
                s.graded += 1
                s.passed += int(r.ok)
                s.points += r.points
            reason = reason_of(r)
            if reason is not None:
                # Failures of the code group by kind; wrong answers by item (what the class got wrong).
                key = reason if reason in REASONS else f"{reason}|{r.id}"
                summary.failures.setdefault(key, {}).setdefault(record["student"], []).append(r.id)
                summary.examples.setdefault(key, r.message)
    summary.items = list(stats.values())
    summary.histogram = histogram(scores, max_score)
    summary.slowest = sorted(timings, key=lambda t: -t[1])[:5]
    if scores:
        ordered = sorted(scores)
        summary.mean = sum(scores) / len(scores)
        middle = len(ordered) // 2
        summary.median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    summary.failures = dict(sorted(summary.failures.items(), key=lambda kv: -len(kv[1])))
    summary.isolation = {k: sorted(v) for k, v in isolation.items()}
    summary.warnings = boundary_warnings(summary.boundaries) + isolation_warnings(summary.isolation)
    return summary


def histogram(scores: list[float], max_score: float, bins: int = 10) -> list[tuple[str, int]]:
    """Counts of scores per tenth of the maximum (the last bin includes full marks)."""
    counts = Counter()
    for score in scores:
        fraction = score / max_score if max_score else 0.0
        counts[min(bins - 1, int(fraction * bins + 1e-9))] += 1
    width = max_score / bins
    return [(f"{number(i * width)}-{number((i + 1) * width)}", counts[i]) for i in range(bins)]


def boundary_warnings(boundaries: dict[str, list[str]]) -> list[str]:
    """Students whose code ran without the OS sandbox (only ever with --unsafe-no-isolation)."""
    return [f"{len(students)} student{'s' * (len(students) != 1)} graded WITHOUT OS isolation "
            f"(--unsafe-no-isolation): {', '.join(students[:10])}{' ...' if len(students) > 10 else ''}"
            for boundary, students in boundaries.items() if boundary.startswith("NONE")]


def boundary_line(s: "Summary") -> str:
    """'OS boundary: bubblewrap sandbox (12 students)': which boundary graded the class."""
    parts = [f"{name} ({len(students)} student{'s' * (len(students) != 1)})"
             for name, students in s.boundaries.items()]
    return "OS boundary: " + ("; ".join(parts) if parts else "no student code ran")


def stopped_text(s: "Summary") -> str:
    waiting = s.students - s.graded - len(s.errors)
    return (f"STOPPED: {s.stopped}. The batch refused the {waiting} remaining student{'s' * (waiting != 1)} "
            "rather than grade them without isolation; fix bubblewrap and rerun the same command")


def isolation_warnings(isolation: dict[str, list[str]]) -> list[str]:
    warnings = []
    network = isolation.get("network", [])
    if any(not v.startswith("namespace") for v in network):
        warnings.append("network namespaces were not available for every student: network access was refused "
                        "by Python's audit hook only (" + "; ".join(network) + ")")
    files = isolation.get("files", [])
    if any(v.startswith("unavailable") for v in files):
        warnings.append("Landlock was not available for every student: file access was limited by Python's "
                        "audit hook only (" + "; ".join(files) + ")")
    return warnings


def summary_markdown(s: Summary) -> str:
    lines = [f"# Batch summary: {_md(s.assignment)}", ""]
    waiting = s.students - s.graded - len(s.errors)
    lines.append(f"{s.students} students: {s.graded} graded ({s.regraded} in this run), "
                 f"{len(s.errors)} could not be graded{f', {waiting} not graded yet' if waiting else ''}. "
                 f"Maximum {number(s.max_score)} points; "
                 f"mean {number(round(s.mean, 2))}, median {number(round(s.median, 2))}.")
    lines.append("")
    if s.stopped:
        lines += [f"> **{_md(stopped_text(s))}.**", ""]
    lines += [_md(boundary_line(s)), ""]
    for w in s.warnings:
        lines += [f"> **Warning:** {_md(w)}", ""]
    if s.isolation:
        lines += ["Isolation: " + "; ".join(f"{_md(k)}: {_md(', '.join(v))}" for k, v in s.isolation.items()), ""]
    lines += ["## Items", "", "| Item | Points | Passed | Pass rate | Mean |", "|---|---:|---:|---:|---:|"]
    for i in s.items:
        lines.append(f"| {_md(i.title)} ({code_span(i.id)}) | {number(i.max_points)} | {i.passed}/{i.graded} | "
                     f"{i.rate:.0%} | {number(round(i.mean, 2))} |")
    lines += ["", "## Scores", "", "```"]
    peak = max([c for _, c in s.histogram] + [1])
    width = max([len(label) for label, _ in s.histogram] + [1])
    for label, count in s.histogram:
        lines.append(f"{label:>{width}} | {'#' * round(30 * count / peak):<30} {count}")
    environment = s.failures.get("environment")
    if environment:  # not the students' code: the instructor's to fix (grader env install), then grade again
        lines += ["```", "", f"## Environment problems: {len(environment)} student{'s' * (len(environment) != 1)}",
                  "", "Not graded: their code imports a package this grading environment lacks (see "
                  "`environment.packages` in the rubric and `grader env install`).", "",
                  f"e.g. {_md(s.examples.get('environment', ''))}", ""]
        lines += [f"- {_md(student)}: {_md(', '.join(items))}" for student, items in environment.items()]
        lines += [""]
    else:
        lines += ["```", ""]
    failures = {reason: students for reason, students in s.failures.items() if reason != "environment"}
    lines += ["## Failures by reason", ""]
    if not failures:
        lines += ["None.", ""]
    for reason, students in failures.items():
        lines.append(f"### {_md(reason_label(reason))}: {len(students)} student{'s' * (len(students) != 1)}")
        lines.append("")
        lines.append(f"e.g. {_md(s.examples.get(reason, ''))}")
        lines.append("")
        for student, items in students.items():
            lines.append(f"- {_md(student)}: {_md(', '.join(items))}")
        lines.append("")
    if s.errors:
        lines += ["## Not graded", ""] + [f"- {_md(st)}: {_md(why)}" for st, why in s.errors] + [""]
    lines += ["## Slowest submissions", "", "| Student | Seconds |", "|---|---:|"]
    lines += [f"| {_md(st)} | {sec:.1f} |" for st, sec in s.slowest]
    lines.append("")
    if s.duplicates or s.instructor_copies:
        lines += ["## Duplicates", "", f"{s.duplicates} groups of identical work: see duplicates.csv."]
        if s.instructor_copies:
            lines.append(f"{s.instructor_copies} checkpoints are the instructor's own file and are not listed.")
        lines.append("")
    if s.reused:
        lines += ["## Reused results", "", f"{len(s.reused)} item results were not computed again: the same code "
                  "and inputs had been graded for another student (exact), or the model gave the class scores of the "
                  "reference model with the same checkpoint on the first calls of its evaluation, and the reference's "
                  "predictions stood for the rest (probe). Students are not told. `--no-reuse` grades everything "
                  "afresh.",
                  "", "| Item | Computed for | How | Reused for |", "|---|---|---|---|"]
        groups: dict[tuple[str, str, str], list[str]] = {}
        for student, item, whom, how in s.reused:
            groups.setdefault((item, whom, how), []).append(student)
        for (item, whom, how), students in groups.items():
            lines.append(f"| {code_span(item)} | {_md(whom)} | {_md(how)} | "
                         f"{len(students)}: {_md(', '.join(students))} |")
        lines.append("")
    if s.lookups:
        lines += ["## Possible lookups of the public test set", "", "Accuracy that collapses on the same test images "
                  "flipped, shifted by one pixel, or moved and jittered at random: the model may recognise the images rather than what they show. "
                  "The points were not changed; students are not told.", ""]
        lines += [f"- {_md(student)}, {code_span(item)}: {_md(text)}" for student, item, text in s.lookups] + [""]
    if s.intake:
        lines += ["## Intake", ""] + [f"- {_md(n)}" for n in s.intake] + [""]
    return "\n".join(lines)


def show_summary(s: Summary, console: Console) -> None:
    """The class summary in the terminal (plain text when piped)."""
    plain = not console.is_terminal
    say = (lambda t: console.print(t, markup=False, highlight=False, soft_wrap=True)) if plain else console.print
    text = (lambda t: shown(t)) if plain else (lambda t: escape(shown(t)))  # a student's '[red]' stays as it is
    say(f"{text(s.assignment)}: {s.graded}/{s.students} students graded ({s.regraded} in this run), "
        f"mean {number(round(s.mean, 2))}/{number(s.max_score)}, median {number(round(s.median, 2))}")
    if s.stopped:
        say(f"error: {stopped_text(s)}" if plain else f"[red]error:[/] {escape(stopped_text(s))}")
    say(boundary_line(s) if plain else escape(boundary_line(s)))
    for w in s.warnings:
        say(f"warning: {w}" if plain else f"[yellow]warning:[/] {escape(w)}")
    if plain:
        for i in s.items:
            say(f"  {i.id:<32} passed {i.passed:>3}/{i.graded:<3} {i.rate:>5.0%}  mean {number(round(i.mean, 2))}"
                f"/{number(i.max_points)}")
    else:
        table = Table(title="Items", title_justify="left")
        for column, justify in (("Item", "left"), ("Passed", "right"), ("Rate", "right"), ("Mean", "right")):
            table.add_column(column, justify=justify)
        for i in s.items:
            table.add_row(escape(i.id), f"{i.passed}/{i.graded}", f"{i.rate:.0%}",
                          f"{number(round(i.mean, 2))}/{number(i.max_points)}")
        console.print(table)
    say("scores:")
    peak = max([c for _, c in s.histogram] + [1])
    for label, count in s.histogram:
        bar = "#" * round(30 * count / peak)
        say(f"  {label:>12} | {bar:<30} {count}" if plain else f"  {label:>12} | [cyan]{bar:<30}[/] {count}")
    if s.failures:
        say("failures by reason:")
        for reason, students in s.failures.items():
            names = ", ".join(shown(st) for st in list(students)[:8]) + (" ..." if len(students) > 8 else "")
            say(f"  {reason_label(reason)} ({len(students)}): {names}" if plain
                else f"  [red]{escape(reason_label(reason))}[/] ({len(students)}): {escape(names)}")
    for student, why in s.errors:
        student, why = shown(student), shown(why)
        say(f"not graded: {student}: {why}" if plain else f"[magenta]not graded:[/] {escape(student)}: {escape(why)}")
    if s.reused:
        say(f"reused: {len(s.reused)} item results from identical code or equivalent models (summary.md lists "
            "them; --no-reuse grades everything afresh)")
    if s.slowest:
        say("slowest: " + ", ".join(f"{text(st)} {sec:.1f} s" for st, sec in s.slowest))


# -- the late penalty, overrides and provenance of a record (grader.batch.scoring sets them) --


def adjustment_lines(record: dict) -> list[str]:
    """The late penalty and the overrides, one line each, for feedback.md."""
    lines = []
    lateness = record.get("late")
    if lateness:
        lines.append(f"Late penalty: -{number(lateness['penalty'])} ({lateness['note']})")
    for a in record.get("adjustments") or []:
        lines.append(f"{a['item'] or 'Total'}: {a['text']}")
    return lines


def provenance_footer(record: dict) -> list[str]:
    p = record.get("provenance")
    return ["---", "", f"*Graded with {records.provenance_line(p)}.*", ""] if p else []


def extra_columns(records_: list[dict]) -> list[str]:
    """Columns grades.csv adds before the total: the late penalty and adjustments, when any student has one."""
    columns = []
    if any(r.get("late") for r in records_):
        columns.append("late_penalty")
    if any(r.get("adjustments") for r in records_):
        columns.append("adjusted")
    return columns


def extra_cells(record: dict, columns: list[str]) -> list[str]:
    cells = []
    for column in columns:
        if column == "late_penalty":
            cells.append(number(-record["late"]["penalty"]) if record.get("late") else "")
        elif column == "adjusted":
            cells.append("; ".join(a["text"] for a in record.get("adjustments") or []))
    return cells
