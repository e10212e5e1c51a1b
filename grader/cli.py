"""The `grader` command: a thin layer over the library.

Exit codes: 0 every graded item passed, 1 some item failed, 2 usage error
(bad arguments, unreadable rubric, missing folder).
"""

from __future__ import annotations

import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from grader import grading, report
from grader.authoring import bundle as bundle_module
from grader.authoring import skeleton as authoring_skeleton
from grader.batch import gradebook as gradebook_module
from grader.console import error as _print_error
from grader.console import say
from grader.device import resolve as resolve_device
from grader.errors import GraderError
from grader.options import Options, Precision
from grader.rubric import RubricError
from grader.rubric import find as assignments
from grader.rubric import questions


class _App(typer.Typer):
    """A Typer whose commands turn any GraderError into `error: MESSAGE` and its exit code: the one
    place library errors become what the person at the terminal sees."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda function: register(_error_boundary(function))


def _error_boundary(command):
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GraderError as e:
            _print_error(str(e))
            raise typer.Exit(e.exit_code) from None
    return run


app = _App(help="Grade PyTorch CNN assignments against a rubric YAML.", no_args_is_help=True,
           add_completion=False, pretty_exceptions_enable=False)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# -- options several commands share, declared once ------------------------------------

RubricOpt = Annotated[Optional[str], typer.Option("--rubric", "-r", help="rubric YAML path or assignment name "
                                                  "(default: found from the folder or its file names)")]
CheckpointsOpt = Annotated[list[Path], typer.Option("--checkpoints", "-c", help="folder with the instructor's "
                                                    "checkpoints (repeatable)")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="folder with CIFAR-10 or image folders "
                                                    "(default: $GRADER_DATA_DIR, then the user cache)")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="download CIFAR-10 with torchvision if missing")]
ItemsOpt = Annotated[Optional[str], typer.Option("--items", help="comma-separated item ids to grade, or "
                                                 "questions as the handout numbers them (q6, 'Question 6', 6)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="number format for evaluation")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="evaluation batch size")]
TimeoutOpt = Annotated[Optional[float], typer.Option("--timeout", help="wall-clock limit for a whole submission, "
                                                     "seconds (default: the rubric's limits.timeout_s)")]
ItemTimeoutOpt = Annotated[Optional[float], typer.Option("--item-timeout", help="limit for each item's work in the "
                                                         "student's process, seconds (replaces the rubric's)")]
MemoryOpt = Annotated[Optional[int], typer.Option("--memory-mb", help="memory the student's process may allocate, "
                                                  "MB (default: the rubric's limits.memory_mb)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
UnsafeOpt = Annotated[bool, typer.Option("--unsafe-no-isolation", help="run students' code even where it cannot "
                                         "run inside the OS sandbox (bubblewrap); without it, such a run is "
                                         "refused (a self-check with a public rubric excepted)")]
DeadlineOpt = Annotated[Optional[str], typer.Option("--deadline", help="due time for the rubric's late policy, ISO "
                                                    "8601 (2026-03-01T23:59, local time unless a zone is given); "
                                                    "replaces the rubric's late.deadline")]


class ExecutorKind(str, Enum):
    """Where `grader batch` grades the students."""

    local = "local"
    slurm = "slurm"


def _executor_kind(value: str | ExecutorKind) -> ExecutorKind:
    """--executor's value; a wrong one is a usage error said in this command's own words."""
    try:
        return ExecutorKind(value)
    except ValueError:
        _fail_usage(f"--executor is {' or '.join(k.value for k in ExecutorKind)}")


ExecutorOpt = Annotated[ExecutorKind, typer.Option("--executor", parser=_executor_kind, help="where students are "
                                                   "graded: local (this machine) or slurm (one cluster job each; "
                                                   "-j caps how many run at once)")]


_option_type = typer.core.TyperOption.display_type_rich


def _type_unless_flag(self, ctx):
    """A flag takes no value: its help shows no '<bool>' beside it (--help and --version included)."""
    return None if self.is_flag else _option_type(self, ctx)


typer.core.TyperOption.display_type_rich = _type_unless_flag


def _version(value: bool) -> None:
    if not value:
        return
    import platform
    from importlib import metadata

    import torch

    try:
        grader_version = metadata.version("cnn-grader")  # the distribution's name on the package index
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        grader_version = "(not installed)"
    Console().print(f"grader {grader_version}, torch {torch.__version__}, Python {platform.python_version()}",
                    markup=False, highlight=False)
    raise typer.Exit(EXIT_OK)


@app.callback()
def _commands(version: bool = typer.Option(False, "--version", help="print the versions of grader, torch and "
                                           "Python", callback=_version, is_eager=True)) -> None:
    """Grade PyTorch CNN assignments against a rubric YAML."""


def _fail_usage(message: str) -> None:
    _print_error(message)
    raise typer.Exit(EXIT_USAGE)


def _options(device: str, precision: Precision, checkpoints: list[Path], data_dir: Optional[Path], download: bool,
             batch_size: Optional[int]) -> Options:
    try:
        resolved = resolve_device(device)
    except ValueError as e:
        _fail_usage(str(e))
    for flag, folder in [("--checkpoints", c) for c in checkpoints] + [("--data-dir", data_dir)]:
        if folder is not None and not Path(folder).is_dir():  # a typo must not grade every student 0
            _fail_usage(f"{flag} {folder}: {'not a folder' if Path(folder).exists() else 'no such folder'}")
    return Options(device=resolved, precision=Precision(precision).value, checkpoint_dirs=list(checkpoints),
                   data_dir=str(data_dir) if data_dir else None, download=download, batch_size=batch_size)




def _isolation(options: Options, rubric_obj, unsafe: bool, submission: Path) -> None:
    """Who may run code unisolated: a run given --unsafe-no-isolation, or one's own code: a
    self-check (a public rubric: a student's code on their own computer, e.g. a Mac) or the
    rubric's own reference solution (the instructor's); grading anyone else's with the full
    rubric refuses (grader.sandbox.fail_closed)."""
    options.unsafe_no_isolation = unsafe
    reference = rubric_obj.reference_dir()
    own = reference is not None and reference.resolve() == submission.resolve()
    options.self_check = bool(rubric_obj.public) or own


def _item_ids(items: Optional[str], rubric_obj) -> Optional[list[str]]:
    """The ids --items names; an unknown one is a usage error that suggests the closest ids."""
    import difflib

    selected = [i.strip() for i in items.split(",") if i.strip()] if items else None
    if selected:  # q6, "Question 6" and 6 name the items of Question 6
        selected = questions.resolve(rubric_obj.items, selected)
    known = [i.id for i in rubric_obj.items]
    for wrong in [i for i in selected or [] if i not in known]:
        close = difflib.get_close_matches(wrong, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"items: {', '.join(known)}"
        _fail_usage(f"no item {wrong} in {rubric_obj.assignment}; {hint}")
    rubric_obj.select(selected)
    return selected


def _limits(timeout: Optional[float], item_timeout: Optional[float], memory_mb: Optional[int]) -> dict:
    for name, value in (("--timeout", timeout), ("--item-timeout", item_timeout), ("--memory-mb", memory_mb)):
        if value is not None and value <= 0:
            _fail_usage(f"{name} must be positive")
    return {k: v for k, v in dict(timeout_s=timeout, item_timeout_s=item_timeout, memory_mb=memory_mb).items()
            if v is not None}


@app.command()
def check(
    submission: Path = typer.Argument(..., help="folder with the student's files, by the course's names"),
    rubric: RubricOpt = None,
    checkpoints: CheckpointsOpt = [],
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    items: ItemsOpt = None,
    public: bool = typer.Option(False, "--public", help="grade the visible items only, as a student's "
                                "self-check does"),
    as_json: bool = typer.Option(False, "--json", help="print Gradescope's results.json instead of a table"),
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = Precision.fp32,
    batch_size: BatchSizeOpt = None,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="all details, isolation and the code's output"),
    timeout: TimeoutOpt = None,
    item_timeout: ItemTimeoutOpt = None,
    memory_mb: MemoryOpt = None,
    train: bool = typer.Option(True, "--train/--no-train", help="train a model that has no checkpoint when its "
                               "item has a training recipe (the notebook challenge)"),
    train_budget: Optional[float] = typer.Option(None, "--train-budget", help="wall-clock seconds for such "
                                                 "training; it stops there and what was reached is graded"),
    unsafe_no_isolation: UnsafeOpt = False,
) -> None:
    """Grade one submission folder and print a report."""
    if not submission.is_dir():
        _fail_usage(f"{submission} is not a folder")
    rubric_obj = assignments.resolve(rubric, submission)
    if public and not rubric_obj.public:
        rubric_obj = rubric_obj.public_view()
    selected = _item_ids(items, rubric_obj)
    rubric_obj = rubric_obj.with_limits(**_limits(timeout, item_timeout, memory_mb))
    options = _options(device, precision, checkpoints, data_dir, download, batch_size)
    options.train_if_missing, options.train_budget_s = train, train_budget
    _isolation(options, rubric_obj, unsafe_no_isolation, submission)
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


# -- authoring: skeletons, rubrics, handouts -------------------------------------------

rubric_app = _App(help="Validate, summarise and describe rubric files.", no_args_is_help=True)
app.add_typer(rubric_app, name="rubric")


def _load_rubric(name: str):
    return assignments.load_named(name)


@app.command()
def skeleton(
    assignment: Optional[list[str]] = typer.Argument(None, help="assignment names or rubric paths "
                                                      "(default: every rubric in ./rubrics)"),
    check: bool = typer.Option(False, "--check", help="change nothing; exit 1 when a skeleton is out of date"),
) -> None:
    """Write skeletons/ASSIGNMENT from reference_solutions/ASSIGNMENT (solution blocks removed)."""
    names = assignment or list(assignments.local_rubrics() or assignments.builtin_rubrics())
    console = Console()
    stale_any = False
    for name in names:
        rubric_obj = _load_rubric(name)
        reference, target = rubric_obj.reference_dir(), rubric_obj.skeleton_dir()
        if reference is None or target is None:
            if assignment:
                _fail_usage(f"{rubric_obj.assignment}: the rubric needs both 'reference:' and 'skeleton:' folders")
            continue
        if not reference.is_dir():
            _fail_usage(f"{rubric_obj.assignment}: the reference folder {reference} does not exist")
        try:
            if check:
                stale = authoring_skeleton.stale(reference, target)
                stale_any |= bool(stale)
                text = (f"{rubric_obj.assignment}: out of date: {', '.join(stale)} (run: grader skeleton "
                        f"{rubric_obj.assignment})" if stale else f"{rubric_obj.assignment}: up to date")
            else:
                written = authoring_skeleton.generate(reference, target)
                text = f"{rubric_obj.assignment}: wrote {len(written)} file(s) to {_shown(target)}: {', '.join(written)}"
        except authoring_skeleton.MarkerError as e:
            _fail_usage(f"{rubric_obj.assignment}: {e}")
        say(console, text)
    raise typer.Exit(EXIT_FAILED if stale_any else EXIT_OK)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@rubric_app.command("validate")
def rubric_validate(rubrics: list[str] = typer.Argument(..., help="rubric YAML paths or assignment names")) -> None:
    """Check rubrics: the format (with the YAML line), then the reference, skeleton and visibility."""
    from grader import rubric as rubric_module
    from grader.authoring import rubric_tools

    console = Console()
    failed = False
    for name in rubrics:
        path = Path(name) if Path(name).is_file() else assignments.course_rubrics().get(name)
        if path is None:
            _fail_usage(f"no rubric {name!r}: give a YAML path or one of {', '.join(assignments.course_rubrics())}")
        path = Path(_shown(path))
        try:
            rubric_obj = rubric_module.load(path)
        except RubricError as e:
            failed = True
            say(console, str(e))
            continue
        findings = rubric_tools.lint(rubric_obj)
        for finding in findings:
            say(console, finding.text(str(path)))
        errors = [f for f in findings if f.level == "error"]
        failed |= bool(errors)
        summary = rubric_tools.summary(rubric_obj)
        verdict = "invalid" if errors else "valid"
        say(console, f"{path}: {verdict}: {len(rubric_obj.items)} items, {summary['total_points']:g} points "
                     f"({summary['public_points']:g} public, {summary['hidden_points']:g} hidden)")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


env_app = _App(help="The course's environment: the packages a rubric declares (environment.packages).",
               no_args_is_help=True)
app.add_typer(env_app, name="env")


@env_app.command("install")
def env_install(
    rubric: str = typer.Argument(..., help="rubric YAML path or assignment name"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the pip command without running it"),
) -> None:
    """Install the packages the rubric's environment.packages declares, with pip, into the Python that grades."""
    import shlex
    import subprocess

    from grader import packages

    rubric_obj = _load_rubric(rubric)
    console = Console()
    if not packages.declared(rubric_obj):
        say(console, f"{rubric_obj.assignment}: the rubric declares no environment.packages: nothing to install")
        raise typer.Exit(EXIT_OK)
    command = packages.install_command(rubric_obj)
    say(console, shlex.join(command))
    if dry_run:
        raise typer.Exit(EXIT_OK)
    done = subprocess.run(command)
    left = packages.missing(rubric_obj)
    if done.returncode != 0 or left:
        say(console, f"still missing: {', '.join(left)}" if left else f"pip failed (exit {done.returncode})")
        raise typer.Exit(EXIT_FAILED)
    say(console, f"{rubric_obj.assignment}: {', '.join(packages.declared(rubric_obj))} installed")


