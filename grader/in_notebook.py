"""The self-check from inside a Jupyter or Colab notebook, and the zip to hand in.

    import grader
    grader.check()              # every public item
    grader.check("question_6")  # one section (or an item id, or the start of item ids)
    grader.export()             # <assignment>-submission.zip: notebook, challenge.pt, check.txt

check() grades exactly what `grader check --public` grades: the notebook as saved (or, in
Colab, as the page holds it) and the other files of the submission, copied to a temporary
folder, run in the same isolated process against the rubric found next to the notebook.
A student's mistake (no notebook, no rubric, an unknown question) is a message, never a
traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from rich.console import Console

from grader import grading, notebook_session, report
from grader.device import resolve
from grader.errors import GraderError
from grader.notebook import cell_sections, python_source, read_cells
from grader.options import Options
from grader.results import GradeReport
from grader.rubric import Rubric, RubricError
from grader.rubric import find as assignments
from grader.rubric import questions

_WIDTH = 110
# pre-wrap: the table (at most _WIDTH characters) keeps its lines; a long note wraps instead of scrolling.
_PRE = ("<pre style=\"white-space:pre-wrap;word-break:normal;overflow-wrap:normal;line-height:1.15;"
        "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>")


class CheckError(GraderError):
    """Why the check could not run, in words for the student."""


@dataclass
class CheckResult:
    """What grader.check() found: assert on it in a cell (`assert r.passed`, `r.statuses[...]`)."""

    score: float = 0.0
    max_score: float = 0.0
    statuses: dict[str, str] = field(default_factory=dict)  # item id -> passed, failed, ...
    passed: bool = False  # every graded item passed and every cell ran
    notebook: str | None = None
    message: str = ""  # the save line, or why nothing was checked
    error: str | None = None
    checked_at: str = ""
    report: GradeReport | None = field(default=None, repr=False)
    text: str = field(default="", repr=False)
    html: str = field(default="", repr=False)
    notebook_sha256: str | None = field(default=None, repr=False)
    _shown_in: int | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return self.text or self.message

    def _repr_html_(self) -> str:
        return self.html

    def _ipython_display_(self) -> None:
        """Shown once: check() shows it, so `grader.check()` as a cell's last line is not shown twice."""
        from IPython.display import display

        if self._shown_in is not None and self._shown_in == _execution_count():
            self._shown_in = None
            return
        display({"text/plain": self.text or self.message, "text/html": self.html}, raw=True)


_last: dict = {}  # the last check of this kernel, for export()
# A notebook keeps its grader.check() cells when handed in: while it is graded they do nothing
# (no check inside the check, no zip), and an `assert r.passed` after them does not fail the cell.
_GRADED = "not checked: this notebook is being graded"


def while_graded() -> bool:
    """True in the isolated process that runs a submission's code (grader.sandbox)."""
    guard = sys.modules.get("grader.sandbox.guard")
    return getattr(guard, "_policy", None) is not None


def check(what: str | None = None, *, notebook: str | None = None, rubric: str | None = None,
          save: bool = True, show: bool = True, train: bool = True,
          train_budget: float | None = None) -> CheckResult:
    """Grade the public items of this notebook (or those of one section or item) and show them.

    train, train_budget: as `grader check --train/--no-train --train-budget S`, for an accuracy
    item whose checkpoint is not there (the challenge without challenge.pt)."""
    if while_graded():
        return CheckResult(passed=True, message=_GRADED)
    # A student's check of their own notebook, with the public rubric: may run where bubblewrap is missing.
    options = Options(device=resolve("auto"), train_if_missing=train, train_budget_s=train_budget, self_check=True)
    result = _check(what, notebook, rubric, save, options)
    _finish(result, show)
    return result


