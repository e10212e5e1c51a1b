"""One grading run, top to bottom: rubric -> submission -> checks -> scores -> report.

    report = grade(Path("submission/"), rubric.load("rubrics/cnn_architecture.yaml"))

The student's code runs in its own isolated process (grader.sandbox); each check
asks that process for what it needs and decides here what it is worth.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from grader import datasets
from grader.checks import KINDS
from grader.checks.base import Context, NotGradable, Options, Verdict
from grader.reference import Reference, ReferenceError
from grader.reuse import Reuse
from grader.results import ERROR, FAILED, PARTIAL, PASSED, SKIPPED, GradeReport, ItemResult
from grader.rubric import Rubric
from grader.sandbox.session import Limits, StudentFailure, StudentProcess

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".tar")
MAX_COPIED_FILE_BYTES = 20 << 20


def grade(submission: Path, rubric: Rubric, options: Options | None = None, *, items: list[str] | None = None,
          threads: int | None = None, on_item: Callable[[ItemResult], None] | None = None,
          on_progress: Callable[[str], None] | None = None, private_paths: list[Path] = (),
          reuse: Reuse | None = None, student_id: str | None = None) -> GradeReport:
    options = options or Options()
    started = time.monotonic()
    selected = rubric.select(items)

    # 1. The submission: its files, copied into the student's private folder.
    files, readable = collect_files(Path(submission))
    files, renamed = notebook_by_course_name(files, rubric)
    reference = _reference(rubric)
    context = None

    # 2. The student's process, and what it may read besides its own files.
    limits = Limits(timeout_s=rubric.limits.item_timeout_s, memory_mb=rubric.limits.memory_mb,
                    output_mb=rubric.limits.output_mb, total_s=rubric.limits.timeout_s)
    readable += [str(datasets.arrays_dir())] + _checkpoint_files(rubric, selected, submission, options)
    with StudentProcess(files, limits, readable=readable, device=options.device,
                        threads=threads or max(1, os.cpu_count() or 1),
                        deadline=started + rubric.limits.timeout_s,
                        private=_private_paths(rubric) + [str(p) for p in private_paths],
                        notebook=_notebook(rubric)) as student:
        context = Context(rubric=rubric, submission=Path(submission), student=student, reference=reference,
                          options=options, load_data=_data_loader(options),
                          progress=on_progress or (lambda text: None), reuse=reuse,
                          student_id=student_id or Path(submission).name)

        # 3. The checks, one item at a time; a failure costs only its own item.
        results = []
        deadline = started + rubric.limits.timeout_s
        for item in selected:
            if time.monotonic() > deadline:
                result = _result(item, Verdict.zero(f"not graded: the submission used up its "
                                                     f"{rubric.limits.timeout_s:g} s"), 0.0)
            else:
                result = run_item(item, context)
            results.append(result)
            if on_item:
                on_item(result)
        isolation, output = student.isolation, student.output
        student_notes = list(student.report_notes)
        cell_notes = _notebook_notes(student.load_results)

    # 4. Scores and the report.
    notes = renamed + _notes(rubric, reference, selected) + cell_notes + student_notes
    return GradeReport(assignment=rubric.assignment, submission=str(submission), results=results,
                       seconds=time.monotonic() - started, isolation=isolation, notes=notes, output=output)


def train(submission: Path, rubric: Rubric, item_id: str, options: Options | None = None, *,
          out: Path | None = None, recipe: str | None = None, epochs: float | None = None,
          budget_s: float | None = None, fresh: bool = False, threads: int | None = None,
          on_progress: Callable[[dict], None] | None = None) -> dict:
    """`grader train`: train one accuracy item's model in the student's process, as the
    rubric's recipe says, and write a checkpoint that `grade` then evaluates.  An
    unfinished checkpoint at `out` (a budget stopped it) is resumed unless `fresh`.

    Raises NotGradable (nothing to train, no training data) or StudentFailure."""
    options = options or Options()
    [item] = rubric.select([item_id])
    if item.check != "accuracy":
        raise NotGradable(f"{item_id} is a {item.check} check; only accuracy items train a model")
    out = Path(out) if out else Path(submission) / (item.checkpoint or f"{item.id}.pt")
    files, readable = collect_files(Path(submission))
    files, _ = notebook_by_course_name(files, rubric)
    readable += [str(datasets.arrays_dir())] + ([str(out.resolve())] if out.exists() else [])
    limits = Limits(timeout_s=rubric.limits.item_timeout_s, memory_mb=rubric.limits.memory_mb,
                    output_mb=rubric.limits.output_mb)
    with StudentProcess(files, limits, readable=readable, device=options.device,
                        threads=threads or max(1, os.cpu_count() or 1), notebook=_notebook(rubric)) as student:
        context = Context(rubric=rubric, submission=Path(submission), student=student, reference=_reference(rubric),
                          options=options, load_data=_data_loader(options))
        from grader.checks import accuracy

        summary = accuracy.train_to_file(item, context, out, recipe_name=recipe, epochs=epochs, budget_s=budget_s,
                                         fresh=fresh, on_progress=on_progress)
    return {**summary, "out": str(out), "item": item.id}


def run_item(item, context: Context) -> ItemResult:
    """One item's result: reused when an earlier submission had the very same inputs."""
    key = _reuse_key(item, context)
    if key is not None:
        earlier = context.reuse.get(key)
        if earlier is not None:
            return _reused(earlier["result"], earlier["student"])
    result = _run_item(item, context)
    if key is not None and _reusable(result):
        context.reuse.put(key, asdict(result), context.student_id)
    return result