@rubric_app.command("show")
def rubric_show(
    rubric: str = typer.Argument(..., help="rubric YAML path or assignment name"),
    as_json: JsonOpt = False,
) -> None:
    """Items, points and visibility of a rubric, with the public and hidden totals."""
    from grader.authoring import rubric_tools

    rubric_obj = _load_rubric(rubric)
    if as_json:
        sys.stdout.write(json.dumps(rubric_tools.summary(rubric_obj), indent=2) + "\n")
    else:
        rubric_tools.show(rubric_obj, Console())


@rubric_app.command("schema")
def rubric_schema(output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file")) -> None:
    """Print the JSON Schema of the rubric format (for editors: yaml-language-server)."""
    from grader import rubric as rubric_module

    text = json.dumps(rubric_module.json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)


@app.command()
def bundle(
    assignment: str = typer.Argument(..., help="assignment name or rubric path"),
    output: Path = typer.Option(..., "--output", "-o", help="the zip file to write"),
    student: bool = typer.Option(False, "--student", help="skeleton, public rubric and a README for students"),
    instructor: bool = typer.Option(False, "--instructor", help="everything: rubric, reference, skeleton, "
                                    "checkpoints"),
    with_checkpoints: bool = typer.Option(False, "--with-checkpoints", help="student bundle: include the "
                                          "instructor's checkpoints that visible items use"),
    install: Optional[str] = typer.Option(None, "--install", help="student bundle: the install command the README "
                                          "shows, e.g. 'python -m pip install cnn-grader' once published (nothing "
                                          "carried; default: install from the handout's wheels/)"),
    install_url: Optional[str] = typer.Option(None, "--install-url", help="student bundle: install the grader from "
                                              "this URL of its wheel (nothing carried)"),
    platforms: Annotated[list[str], typer.Option("--platform", help="student bundle: carry the dependencies' "
                                                 "wheels for this platform (repeatable: linux, linux-arm, macos, "
                                                 "macos-intel, windows; default: linux, macos, windows)")] = [],
    gradescope: bool = typer.Option(False, "--gradescope", help="Gradescope's autograder zip: setup.sh, "
                                    "run_autograder, the full rubric, reference, checkpoints, a wheel of grader"),
    checkpoints: Annotated[list[Path], typer.Option("--checkpoints", "-c", help="--gradescope: folder with the "
                                                    "instructor's checkpoints to carry (repeatable)")] = [],
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="--gradescope: the test set to carry "
                                                     "(default: accuracy on the embedded sample)")] = None,
    unsafe_no_isolation: bool = typer.Option(False, "--unsafe-no-isolation", help="--gradescope: grade even where "
                                             "Gradescope's image cannot start bubblewrap (its container is then "
                                             "the only boundary); without it such an autograder refuses"),
) -> None:
    """Pack a zip: --student (no solution, no hidden item), --instructor, or --gradescope (an autograder)."""
    if student + instructor + gradescope != 1:
        _fail_usage("say which bundle: --student or --instructor (handouts), or --gradescope (an autograder)")
    if (checkpoints or data_dir) and not gradescope:
        _fail_usage("--checkpoints and --data-dir apply to --gradescope")
    if unsafe_no_isolation and not gradescope:
        _fail_usage("--unsafe-no-isolation applies to --gradescope (a handout runs no student code)")
    if (install or install_url or platforms) and not student:
        _fail_usage("--install, --install-url and --platform apply to --student")
    if install and install_url:
        _fail_usage("give --install or --install-url, not both")
    rubric_obj = _load_rubric(assignment)
    notes: list[str] = []
    if student:
        made = bundle_module.student(rubric_obj, output, with_checkpoints=with_checkpoints, install=install,
                                     install_url=install_url,
                                     platforms=tuple(platforms) or bundle_module.wheel.DEFAULT_PLATFORMS)
        notes = made.notes
    elif instructor:
        made = bundle_module.instructor(rubric_obj, output)
    else:
        from grader.authoring import gradescope as gradescope_module

        made, notes = gradescope_module.autograder(rubric_obj, output, checkpoint_dirs=checkpoints, data_dir=data_dir,
                                                   unsafe_no_isolation=unsafe_no_isolation)
    console = Console()
    say(console, f"wrote {made.path} ({len(made.members)} files)")
    for note in notes:
        say(Console(stderr=True), f"note: {note}")
    for member in made.members:
        say(console, f"  {member}")