def _check(what, notebook, rubric_arg, save, options: Options) -> CheckResult:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        found = notebook_session.find(notebook)
        full = _rubric(rubric_arg, found.folder)
        public = full if full.public else full.public_view()
        known(public, what)  # an unknown question is said at once, before waiting for the save
        saved = notebook_session.save(found) if save else f"checking {_name(found)}"
        with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
            folder = stage(found, full, Path(tmp) / full.assignment)
            selected = select(public, what, folder)
            with _progress() as progress:
                graded = grading.grade(folder, public, options, items=selected,
                                       on_progress=progress)
            digest = _digest(folder / _notebook_name(found, full))
        _in_student_folder(graded, folder, found.folder)
        graded.submission = _name(found)
        result = CheckResult(score=graded.score, max_score=graded.max_score,
                             statuses={r.id: r.status for r in graded.results}, passed=graded.all_passed,
                             notebook=str(found.path or _name(found)), message=saved, checked_at=started,
                             report=graded, notebook_sha256=digest)
        result.text, result.html = render(graded, saved)
        _last.update(result=result, found=found, rubric=full, what=what)
        return result
    except (notebook_session.NotebookNotFound, RubricError, CheckError, FileNotFoundError) as e:
        return _failed(str(e), started)
    except Exception as e:  # a grader bug: said in one line, the notebook goes on
        return _failed(f"the check itself failed ({type(e).__name__}: {e}); `grader check --public .` in a "
                       f"terminal gives the same verdicts", started)


def _in_student_folder(graded: GradeReport, copy: Path, folder: Path) -> None:
    """Messages name the student's folder, not the temporary copy that was graded (and is gone)."""
    def real(text):
        return text.replace(str(copy), str(folder)) if isinstance(text, str) else text

    for r in graded.results:
        r.message, r.where, r.details = real(r.message), real(r.where), [real(d) for d in r.details]
    graded.notes = [real(n) for n in graded.notes]
    graded.problems = [{k: real(v) for k, v in p.items()} for p in graded.problems]


def _failed(message: str, started: str) -> CheckResult:
    text = f"grader.check: {message}"
    return CheckResult(message=message, error=message, checked_at=started, text=text,
                       html=f"<p style=\"color:#b00\"><b>grader.check</b>: {escape(message)}</p>")


def _finish(result: CheckResult, show: bool) -> None:
    if not show:
        return
    try:
        from IPython.display import display
        shell = notebook_session._shell()
    except ImportError:
        shell = None
    if shell is None:
        print(result.text)
        return
    display({"text/plain": result.text, "text/html": result.html}, raw=True)
    result._shown_in = _execution_count()


def _execution_count() -> int | None:
    shell = notebook_session._shell()
    return getattr(shell, "execution_count", None) if shell is not None else None


class _progress:
    """One line under the cell that says which item is being graded, gone when done."""

    def __enter__(self):
        self.handle = None
        try:
            from IPython.display import display
            if notebook_session._shell() is not None:
                self.handle = display({"text/plain": "grading..."}, raw=True, display_id=True)
        except ImportError:
            pass
        return self.update

    def update(self, text: str) -> None:
        if self.handle is not None:
            self.handle.update({"text/plain": f"grading: {text}"}, raw=True)

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)


def _rubric(rubric_arg: str | None, folder: Path) -> Rubric:
    try:
        return assignments.resolve(rubric_arg, folder)
    except RubricError as e:
        raise RubricError(f"{e}. The handout's rubric (<assignment>.yaml) belongs in the notebook's folder "
                          f"({folder})") from None


def _name(found: notebook_session.Found) -> str:
    return found.path.name if found.path else "the Colab notebook"


def _notebook_name(found: notebook_session.Found, rubric: Rubric) -> str:
    """The course's name when the rubric names one notebook ("PyTorch (1).ipynb" is graded as it)."""
    named = [f for f in rubric.files if f.endswith(".ipynb")]
    if len(named) == 1:
        return named[0]
    return found.path.name if found.path else "notebook.ipynb"


# -- the submission, as a folder ------------------------------------------------------


