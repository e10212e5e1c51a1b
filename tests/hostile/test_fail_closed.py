"""Issue 17, point 4: isolation fails closed on every path.

Students' code runs inside bubblewrap or not at all: `grading.grade` itself refuses without
it (no code runs: a submission that writes a marker outside its folder at import leaves
none), a batch whose sandbox breaks in the middle refuses the rest of the class, a Slurm
node without bubblewrap refuses its student, the Gradescope autograder installs bubblewrap
and refuses plainly without it; only --unsafe-no-isolation (or a self-check of one's own
code) runs unisolated, and every report then says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from grader import batch, grading, rubric
from grader.authoring import gradescope
from grader.batch import gradebook
from grader.options import Options
from grader.sandbox import boundary, fail_closed
from grader.sandbox.session import isolated
from tests.conftest import run_cli
from tests.hostile.tiny_course import write_course, write_submission

needs_bwrap = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]} "
                                                        "(CI installs bubblewrap, so these run there)")


@pytest.fixture
def marker():
    """A file the submission writes outside its folder whenever its code runs unisolated."""
    path = Path("/dev/shm") / f"grader-marker-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)
    Path("/tmp", path.name).unlink(missing_ok=True)


@pytest.fixture
def no_bubblewrap(monkeypatch):
    """This process without the OS sandbox (the probe's own switch); the cached answer restored after."""
    monkeypatch.setattr(boundary, "_available", boundary._available)
    monkeypatch.setenv("GRADER_NO_ISOLATION", "1")


def ran(marker: Path) -> bool:
    return marker.exists() or Path("/tmp", marker.name).exists()


# -- grading.grade itself ------------------------------------------------------------------


def test_grade_refuses_without_the_sandbox_and_runs_no_student_code(tmp_path, marker, no_bubblewrap):
    rubric_obj = rubric.load(write_course(tmp_path))
    folder = write_submission(tmp_path / "alice", marker)
    for options in (None, Options(), Options(device="cpu", precision="fp32")):
        with pytest.raises(fail_closed.IsolationRefused, match="GRADER_NO_ISOLATION=1 is set.*--unsafe-no-isolation"):
            grading.grade(folder, rubric_obj, options)
    assert not ran(marker)
    # The unsafe flag, given for this run, runs it: unisolated, and the report says so.
    report = grading.grade(folder, rubric_obj, Options(unsafe_no_isolation=True))
    assert report.score == 5 and ran(marker)
    assert report.boundary.startswith("NONE") and any("WITHOUT OS isolation" in n for n in report.notes)


@needs_bwrap
def test_a_sandbox_that_cannot_start_once_grading_began_is_no_grade_not_a_zero(tmp_path, marker, monkeypatch):
    rubric_obj = rubric.load(write_course(tmp_path))
    folder = write_submission(tmp_path / "alice", marker)
    monkeypatch.setattr(boundary, "_available", boundary._available)
    probes = []

    def probe():  # works at the start, then breaks for good
        probes.append(len(probes))
        return (True, "") if len(probes) == 1 else (False, "bwrap: setting up uid map: Permission denied")

    monkeypatch.setattr(boundary, "_probe", probe)

    def lost(*args):
        raise boundary.SandboxLost("the sandbox did not start: its warm process ended")

    monkeypatch.setattr(boundary, "lease", lost)
    with pytest.raises(fail_closed.BoundaryLost, match="uid map: Permission denied"):
        grading.grade(folder, rubric_obj, Options())
    assert not ran(marker) and len(probes) == 3  # once before grading; twice after the failure (no fluke)


@needs_bwrap
def test_a_sandbox_killed_by_what_ran_in_it_stays_that_students_zero(tmp_path, monkeypatch):
    """bubblewrap still starts: the student broke their own sandbox, which must not stop a class."""
    rubric_obj = rubric.load(write_course(tmp_path))
    folder = write_submission(tmp_path / "alice")

    def lost(*args):
        raise boundary.SandboxLost("its warm process ended")

    monkeypatch.setattr(boundary, "lease", lost)
    report = grading.grade(folder, rubric_obj, Options())
    assert report.score == 0 and "the sandbox could not start" in report.results[0].message


# -- grader check and grader train -------------------------------------------------------


def test_check_with_the_instructors_rubric_refuses_and_a_self_check_runs_with_a_loud_note(tmp_path, marker):
    rubric_path = write_course(tmp_path)
    folder = write_submission(tmp_path / "alice", marker)
    env = {"GRADER_NO_ISOLATION": "1"}
    refused = run_cli("check", str(folder), "--rubric", str(rubric_path), env=env, timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot run inside the OS sandbox here (GRADER_NO_ISOLATION=1 is set)" in refused.stderr
    assert "--unsafe-no-isolation" in refused.stderr and "Traceback" not in refused.stderr
    assert not ran(marker)

    public = tmp_path / "public.yaml"  # the handout's rubric: a student checking their own code
    public.write_text(rubric_path.read_text().replace("assignment: tiny_function",
                                                      "assignment: tiny_function\npublic: true"))
    (tmp_path / "reference").symlink_to(tmp_path / "course" / "reference")
    own = run_cli("check", str(folder), "--rubric", str(public), env=env, timeout=300)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "This code ran WITHOUT OS isolation: GRADER_NO_ISOLATION=1 is set." in own.stdout
    assert "boundary: NONE: this code ran WITHOUT OS isolation" in own.stdout
    marker.unlink(missing_ok=True)

    unsafe = run_cli("check", str(folder), "--rubric", str(rubric_path), "--unsafe-no-isolation", env=env,
                     timeout=300)
    assert unsafe.returncode == 0, unsafe.stdout + unsafe.stderr
    assert "boundary: NONE" in unsafe.stdout


def test_check_of_the_rubrics_own_reference_runs_unisolated_and_a_copy_of_it_does_not(tmp_path):
    """README's first command grades the shipped reference on a machine without bubblewrap: the
    instructor's own code.  The same files anywhere else are someone's submission."""
    rubric_path = write_course(tmp_path)
    env = {"GRADER_NO_ISOLATION": "1"}
    own = run_cli("check", str(tmp_path / "course" / "reference"), "--rubric", str(rubric_path), env=env,
                  timeout=300)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "boundary: NONE: this code ran WITHOUT OS isolation" in own.stdout
    copy = write_submission(tmp_path / "copy")
    refused = run_cli("check", str(copy), "--rubric", str(rubric_path), env=env, timeout=300)
    assert refused.returncode == 2 and "cannot run inside the OS sandbox here" in refused.stderr


@needs_bwrap
def test_check_says_which_boundary_graded_it(tmp_path):
    done = run_cli("check", str(write_submission(tmp_path / "alice")), "--rubric", str(write_course(tmp_path)),
                   timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "boundary: bubblewrap sandbox" in done.stdout


def test_train_with_the_instructors_rubric_refuses_before_running_anything(tmp_path, marker):
    rubric_path = write_course(tmp_path)
    folder = write_submission(tmp_path / "alice", marker)
    done = run_cli("train", str(folder), "--rubric", str(rubric_path), "--item", "double",
                   env={"GRADER_NO_ISOLATION": "1"}, timeout=300)
    assert done.returncode == 2 and "cannot run inside the OS sandbox here" in done.stderr, done.stderr
    assert not ran(marker)


# -- a class ------------------------------------------------------------------------------


def _class(tmp_path: Path, marker: Path) -> Path:
    for student in ("alice", "bob", "carol", "dave"):
        write_submission(tmp_path / "class" / student, marker)
    return tmp_path / "class"


def _fake_bwrap(tmp_path: Path, out: Path) -> dict:
    """A `bwrap` first on PATH that works until the first student's record is written, then fails
    as a broken bubblewrap does: the boundary lost in the middle of a batch."""
    real = boundary.shutil.which("bwrap")
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "bwrap"
    script.write_text(f"""#!/bin/bash
if compgen -G '{out}/students/*/record.json' > /dev/null; then
    echo "bwrap: setting up uid map: Permission denied" >&2
    exit 1
fi
exec {real} "$@"
""")
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@needs_bwrap
def test_a_batch_whose_sandbox_breaks_midway_refuses_the_rest_of_the_class(tmp_path, marker):
    out = tmp_path / "out"
    done = run_cli("batch", str(_class(tmp_path, marker)), "--rubric", str(write_course(tmp_path)), "-o", str(out),
                   "-j", "1", env=_fake_bwrap(tmp_path, out), timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "STOPPED" in done.stderr and "refused the 2 remaining students" in done.stderr
    assert "OS boundary: bubblewrap sandbox (1 student)" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr

    alice = gradebook.load_record(out, "alice")
    assert alice["status"] == gradebook.GRADED and alice["boundary"] == "bubblewrap sandbox"
    results = json.loads((out / "students" / "alice" / "results.json").read_text())
    assert results["extra_data"]["boundary"] == "bubblewrap sandbox"
    assert "*OS boundary: bubblewrap sandbox.*" in (out / "students" / "alice" / "feedback.md").read_text()
    bob = gradebook.load_record(out, "bob")  # not a zero that looks like a verdict: no grade at all
    assert bob["status"] == gradebook.NOT_GRADED and bob["report"] is None and bob["isolation_refused"]
    assert "uid map: Permission denied" in bob["error"]
    assert not (out / "students" / "bob" / "results.json").exists()
    assert not (out / "students" / "bob" / "feedback.md").exists()
    for student in ("carol", "dave"):
        assert gradebook.load_record(out, student) is None
    records = [p.read_text() for p in out.glob("students/*/record.json")]
    assert records and not any('"boundary": "NONE' in text or "WITHOUT OS isolation" in text for text in records)
    assert not ran(marker)

    summary = (out / "summary.md").read_text()
    assert "STOPPED: bob could not be graded inside the OS sandbox" in summary
    assert "refused the 2 remaining students" in summary
    assert "OS boundary: bubblewrap sandbox (1 student)" in summary
    grades = {line.split(",")[0]: line for line in (out / "grades.csv").read_text().splitlines()[1:]}
    assert grades["alice"].endswith(",5") and grades["bob"].endswith(",")

    # bubblewrap fixed: the same command grades the rest (alice is kept), exit 0.
    again = run_cli("batch", str(tmp_path / "class"), "--rubric", str(tmp_path / "course" / "rubric.yaml"),
                    "-o", str(out), "-j", "1", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "OS boundary: bubblewrap sandbox (4 students)" in again.stdout
    assert "STOPPED" not in (out / "summary.md").read_text()


def test_an_unsafe_batch_says_in_every_report_that_nothing_isolated_it(tmp_path, marker):
    out = tmp_path / "out"
    done = run_cli("batch", str(_class(tmp_path, marker)), "--rubric", str(write_course(tmp_path)), "-o", str(out),
                   "-j", "1", "--unsafe-no-isolation", env={"GRADER_NO_ISOLATION": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OS boundary: NONE: this code ran WITHOUT OS isolation (4 students)" in done.stdout
    assert "4 students graded WITHOUT OS isolation (--unsafe-no-isolation)" in done.stdout
    summary = (out / "summary.md").read_text()
    assert "**Warning:** 4 students graded WITHOUT OS isolation" in summary
    alice = out / "students" / "alice"
    assert json.loads((alice / "record.json").read_text())["boundary"].startswith("NONE")
    assert json.loads((alice / "results.json").read_text())["extra_data"]["boundary"].startswith("NONE")
    assert "*OS boundary: NONE: this code ran WITHOUT OS isolation.*" in (alice / "feedback.md").read_text()


def test_a_workers_refusal_is_recorded_as_not_graded(tmp_path, marker, no_bubblewrap):
    """A job run where there is no sandbox (a batch worker, a cluster node) refuses its student."""
    config = batch.BatchConfig(submissions=_class(tmp_path, marker), rubric=write_course(tmp_path),
                               out=tmp_path / "out")
    job = batch.plan(config).jobs[0]
    record = batch.run_job(job)
    assert record["status"] == gradebook.NOT_GRADED and record["isolation_refused"]
    assert record["report"] is None and record["boundary"] == "no student code ran"
    assert not ran(marker)


# -- a Slurm node without bubblewrap ------------------------------------------------------


def _node(tmp_path: Path, job, env: dict) -> dict:
    (tmp_path / "job.json").write_text(json.dumps(job.to_dict()))
    code = ("import json, sys; from grader.batch import slurm; "
            "print(json.dumps(slurm.run_on_node(json.load(open(sys.argv[1])))))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "job.json")], cwd=tmp_path,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_slurm_node_without_bubblewrap_refuses_unless_the_run_was_unsafe(tmp_path, marker):
    course = write_course(tmp_path)
    config = batch.BatchConfig(submissions=_class(tmp_path, marker), rubric=course, out=tmp_path / "out")
    job = batch.plan(config).jobs[0]
    job.progress_file = str(tmp_path / "progress")
    node = {"GRADER_NO_ISOLATION": "1"}  # what the node's probe finds: no usable bubblewrap

    record = _node(tmp_path, job, node)
    assert record["status"] == gradebook.NOT_GRADED and record["isolation_refused"]
    assert "cannot run inside the OS sandbox here (GRADER_NO_ISOLATION=1 is set)" in record["error"]
    assert not (tmp_path / "out" / "students" / job.student / "results.json").exists()
    assert not ran(marker)

    unsafe = batch.plan(batch.BatchConfig(submissions=tmp_path / "class", rubric=course, out=tmp_path / "out",
                                          options=Options(unsafe_no_isolation=True))).jobs[0]
    unsafe.progress_file = str(tmp_path / "progress")
    record = _node(tmp_path, unsafe, node)
    assert record["status"] == gradebook.GRADED and record["boundary"].startswith("NONE")
    assert record["report"]["results"][0]["points"] == 5


# -- the Gradescope autograder -------------------------------------------------------------


def test_gradescope_setup_installs_bubblewrap_and_the_autograder_refuses_without_it(tmp_path, marker,
                                                                                     no_bubblewrap):
    setup = gradescope.SETUP_SH
    assert "apt-get install -y -qq bubblewrap" in setup and "command -v bwrap" in setup

    rubric_path = write_course(tmp_path)
    root = tmp_path / "autograder"
    write_submission(root / "submission", marker)
    data = gradescope.run(root, rubric_path)
    assert data == json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and data["tests"] == []
    assert data["output"] == gradescope.REFUSED_MESSAGE.format(why="GRADER_NO_ISOLATION=1 is set")
    assert "bubblewrap" in data["output"] and "not your grade" in data["output"]
    assert not ran(marker)

    graded = gradescope.run(root, rubric_path, unsafe_no_isolation=True)  # a zip made with the flag
    assert graded["score"] == 5 and graded["extra_data"]["boundary"].startswith("NONE")


def test_the_unsafe_autograder_zip_passes_the_flag_on(tmp_path):
    rubric_obj = rubric.load(write_course(tmp_path))
    for unsafe in (False, True):
        made, notes = gradescope.autograder(rubric_obj, tmp_path / f"ag-{unsafe}.zip", unsafe_no_isolation=unsafe)
        run_script = zipfile.ZipFile(made.path).read("run_autograder").decode()
        assert ("--unsafe-no-isolation" in run_script) is unsafe
        assert any("only boundary" in n for n in notes) is unsafe
