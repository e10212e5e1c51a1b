"""A Gradescope autograder: the zip `grader bundle ASSIGNMENT --gradescope -o autograder.zip` writes,
and what runs inside Gradescope's container for each submission.

    setup.sh              run once when Gradescope builds the image: installs bubblewrap (the OS
                          sandbox students' code runs in), grader from the wheel in wheels/ (its
                          dependencies from wheels/ too when put there, else from the package
                          index), and torch only when the image lacks it
    run_autograder        run for every submission: python3 -m grader.authoring.gradescope
    ASSIGNMENT.yaml       the full rubric (hidden items too), its paths pointing inside the zip
    reference/ checkpoints/ data/   the reference solution, instructor checkpoints, test set
    wheels/cnn_grader-*.whl   this grader, built from the code that made the zip

Gradescope unpacks the zip into /autograder/source, puts the student's files in
/autograder/submission and reads /autograder/results/results.json
(https://gradescope-autograders.readthedocs.io/en/latest/specs/).  Every path is taken
from $AUTOGRADER_ROOT (default /autograder), so a test can run the same script on a
simulated tree.  results.json is always written: a grader failure scores zero with a
message, never a missing file (which Gradescope shows as a broken autograder).

Students' code runs inside bubblewrap or not at all: where the image cannot start it, every
submission gets results.json with REFUSED_MESSAGE and no score from its code, unless the
zip was made with --unsafe-no-isolation (run_autograder then passes it on, and the
container is the only boundary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from grader.authoring.bundle import Bundle, BundleError, rewrite_paths, write_zip
from grader.authoring.wheel import build as build_wheel  # one wheel builder for handouts and autograders
from grader.rubric import Rubric

TORCH_PAIR = "torch==2.14.1 torchvision==0.29.1"  # what CI tests with; installed only if the image has none
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
PYTHON="${{GRADER_PYTHON:-python3}}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1  # the image's Python is ours

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-pip
fi
# bubblewrap: the OS sandbox every submission runs in.  Without it the autograder refuses to grade.
if ! command -v bwrap >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq bubblewrap) \
        || echo "warning: bubblewrap could not be installed: the autograder will refuse every submission" >&2
fi
# torch: the image's own when it has one; else the pair grader is tested with, CPU build first.
if ! "$PYTHON" -c "import torch, torchvision" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q {torch} --index-url https://download.pytorch.org/whl/cpu \\
        || "$PYTHON" -m pip install -q {torch}
fi
# grader from the wheel carried here.  Its dependencies come from wheels/ when they are there
# (offline), else from the package index.
"$PYTHON" -m pip install -q --find-links "$HERE/wheels" "$HERE"/wheels/{wheel}
"$PYTHON" -c "import grader.authoring.gradescope" && echo "grader installed"
{packages}
"$PYTHON" -c "from grader.sandbox.boundary import available; ok, why = available(); \
print('OS sandbox: bubblewrap' if ok else 'OS sandbox: NOT AVAILABLE (' + why + '): submissions will be refused')"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission.  AUTOGRADER_ROOT points it at another tree (tests).
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
exec "${{GRADER_PYTHON:-python3}}" -m grader.authoring.gradescope --root "$ROOT" \\
    --rubric "$ROOT/source/{rubric}"{unsafe}
"""
REFUSED_MESSAGE = ("The autograder could not grade this submission: it runs students' code only inside its OS "
                   "sandbox (bubblewrap), which this autograder's image cannot start ({why}). Nothing of your "
                   "code was run and this is not your grade: your instructor must fix the autograder.")


# -- the zip -------------------------------------------------------------------------


