"""One grading run, top to bottom: rubric -> submission -> checks -> scores -> report.

    report = grade(Path("submission/"), rubric.load("rubrics/cnn_architecture.yaml"))

The student's code runs in its own isolated process (grader.sandbox); each check
asks that process for what it needs and decides here what it is worth.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from grader import checkpoints, datasets, links, packages
from grader.checks import KINDS
from grader.checks.base import Context, Incomplete, NotGradable, Verdict
from grader.errors import GraderError
from grader.options import Options
from grader.reference import Reference, ReferenceUnavailable
from grader.reuse import Reuse
from grader.results import ERROR, FAILED, PARTIAL, PASSED, SKIPPED, GradeReport, ItemResult
from grader.rubric import Rubric
from grader.sandbox import fail_closed
from grader.sandbox.limits import LIMIT_KINDS
from grader.sandbox.session import Limits, StudentFailure, StudentProcess

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".tar")
MAX_COPIED_FILE_BYTES = 20 << 20


def grade(submission: Path, rubric: Rubric, options: Options | None = None, *, items: list[str] | None = None,
          threads: int | None = None, on_item: Callable[[ItemResult], None] | None = None,
          on_progress: Callable[[str], None] | None = None, private_paths: list[Path] = (),
          reuse: Reuse | None = None, student_id: str | None = None, reference=None) -> GradeReport:
    """`reference`: what the checks compare with, when not the rubric's (grader.answers).

    Raises fail_closed.IsolationRefused before anything runs when the OS sandbox is not
    there and the options do not allow that, and fail_closed.BoundaryLost when the sandbox
    cannot be started once grading began: no report at all, never one graded unisolated."""
    options = options or Options()
    fail_closed.require(options.may_run_unisolated())
    started = time.monotonic()
    selected = [secret_seeds(item, rubric.grading_seed) for item in rubric.select(items)]

    # 1. The submission: its files, copied into the student's private folder.
    files, readable = collect_files(Path(submission))
    files, renamed = notebook_by_course_name(files, rubric)
    reference = reference or _reference(rubric)
    context = None
    checkpoints = _checkpoint_files(rubric, selected, submission, options)
    keys = reuse_keys(reuse, rubric, selected, Path(submission), options)
    earlier = reuse.get(keys) if keys else None
    if earlier is not None:  # the very same inputs were graded earlier in this run
        report = _reused_report(earlier, rubric, reference, selected, renamed, submission, on_item)
        report.seconds = time.monotonic() - started
        return report

    # 2. The student's process, and what it may read besides its own files.
    limits = process_limits(rubric)
    readable += [str(datasets.arrays_dir())] + checkpoints
    with StudentProcess(files, limits, readable=readable, device=options.device,
                        threads=threads or max(1, os.cpu_count() or 1),
                        deadline=started + rubric.limits.timeout_s,
                        private=_private_paths(rubric) + [str(p) for p in private_paths],
                        notebook=_notebook(rubric), own_folder=Path(submission),
                        allow_unisolated=options.may_run_unisolated()) as student:
        context = Context(rubric=rubric, submission=Path(submission), student=student, reference=reference,
                          options=options, load_data=_data_loader(options),
                          progress=on_progress or (lambda text: None), reuse=reuse,
                          student_id=student_id or Path(submission).name)

        # 3. Every file the rubric names, imported (or run) first: a file that does not load is a
        #    failure of its own, even when every item that reads it is hidden from a self-check.
        problems = load_files(rubric, student, files)

        # 4. The checks, one item at a time; a failure costs only its own item.
        results = []
        deadline = started + rubric.limits.timeout_s
        for item in selected:
            if time.monotonic() > (student.deadline or deadline):
                result = _result(item, Verdict.zero(f"not graded: the submission used up its "
                                                     f"{rubric.limits.timeout_s:g} s", extra={"failure": "timeout"}),
                                 0.0)
            else:
                student.current_item = item.id  # named when a later item reaches the same endless loop
                result = run_item(item, context)
            results.append(result)
            if on_item:
                on_item(result)
        isolation, output = student.isolation, student.output
        student_notes = list(student.report_notes)
        problems += _failed_cells(student.load_results)
        if not student.sandboxed:
            student_notes.append(unisolated_note())
        cell_notes = _notebook_notes(student.load_results) + _stopped_notes(student.load_results) + \
            overwritten_notes(student.load_results, handed_in_names(files, readable, Path(submission)))

    # 5. Scores and the report.
    notes = renamed + _link_notes(Path(submission)) + _notes(rubric, reference, selected) + cell_notes + student_notes
    report = GradeReport(assignment=rubric.assignment, submission=str(submission), results=results,
                         seconds=time.monotonic() - started, isolation=isolation, notes=notes, output=output,
                         problems=problems, incomplete=incomplete(results, problems))
    if keys and _reusable_report(report, cell_notes + student_notes,
                                 _student_marks(submission, student_id, _renamed_from(files, renamed))):
        reuse.put(keys, {"results": [asdict(r) for r in results], "process_notes": cell_notes + student_notes,
                         "problems": problems, "output": output, "isolation": isolation},
                  student_id or Path(submission).name)
    return report


def unisolated_note() -> str:
    from grader.sandbox.boundary import available

    return (f"This code ran WITHOUT OS isolation: {available()[1]}. Only the grader's in-process checks "
            "stood between it and this computer (allowed for this run: --unsafe-no-isolation, or a "
            "self-check of one's own code).")


def train(submission: Path, rubric: Rubric, item_id: str, options: Options | None = None, *,
          out: Path | None = None, recipe: str | None = None, epochs: float | None = None,
          budget_s: float | None = None, fresh: bool = False, threads: int | None = None,
          on_progress: Callable[[dict], None] | None = None) -> dict:
    """`grader train`: train one accuracy item's model in the student's process, as the
    rubric's recipe says, and write a checkpoint that `grade` then evaluates.  An
    unfinished checkpoint at `out` (a budget stopped it) is resumed unless `fresh`.

    Raises NotGradable (nothing to train, no training data) or StudentFailure; refuses as
    `grade` does without the OS sandbox."""
    options = options or Options()
    fail_closed.require(options.may_run_unisolated())
    [item] = rubric.select([item_id])
    if item.check != "accuracy":
        raise NotGradable(f"{item_id} is a {item.check} check; only accuracy items train a model")
    out = Path(out) if out else Path(submission) / (item.checkpoint or f"{item.id}.pt")
    files, readable = collect_files(Path(submission))
    files, _ = notebook_by_course_name(files, rubric)
    readable += [str(datasets.arrays_dir())] + ([str(out.resolve())] if out.exists() else [])
    limits = process_limits(rubric, item)
    limits.total_s = None
    with StudentProcess(files, limits, readable=readable, device=options.device,
                        threads=threads or max(1, os.cpu_count() or 1), notebook=_notebook(rubric),
                        own_folder=Path(submission), allow_unisolated=options.may_run_unisolated()) as student:
        context = Context(rubric=rubric, submission=Path(submission), student=student, reference=_reference(rubric),
                          options=options, load_data=_data_loader(options))
        from grader.checks import accuracy

        summary = accuracy.train_to_file(item, context, out, recipe_name=recipe, epochs=epochs, budget_s=budget_s,
                                         fresh=fresh, on_progress=on_progress)
    return {**summary, "out": str(out), "item": item.id}


def secret_seeds(item, grading_seed: int | None):
    """The item with its seeds moved by the instructor's secret: the handout's answers were
    computed with the public seeds, so outputs stored from them do not serve here."""
    if grading_seed is None or "seed" not in type(item).model_fields:
        return item
    salt = int.from_bytes(hashlib.sha256(f"{grading_seed}:{item.id}".encode()).digest()[:4], "big") % (1 << 30)
    return item.model_copy(update={"seed": item.seed + 1 + salt})


def process_limits(rubric: Rubric, item=None) -> Limits:
    """The student's process's limits: the rubric's `limits:`, and the item's own where it has some."""
    values = rubric.limits.model_dump(exclude={"timeout_s", "item_timeout_s"})
    own = getattr(item, "limits", None)
    if own is not None:
        values.update(own.model_dump(exclude_none=True))
    return Limits(timeout_s=rubric.limits.item_timeout_s, total_s=rubric.limits.timeout_s, **values)


def run_item(item, context: Context) -> ItemResult:
    """One item's result, computed in the student's process (exact reuse is decided for a
    whole submission, in `grade`)."""
    return _run_item(item, context)


def reuse_keys(reuse: Reuse | None, rubric: Rubric, selected, submission: Path, options: Options) -> list[str] | None:
    """The exact-reuse key of each selected item (None without a store): the raw bytes of
    every file the student's process can read, by the name it is graded under (a renamed
    notebook under the course's name), and the checkpoints, instructor's ones included."""
    if reuse is None:
        return None
    files, readable = collect_files(Path(submission))
    files, _ = notebook_by_course_name(files, rubric)
    folder = Path(submission).resolve()
    others = {}
    for path in map(Path, readable + _checkpoint_files(rubric, selected, submission, options)):
        path = path.resolve()
        others[f"submission:{path.relative_to(folder).as_posix()}" if path.is_relative_to(folder)
               else f"instructor:{path}"] = path
    try:
        return reuse.item_keys(rubric, selected, files, others, options)
    except OSError:  # a file that cannot be read now: graded, not shared
        return None


def _reusable(result: ItemResult) -> bool:
    """Verdicts that depend on the inputs alone, not on the machine's load or luck."""
    extra = result.extra or {}
    return result.status not in (ERROR, SKIPPED) and extra.get("failure") not in (
        "timeout", "crash", "output", *LIMIT_KINDS) and "training" not in extra  # training: its time, its machine


