"""The `grader` command: a thin layer over the library.

Exit codes: 0 every graded item passed, 1 some item failed, 2 usage error
(bad arguments, unreadable rubric, missing folder).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from grader import assignments, grading, report
from grader import gradebook as gradebook_module
from grader.checks.base import Options
from grader.device import resolve as resolve_device
from grader.rubric import RubricError

app = typer.Typer(help="Grade PyTorch CNN assignments against a rubric YAML.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@app.callback()
def _commands() -> None:
    """Grade PyTorch CNN assignments against a rubric YAML."""


def _fail_usage(message: str) -> None:
    Console(stderr=True).print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def _options(device: str, precision: str, checkpoints: list[Path], data_dir: Optional[Path], download: bool,
             batch_size: Optional[int]) -> Options:
    try:
        resolved = resolve_device(device)
    except ValueError as e:
        _fail_usage(str(e))
    return Options(device=resolved, precision=precision, checkpoint_dirs=list(checkpoints),
                   data_dir=str(data_dir) if data_dir else None, download=download, batch_size=batch_size)


_TIMEOUT_HELP = "wall-clock limit for a whole submission, seconds (default: the rubric's limits.timeout_s)"
_ITEM_TIMEOUT_HELP = "limit for each item's work in the student's process, seconds (replaces the rubric's)"
_MEMORY_HELP = "memory the student's process may allocate, MB (default: the rubric's limits.memory_mb)"


def _limits(timeout: Optional[float], item_timeout: Optional[float], memory_mb: Optional[int]) -> dict:
    for name, value in (("--timeout", timeout), ("--item-timeout", item_timeout), ("--memory-mb", memory_mb)):
        if value is not None and value <= 0:
            _fail_usage(f"{name} must be positive")
    return {k: v for k, v in dict(timeout_s=timeout, item_timeout_s=item_timeout, memory_mb=memory_mb).items()
            if v is not None}


@app.command()
def check(
    submission: Path = typer.Argument(..., help="folder with the student's files, by the course's names"),
    rubric: Optional[str] = typer.Option(None, "--rubric", "-r", help="rubric YAML path or assignment name "
                                         "(default: found from the folder or its file names)"),
    checkpoints: list[Path] = typer.Option([], "--checkpoints", "-c", help="folder with checkpoints (repeatable)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder with CIFAR-10 or image folders "
                                            "(default: $GRADER_DATA_DIR, then the user cache)"),
    download: bool = typer.Option(False, "--download", help="download CIFAR-10 with torchvision if missing"),
    items: Optional[str] = typer.Option(None, "--items", help="comma-separated item ids to grade"),
    as_json: bool = typer.Option(False, "--json", help="print Gradescope's results.json instead of a table"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (default), bf16 or fp16 for evaluation"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="evaluation batch size"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="all details, isolation and the code's output"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help=_TIMEOUT_HELP),
    item_timeout: Optional[float] = typer.Option(None, "--item-timeout", help=_ITEM_TIMEOUT_HELP),
    memory_mb: Optional[int] = typer.Option(None, "--memory-mb", help=_MEMORY_HELP),
) -> None:
    """Grade one submission folder and print a report."""
    if not submission.is_dir():
        _fail_usage(f"{submission} is not a folder")
    if precision not in ("fp32", "bf16", "fp16"):
        _fail_usage("--precision is one of fp32, bf16, fp16")
    try:
        rubric_obj = assignments.resolve(rubric, submission)
        selected = [i.strip() for i in items.split(",") if i.strip()] if items else None
        rubric_obj.select(selected)
    except RubricError as e:
        _fail_usage(str(e))
    rubric_obj = rubric_obj.with_limits(**_limits(timeout, item_timeout, memory_mb))
    options = _options(device, precision, checkpoints, data_dir, download, batch_size)
    console = Console()
    err = Console(stderr=True)
    if as_json or not err.is_terminal:
        result = grading.grade(submission, rubric_obj, options, items=selected)
    else:
        with err.status("grading...") as status:
            result = grading.grade(submission, rubric_obj, options, items=selected,
                                   on_progress=lambda text: status.update(f"grading: {text}"))
    if as_json:
        sys.stdout.write(report.gradescope_json(result) + "\n")
    else:
        report.show(result, console, verbose=verbose)
    raise typer.Exit(EXIT_OK if result.all_passed else EXIT_FAILED)


@app.command()
def batch(
    submissions: Path = typer.Argument(..., help="the class: one folder or .zip per student, or an LMS download "
                                       "(folder or .zip)"),
    rubric: str = typer.Option(..., "--rubric", "-r", help="rubric YAML path or assignment name"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (created; rerun with the same one to resume)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="students graded at once (default: what the "
                                       "CPU cores and memory allow)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per student (default: cores / -j)"),
    checkpoints: list[Path] = typer.Option([], "--checkpoints", "-c", help="folder with the instructor's "
                                           "checkpoints (repeatable)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder with CIFAR-10 or image folders"),
    download: bool = typer.Option(False, "--download", help="download CIFAR-10 with torchvision if missing"),
    items: Optional[str] = typer.Option(None, "--items", help="comma-separated item ids to grade"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (default), bf16 or fp16 for evaluation"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="evaluation batch size"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help=_TIMEOUT_HELP),
    item_timeout: Optional[float] = typer.Option(None, "--item-timeout", help=_ITEM_TIMEOUT_HELP),
    memory_mb: Optional[int] = typer.Option(None, "--memory-mb", help=_MEMORY_HELP),
    force: bool = typer.Option(False, "--force", help="regrade every student, even unchanged ones"),
    student: list[str] = typer.Option([], "--student", help="grade only this student (repeatable; always "
                                      "regraded)"),
    max_unzip_mb: int = typer.Option(2048, "--max-unzip-mb", help="most a student's zip files may unpack to"),
) -> None:
    """Grade a whole class in parallel: grades.csv, per-student results.json and feedback.md, summary.md,
    duplicates.csv.  Rerun the same command to resume; only changed students are regraded."""
    from grader import batch as batch_module
    from grader import progress
    from grader.unpack import UnpackLimits

    if not submissions.exists():
        _fail_usage(f"{submissions} does not exist")
    if precision not in ("fp32", "bf16", "fp16"):
        _fail_usage("--precision is one of fp32, bf16, fp16")
    if (jobs is not None and jobs < 1) or (threads is not None and threads < 1) or max_unzip_mb < 1:
        _fail_usage("--jobs, --threads and --max-unzip-mb must be positive")
    try:
        rubric_path = assignments.resolve(rubric, submissions).path
    except RubricError as e:
        _fail_usage(str(e))
    config = batch_module.BatchConfig(
        submissions=submissions, rubric=rubric_path, out=out,
        options=_options(device, precision, checkpoints, data_dir, download, batch_size),
        items=[i.strip() for i in items.split(",") if i.strip()] if items else None,
        limits=_limits(timeout, item_timeout, memory_mb), workers=jobs, threads=threads, force=force,
        students=list(student), unpack=UnpackLimits(max_bytes=max_unzip_mb << 20))
    console = Console()
    try:
        result = batch_module.run(config, progress.for_console(console))
    except (RubricError, FileNotFoundError) as e:
        _fail_usage(str(e))
    gradebook_module.show_summary(result.summary, console)
    console.print(f"results in {out}: grades.csv, summary.md, duplicates.csv, students/<id>/", markup=False,
                  highlight=False, soft_wrap=True)
    if result.interrupted:
        Console(stderr=True).print("interrupted: every finished student is in grades.csv; rerun the same "
                                   "command to grade the rest", markup=False, highlight=False)
        raise typer.Exit(130)
    raise typer.Exit(EXIT_OK if not result.summary.errors else EXIT_FAILED)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
