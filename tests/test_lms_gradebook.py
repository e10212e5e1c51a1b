"""The instructor's gradebook end to end, on a tiny class as Canvas, Moodle and Gradescope
download it: `grader batch`, a change of points and `grader rescore` (no student code runs),
a change of a check (named, left for `grader batch`), overrides, the late policy, the
leaderboard, a one-item regrade of one student, and `grader export` in each LMS's format."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from grader import batch
from grader.batch import rescore
from grader.options import Options
from tests import lms_class
from tests.conftest import run_cli
from tests.notebooks import tiny_cifar


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_cifar(tmp_path_factory.mktemp("tiny-cifar"), train_per_class=0)


def grade(download: Path, rubric: Path, out: Path, data: Path, *extra: str):
    return run_cli("batch", str(download), "-r", str(rubric), "-o", str(out), "--data-dir", str(data), "-j", "2",
                   *extra, timeout=600)


def table(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def by_student(path: Path) -> dict[str, dict[str, str]]:
    rows = table(path)
    return {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def forbid_student_code(monkeypatch) -> None:
    """Any attempt to start a student's process fails the test."""
    from grader import grading
    from grader.sandbox import session

    def refuse(*args, **kwargs):
        raise AssertionError("a student process was started")

    monkeypatch.setattr(session.StudentProcess, "__init__", refuse)
    monkeypatch.setattr(grading, "grade", refuse)


