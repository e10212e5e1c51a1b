"""`grader batch` on a generated class of 22 CNN Architecture submissions: right, wrong,
broken and hostile (tests/cnn_class.py).  Every student gets the right points and
reason, the well-behaved ones exactly what `grader check` gives them alone, and a
run killed halfway then resumed ends with the same gradebook as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cnn_class import ITEMS, REFERENCE, RESNET_FILE, expected_points, write_class
from tests.conftest import ROOT, RUBRICS, run_cli
from tests.processes import descendants, wait_gone

pytestmark = pytest.mark.slow

GRADED_ITEMS = [i for i in ITEMS if i != "vgg16.accuracy"]  # the students ship ResNet checkpoints only
GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


class Class:
    def __init__(self, root: Path, data: Path, checkpoints: Path):
        self.root = root
        self.folder = root / "class"
        self.out = root / "out"
        self.tmp = root / "tmp"  # the batch's TMPDIR: students' folders live here, '../' is this
        self.tmp.mkdir()
        self.marker = root / "payload-ran"
        self.data = data
        paths = {"reference": str(REFERENCE / RESNET_FILE), "rubric": str(RUBRICS / "cnn_architecture.yaml"),
                 "other_student": str(self.folder / "s01_correct" / RESNET_FILE),
                 "out": str(self.out / "grades.csv")}
        self.students = write_class(self.folder, checkpoints, paths, self.marker)

    def args(self, out: Path | None = None) -> list[str]:
        return ["batch", str(self.folder), "--rubric", str(RUBRICS / "cnn_architecture.yaml"), "-o",
                str(out or self.out), "--data-dir", str(self.data), "--items", ",".join(GRADED_ITEMS),
                "--item-timeout", "8", "--memory-mb", "1024", "-j", "2"]

    def env(self) -> dict:
        return {"TMPDIR": str(self.tmp)}

    def record(self, student: str, out: Path | None = None) -> dict:
        return json.loads(((out or self.out) / "students" / student / "record.json").read_text())


@pytest.fixture(scope="module")
def graded(tmp_path_factory, cnn_checkpoints, labelled_by_resnet) -> tuple[Class, subprocess.CompletedProcess, float]:
    klass = Class(tmp_path_factory.mktemp("class"), labelled_by_resnet, cnn_checkpoints)
    started = time.monotonic()
    result = run_cli(*klass.args(), env=klass.env(), timeout=900)
    seconds = time.monotonic() - started
    print(f"\nthe class of {len(klass.students)} graded in {seconds:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    return klass, result, seconds


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_student_gets_the_right_points_and_reason(graded):
    klass, result, _ = graded
    rows = {row["student"]: row for row in read_csv(klass.out / "grades.csv")}
    assert sorted(rows) == sorted(s.id for s in klass.students)
    for s in klass.students:
        want = expected_points(s)
        record = klass.record(s.id)
        results = {r["id"]: r for r in record["report"]["results"]}
        for item in GRADED_ITEMS:
            got = results[item]
            assert got["points"] == pytest.approx(want[item], abs=1e-3), (s.id, item, got["message"])
            assert float(rows[s.id][item]) == pytest.approx(want[item], abs=1e-3)
            if item in s.reasons:
                assert s.reasons[item] in got["message"], (s.id, item, got["message"])
            if s.failure and item in s.points:
                assert got["extra"].get("failure") == s.failure, (s.id, item, got)
        assert float(rows[s.id]["total"]) == pytest.approx(sum(want[i] for i in GRADED_ITEMS), abs=1e-3)
    # the plain progress lines (stdout is not a terminal): one per student, then the summary
    assert result.stdout.count("/22] ") == 22
    assert "failures by reason" in result.stdout


def test_hostile_students_changed_nothing_outside(graded):
    klass, _, _ = graded
    assert not klass.marker.exists(), "the pickled checkpoint's payload ran"
    assert "PAYLOAD-RAN" not in klass.record("s20_pickle_payload")["report"]["output"]
    assert not (klass.tmp / "escaped.txt").exists()
    assert not (klass.folder / "escaped.txt").exists()
    assert "READ" not in klass.record("s16_read_others")["report"]["output"]
    # the hostile reads were all refused and recorded as such
    message = klass.record("s16_read_others")["report"]["results"][0]["message"]
    assert "blocked" in message and "reference_solutions" in message
    # where a hang was, the student is told the line
    loop = klass.record("s08_loop_in_forward")["report"]["results"][0]
    assert loop["where"].startswith(f"{RESNET_FILE}:") and "while True" in "".join(loop["details"])


def test_well_behaved_students_are_graded_exactly_as_check_grades_them(graded):
    klass, _, _ = graded
    common = ["--rubric", str(RUBRICS / "cnn_architecture.yaml"), "--data-dir", str(klass.data), "--items",
              ",".join(GRADED_ITEMS), "--item-timeout", "8", "--memory-mb", "1024", "--json"]
    env = dict(os.environ, **klass.env())
    well = [s for s in klass.students if s.well_behaved]
    assert len(well) >= 5
    procs = {}
    for s in well:  # two at a time, like the batch
        procs[s.id] = subprocess.Popen([sys.executable, "-m", "grader", "check", str(klass.folder / s.id), *common],
                                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if len([p for p in procs.values() if p.poll() is None]) >= 2:
            next(iter(p for p in procs.values() if p.poll() is None)).wait(timeout=300)
    for student, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        alone = json.loads(out)
        in_batch = json.loads((klass.out / "students" / student / "results.json").read_text())
        assert in_batch["tests"] == alone["tests"], student
        assert in_batch["score"] == alone["score"]


def test_results_json_follows_gradescope_format(graded):
    klass, _, _ = graded
    for s in klass.students:
        data = json.loads((klass.out / "students" / s.id / "results.json").read_text())
        assert isinstance(data["score"], (int, float)) and isinstance(data["execution_time"], (int, float))
        assert data["execution_time"] >= 0
        assert [t["extra_data"]["id"] for t in data["tests"]] == GRADED_ITEMS
        for t in data["tests"]:
            assert isinstance(t["name"], str) and t["name"]
            assert isinstance(t["score"], (int, float)) and isinstance(t["max_score"], (int, float))
            assert 0 <= t["score"] <= t["max_score"]
            assert t["status"] in ("passed", "failed")
            assert isinstance(t["output"], str) and t["output"]
            assert t["visibility"] in GRADESCOPE_VISIBILITY
            assert isinstance(t["extra_data"], dict)
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))


def test_feedback_summary_and_duplicates(graded):
    klass, _, _ = graded
    feedback = (klass.out / "students" / "s07_loop_at_import" / "feedback.md").read_text()
    assert "Score: 0 / 115" in feedback
    assert "did not finish within 8 s while importing resnet50_skeleton.py" in feedback
    assert "resnet50_skeleton.py:2" in feedback and "endless" in feedback
    assert "Every item passed" in (klass.out / "students" / "s01_correct" / "feedback.md").read_text()
    exit_feedback = (klass.out / "students" / "s10_sys_exit" / "feedback.md").read_text()
    assert 'if __name__ == "__main__":' in exit_feedback

    summary = (klass.out / "summary.md").read_text()
    assert "22 students: 22 graded" in summary
    for label in ("time limit (endless loop?): 2 students", "out of memory: 1 student", "changed PyTorch: 3 students",
                  "blocked by the sandbox: 3 students", "checkpoint refused: 1 student", "crashed: 1 student",
                  "syntax error: 1 student", "printed too much: 1 student", "ended its own process: 3 students"):
        assert label in summary, label
    assert "## Slowest submissions" in summary and "| s08_loop_in_forward |" in summary
    assert "Isolation: " in summary and "network: namespace" in summary

    rows = read_csv(klass.out / "duplicates.csv")
    groups: dict[tuple, set] = {}
    for row in rows:
        groups.setdefault((row["group"], row["kind"], row["note"]), set()).add(row["student"])
    code = [(note, members) for (_, kind, note), members in groups.items() if kind == "code"]
    # the renamed copy is caught; the group is the right answer, which the note says
    assert code == [("identical to the reference solution (expected for correct answers)",
                     {"s01_correct", "s02_copy", "s20_pickle_payload"})]
    checkpoints = sorted((sorted(m) for (_, kind, _), m in groups.items() if kind == "checkpoint"), key=len)
    assert checkpoints[0] == ["s03_wrong_blanks", "s04_wrong_residual"]  # one shared "trained" checkpoint
    assert len(checkpoints) == 2 and len(checkpoints[1]) == 19  # the rest ship the same file


def test_rerun_skips_everyone_unchanged(graded):
    klass, _, _ = graded
    before = (klass.out / "grades.csv").read_text()
    result = run_cli(*klass.args(), env=klass.env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "grading 0, 22 unchanged since the last run" in result.stdout
    assert (klass.out / "grades.csv").read_text() == before


def test_a_killed_run_resumes_to_the_same_gradebook(graded):
    klass, _, _ = graded
    out = klass.root / "out-killed"
    env = dict(os.environ, **klass.env())
    proc = subprocess.Popen([sys.executable, "-m", "grader", *klass.args(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finished = 0
    deadline = time.monotonic() + 600
    while finished < 8 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the batch ended before it was killed"
        finished += line.startswith("[") and "/22] " in line
    family = descendants(proc.pid)
    assert family, "the batch runs its students in worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    # Everything the batch started goes with it: no student's endless loop keeps running.
    wait_gone(family, seconds=20)

    # The gradebook left behind is a whole CSV with every finished student.
    rows = read_csv(out / "grades.csv")
    assert len(rows) >= 8
    for row in rows:
        assert all(row[item] != "" for item in GRADED_ITEMS) and row["total"] != ""

    result = run_cli(*klass.args(out), env=klass.env(), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = int(result.stdout.split(" unchanged since the last run")[0].rsplit(", ", 1)[1])
    assert kept >= len(rows)
    assert (out / "grades.csv").read_text() == (klass.out / "grades.csv").read_text()