@app.command()
def batch(
    submissions: Path = typer.Argument(..., help="the class: one folder or .zip per student, or an LMS download "
                                       "(folder or .zip)"),
    rubric: str = typer.Option(..., "--rubric", "-r", help="rubric YAML path or assignment name"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (created; rerun with the same one to resume)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="students graded at once (default: what the "
                                       "CPU cores and memory allow; 32 with --executor slurm)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per student (default: cores / -j)"),
    checkpoints: CheckpointsOpt = [],
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    items: ItemsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = Precision.fp32,
    batch_size: BatchSizeOpt = None,
    timeout: TimeoutOpt = None,
    item_timeout: ItemTimeoutOpt = None,
    memory_mb: MemoryOpt = None,
    force: bool = typer.Option(False, "--force", help="regrade every student, even unchanged ones"),
    no_reuse: bool = typer.Option(False, "--no-reuse", help="evaluate every student's model, even when an "
                                  "identical or equivalent one was already evaluated in this run"),
    student: list[str] = typer.Option([], "--student", help="grade only this student (repeatable; always "
                                      "regraded)"),
    max_unzip_mb: int = typer.Option(2048, "--max-unzip-mb", help="most a student's zip files may unpack to"),
    executor: ExecutorOpt = ExecutorKind.local,
    shared_dir: Optional[Path] = typer.Option(None, "--shared-dir", help="slurm: a folder every node reads, where "
                                              "the data set and checkpoints are staged once (default: "
                                              "OUT/.grader/shared)"),
    partition: Optional[str] = typer.Option(None, "--partition", help="slurm: partition (default: the rubric's "
                                            "slurm.partition, else the cluster's default)"),
    gpus_per_job: Optional[int] = typer.Option(None, "--gpus-per-job", help="slurm: GPUs per student (default: "
                                               "the rubric's slurm.gpus, else 0)"),
    cpus_per_job: Optional[int] = typer.Option(None, "--cpus-per-job", help="slurm: CPU cores per student "
                                               "(default: the rubric's slurm.cpus, else 2)"),
    mem_per_job: Optional[float] = typer.Option(None, "--mem-per-job", help="slurm: memory per student, GB "
                                                "(default: limits.memory_mb + 2 GB)"),
    time_per_job: Optional[int] = typer.Option(None, "--time-per-job", help="slurm: time limit per student, "
                                               "minutes (default: from limits.timeout_s)"),
    slurm_arg: list[str] = typer.Option([], "--slurm-arg", help="slurm: another sbatch option as KEY=VALUE, "
                                        "e.g. account=cs231 (repeatable)"),
    deadline: DeadlineOpt = None,
    unsafe_no_isolation: UnsafeOpt = False,
) -> None:
    """Grade a whole class in parallel: grades.csv, per-student results.json and feedback.md, summary.md,
    duplicates.csv.  Rerun the same command to resume; only changed students are regraded."""
    from grader import batch as batch_module
    from grader.batch import progress
    from grader.batch.unpack import UnpackLimits

    if not submissions.exists():
        _fail_usage(f"{submissions} does not exist")
    if executor is ExecutorKind.local and not unsafe_no_isolation:
        from grader.sandbox.boundary import available

        isolated, why = available()
        if not isolated:
            _fail_usage(f"students' code cannot be isolated here ({why}); install bubblewrap, or pass "
                        "--unsafe-no-isolation to grade without isolation")
    if (jobs is not None and jobs < 1) or (threads is not None and threads < 1) or max_unzip_mb < 1:
        _fail_usage("--jobs, --threads and --max-unzip-mb must be positive")
    if out.exists() and not out.is_dir():
        _fail_usage(f"-o {out} is a file; give a folder (created if missing)")
    resolved_rubric = assignments.resolve(rubric, submissions)
    rubric_path = resolved_rubric.path
    selected = _item_ids(items, resolved_rubric)
    if deadline is not None:
        from grader.batch import late

        late.parse_time(deadline)  # a wrong --deadline is said before any grading
    limits = _limits(timeout, item_timeout, memory_mb)
    cluster = _cluster(executor, rubric_path, limits, out, shared_dir, jobs, slurm_arg, partition=partition,
                       gpus=gpus_per_job, cpus=cpus_per_job, mem_gb=mem_per_job, time_min=time_per_job)
    options = _options("cpu" if cluster is not None else device, precision, checkpoints, data_dir, download, batch_size)
    options.unsafe_no_isolation = unsafe_no_isolation  # carried by every job; a batch is never a self-check
    if cluster is not None:
        options.device = cluster.device(device)  # the nodes' device, not this login node's
        if options.device.startswith("cuda") and not cluster.resources.gpus:
            _fail_usage("--device cuda on Slurm needs --gpus-per-job (or slurm.gpus in the rubric)")
        jobs, threads = cluster.resources.max_running, threads or cluster.resources.cpus
    config = batch_module.BatchConfig(
        submissions=submissions, rubric=rubric_path, out=out, options=options,
        items=selected,
        limits=limits, workers=jobs, threads=threads, force=force, reuse=not no_reuse,
        students=list(student), unpack=UnpackLimits(max_bytes=max_unzip_mb << 20), deadline=deadline)
    console = Console()
    try:
        result = batch_module.run(config, progress.for_console(console), executor=cluster)
    except FileNotFoundError as e:
        _fail_usage(str(e))
    gradebook_module.show_summary(result.summary, console)
    for line in result.leaderboard:
        say(console, line)
    say(console, f"results in {out}: grades.csv, summary.md, report.html, duplicates.csv, students/<id>/")
    if result.interrupted:
        say(Console(stderr=True), "interrupted: every finished student is in grades.csv; rerun the same "
                                  "command to grade the rest")
        raise typer.Exit(130)
    if result.stopped:  # fail closed: the OS sandbox was lost, the rest of the class was refused
        _print_error(gradebook_module.stopped_text(result.summary))
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if not result.summary.errors else EXIT_FAILED)


