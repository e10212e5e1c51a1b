"""Issue 17, point 6: the submission time comes only from what the LMS itself writes for that
download, never from a name a student chose.

The attack: an extra upload named `..._attempt_2025-01-01-00-00-00.txt` in a Canvas or Moodle
download was read as a Blackboard attempt time and erased a late penalty.  Each test grades the
lateness the way a batch does (intake, then the download's record of the time, then the
rubric's late policy); the Canvas one runs `grader batch` itself and reads grades.csv."""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from grader.batch import intake, late, submissions
from grader.rubric import load as load_rubric
from tests import lms_class
from tests.conftest import run_cli
from tests.notebooks import tiny_cifar

FAKE_STAMP = "attempt_2025-01-01-00-00-00"  # long before the deadline
DUE = datetime.fromisoformat(lms_class.DEADLINE)


def lateness(root: Path, tmp_path: Path, rubric: Path | None = None) -> dict[str, late.Lateness | None]:
    """Each student's lateness under lms_class's late policy, as a batch computes it."""
    rubric = load_rubric(rubric or lms_class.rubric(tmp_path / "tiny.yaml", late=lms_class.LATE_POLICY))
    found = intake.find(root, ["net.py", "net.pt"], tmp_path / "state")
    return {s.id: late.assess(rubric.late, DUE, submissions.describe(s, found.layout)) for s in found.submissions}


def upload(path: Path, when: datetime, text: str = "notes\n") -> None:
    path.write_text(text)
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_canvas_a_blackboard_stamp_in_an_upload_name_keeps_the_late_penalty(tmp_path):
    root = lms_class.canvas(tmp_path / "canvas")  # John: marked late, files 2.5 days late
    upload(root / f"smithjohn_LATE_2345_6789_{FAKE_STAMP}.txt", DUE + timedelta(days=2, hours=12))
    upload(root / f"smithjohn_LATE_2345_6789_x_{FAKE_STAMP}_net.py", DUE + timedelta(days=2, hours=12))
    john = lateness(root, tmp_path)["2345"]
    assert john is not None and john.percent == 30, john
    assert "(file times (Canvas download))" in john.note and "2025" not in john.note


def test_moodle_a_blackboard_stamp_in_an_upload_name_keeps_the_late_penalty(tmp_path):
    root = lms_class.moodle(tmp_path / "moodle")  # on time: an hour before the deadline
    prefix = "Lee Jun_1002_assignsubmission_file_"
    for name in ("net.py", "net.pt"):  # Lee Jun hands in again, a day and a half late
        os.utime(root / f"{prefix}{name}", ((DUE + timedelta(days=1, hours=12)).timestamp(),) * 2)
    upload(root / f"{prefix}{FAKE_STAMP}.txt", DUE + timedelta(days=1, hours=12))
    times = lateness(root, tmp_path)
    assert times["1001"] is None
    assert times["1002"] is not None and times["1002"].percent == 20, times["1002"]
    assert "(file times (Moodle download))" in times["1002"].note


@pytest.mark.parametrize("lms", ["canvas", "moodle"])
def test_a_download_whose_every_name_carries_a_stamp_is_still_read_as_its_own_lms(tmp_path, lms):
    """One late student, every upload named with a stamp: Blackboard's pattern matches as many
    names as the real LMS's; the real LMS's part ends first, so it is still the real LMS."""
    root = tmp_path / lms
    root.mkdir()
    prefix = "smithjohn_LATE_2345_6789_" if lms == "canvas" else "Smith John_2345_assignsubmission_file_"
    for name in (f"{FAKE_STAMP}_net.py", f"{FAKE_STAMP}_net.pt", f"{FAKE_STAMP}.txt"):
        upload(root / f"{prefix}{name}", DUE + timedelta(days=2, hours=12))
    found = intake.find(root, ["net.py", "net.pt"], tmp_path / "state")
    assert found.layout == f"{lms.capitalize()} download"
    assert [s.id for s in found.submissions] == ["2345"]
    john = lateness(root, tmp_path)["2345"]
    assert john is not None and john.percent == 30 and "file times" in john.note, john