def _reusable_report(report: GradeReport, process_notes: list[str], marks: list[str]) -> bool:
    """Every result reusable, and nothing that another student must not see: this student's
    id, folder or own file names (everything else is the same for the same inputs)."""
    if not all(_reusable(r) for r in report.results):
        return False
    text = json.dumps([[asdict(r) for r in report.results], process_notes, report.problems, report.output,
                       report.isolation])
    return not any(_names(text, mark) for mark in marks)


def _names(text: str, mark: str) -> bool:
    if not mark:
        return False
    if "/" in mark or "\\" in mark:
        return mark in text
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(mark)}(?![A-Za-z0-9_])", text) is not None


def _student_marks(submission: Path, student_id: str | None, own_names: list[str]) -> list[str]:
    folder = Path(submission).resolve()
    marks = [str(folder), folder.name, student_id or ""] + own_names
    return [m for m in marks if m]


def _renamed_from(files: dict[str, Path], renamed: list[str]) -> list[str]:
    """The student's own names of files graded under the course's names."""
    return [Path(p).name for p in files.values() if renamed and Path(p).name not in files]


def _reused_report(earlier: dict, rubric: Rubric, reference, selected, renamed: list[str], submission: Path,
                   on_item) -> GradeReport:
    """An earlier grading of the same inputs, as this student's report: the instructor's
    record says whose it was; what the student sees never names anyone."""
    results = []
    for data in earlier["results"]:
        result = ItemResult(**data)
        result.extra = {**result.extra, "reused_from": earlier["student"], "reuse": "exact"}
        result.seconds = 0.0
        results.append(result)
        if on_item:
            on_item(result)
    notes = renamed + _link_notes(Path(submission)) + _notes(rubric, reference, selected) + list(earlier["process_notes"])
    problems = list(earlier.get("problems") or [])
    return GradeReport(assignment=rubric.assignment, submission=str(submission), results=results,
                       isolation=earlier["isolation"], notes=notes, output=earlier["output"],
                       problems=problems, incomplete=incomplete(results, problems))