def _cluster(executor: ExecutorKind, rubric_path: Path, limits: dict, out: Path, shared_dir: Optional[Path],
             jobs: Optional[int], slurm_args: list[str], **flags):
    """The Slurm executor for --executor slurm (None for local), from the flags and the rubric."""
    if executor is ExecutorKind.local:
        given = {"--shared-dir": shared_dir, "--partition": flags["partition"], "--gpus-per-job": flags["gpus"],
                 "--cpus-per-job": flags["cpus"], "--mem-per-job": flags["mem_gb"],
                 "--time-per-job": flags["time_min"], "--slurm-arg": slurm_args}
        if any(v for v in given.values()):
            _fail_usage(f"{', '.join(k for k, v in given.items() if v)} apply to --executor slurm")
        return None
    from grader.batch import slurm
    from grader.rubric import load as load_rubric

    for flag, key, least in (("--gpus-per-job", "gpus", 0), ("--cpus-per-job", "cpus", 1),
                             ("--mem-per-job", "mem_gb", 1e-3), ("--time-per-job", "time_min", 1)):
        if flags[key] is not None and flags[key] < least:
            _fail_usage(f"{flag} must be {'0 or more' if least == 0 else 'positive'}")
    rubric_obj = load_rubric(rubric_path).with_limits(**limits)
    try:
        cluster = slurm.SlurmExecutor.for_rubric(rubric_obj, out, shared_dir=shared_dir, max_running=jobs,
                                                 extra=slurm_args, **flags)
    except ValueError as e:  # a --slurm-arg that is not KEY=VALUE
        _fail_usage(str(e))
    return cluster