def autograder(rubric: Rubric, out: Path, *, checkpoint_dirs: list[Path] = (), data_dir: Path | None = None,
               unsafe_no_isolation: bool = False) -> tuple[Bundle, list[str]]:
    """Write the autograder zip; returns it and notes for the instructor (what is missing).

    unsafe_no_isolation: grade even where the image cannot start bubblewrap (said in a note)."""
    reference = rubric.reference_dir()
    if reference is None or not reference.is_dir():
        raise BundleError(f"the reference solution of {rubric.assignment} is not there "
                          f"({reference or 'no reference: in the rubric'}): hidden items compare with it")
    members: dict[str, bytes | Path] = {}
    notes: list[str] = []
    for path in _files(reference):
        members[f"reference/{path.relative_to(reference).as_posix()}"] = path
    found, missing = _checkpoints(rubric, list(checkpoint_dirs))
    for name, path in found.items():
        members[f"checkpoints/{name}"] = path
    if missing:
        notes.append(f"checkpoint(s) {', '.join(missing)} not found (give -c DIR): items that use the "
                     "instructor's will be skipped unless students submit them")
    paths = {"reference": "reference", "checkpoints": "checkpoints" if found else None}
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise BundleError(f"--data-dir {data_dir} is not a folder")
        for path in _files(Path(data_dir)):
            members[f"data/{path.relative_to(data_dir).as_posix()}"] = path
    elif any(item.check == "accuracy" for item in rubric.items):
        notes.append("no --data-dir: accuracy items are measured on the embedded sample of the test set")
    text = rubric.path.read_text() if rubric.path else rubric.to_yaml()
    rubric_name = f"{rubric.assignment}.yaml"
    members[rubric_name] = rewrite_paths(text, paths).encode()
    wheel_name, wheel = build_wheel()
    members[f"wheels/{wheel_name}"] = wheel
    members["setup.sh"] = SETUP_SH.format(torch=TORCH_PAIR, wheel=wheel_name, packages=_packages_line(rubric)).encode()
    members["run_autograder"] = RUN_AUTOGRADER.format(
        rubric=rubric_name, unsafe=" --unsafe-no-isolation" if unsafe_no_isolation else "").encode()
    if unsafe_no_isolation:
        notes.append("--unsafe-no-isolation: where Gradescope's image cannot start bubblewrap, students' code runs "
                     "with Gradescope's container as its only boundary")
    return write_zip(Path(out), members, executable=("setup.sh", "run_autograder")), notes


def _packages_line(rubric: Rubric) -> str:
    """The course's environment (rubric environment.packages), installed into the image."""
    import shlex

    from grader import packages

    declared = packages.declared(rubric)
    if not declared:
        return ""
    return ("# the course's environment (rubric environment.packages)\n"
            f'"$PYTHON" -m pip install -q {shlex.join(declared)}\n')


def _files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]


def _checkpoints(rubric: Rubric, extra: list[Path]) -> tuple[dict[str, Path], list[str]]:
    """The instructor's checkpoints the items name, from -c folders then the rubric's."""
    names = sorted({item.checkpoint for item in rubric.items if getattr(item, "checkpoint", None)})
    folders = [Path(p) for p in extra] + list(rubric.checkpoint_dirs())
    found = {}
    for name in names:
        path = next((f / name for f in folders if (f / name).is_file()), None)
        if path is not None:
            found[name] = path.resolve()
    return found, [n for n in names if n not in found]


# -- inside Gradescope: grade /autograder/submission ------------------------------------


def submission_folder(submission: Path, files: list[str]) -> Path:
    """Where the student's files are: the submission itself, or the shallowest folder in it that
    holds one of the rubric's files (an upload of a folder, or from GitHub)."""
    names = {Path(f).name for f in files}
    if any((submission / f).exists() for f in files):
        return submission
    candidates = sorted((p.parent for p in submission.rglob("*") if p.name in names and "__MACOSX" not in p.parts),
                        key=lambda p: (len(p.parts), str(p)))
    return candidates[0] if candidates else submission


def leaderboard(rubric: Rubric, report) -> list[dict]:
    """Gradescope's leaderboard entries for the challenge: the rubric's leaderboard item when it
    names one, else the accuracy items whose model was trained, else the first accuracy item."""
    board = getattr(getattr(rubric, "leaderboard", None), "item", None)
    measured = [r for r in report.results if "accuracy" in (r.extra or {})]
    chosen = ([r for r in measured if r.id == board] if board else []) or \
        [r for r in measured if r.extra.get("training")] or measured[:1]
    entries = []
    for r in chosen:
        suffix = "" if len(chosen) == 1 else f" ({r.id})"
        entries.append({"name": f"Accuracy{suffix}", "value": round(100 * r.extra["accuracy"], 2), "order": "desc"})
        if r.extra.get("params") is not None:
            entries.append({"name": f"Parameters{suffix}", "value": r.extra["params"], "order": "asc"})
        seconds = (r.extra.get("training") or {}).get("seconds")
        if seconds is not None:
            entries.append({"name": f"Training time (s){suffix}", "value": round(seconds, 1), "order": "asc"})
    return entries