def _run_item(item, context: Context) -> ItemResult:
    started = time.monotonic()
    context.progress(f"{item.id}")
    if context.student is not None:
        context.student.use_limits(process_limits(context.rubric, item))
    try:
        verdict = KINDS[item.check].run(item, context)
    except fail_closed.BoundaryLost:
        raise  # the whole student is not graded, not this item zeroed
    except StudentFailure as failure:
        details = failure.code.splitlines() if failure.code else []
        extra = {"failure": failure.kind}
        if getattr(failure, "trace", None):
            extra["trace"] = failure.trace  # shown by --verbose
        environment = packages.missing_import(failure.message, context.rubric, context.submission)
        if environment:  # not the student's code: not graded, and said as such
            verdict = Verdict(0.0, environment, status=ERROR, where=failure.where() or None, details=details,
                              extra={**extra, "failure": "environment"})
        else:
            verdict = Verdict.zero(failure.message, where=failure.where() or None, details=details, extra=extra)
    except Incomplete as e:
        verdict = Verdict.skipped(str(e), extra={"incomplete": e.missing})
    except (NotGradable, datasets.DataNotFound) as e:
        verdict = Verdict.skipped(str(e))
    except ReferenceUnavailable as e:
        verdict = Verdict(0.0, f"cannot grade: {e}", status=ERROR)
    except Exception as e:  # a bug in the grader must not cost the other items
        trace = traceback.format_exception(e)[-4:]
        verdict = Verdict(0.0, f"internal grader error: {type(e).__name__}: {e}", status=ERROR,
                          details=[line.rstrip() for line in trace])
    return _result(item, verdict, time.monotonic() - started)


