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
    train: bool = typer.Option(True, "--train/--no-train", help="train a model that has no checkpoint when its "
                               "item has a training recipe (the notebook challenge)"),
    train_budget: Optional[float] = typer.Option(None, "--train-budget", help="wall-clock seconds for such "
                                                 "training; it stops there and what was reached is graded"),
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
    options.train_if_missing, options.train_budget_s = train, train_budget
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


@app.command("train")
def train_command(
    submission: Path = typer.Argument(..., help="folder with the student's files"),
    item: str = typer.Option(..., "--item", help="the accuracy item whose model is trained, e.g. challenge.accuracy"),
    rubric: Optional[str] = typer.Option(None, "--rubric", "-r", help="rubric YAML path or assignment name"),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="epochs (default: what the submission asks for, "
                                           "at most the rubric's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="checkpoint to write (default: the item's checkpoint "
                                       "name in SUBMISSION, which `grader check` then uses)"),
    budget: Optional[float] = typer.Option(None, "--budget", help="wall-clock seconds; training stops cleanly "
                                           "there, and running again resumes it"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="another recipe of the item (default: its train:)"),
    fresh: bool = typer.Option(False, "--fresh", help="start over instead of resuming an unfinished --out"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder with CIFAR-10 (training images)"),
    download: bool = typer.Option(False, "--download", help="download CIFAR-10 with torchvision if missing"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps"),
) -> None:
    """Train a submission's model for an accuracy item and write its checkpoint."""
    from grader.checks.base import NotGradable
    from grader.sandbox.session import StudentFailure

    if not submission.is_dir():
        _fail_usage(f"{submission} is not a folder")
    try:
        rubric_obj = assignments.resolve(rubric, submission)
        rubric_obj.select([item])
    except RubricError as e:
        _fail_usage(str(e))
    options = _options(device, "fp32", [], data_dir, download, None)
    err = Console(stderr=True)
    with _training_progress(err, item) as on_progress:
        try:
            summary = grading.train(submission, rubric_obj, item, options, out=out, recipe=recipe, epochs=epochs,
                                    budget_s=budget, fresh=fresh, on_progress=on_progress)
        except NotGradable as e:
            _fail_usage(str(e))
        except StudentFailure as e:
            where = f" ({e.where()})" if e.where() else ""
            err.print(f"training failed: {e.message}{where}", markup=False, highlight=False, soft_wrap=True)
            if "not written by grader train" in e.message:
                err.print("pass --fresh to replace it, or --out FILE", markup=False)
            raise typer.Exit(EXIT_FAILED)
    result = summary["result"]
    state = "stopped by the budget" if result["stopped_by_budget"] else "done"
    Console().print(f"{summary['out']}: {result['epochs_done']:g} of {summary['epochs']:g} epochs, {state} "
                    f"({result['seconds']:.0f} s this run)", markup=False, highlight=False, soft_wrap=True)
    for note in summary["notes"]:
        Console().print(f"  - {note}", markup=False, highlight=False, soft_wrap=True)
    if result["stopped_by_budget"]:
        Console().print("run the same command again to resume; `grader check` grades it as it is",
                        markup=False, highlight=False)


def _training_progress(console: Console, item: str):
    """A progress bar with the time left in a terminal; a line per tenth (or minute) when piped."""
    import contextlib
    import time

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from grader.checks.accuracy import duration

    @contextlib.contextmanager
    def bar():
        with Progress(TextColumn(f"training {item}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[info]}"), console=console, transient=False) as progress:
            task = progress.add_task("train", total=None, info="starting")

            def update(p: dict) -> None:
                info = (f"epoch {p['epoch']:.2f}/{p['epochs']:g}  loss {p['loss']:.3f}  "
                        f"{duration(p['elapsed_s'])} elapsed, {duration(p.get('eta_s'))} left")
                progress.update(task, completed=p["step"], total=p["steps"], info=info)
            yield update

    @contextlib.contextmanager
    def lines():
        last = {"time": 0.0, "tenth": -1}

        def update(p: dict) -> None:
            tenth = int(10 * p["step"] / max(1, p["steps"]))
            if tenth != last["tenth"] or time.monotonic() - last["time"] > 60:
                last.update(time=time.monotonic(), tenth=tenth)
                console.print(f"training {item}: epoch {p['epoch']:.2f}/{p['epochs']:g}, loss {p['loss']:.3f}, "
                              f"{duration(p.get('eta_s'))} left", markup=False, highlight=False)
        yield update

    return bar() if console.is_terminal else lines()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