@app.command()
def rescore(
    out: Path = typer.Argument(..., help="the output folder of grader batch"),
    rubric: Optional[Path] = typer.Option(None, "--rubric", "-r", help="the rubric to score with (default: the one "
                                          "the batch used, as it is now)"),
    deadline: DeadlineOpt = None,
) -> None:
    """Score a graded class again from its records, without running any submission: after a change of
    points, thresholds, credit policy, late policy or overrides.yaml.  Exit 3 when some items' checks
    changed (they need grader batch)."""
    from grader.batch import rescore as rescore_module

    if not out.is_dir():
        _fail_usage(f"{out} is not a folder")
    result = rescore_module.run(out, rubric, deadline)
    console = Console()
    gradebook_module.show_summary(result.summary, console)
    for line in result.leaderboard:
        say(console, line)
    written = ", ".join(str(p) for p in result.exports)
    say(console, f"rescored {len(result.records)} students with {result.rubric}: grades.csv, summary.md, "
                 f"students/<id>/{'; exports: ' + written if written else ''}")
    if result.unmeasured:
        say(Console(stderr=True), f"{len(result.unmeasured)} students were graded by an older grader that kept no "
                                  "measurements: run grader batch to regrade them")
    if result.stale:
        for item, students in result.stale.items():
            say(Console(stderr=True), f"check changed: {item} ({len(students)} students): run grader batch to "
                                      "regrade it")
        raise typer.Exit(rescore_module.EXIT_STALE)