def results(rubric: Rubric, report, device: str | None = None) -> dict:
    """Gradescope's results.json for one graded submission."""
    from grader.batch.class_report import provenance

    data = report.to_gradescope()
    # which rubric, grader and OS boundary, for the instructor
    data["extra_data"] = {**data.get("extra_data", {}), "provenance": provenance(rubric, device)}
    data["output"] = "\n".join(report.notes) or f"Graded by grader: {report.score:g} of {report.max_score:g} points."
    data["visibility"] = "visible"
    data["stdout_visibility"] = "hidden"  # the grader's log is for the instructor
    board = leaderboard(rubric, report)
    if board:
        data["leaderboard"] = board
    return data


def failed_run(why: str, seconds: float) -> dict:
    return {"score": 0.0, "execution_time": round(seconds, 3), "visibility": "visible", "stdout_visibility": "hidden",
            "output": f"The autograder could not grade this submission: {why}. Your instructor can see the details.",
            "tests": []}


def run(root: Path, rubric_path: Path, unsafe_no_isolation: bool = False) -> dict:
    """Grade root/submission with the rubric; write root/results/results.json; return it."""
    from grader.sandbox.fail_closed import BoundaryLost, IsolationRefused

    started = time.monotonic()
    target = root / "results" / "results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = _grade(root, rubric_path, unsafe_no_isolation)
    except (IsolationRefused, BoundaryLost) as e:  # no OS sandbox: refused, said plainly, nothing ran
        print(f"refused: {e}", flush=True)
        data = failed_run("", time.monotonic() - started)
        data["output"] = REFUSED_MESSAGE.format(why=e.why)
    except Exception as e:  # the grader's own failure: the student sees a message, the log the traceback
        traceback.print_exc()
        data = failed_run(f"{type(e).__name__}: {e}", time.monotonic() - started)
    target.write_text(json.dumps(data, indent=2) + "\n")
    return data


def _grade(root: Path, rubric_path: Path, unsafe_no_isolation: bool = False) -> dict:
    from grader import grading
    from grader.device import resolve
    from grader.options import Options
    from grader.reference import Reference
    from grader.rubric import load

    rubric = load(rubric_path)
    source = rubric_path.parent
    data = source / "data"
    options = Options(device=resolve("auto"), checkpoint_dirs=[source / "checkpoints"],
                      data_dir=str(data) if data.is_dir() else None, unsafe_no_isolation=unsafe_no_isolation)
    folder = submission_folder(root / "submission", list(rubric.files))
    print(f"grading {folder} with {rubric_path} on {options.device}", flush=True)
    # Students read `visible` items here before the deadline, and may resubmit: their messages do not
    # state the reference's values (grader.structure_diff); the others keep the precise ones.
    reference = Reference(rubric.reference_dir(), notebook=rubric.notebook, conceal_visible=True) \
        if rubric.reference_dir() is not None and rubric.reference_dir().is_dir() else None
    report = grading.grade(folder, rubric, options, student_id="submission", reference=reference)
    for r in report.results:
        print(f"  {r.id}: {r.points:g}/{r.max_points:g} {r.status}: {r.message}", flush=True)
    return results(rubric, report, options.device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.authoring.gradescope",
                                     description="Grade a Gradescope submission (what run_autograder does).")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    parser.add_argument("--rubric", type=Path, required=True)
    parser.add_argument("--unsafe-no-isolation", action="store_true",
                        help="grade even where bubblewrap cannot start (the container is the only boundary)")
    args = parser.parse_args(argv)
    data = run(args.root, args.rubric, args.unsafe_no_isolation)
    print(f"score {data['score']:g}; results in {args.root / 'results' / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
