"""`grader rubric validate` and `grader rubric show`: a rubric checked beyond its format
(does the reference define what the items build? is the skeleton up to date? can students
self-check the visible items?) and a summary of its items, points and visibility."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader import packages
from grader.authoring import skeleton
from grader.rubric import PUBLIC_VISIBILITY, Rubric
from grader.rubric.messages import line_of


@dataclass
class Finding:
    level: str  # "error" (the rubric cannot grade as written) or "warning"
    line: int
    message: str

    def text(self, where: str) -> str:
        return f"{where}:{self.line}: {self.level}: {self.message}"


def lint(rubric: Rubric) -> list[Finding]:
    """What the format cannot tell: the rubric against its reference, skeleton and visibility."""
    root = yaml.compose(rubric.path.read_text()) if rubric.path else None
    line = (lambda *loc: line_of(root, loc)) if root is not None else (lambda *loc: 1)
    findings: list[Finding] = []
    reference = rubric.reference_dir()
    needs_reference = [i for i in rubric.items if i.needs_reference()]
    if reference is None or not reference.is_dir():
        if needs_reference:
            where = f"{_display(reference)} does not exist" if reference else "the rubric has no 'reference:'"
            findings.append(Finding("error", line("reference"), f"{where}, and items "
                                    f"{', '.join(i.id for i in needs_reference)} compare with the reference"))
    else:
        findings += _reference_findings(rubric, reference, line)
    folder = rubric.skeleton_dir()
    if folder is not None and reference is not None and reference.is_dir():
        if not folder.is_dir():
            findings.append(Finding("warning", line("skeleton"), f"{_display(folder)} does not exist yet: "
                                    f"run `grader skeleton {rubric.assignment}`"))
        else:
            stale = skeleton.stale(reference, folder)
            if stale:
                findings.append(Finding("warning", line("skeleton"), f"the skeleton is out of date ({', '.join(stale)})"
                                        f": run `grader skeleton {rubric.assignment}`"))
    has_reference = reference is not None and reference.is_dir()
    for index, item in enumerate(rubric.items):
        if item.visibility != PUBLIC_VISIBILITY or rubric.public:
            continue
        where = line("items", index, "visibility") if _has(root, index, "visibility") else line("items", index)
        if item.needs_reference() and not has_reference:
            findings.append(Finding("warning", where,
                                    f"item '{item.id}' is visible but needs the reference solution, which is not "
                                    "there to compute the handout's answers: `grader bundle --student` refuses it "
                                    "(make it `visibility: hidden`, or give the expected value in the rubric)"))
        elif item.check == "blanks":
            findings.append(Finding("warning", where,
                                    f"item '{item.id}' is visible: a blank's expected value is an answer, and the "
                                    "handout's answers file would hold it (make it `visibility: hidden` or "
                                    "`after_published`)"))
    for spec in packages.missing(rubric):
        findings.append(Finding("warning", line("environment", "packages"),
                                f"package {spec!r} of environment.packages is not installed here: students' files "
                                f"that import it cannot be graded; run `grader env install {rubric.assignment}`"))
    if not any(i.visibility == PUBLIC_VISIBILITY for i in rubric.items):
        findings.append(Finding("warning", line("items"), "no item is visible: students have nothing to self-check"))
    return findings


def _display(path: Path) -> str:
    """A folder as the user would type it from here."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _has(root, index: int, key: str) -> bool:
    try:
        item = root.value[[k.value for k, _ in root.value].index("items")][1].value[index]
        return any(k.value == key for k, _ in item.value)
    except (AttributeError, ValueError, IndexError):
        return False


def _reference_findings(rubric: Rubric, reference, line) -> list[Finding]:
    from grader.reference import Reference, ReferenceUnavailable

    findings = []
    loaded = Reference(reference)
    for file in rubric.files:
        if not (reference / file).is_file():
            findings.append(Finding("error", line("files"), f"{file} is not in the reference folder "
                                    f"{_display(reference)}"))
    for index, item in enumerate(rubric.items):
        target = getattr(item, "target", None)
        if target is None or not (reference / target.file).is_file():
            continue
        try:
            module = loaded.module(target.file)
        except ReferenceUnavailable as e:
            findings.append(Finding("error", line("items", index, "target"), str(e)))
            continue
        for name in [target.name, *target.isolate]:
            if not hasattr(module, name.split(".")[0]):
                findings.append(Finding("error", line("items", index, "target"),
                                        f"item '{item.id}': the reference {target.file} defines no {name}"))
    return findings


# -- show -------------------------------------------------------------------------


def summary(rubric: Rubric) -> dict:
    public = [i for i in rubric.items if i.visibility == PUBLIC_VISIBILITY]
    return {
        "assignment": rubric.assignment,
        "title": rubric.title,
        "public_rubric": rubric.public,
        "total_points": rubric.total_points,
        "public_points": sum(i.points for i in public),
        "hidden_points": rubric.total_points - sum(i.points for i in public),
        "items": [{"id": i.id, "title": i.title, "check": i.check, "points": i.points,
                   "visibility": i.visibility, "needs_reference": i.needs_reference()} for i in rubric.items],
    }


def show(rubric: Rubric, console: Console) -> None:
    data = summary(rubric)
    totals = (f"{data['total_points']:g} points: {data['public_points']:g} public (students self-check), "
              f"{data['hidden_points']:g} hidden")
    if console.is_terminal:
        table = Table(title=f"{rubric.assignment}: {escape(rubric.title)}", title_justify="left")
        for column, justify in (("Item", "left"), ("Title", "left"), ("Check", "left"), ("Points", "right"),
                                ("Visibility", "left")):
            table.add_column(column, justify=justify)
        for item in data["items"]:
            style = "" if item["visibility"] == PUBLIC_VISIBILITY else "dim"
            table.add_row(escape(item["id"]), escape(item["title"]), item["check"], f"{item['points']:g}",
                          f"[{style}]{item['visibility']}[/]" if style else item["visibility"])
        table.add_section()
        table.add_row("[bold]Total[/]", "", "", f"[bold]{data['total_points']:g}[/]", "")
        console.print(table)
        console.print(totals, markup=False, highlight=False)
        return
    print_ = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    width = max(len(i["id"]) for i in data["items"])
    print_(f"{rubric.assignment}: {rubric.title}")
    for item in data["items"]:
        print_(f"{item['id']:<{width}}  {item['points']:>5g}  {item['visibility']:<10}  {item['check']:<12}  "
               f"{item['title']}")
    print_(f"{'TOTAL':<{width}}  {data['total_points']:>5g}  ({totals})")