def _result(item, verdict: Verdict, seconds: float) -> ItemResult:
    points = max(0.0, min(item.points, verdict.points))
    status = verdict.status or (PASSED if points >= item.points else PARTIAL if points > 0 else FAILED)
    return ItemResult(id=item.id, title=item.title or item.id, points=points, max_points=item.points,
                      status=status, message=verdict.message, details=verdict.details, where=verdict.where,
                      visibility=item.visibility, seconds=round(seconds, 3), extra=verdict.extra)


def collect_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Files to copy into the student's folder, and large checkpoints to read in place."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files: dict[str, Path] = {}
    readable: list[str] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or path.is_symlink() or any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        if path.suffix in CHECKPOINT_SUFFIXES or path.stat().st_size > MAX_COPIED_FILE_BYTES:
            readable.append(str(path.resolve()))
        else:
            files[rel.as_posix()] = path
    return files, readable


def _link_notes(folder: Path) -> list[str]:
    """collect_files skips symbolic links (never followed): the student is told which."""
    return links.notes(links.symlinks(folder))


class AmbiguousNotebook(GraderError):
    """Several notebooks of a submission could be the one the rubric names: which one is
    the student's answer is theirs to say, never guessed (the stale one would be graded)."""


def notebook_by_course_name(files: dict[str, Path], rubric: Rubric) -> tuple[dict[str, Path], list[str]]:
    """Students rename notebooks ("PyTorch (1).ipynb", "HW05_2021.ipynb"): the only notebook of a
    submission (or its only copy of the course's notebook) stands for the only notebook the rubric
    names.  Two candidates are an error: grading the wrong one would be a wrong grade."""
    expected = [f for f in rubric.files if f.endswith(".ipynb")]
    handed = [f for f in files if f.endswith(".ipynb") and "/" not in f]
    if len(expected) != 1 or not handed:
        return files, []
    candidates = [f for f in handed if f == expected[0] or _same_stem(f, expected[0])]
    if expected[0] not in files and not candidates:
        candidates = handed  # "HW05_2021.ipynb": any notebook may be it
    if len(candidates) > 1:
        raise AmbiguousNotebook(f"{len(candidates)} notebooks could be {expected[0]}: "
                                f"{' and '.join(sorted(candidates))}; keep only the one to grade in the folder")
    if expected[0] in files:
        return files, []
    files = dict(files)
    files[expected[0]] = files.pop(candidates[0])
    return files, [f"{candidates[0]} is graded as {expected[0]}"]


def _same_stem(name: str, course_name: str) -> bool:
    """'PyTorch (1).ipynb', 'Copy of PyTorch.ipynb' for 'PyTorch.ipynb': a download or a copy of it."""
    def key(n: str) -> str:
        return re.sub(r"[^a-z0-9]", "", Path(n).stem.lower())

    return bool(key(course_name)) and key(course_name) in key(name)