def hand_in_names(rubric: Rubric, notebook_name: str) -> list[str]:
    """The rubric's other files and the checkpoints its items read."""
    names = [f for f in rubric.files if f != notebook_name and not f.endswith(".ipynb")]
    names += [i.checkpoint for i in rubric.items if getattr(i, "checkpoint", None)]
    return list(dict.fromkeys(names))


def hand_in_files(rubric: Rubric, folder: Path, notebook_name: str) -> dict[str, Path]:
    """Those of hand_in_names the student has beside the notebook."""
    out = {}
    for name in hand_in_names(rubric, notebook_name):
        path = folder / name
        if path.is_file() and not path.is_symlink():  # a link is never followed, as in `grader check`
            out[name] = path
    return out


def stage(found: notebook_session.Found, rubric: Rubric, folder: Path) -> Path:
    """A folder with the notebook (by the course's name) and the submission's other files."""
    folder.mkdir(parents=True)
    name = _notebook_name(found, rubric)
    if found.live is not None:
        (folder / name).write_text(json.dumps(found.live), encoding="utf-8")
    else:
        shutil.copyfile(found.path, folder / name)
    for rel, path in hand_in_files(rubric, found.folder, name).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / rel)
    return folder


# -- what to check ----------------------------------------------------------------------


def known(rubric: Rubric, what: str | None) -> None:
    """Raise CheckError unless `what` can name something in the rubric (checked without the notebook)."""
    if what is None:
        return
    what = str(what).strip()
    ids = [i.id for i in rubric.items]
    sections = list(rubric.notebook.sections) if rubric.notebook else []
    number = questions.question_number(what)
    if what in ids or what in sections or any(i.startswith(what) for i in ids) or (
            number is not None and (questions.items_of_question(rubric.items, number) or _section_of(number, sections))):
        return
    _unknown(rubric, what, ids, sections)


def _section_of(number: int, sections: list[str]) -> str | None:
    """question_6 for 6, when the rubric's notebook has such a section."""
    return next((s for s in sections if re.fullmatch(rf"(?:q|question)_?0*{number}", s, re.IGNORECASE)), None)


def select(rubric: Rubric, what: str | None, folder: Path) -> list[str]:
    """Item ids for `what`: an item id, a notebook section, a question (q6, "Question 6", 6), or the
    start of item ids."""
    ids = [i.id for i in rubric.items]
    if what is None:
        return ids
    what = str(what).strip()
    if what in ids:
        return [what]
    sections = list(rubric.notebook.sections) if rubric.notebook else []
    number = questions.question_number(what)
    if number is not None:
        chosen = questions.items_of_question(rubric.items, number)
        if chosen:
            return chosen
        what = _section_of(number, sections) or what
    if what in sections:
        chosen = [i.id for i in rubric.items if _item_section(i, rubric, folder) == what]
        if not chosen:
            raise CheckError(f"{what} has no public item: it is graded by your instructor after you hand in "
                             f"(public items: {', '.join(ids)})")
        return chosen
    chosen = [i for i in ids if i.startswith(what)]
    if chosen:
        return chosen
    _unknown(rubric, what, ids, sections)