@app.command()
def export(
    out: Path = typer.Argument(..., help="the output folder of grader batch"),
    to: str = typer.Option(..., "--to", help="canvas, moodle, gradescope or csv"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="the file to write (default: "
                                          "OUT/exports/<format>.csv)"),
    assignment: Optional[str] = typer.Option(None, "--assignment", help="the LMS's name of the grade column; "
                                             "Canvas: 'Name (id)' as its gradebook export spells it (default: the "
                                             "rubric's title)"),
    roster: Optional[Path] = typer.Option(None, "--roster", help="CSV with student, name, email, sis_user_id, "
                                          "sis_login_id, section columns: identities the download lacks, and who "
                                          "handed in nothing"),
) -> None:
    """Write the gradebook in the format an LMS imports (grader rescore writes it again)."""
    from grader.batch import exports

    if not out.is_dir():
        _fail_usage(f"{out} is not a folder")
    written = exports.export(out, to, output, assignment=assignment, roster=roster)
    say(Console(), f"wrote {written}")


@app.command("report")
def report_command(
    out: Path = typer.Argument(..., help="a class's output folder (what `grader batch -o` wrote)"),
) -> None:
    """(Re)write OUT/report.html, the class report with plots, from OUT alone: no student code runs."""
    from grader.batch import class_report

    written = class_report.write(out)
    say(Console(), f"wrote {written}")