def test_blackboard_a_file_named_like_another_attempt_does_not_change_the_students_time(tmp_path):
    root = tmp_path / "bb"
    root.mkdir()
    for name in ("HW1_alice_attempt_2026-03-01-10-00-00.txt", "HW1_alice_attempt_2026-03-01-10-00-00_net.py"):
        upload(root / name, DUE, "Name: Alice Kim (alice)\n")
    bob = "HW1_bob_attempt_2026-03-03-10-00-00"  # two days late, by Blackboard's own name
    upload(root / f"{bob}.txt", DUE, "Name: Bob Lee (bob)\n")
    upload(root / f"{bob}_net.py", DUE, lms_class.NET)
    # bob's own uploads, named like an earlier attempt and its receipt
    upload(root / f"{bob}_HW1_bob_attempt_2026-02-01-00-00-00_net.py", DUE, "early\n")
    upload(root / f"{bob}_HW1_bob_attempt_2026-02-01-00-00-00.txt", DUE, "Name: Bob Lee (bob)\n")
    found = intake.find(root, ["net.py", "net.pt"], tmp_path / "state")
    subs = {s.id: s for s in found.submissions}
    assert sorted(subs) == ["alice", "bob"]
    assert subs["bob"].notes == []  # one attempt: the look-alikes are files of it
    assert (subs["bob"].folder / "net.py").read_text() == lms_class.NET
    info = submissions.describe(subs["bob"], found.layout)
    assert (info["time"], info["time_source"]) == ("2026-03-03T10:00:00", "Blackboard attempt time")
    bob_late = lateness(root, tmp_path)["bob"]
    assert bob_late is not None and bob_late.submitted.startswith("2026-03-03T10:00:00")
    assert bob_late.percent in (20, 30)  # 2 days and 10 hours, give or take this machine's time zone


def test_a_student_in_a_plain_class_folder_has_no_time_whatever_the_name(tmp_path):
    """Folders made by hand carry no LMS record of the time: never late, never 'on time' by a name."""
    root = tmp_path / "class"
    (root / f"HW1_alice_{FAKE_STAMP}_net").mkdir(parents=True)
    (root / "bob").mkdir()
    for folder in root.iterdir():
        (folder / "net.py").write_text(lms_class.NET)
    found = intake.find(root, ["net.py", "net.pt"], tmp_path / "state")
    assert {s.lms for s in found.submissions} == {None}
    assert all(submissions.describe(s)["time"] is None for s in found.submissions)


def test_grader_batch_keeps_the_late_penalty_of_a_canvas_student_with_a_stamped_upload(tmp_path):
    """End to end: the late student of the Canvas class adds `..._attempt_2025-...txt`; grades.csv
    still takes 3 started days x 10% off John's 20 points."""
    data = tiny_cifar(tmp_path / "tiny-cifar", train_per_class=0)
    root = lms_class.canvas(tmp_path / "canvas")
    (root / "leeana_3456_7890_net.py").unlink()  # two students are enough
    (root / "leeana_3456_7890_net.pt").unlink()
    upload(root / f"smithjohn_LATE_2345_6789_{FAKE_STAMP}.txt", DUE + timedelta(days=2, hours=12))
    rubric = lms_class.rubric(tmp_path / "tiny.yaml", late=lms_class.LATE_POLICY)
    out = tmp_path / "out"
    done = run_cli("batch", str(root), "-r", str(rubric), "-o", str(out), "--data-dir", str(data), "-j", "2",
                   timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = list(csv.DictReader(io.StringIO((out / "grades.csv").read_text(encoding="utf-8-sig"))))
    grades = {r["student"]: r for r in rows}
    assert (grades["2345"]["late_penalty"], grades["2345"]["total"]) == ("-6", "14")
    assert grades["1234"]["late_penalty"] == "" and grades["1234"]["total"] == "20"
    feedback = (out / "students" / "2345" / "feedback.md").read_text()
    assert "submitted 2.5 days after the deadline (file times (Canvas download))" in feedback
