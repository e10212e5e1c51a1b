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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
