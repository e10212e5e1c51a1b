"""Watching a batch: a live display on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import collections
import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from grader.batch import gradebook
from grader.batch.job import Job
from grader.batch.pipeline import Display, Plan
from grader.safe_text import shown


def for_console(console: Console) -> Display:
    return LiveDisplay(console) if console.is_terminal else PlainDisplay(console)


def _failed_items(record: dict) -> list[tuple[str, str]]:
    """(item, reason label) for each item that lost points."""
    report = gradebook.report_of(record) if record.get("status") == gradebook.GRADED else None
    if report is None:
        return []
    if gradebook.whole_submission_failure(report) is not None:  # one reason for all items: said once
        return [("every item", gradebook.reason_label(gradebook.reason_of(report.results[0])))]
    out = []
    for r in report.results:
        reason = gradebook.reason_of(r)
        if reason is not None:
            out.append((r.id, gradebook.reason_label(reason)))
    return out


def _score(record: dict) -> str:
    report = gradebook.report_of(record) if record.get("status") == gradebook.GRADED else None
    if report is None:
        return "not graded"
    return f"{gradebook.number(report.score)}/{gradebook.number(report.max_score)}"


def _plan_lines(plan: Plan) -> list[str]:
    total = len(plan.intake.submissions)
    unchanged = len(plan.records) - len(plan.stale)
    left_out = total - len(plan.jobs) - len(plan.records)  # --student names only some
    parts = [f"grading {len(plan.jobs)}"]
    parts += [f"{unchanged} unchanged since the last run"] if unchanged or not (left_out or plan.stale) else []
    parts += [f"{len(plan.stale)} shown as graded earlier"] if plan.stale else []
    parts += [f"{left_out} not graded in this run"] if left_out else []
    lines = [f"{plan.rubric.assignment}: {total} students ({plan.intake.layout}); {', '.join(parts)}; "
             f"{plan.workers} at a time, {plan.threads} thread{'s' * (plan.threads != 1)} each"]
    lines += [f"note: {shown(n)}" for n in plan.data_notes]
    if plan.intake.unassigned:
        lines.append(f"note: {len(plan.intake.unassigned)} files belong to no student (see summary.md)")
    return lines


class PlainDisplay(Display):
    """One line per finished student."""

    def __init__(self, console: Console):
        self.console = console
        self.total = 0
        self.done = 0
        self.started_at = time.monotonic()
        self.queue_shown, self.queue_text = 0.0, ""

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def planned(self, plan: Plan) -> None:
        self.total = len(plan.jobs)
        for line in _plan_lines(plan):
            self._say(line)

    def queue(self, text: str) -> None:
        """Called at every look at the queue: a line when it changed, at most one every 5 s."""
        now = time.monotonic()
        if text != self.queue_text and (now - self.queue_shown >= 5 or not self.queue_text):
            self.queue_shown, self.queue_text = now, text
            self._say(text)

    def note(self, text: str) -> None:
        self._say(f"note: {shown(text)}")

    def finished(self, record: dict) -> None:
        self.done += 1
        width = len(str(self.total))
        line = f"[{self.done:>{width}}/{self.total}] {shown(record['student'])}: {_score(record)}"
        if record.get("seconds") is not None:
            line += f" in {record['seconds']:.1f} s"
        if record.get("status") != gradebook.GRADED:
            line += f"; {shown(record.get('error'))}"
        failed = _failed_items(record)
        if failed:
            line += "; lost points: " + ", ".join(f"{item} ({why})" for item, why in failed)
        self._say(line)


class LiveDisplay(Display):
    """Progress bar with ETA, who is being graded right now, and the latest failures."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console)
        self.task = None
        self.running: dict[str, str] = {}
        self.failures: collections.deque[str] = collections.deque(maxlen=6)
        self.failed_students = 0
        self.live: Live | None = None
        self.queue_text = ""

    def planned(self, plan: Plan) -> None:
        for line in _plan_lines(plan):
            self.console.print(escape(line))
        self.task = self.bar.add_task("grading", total=max(1, len(plan.jobs)))
        if plan.jobs:
            self.live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4,
                             transient=False)
            self.live.start()

    def started(self, job: Job) -> None:
        self.running[job.student] = "starting"

    def progress(self, job: Job, text: str) -> None:
        self.running[job.student] = text

    def queue(self, text: str) -> None:
        self.queue_text = text

    def note(self, text: str) -> None:
        self.console.print(f"[dim]note:[/] {escape(shown(text))}")

    def finished(self, record: dict) -> None:
        self.running.pop(record["student"], None)
        self.bar.advance(self.task)
        failed = _failed_items(record)
        if record.get("status") != gradebook.GRADED:
            self.failed_students += 1
            self.failures.append(f"[magenta]{escape(shown(record['student']))}[/]: not graded: "
                                 f"{escape(shown(record['error']))}")
        elif failed:
            self.failed_students += 1
            reasons = sorted({why for _, why in failed})
            self.failures.append(f"[red]{escape(shown(record['student']))}[/] {_score(record)}: "
                                 f"{escape(', '.join(reasons))} ({len(failed)} item{'s' * (len(failed) != 1)})")

    def _render(self):
        parts = [self.bar]
        if self.queue_text:
            parts.append(escape(shown(self.queue_text)))
        if self.running:
            table = Table(show_header=False, box=None, padding=(0, 1))
            for student, text in sorted(self.running.items()):
                table.add_row(f"[cyan]{escape(shown(student))}[/]", escape(shown(text)))
            parts.append(table)
        if self.failures:
            parts.append(f"[bold]lost points[/] ({self.failed_students} students so far, latest):")
            parts.extend(f"  {line}" for line in self.failures)
        return Group(*parts)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
