"""Showing a report to people (a rich table in a terminal, plain lines when piped)
and to machines (Gradescope's results.json)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.results import ERROR, FAILED, PARTIAL, PASSED, SKIPPED, UNCERTAIN, GradeReport, ItemResult
from grader.safe_text import shown

_LABEL = {PASSED: "PASS", PARTIAL: "PART", FAILED: "FAIL", SKIPPED: "SKIP", UNCERTAIN: "UNSURE", "error": "ERROR"}
_STYLE = {PASSED: "green", PARTIAL: "yellow", FAILED: "red", SKIPPED: "dim", UNCERTAIN: "yellow", "error": "magenta"}
MAX_DETAILS = 6


def points(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def show(report: GradeReport, console: Console, verbose: bool = False) -> None:
    if console.is_terminal:
        _rich(report, console, verbose)
    else:
        _plain(report, console, verbose)


def _rich(report: GradeReport, console: Console, verbose: bool) -> None:
    title = f"{escape(shown(report.assignment))}: {escape(shown(report.submission))}"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("Item", no_wrap=True)
    table.add_column("Points", justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Reason")
    for p in report.problems:
        table.add_row(escape(shown(p["file"])), "", f"[red]{_problem_label(p)}[/]", escape(shown(_problem_reason(p))))
    for r in report.results:
        style = _STYLE.get(r.status, "")
        table.add_row(escape(shown(r.id)), f"{points(r.points)}/{points(r.max_points)}",
                      f"[{style}]{_LABEL.get(r.status, r.status)}[/]", escape(_reason(r)))
    table.add_section()
    table.add_row("[bold]Total[/]", f"[bold]{points(report.score)}/{points(report.max_score)}[/]", "", "")
    console.print(table)
    for p in report.problems:
        lines = _problem_lines(p, verbose)
        if lines:
            console.print(f"[red]{escape(shown(p['file']))}[/]")
            for line in lines:  # the student's code: no markup, no terminal escapes
                console.print(f"    {escape(shown(line))}", soft_wrap=True)
    for r in report.results:
        lines = _details(r, verbose)
        if lines:
            console.print(f"[{_STYLE.get(r.status, '')}]{escape(shown(r.id))}[/]")
            for line in lines:
                console.print(f"  - {escape(line)}", soft_wrap=True)
    _footer(report, console, verbose, rich=True)


def _plain(report: GradeReport, console: Console, verbose: bool) -> None:
    width = max([len(r.id) for r in report.results] + [len(p["file"]) for p in report.problems] + [4])
    print_ = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    print_(f"{shown(report.assignment)}: {shown(report.submission)}")
    for p in report.problems:  # before the items: what failed to load explains what follows
        print_(f"{_problem_label(p):6} {'':>9}  {shown(p['file']):<{width}}  {shown(_problem_reason(p))}")
        for line in _problem_lines(p, verbose):
            print_(f"{'':6} {'':>9}  {'':<{width}}  {shown(line)}")
    for r in report.results:
        score = f"{points(r.points)}/{points(r.max_points)}"
        print_(f"{_LABEL.get(r.status, r.status):6} {score:>9}  {shown(r.id):<{width}}  {_reason(r)}")
        for line in _details(r, verbose):
            print_(f"{'':6} {'':>9}  {'':<{width}}  - {line}")
    print_(f"{'TOTAL':6} {points(report.score) + '/' + points(report.max_score):>9}")
    _footer(report, console, verbose, rich=False)


def _problem_lines(p: dict, verbose: bool) -> list[str]:
    lines = (p.get("code") or "").splitlines()
    if verbose and p.get("trace"):
        lines += ["traceback, your code only (innermost last):"] + [f"  {t}" for t in p["trace"]]
    return lines


def _problem_label(p: dict) -> str:
    """FAIL for the student's code; ERROR for what the grading environment lacks (not theirs)."""
    return _LABEL[ERROR] if p.get("kind") == "environment" else _LABEL[FAILED]


def _problem_reason(p: dict) -> str:
    where = p.get("where")
    return f"{p['message']} ({where})" if where and where not in p["message"] else p["message"]


def _reason(r: ItemResult) -> str:
    text = f"{r.message} ({r.where})" if r.where and r.where not in r.message else r.message
    return shown(text)


def _details(r: ItemResult, verbose: bool) -> list[str]:
    if r.status == PASSED and not verbose:
        return []
    lines = [shown(line) for line in r.details]
    if verbose and r.extra.get("trace"):
        lines += ["traceback, your code only (innermost last):"] + [f"  {shown(t)}" for t in r.extra["trace"]]
    if not verbose and len(lines) > MAX_DETAILS:
        lines = lines[:MAX_DETAILS] + [f"... {len(lines) - MAX_DETAILS} more (--verbose shows all)"]
    return lines


def _footer(report: GradeReport, console: Console, verbose: bool, rich: bool) -> None:
    for missing in report.incomplete:  # not a pass, whatever the items say
        console.print(f"incomplete: {shown(missing)}", style="bold red" if rich else None, markup=False,
                      highlight=False, soft_wrap=True)
    for note in report.notes:  # notes name the student's files: escaped
        console.print(shown(note), markup=False, highlight=False, soft_wrap=True)
    if verbose:
        if report.isolation:
            text = ", ".join(f"{k}: {v}" for k, v in report.isolation.items())
            console.print(f"isolation: {shown(text)}", markup=False, highlight=False, soft_wrap=True)
        if report.output.strip():
            console.print("output of the submission:", markup=False)
            console.print(shown(report.output.rstrip(), keep_newlines=True), markup=False, highlight=False,
                          soft_wrap=True)
    console.print(f"boundary: {report.boundary}", markup=False, highlight=False)  # which OS sandbox ran it
    console.print(f"graded in {report.seconds:.1f} s", style="dim" if rich else None, markup=False, highlight=False)


def gradescope_json(report: GradeReport) -> str:
    return json.dumps(report.to_gradescope(), indent=2)