def test_canvas_class_batch_rescore_overrides_late_and_export(tmp_path, data, monkeypatch):
    download = lms_class.canvas(tmp_path / "canvas")
    rubric = lms_class.rubric(tmp_path / "tiny.yaml", late=lms_class.LATE_POLICY)
    out = tmp_path / "out"
    first = grade(download, rubric, out, data)
    assert first.returncode == 0, first.stdout + first.stderr
    grades = by_student(out / "grades.csv")
    assert table(out / "grades.csv")[0] == ["student", "name", "shape", "params", "challenge", "late_penalty", "total"]
    assert [grades["1234"][k] for k in ("shape", "params", "challenge", "late_penalty", "total")] == \
        ["4", "6", "10", "", "20"]
    # John: Canvas marked him late; his files' times say 2.5 days: 3 started days x 10%
    assert [grades["2345"][k] for k in ("late_penalty", "total")] == ["-6", "14"]
    assert grades["3456"]["total"] == "0"
    john = (out / "students" / "2345" / "feedback.md").read_text()
    assert "**Score: 14 / 20**" in john and "Late penalty: -6 (submitted 2.5 days after the deadline" in john
    assert "3 days x 10% = 30% of the points" in john
    # What produced it, in every student output; the leaderboard in results.json and the terminal.
    jane = json.loads((out / "students" / "1234" / "results.json").read_text())
    assert jane["score"] == 20
    board = {e["name"]: e for e in jane["leaderboard"]}
    assert board["Parameters"] == {"name": "Parameters", "value": lms_class.PARAMS, "order": "asc"}
    assert 0 < board["Accuracy"]["value"] <= 100
    graded_with = jane["extra_data"]["provenance"]["graded"]
    assert graded_with["rubric"]["path"] == str(rubric) and len(graded_with["rubric"]["sha256"]) == 64
    assert {"grader", "torch", "python", "device"} <= set(graded_with)
    assert "*Graded with rubric " in (out / "students" / "1234" / "feedback.md").read_text()
    assert "Leaderboard: challenge" in first.stdout and "162 params" in first.stdout
    assert "## Leaderboard: challenge" in (out / "summary.md").read_text()
    measured = json.loads((out / "students" / "1234" / "record.json").read_text())["measured"]
    assert set(measured) == {"shape", "params", "challenge"}
    assert "accuracy" in measured["challenge"]["result"]["extra"]

    # A change of points and threshold: rescored from the records, no student code run.
    lms_class.rubric(rubric, shape_points=8, threshold=0.99, late=lms_class.LATE_POLICY)
    with monkeypatch.context() as m:
        forbid_student_code(m)
        result = rescore.run(out)
    assert result.stale == {}
    grades = by_student(out / "grades.csv")
    assert [grades["1234"][k] for k in ("shape", "params", "challenge", "total")] == ["8", "6", "0", "14"]
    assert grades["2345"]["total"] == "9.8" and grades["2345"]["late_penalty"] == "-4.2"
    jane = (out / "students" / "1234" / "feedback.md").read_text()
    assert "**Score: 14 / 24**" in jane and "< 99%" in jane
    # ...and the same from the command line, exit 0
    again = run_cli("rescore", str(out))
    assert again.returncode == 0, again.stderr
    assert "rescored 3 students" in again.stdout

    # A change of a check itself: named, left for grader batch (exit 3), which plans to regrade it.
    changed = rubric.read_text().replace("inputs: [[2, 3, 32, 32]]", "inputs: [[1, 3, 32, 32]]")
    changed_rubric = tmp_path / "changed.yaml"
    changed_rubric.write_text(changed.replace("expected: [2, 10]", "expected: [1, 10]"))
    stale = run_cli("rescore", str(out), "--rubric", str(changed_rubric))
    assert stale.returncode == rescore.EXIT_STALE, stale.stdout + stale.stderr
    assert "check changed: shape (3 students): run grader batch" in stale.stderr
    assert "## Checks changed since grading" in (out / "summary.md").read_text()
    config = batch.BatchConfig(submissions=download, rubric=changed_rubric, out=out,
                               options=Options(data_dir=str(data)))
    assert len(batch.plan(config).jobs) == 3
    config.rubric = rubric  # a change of points only: nobody to regrade
    assert len(batch.plan(config).jobs) == 0
    assert run_cli("rescore", str(out), "--rubric", str(rubric)).returncode == 0  # the rubric it scores with from now on

    # Overrides: on top of the records, shown to the student and in grades.csv, kept by batch reruns.
    (out / "overrides.yaml").write_text(
        "- student: '3456'\n  item: params\n  points: 5\n  reason: counted by hand\n  by: TA Kim\n"
        "- student: '2345'\n  delta: 1.2\n  reason: illness, documented\n  by: Prof. Park\n")
    adjusted = run_cli("rescore", str(out))
    assert adjusted.returncode == 0, adjusted.stderr
    assert "adjusted: 2 overrides from overrides.yaml applied" in adjusted.stdout
    assert "late: 1 student lost points to the late policy" in adjusted.stdout
    grades = by_student(out / "grades.csv")
    assert grades["3456"]["params"] == "5" and grades["3456"]["total"] == "5"
    assert grades["2345"]["total"] == "11"
    assert "Adjusted by TA Kim: set to 5, was 0 (counted by hand)" in grades["3456"]["adjusted"]
    ana = (out / "students" / "3456" / "feedback.md").read_text()
    assert "params: Adjusted by TA Kim: set to 5, was 0 (counted by hand)" in ana and "**Score: 5 / 24**" in ana
    assert "Total: Adjusted by Prof. Park: +1.2 (illness, documented)" in \
        (out / "students" / "2345" / "feedback.md").read_text()
    rerun = grade(download, rubric, out, data)
    assert rerun.returncode == 0 and "grading 0, 3 unchanged" in rerun.stdout, rerun.stdout + rerun.stderr
    assert by_student(out / "grades.csv") == grades

    # A wrong override names its line.
    (out / "overrides.yaml").write_text("- student: '3456'\n  item: params\n  points: 5\n  reason: ok\n"
                                        "- student: '9999'\n  item: nope\n  delta: 1\n")
    wrong = run_cli("rescore", str(out))
    assert wrong.returncode == 2
    assert "overrides.yaml:5: no student '9999' in this class" in wrong.stderr
    assert "overrides.yaml:5: no item 'nope' in the rubric" in wrong.stderr
    assert "overrides.yaml:5: `reason` is missing" in wrong.stderr
    (out / "overrides.yaml").unlink()

    # One item of one student regraded: Ana fixes her code; her other items are kept.
    fixed = download / "leeana_3456_7890_net.py"
    before = fixed.stat().st_mtime
    fixed.write_text(lms_class.NET)
    os.utime(fixed, (before, before))  # handed in on time (a new file time would be months late)
    one = grade(download, rubric, out, data, "--student", "3456", "--items", "shape")
    assert one.returncode == 0, one.stdout + one.stderr
    assert "grading 1" in one.stdout
    grades = by_student(out / "grades.csv")
    assert table(out / "grades.csv")[0][2:5] == ["shape", "params", "challenge"]
    assert [grades["3456"][k] for k in ("shape", "params", "challenge", "total")] == ["8", "0", "0", "8"]
    assert grades["1234"]["total"] == "14"
    assert set(json.loads((out / "students" / "3456" / "record.json").read_text())["measured"]) == \
        {"shape", "params", "challenge"}

    # The Canvas gradebook file.
    done = run_cli("export", str(out), "--to", "canvas", "--assignment", "Tiny CNN (4242)")
    assert done.returncode == 0, done.stderr
    path = out / "exports" / "canvas.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfStudent,ID,SIS User ID,SIS Login ID,Section,Tiny CNN (4242)\r\n")
    rows = table(path)
    assert rows[1] == ["    Points Possible", "", "", "", "", "24"]
    assert rows[2:] == [["doejane", "1234", "", "", "", "14"], ["smithjohn", "2345", "", "", "", "9.8"],
                        ["leeana", "3456", "", "", "", "8"]]
    # rescore writes the exports again
    (out / "overrides.yaml").write_text("- {student: '1234', delta: -1, reason: late pages, by: TA Kim}\n")
    assert run_cli("rescore", str(out)).returncode == 0
    assert table(path)[2] == ["doejane", "1234", "", "", "", "13"]