def _reuse_key(item, context: Context) -> str | None:
    if context.reuse is None:
        return None
    name = getattr(item, "checkpoint", None)
    checkpoint = context.find_checkpoint(name) if name else None
    data = getattr(item, "data", None) or (context.rubric.data if item.check == "accuracy" else None)
    data_key = json.dumps([data.model_dump() if data else None, context.options.data_dir])
    return context.reuse.item_key(item, context.submission, context.options, data_key, checkpoint)


def _reusable(result: ItemResult) -> bool:
    """Verdicts that depend on the code alone, not on the machine's load or luck."""
    return result.status not in (ERROR, SKIPPED) and result.extra.get("failure") not in (
        "timeout", "crash", "memory", "output")


def _reused(result: dict, student: str) -> ItemResult:
    reused = ItemResult(**result)
    reused.extra = {**reused.extra, "reused_from": student, "reuse": "exact"}
    reused.seconds = 0.0
    return reused


def _run_item(item, context: Context) -> ItemResult:
    started = time.monotonic()
    context.progress(f"{item.id}")
    try:
        verdict = KINDS[item.check].run(item, context)
    except StudentFailure as failure:
        details = failure.code.splitlines() if failure.code else []
        verdict = Verdict.zero(failure.message, where=failure.where() or None, details=details,
                               extra={"failure": failure.kind})
    except (NotGradable, datasets.DataNotFound) as e:
        verdict = Verdict.skipped(str(e))
    except ReferenceError as e:
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


def notebook_by_course_name(files: dict[str, Path], rubric: Rubric) -> tuple[dict[str, Path], list[str]]:
    """Students rename notebooks ("PyTorch (1).ipynb", "HW05_2021.ipynb"): the only notebook of a
    submission stands for the only notebook the rubric names."""
    expected = [f for f in rubric.files if f.endswith(".ipynb")]
    handed = [f for f in files if f.endswith(".ipynb") and "/" not in f]
    if len(expected) != 1 or expected[0] in files or len(handed) != 1:
        return files, []
    files = dict(files)
    files[expected[0]] = files.pop(handed[0])
    return files, [f"{handed[0]} is graded as {expected[0]}"]


def _checkpoint_files(rubric: Rubric, items, submission: Path, options: Options) -> list[str]:
    names = [i.checkpoint for i in items if getattr(i, "checkpoint", None)]
    found = []
    for folder in [*options.checkpoint_dirs, Path(submission), *rubric.checkpoint_dirs()]:
        for name in names:
            candidate = Path(folder) / name
            if candidate.is_file():
                found.append(str(candidate.resolve()))
    return found


def _private_paths(rubric: Rubric) -> list[str]:
    """What the student's process must never read, even where a read root would allow it."""
    paths = [datasets.cache_root() / "labels", datasets.cache_root() / "test", rubric.reference_dir(), rubric.path]
    return [str(p) for p in paths if p is not None]


def _reference(rubric: Rubric) -> Reference | None:
    folder = rubric.reference_dir()
    if folder is None or not folder.is_dir():
        return None
    return Reference(folder, notebook=rubric.notebook)


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


def _notebook_notes(load_results: dict[str, dict]) -> list[str]:
    """Notebook cells that failed: named once for the whole report (items name the ones they need)."""
    notes = []
    for file, result in load_results.items():
        failed = [c for c in (result.get("notebook") or {}).get("cells", []) if c["status"] == "failed"]
        for cell in failed[:3]:
            line = f", line {cell['line']}" if cell.get("line") else ""
            notes.append(f"{file}: cell {cell['cell']}{line} failed ({cell['message']}); the other cells ran")
        if len(failed) > 3:
            notes.append(f"{file}: {len(failed) - 3} more cells failed")
    return notes


def _notes(rubric: Rubric, reference, selected) -> list[str]:
    notes = []
    if rubric.public:
        hidden = rubric.hidden
        part = (f"{hidden.items} hidden item{'s' * (hidden.items != 1)} ({hidden.points:g} points)"
                if hidden and hidden.items else "hidden items")
        notes.append(f"Self-check: only the public items were graded. The {part}, graded by your instructor, "
                     "may still fail.")
    elif reference is None and any(i.needs_reference() for i in selected):
        notes.append("No reference solution here: items that need it were skipped.")
    return notes