def _unknown(rubric: Rubric, what: str, ids: list[str], sections: list[str]):
    close = difflib.get_close_matches(what, ids + sections, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise CheckError(f"no item or section {what!r} in {rubric.assignment}; {hint}sections: "
                     f"{', '.join(sections) or 'none'}; public items: {', '.join(ids)}")


def _item_section(item, rubric: Rubric, folder: Path) -> str | None:
    """The item's own section, else the section of the notebook cell that defines its target."""
    target = getattr(item, "target", None)
    own = getattr(target, "section", None) or getattr(item, "section", None)
    if own:
        return own
    name = getattr(target, "name", None)
    file = getattr(target, "file", None)
    if not name or not file or not file.endswith(".ipynb") or not (folder / file).is_file():
        return None
    cells = read_cells(folder / file)
    where = cell_sections(cells, rubric.notebook.sections)
    for cell in cells:
        if cell.kind == "code" and name.split(".")[0] in _defined(cell.source):
            return where.get(cell.index)
    return None


def _defined(source: str) -> set[str]:
    import ast

    code, _ = python_source(source)
    try:
        tree = ast.parse(code or "")
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


# -- showing it ----------------------------------------------------------------------------


def render(graded: GradeReport, saved: str) -> tuple[str, str]:
    """(plain text, HTML): the lines of `grader check` when piped, and its table as on a terminal."""
    plain = Console(file=io.StringIO(), width=_WIDTH, force_terminal=False, color_system=None,
                    force_jupyter=False)  # rich would show it in the notebook itself
    report.show(graded, plain)
    text = saved + "\n" + plain.file.getvalue().rstrip()
    table = Console(file=io.StringIO(), width=_WIDTH, force_terminal=True, color_system="truecolor", record=True,
                    force_jupyter=False)
    table.print(saved, markup=False, highlight=False, soft_wrap=True)
    report.show(graded, table)
    return text, table.export_html(inline_styles=True, code_format=_PRE)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# -- the zip to hand in -----------------------------------------------------------------------


def export(path: str | None = None, *, notebook: str | None = None, rubric: str | None = None,
           save: bool = True) -> str | None:
    """Write <assignment>-submission.zip next to the notebook: the notebook, the other files to
    hand in (challenge.pt when there), and check.txt, the log of the last check; print what is in it."""
    if while_graded():
        return None
    try:
        found = notebook_session.find(notebook)
        full = _rubric(rubric, found.folder)
        saved = notebook_session.save(found) if save else ""
        name = _notebook_name(found, full)
        members = {name: json.dumps(found.live).encode() if found.live is not None else found.path.read_bytes()}
        for rel, file in hand_in_files(full, found.folder, name).items():
            members[rel] = file.read_bytes()
        members["check.txt"] = check_log(hashlib.sha256(members[name]).hexdigest()).encode()
        out = Path(path) if path else found.folder / f"{full.assignment}-submission.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for rel, data in members.items():
                archive.writestr(rel, data)
    except (notebook_session.NotebookNotFound, RubricError, OSError) as e:
        print(f"grader.export: {e}")
        return None
    lines = ([saved] if saved else []) + [f"wrote {out}, to hand in:"]
    lines += [f"  {rel}  ({_size(len(data))})" for rel, data in members.items()]
    missing = [n for n in hand_in_names(full, name) if n not in members]
    if missing:
        lines.append(f"not beside the notebook, so not in the zip: {', '.join(missing)}")
    if not _last.get("result") or _last["result"].error:
        lines.append("no check was run in this session: run grader.check() to see your public results")
    print("\n".join(lines))
    return str(out)


def check_log(notebook_sha256: str) -> str:
    """check.txt: when the last check ran, on which notebook, its score and each item's line."""
    result: CheckResult | None = _last.get("result")
    if result is None or result.report is None:
        return "No check was run before this export (grader.check()).\n"
    graded = result.report
    lines = [f"checked: {result.checked_at}", f"notebook: {Path(result.notebook).name}",
             f"selection: {_last.get('what') or 'all public items'}",
             f"score: {report.points(graded.score)}/{report.points(graded.max_score)}"]
    if result.notebook_sha256 != notebook_sha256:
        lines.append("note: the notebook changed after this check; run grader.check() again to log the new one")
    for problem in graded.problems:
        lines.append(f"FAIL  {problem['file']}: {problem['message']}")
    lines += [f"incomplete: {missing}" for missing in graded.incomplete]
    for r in graded.results:
        lines.append(f"{report._LABEL.get(r.status, r.status):6} {report.points(r.points)}/"
                     f"{report.points(r.max_points)}  {r.id}  {r.message}")
    lines += graded.notes
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{max(1, round(n / 1024))} KB"