def test_moodle_class_exports_the_grading_worksheet(tmp_path, data):
    download = lms_class.moodle(tmp_path / "moodle")
    rubric = lms_class.rubric(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    done = grade(download, rubric, out, data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert table(out / "grades.csv")[0] == ["student", "name", "shape", "params", "challenge", "total"]
    exported = run_cli("export", str(out), "--to", "moodle", "-o", str(tmp_path / "moodle.csv"))
    assert exported.returncode == 0, exported.stderr
    raw = (tmp_path / "moodle.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    rows = table(tmp_path / "moodle.csv")
    assert rows[0] == ["Identifier", "Full name", "Email address", "Grade", "Maximum Grade", "Feedback comments"]
    assert rows[1][:5] == ["Participant 1001", "Kim Minji", "", "20", "20"]
    assert rows[2][:5] == ["Participant 1002", "Lee Jun", "", "0", "20"]
    assert "Lost points: Output shape: 0/4" in rows[2][5]
    # Canvas needs Canvas ids or SIS ids: a Moodle class without a roster of them is refused, saying why
    refused = run_cli("export", str(out), "--to", "canvas")
    assert refused.returncode == 2 and "Canvas matches students by its user ID or SIS ids" in refused.stderr


def test_gradescope_class_late_from_metadata_and_its_upload_file(tmp_path, data):
    download = lms_class.gradescope(tmp_path / "gs")
    rubric = lms_class.rubric(tmp_path / "tiny.yaml", late=lms_class.LATE_POLICY)
    out = tmp_path / "out"
    done = grade(download, rubric, out, data)
    assert done.returncode == 0, done.stdout + done.stderr
    grades = by_student(out / "grades.csv")
    assert grades["2024001"]["late_penalty"] == "-2" and grades["2024001"]["total"] == "18"  # 61 min late: 1 day
    exported = run_cli("export", str(out), "--to", "gradescope")
    assert exported.returncode == 0, exported.stderr
    rows = table(out / "exports" / "gradescope.csv")
    assert rows == [["Name", "SID", "Email", "Score"], ["Ada Lovelace", "2024001", "ada@example.edu", "18"],
                    ["Alan Turing", "2024002", "alan@example.edu", "0"]]
    # a roster adds who handed in nothing: the generic CSV tells them from a real zero
    roster = tmp_path / "roster.csv"
    roster.write_text("Name,SID,Email,Section\nAda Lovelace,2024001,ada@example.edu,A\n"
                      "Alan Turing,2024002,alan@example.edu,B\nGrace Hopper,2024003,grace@example.edu,A\n")
    exported = run_cli("export", str(out), "--to", "csv", "--roster", str(roster), "-o", str(tmp_path / "all.csv"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "all.csv").read_bytes().startswith(b"\xef\xbb\xbfstudent,name,email,sis_user_id,section,status")
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO((tmp_path / "all.csv").read_text(encoding="utf-8-sig")))}
    assert (rows["Ada Lovelace"]["status"], rows["Ada Lovelace"]["score"], rows["Ada Lovelace"]["section"]) == \
        ("graded", "18", "A")
    assert (rows["Alan Turing"]["status"], rows["Alan Turing"]["score"]) == ("graded", "0")
    assert (rows["Grace Hopper"]["status"], rows["Grace Hopper"]["score"]) == ("missing", "")