def _checkpoint_files(rubric: Rubric, items, submission: Path, options: Options) -> list[str]:
    names = [i.checkpoint for i in items if getattr(i, "checkpoint", None)]
    found = []
    for folder in checkpoints.search_order(options, rubric, Path(submission)):
        for name in names:
            candidate = Path(folder) / name
            if Path(folder) == Path(submission) and (candidate.is_symlink() or not candidate.resolve()
                                                     .is_relative_to(Path(submission).resolve())):
                continue  # a student's link is never followed (it could name the label cache)
            if candidate.is_file():
                found.append(str(candidate.resolve()))
    return found


def _private_paths(rubric: Rubric) -> list[str]:
    """What the student's process must never read, even where a read root would allow it."""
    paths = [datasets.cache_root() / "labels", datasets.cache_root() / "test", rubric.reference_dir(), rubric.path]
    return [str(p) for p in paths if p is not None]


def _reference(rubric: Rubric) -> Reference | None:
    # The reference solution, or in a handout the answers computed from it (grader.answers).
    from grader.answers import provider

    return provider(rubric)


def _notebook(rubric: Rubric) -> dict | None:
    return rubric.notebook.model_dump() if rubric.notebook else None


def _data_loader(options: Options):
    loaded: dict[str, datasets.LabelledImages] = {}

    def load(spec: datasets.DataSpec) -> datasets.LabelledImages:
        key = json.dumps(spec.model_dump(), sort_keys=True)
        if key not in loaded:
            loaded[key] = datasets.load(spec, options.data_dir, download=options.download)
        return loaded[key]

    return load


def load_files(rubric: Rubric, student, files: dict[str, Path]) -> list[dict]:
    """Import every file the rubric's items read (a notebook runs), and compile the others
    (scripts such as main.py would train if imported): what fails is a problem of its own."""
    read = {f for item in rubric.items for f in item.files()}
    problems = []
    for name in rubric.files:
        if name not in files:  # a handout script (main.py) left out costs nothing; an answer file does
            if name in read or name.endswith(".ipynb"):
                problems.append(_problem(name, f"{name} is not in the submission"))
        elif name in read or name.endswith(".ipynb"):
            try:
                loaded = student.call("load", file=name, timeout=rubric.limits.item_timeout_s)
            except StudentFailure as failure:
                environment = packages.missing_import(failure.message, rubric, student.own_folder)
                problem = _problem(name, environment or failure.message, failure.where(), failure.code)
                problems.append({**problem, "trace": getattr(failure, "trace", []),
                                 **({"kind": "environment"} if environment else {})})
                continue
            for broken in (loaded or {}).get("broken", []):  # left out; the rest of the file loaded
                problems.append(_problem(name, str(broken.get("message")), f"{name}:{broken.get('line')}",
                                         broken.get("code")))
        elif name.endswith(".py"):
            problem = _compile_problem(name, files[name])
            if problem:
                problems.append(problem)
    return problems


def incomplete(results: list[ItemResult], problems: list[dict]) -> list[str]:
    """What the student has yet to hand in: answer files, and checkpoints no item could train."""
    missing = [f"{p['file']} missing" for p in problems if p["message"] == f"{p['file']} is not in the submission"]
    missing += [r.extra["incomplete"] for r in results if r.extra.get("incomplete")]
    return list(dict.fromkeys(missing))


def _problem(file: str, message: str, where: str | None = None, code: str | None = None) -> dict:
    return {"file": file, "message": message.replace(f" (while importing {file})", ""), "where": where or None,
            "code": code or None}


def _compile_problem(name: str, path: Path) -> dict | None:
    """A SyntaxError in a file that is not imported: compiling runs none of its code."""
    try:
        compile(path.read_bytes(), name, "exec", dont_inherit=True)
    except SyntaxError as e:
        code = f"{e.lineno:>4} | {e.text.rstrip()}" if e.text and e.lineno else None
        return _problem(name, f"SyntaxError: {e.msg}", f"{name}:{e.lineno}" if e.lineno else name, code)
    except (ValueError, RecursionError, MemoryError, OSError) as e:
        return _problem(name, f"{name} cannot be compiled: {type(e).__name__}: {e}")
    return None