@app.command("train")
def train_command(
    submission: Path = typer.Argument(..., help="folder with the student's files"),
    item: str = typer.Option(..., "--item", help="the accuracy item whose model is trained, e.g. challenge.accuracy"),
    rubric: RubricOpt = None,
    epochs: Optional[float] = typer.Option(None, "--epochs", help="epochs (default: what the submission asks for, "
                                           "at most the rubric's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="checkpoint to write (default: the item's checkpoint "
                                       "name in SUBMISSION, which `grader check` then uses)"),
    budget: Optional[float] = typer.Option(None, "--budget", help="wall-clock seconds; training stops cleanly "
                                           "there, and running again resumes it"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="another recipe of the item (default: its train:)"),
    fresh: bool = typer.Option(False, "--fresh", help="start over instead of resuming an unfinished --out"),
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    unsafe_no_isolation: UnsafeOpt = False,
) -> None:
    """Train a submission's model for an accuracy item and write its checkpoint."""
    from grader.console import training_progress
    from grader.sandbox.session import StudentFailure

    if not submission.is_dir():
        _fail_usage(f"{submission} is not a folder")
    rubric_obj = assignments.resolve(rubric, submission)
    _item_ids(item, rubric_obj)
    options = _options(device, Precision.fp32, [], data_dir, download, None)
    _isolation(options, rubric_obj, unsafe_no_isolation, submission)
    err = Console(stderr=True)
    with training_progress(err, item) as on_progress:
        try:
            summary = grading.train(submission, rubric_obj, item, options, out=out, recipe=recipe, epochs=epochs,
                                    budget_s=budget, fresh=fresh, on_progress=on_progress)
        except StudentFailure as e:  # the student's code failed, not the command: said as such, exit 1
            where = f" ({e.where()})" if e.where() else ""
            say(err, f"training failed: {e.message}{where}")
            if "not written by grader train" in e.message:
                say(err, "pass --fresh to replace it, or --out FILE")
            raise typer.Exit(EXIT_FAILED)
    result = summary["result"]
    state = "stopped by the budget" if result["stopped_by_budget"] else "done"
    console = Console()
    say(console, f"{summary['out']}: {result['epochs_done']:g} of {summary['epochs']:g} epochs, {state} "
                 f"({result['seconds']:.0f} s this run)")
    for note in summary["notes"]:
        say(console, f"  - {note}")
    if result["stopped_by_budget"]:
        say(console, "run the same command again to resume; `grader check` grades it as it is")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