def _failed_cells(load_results: dict[str, dict]) -> list[dict]:
    """Notebook cells that failed by the student's own code (not by the sandbox's refusal),
    each at the innermost line of the student's code: the cell whose function failed, when
    a later cell called it."""
    problems = []
    for file, result in load_results.items():
        for cell in (result.get("notebook") or {}).get("cells", []):
            if cell["status"] != "failed" or _blocked(cell):
                continue
            own = f"cell {cell['cell']}" + (f", line {cell['line']}" if cell.get("line") else "")
            origin = cell.get("origin")
            text = (f"{origin}: {cell['message']} (called from {own})" if origin
                    else f"{own} failed: {cell['message']}")
            line = int(origin.rsplit(" ", 1)[1]) if origin else cell.get("line")
            code = f"{line:>4} | {cell['code']}" if cell.get("code") and line else None
            problems.append(_problem(file, text, None, code))
    return problems


def _blocked(cell: dict) -> bool:
    return cell["message"].startswith("blocked while grading")


def _stopped_notes(load_results: dict[str, dict]) -> list[str]:
    """Files whose import the time budget stopped: what they defined before is what is graded."""
    from grader.sandbox.loader import stopped_text

    notes = []
    for file, result in load_results.items():
        stopped = result.get("stopped")  # sent by the student's process: checked and cleaned
        if isinstance(stopped, dict) and isinstance(stopped.get("line"), int) \
                and isinstance(stopped.get("seconds"), (int, float)):
            code = "".join(c for c in str(stopped.get("code") or "")[:200] if c.isprintable())
            stopped = {"line": stopped["line"], "seconds": stopped["seconds"], "code": code}
            notes.append(f"{stopped_text(file, stopped)}; what it defines before that line is graded")
    return notes


def _notebook_notes(load_results: dict[str, dict]) -> list[str]:
    """Cells the sandbox stopped (a download, a drive): named once; the other cells ran."""
    notes = []
    for file, result in load_results.items():
        failed = [c for c in (result.get("notebook") or {}).get("cells", []) if c["status"] == "failed" and _blocked(c)]
        for cell in failed[:3]:
            line = f", line {cell['line']}" if cell.get("line") else ""
            notes.append(f"{file}: cell {cell['cell']}{line} failed ({cell['message']}); the other cells ran")
        if len(failed) > 3:
            notes.append(f"{file}: {len(failed) - 3} more cells failed")
    return notes


def handed_in_names(files: dict[str, Path], readable: list[str], folder: Path) -> set[str]:
    """The names, inside the student's folder, of every file the student handed in."""
    names = set(files)
    for path in map(Path, readable):
        if path.is_relative_to(folder.resolve()):
            names.add(path.relative_to(folder.resolve()).as_posix())
    return names


def overwritten_notes(load_results: dict[str, dict], handed_in: set[str]) -> list[str]:
    """A notebook that writes a checkpoint it also hands in (torch.save(..., 'challenge.pt') at the end of
    the challenge cell) is told so: the handed-in file was graded, not what its code wrote."""
    notes = []
    for file, result in load_results.items():
        for name in (result.get("wrote") or []):
            if name in handed_in and name.endswith(CHECKPOINT_SUFFIXES):  # checkpoints: read as handed in
                notes.append(f"your notebook's code wrote {name} while being graded; the file you handed in "
                             "was graded" if file.endswith(".ipynb") else
                             f"importing {file} wrote {name}; the file you handed in was graded")
    return notes


def _notes(rubric: Rubric, reference, selected) -> list[str]:
    notes = []
    if rubric.public:
        hidden = rubric.hidden
        if hidden and hidden.items:
            part = f"{hidden.items} hidden item{'s' * (hidden.items != 1)} ({hidden.points:g} points)"
            notes.append(f"Self-check: only the public items were graded. The {part}, graded by your instructor, "
                         "may still fail.")
        else:
            notes.append("Self-check: no item is hidden. Your instructor grades every item again after you hand "
                         "in, with other inputs and weights, so a PASS here is not yet a grade.")
    elif reference is None and any(i.needs_reference() for i in selected):
        notes.append("No reference solution here: items that need it were skipped.")
    return notes
