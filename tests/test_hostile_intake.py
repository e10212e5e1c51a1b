"""Intake and planning against hostile students: a file name never decides whose work it is,
links are never followed, one student's upload can break only that student's grade, and
text from students cannot draw fake lines in any report."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from rich.console import Console

from grader import batch, grading, notebook, report, safe_text
from grader.batch import duplicates, gradebook, intake, progress
from grader.checks.base import Context, Options
from grader.results import FAILED, GradeReport, ItemResult
from grader.rubric import load as load_rubric
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, run_cli

EXPECTED = ["main.py", "vgg16_full.py", "resnet50_skeleton.py", "resnet50_epoch285.ckpt"]
RESNET = "resnet50_skeleton.py"
FAKE_NAME = "x\n\x1b[32mPASS 100/100 TOTAL\x1b[0m.ipynb"


def write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def subs_of(root: Path, tmp: Path) -> dict[str, intake.Submission]:
    return {s.id: s for s in intake.find(root, EXPECTED, tmp / "state").submissions}


def files_of(sub: intake.Submission) -> dict[str, str]:
    return {p.relative_to(sub.folder).as_posix(): p.read_text() for p in sorted(sub.folder.rglob("*")) if p.is_file()}


# -- a student's own file name never decides whose it is ------------------------------


def test_blackboard_a_file_named_like_a_later_attempt_of_another_student_stays_its_uploaders(tmp_path):
    root = tmp_path / "bb"
    write(root / "HW1_alice_attempt_2024-03-01-10-00-00_resnet50_skeleton.py", "alice's own\n")
    write(root / "HW1_bob_attempt_2024-03-01-11-00-00_resnet50_skeleton.py", "bob's own\n")
    # bob uploads a second file, named to look like a later attempt of alice's
    write(root / "HW1_bob_attempt_2024-03-01-11-00-00_x_alice_attempt_2099-12-31-23-59-59_resnet50_skeleton.py",
          "bob pretending to be alice\n")
    subs = subs_of(root, tmp_path)
    assert sorted(subs) == ["alice", "bob"]
    assert files_of(subs["alice"]) == {RESNET: "alice's own\n"}
    assert subs["alice"].notes == []  # no 'latest of 2 attempts'
    assert files_of(subs["bob"])[RESNET] == "bob's own\n"
    assert "x_alice_attempt_2099-12-31-23-59-59_resnet50_skeleton.py" in files_of(subs["bob"])


def test_blackboard_usernames_with_underscores_and_attempts(tmp_path):
    root = tmp_path / "bb"
    write(root / "Lab_2_john_smith_attempt_2024-03-01-10-00-00_resnet50_skeleton.py", "first\n")
    write(root / "Lab_2_john_smith_attempt_2024-03-02-10-00-00_resnet50_skeleton.py", "second\n")
    write(root / "Lab_2_ada_attempt_2024-03-01-11-00-00_resnet50_skeleton.py", "ada\n")
    subs = subs_of(root, tmp_path)
    assert sorted(subs) == ["ada", "john_smith"]
    assert files_of(subs["john_smith"]) == {RESNET: "second\n"}


def test_canvas_a_file_named_like_another_students_canvas_or_moodle_name_stays_its_uploaders(tmp_path):
    root = tmp_path / "canvas"
    write(root / "alicekim_1001_5001_resnet50_skeleton.py", "alice\n")
    write(root / "boblee_1002_5002_resnet50_skeleton.py", "bob\n")
    write(root / "boblee_1002_5002_alicekim_1001_5003_resnet50_skeleton-1.py", "bob as alice (Canvas)\n")
    write(root / "boblee_1002_5002_x_1001_assignsubmission_file_resnet50_skeleton.py", "bob as alice (Moodle)\n")
    write(root / "boblee_1002_5002_HW_alice_attempt_2099-12-31-23-59-59_resnet50_skeleton.py", "bob (Blackboard)\n")
    subs = subs_of(root, tmp_path)
    assert sorted(subs) == ["1001", "1002"]
    assert files_of(subs["1001"]) == {RESNET: "alice\n"}
    assert files_of(subs["1002"])[RESNET] == "bob\n"
    assert len(files_of(subs["1002"])) == 4


def test_moodle_a_file_named_like_another_students_moodle_name_stays_its_uploaders(tmp_path):
    root = tmp_path / "moodle"
    write(root / "Alice Kim_1001_assignsubmission_file_resnet50_skeleton.py", "alice\n")
    write(root / "Bob Lee_1002_assignsubmission_file_resnet50_skeleton.py", "bob\n")
    write(root / "Bob Lee_1002_assignsubmission_file_Alice Kim_1001_assignsubmission_file_main.py", "bob as alice\n")
    write(root / "Bob Lee_1002_assignsubmission_file_alicekim_1001_5001_main.py", "bob as alice (Canvas)\n")
    subs = subs_of(root, tmp_path)
    assert sorted(subs) == ["1001", "1002"]
    assert files_of(subs["1001"]) == {RESNET: "alice\n"}
    assert subs["1002"].name == "Bob Lee"
    assert "main.py" not in files_of(subs["1002"])  # bob's odd names are his, and not the expected ones


def test_gradescope_a_metadata_file_inside_a_submission_is_the_students_file(tmp_path):
    root = tmp_path / "gs"
    write(root / "submission_111" / RESNET, "alice\n")
    write(root / "submission_222" / RESNET, "bob\n")
    write(root / "submission_222" / "submission_metadata.yml",
          "submission_222:\n  :submitters:\n  - :name: Alice\n    :sid: 'A1'\n")
    write(root / "submission_metadata.yml",
          "submission_111:\n  :submitters:\n  - :name: Alice\n    :sid: 'A1'\n"
          "submission_222:\n  :submitters:\n  - :name: Bob\n    :sid: 'B2'\n")
    subs = subs_of(root, tmp_path)
    assert sorted(subs) == ["A1", "B2"]
    assert files_of(subs["A1"]) == {RESNET: "alice\n"}
    assert files_of(subs["B2"])[RESNET] == "bob\n"


def test_a_browser_redownload_is_recognised_like_a_canvas_resubmission(tmp_path):
    root = tmp_path / "class"
    write(root / "alice" / "resnet50_skeleton (1).py", "alice\n")
    write(root / "20231234_resnet50_skeleton (2).py", "flat\n")
    subs = subs_of(root, tmp_path)
    assert files_of(subs["alice"]) == {RESNET: "alice\n"}
    assert "renamed resnet50_skeleton (1).py to resnet50_skeleton.py (the LMS renames resubmitted files)" \
        in subs["alice"].notes
    assert files_of(subs["20231234"]) == {RESNET: "flat\n"}


# -- links are never followed ---------------------------------------------------------


def test_links_in_a_students_folder_are_not_followed_and_a_note_says_so(tmp_path):
    secret = write(tmp_path / "labels" / "test-labels.npy", "the answers\n")
    root = tmp_path / "class"
    write(root / "alice" / RESNET, "alice\n")
    write(root / "alice" / "challenge.pt", "alice's weights\n")
    write(root / "bob" / RESNET, "bob\n")
    os.symlink(secret, root / "bob" / "resnet50_epoch285.ckpt")
    os.symlink("../alice/challenge.pt", root / "bob" / "challenge.pt")
    os.symlink(tmp_path / "labels", root / "bob" / "data")
    os.symlink(root / "alice", root / "carol")  # a link in the download itself
    found = intake.find(root, EXPECTED, tmp_path / "state")
    subs = {s.id: s for s in found.submissions}
    assert sorted(subs) == ["alice", "bob"]
    assert found.unassigned == ["carol (a symbolic link; links are not followed)"]
    bob = subs["bob"]
    assert files_of(bob) == {RESNET: "bob\n"}
    assert not any(p.is_symlink() for p in bob.folder.rglob("*"))
    assert bob.folder != root / "bob"  # copied without the links, never graded in place
    for name in ("challenge.pt", "data", "resnet50_epoch285.ckpt"):
        assert f"{name} is a symbolic link; links are not followed" in bob.notes
    assert (root / "bob" / "challenge.pt").is_symlink()  # the download is untouched


def test_grading_never_reads_a_checkpoint_through_a_students_link(tmp_path):
    secret = write(tmp_path / "labels.npy", "the answers\n")
    folder = tmp_path / "bob"
    write(folder / RESNET)
    os.symlink(secret, folder / "resnet50_epoch285.ckpt")
    rubric = load_rubric(RUBRICS / "cnn_architecture.yaml")
    items = [i for i in rubric.items if getattr(i, "checkpoint", None) == "resnet50_epoch285.ckpt"]
    assert items
    readable = grading._checkpoint_files(rubric, items, folder, Options())
    assert str(secret) not in readable and str(folder / "resnet50_epoch285.ckpt") not in readable
    context = Context(rubric=rubric, submission=folder, student=None, reference=None, options=Options(),
                      load_data=None)
    assert context.find_checkpoint("resnet50_epoch285.ckpt") != folder / "resnet50_epoch285.ckpt"
    os.symlink(tmp_path, folder / "up")  # a linked folder on the way is not followed either
    assert context.find_checkpoint("up/labels.npy") is None
    files, readable = grading.collect_files(folder)
    assert list(files) == [RESNET] and readable == []
    assert grading._link_notes(folder) == ["resnet50_epoch285.ckpt is a symbolic link; links are not followed",
                                           "up is a symbolic link; links are not followed"]


# -- one student's upload breaks only that student -----------------------------------


def deep_sum(terms: int = 600) -> str:
    return "x = " + "+".join(["1"] * terms) + "\n"


def test_duplicates_survive_code_nested_beyond_pythons_recursion(tmp_path):
    deep = write(tmp_path / "a" / RESNET, deep_sum())
    write(tmp_path / "b" / RESNET, deep_sum())
    nested = write(tmp_path / "c" / "PyTorch.ipynb", "[" * 100_000 + "]" * 100_000)
    assert duplicates.code_fingerprint(deep) is not None
    assert duplicates.code_fingerprint(nested) is not None
    found = duplicates.find({"a": tmp_path / "a", "b": tmp_path / "b", "c": tmp_path / "c"},
                            [RESNET, "PyTorch.ipynb"], {})
    assert [(g.file, g.students) for g in found.groups] == [(RESNET, ["a", "b"])]


def test_a_notebook_nested_too_deeply_is_not_a_readable_notebook(tmp_path):
    nested = tmp_path / "PyTorch.ipynb"
    nested.write_text("{\"cells\": " + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(notebook.NotebookError, match="PyTorch.ipynb is not a readable notebook: its JSON is "
                                                     "nested too deeply"):
        notebook.read_cells(nested)


def test_planning_a_notebook_class_with_hostile_notebooks(tmp_path):
    root = tmp_path / "class"
    shutil.copytree(REFERENCE / "pytorch_basics", root / "alice")
    write(root / "bob" / "PyTorch.ipynb", "{\"cells\": " + "[" * 100_000 + "]" * 100_000 + "}")
    write(root / "carol" / "PyTorch.ipynb", "this is not JSON\n")
    write(root / "dave" / "PyTorch.ipynb", json.dumps({"cells": [7, {"cell_type": "code", "source": [1, None]}]}))
    config = batch.BatchConfig(submissions=root, rubric=RUBRICS / "pytorch_basics.yaml", out=tmp_path / "out")
    plan = batch.plan(config)
    assert sorted(j.student for j in plan.jobs) == ["alice", "bob", "carol", "dave"]
    assert all(j.problem is None for j in plan.jobs)
    assert plan.duplicates.groups == []


def test_a_notebook_class_with_hostile_notebooks_is_graded(tmp_path):
    root = tmp_path / "class"
    shutil.copytree(REFERENCE / "pytorch_basics", root / "alice")
    write(root / "bob" / "PyTorch.ipynb", "{\"cells\": " + "[" * 100_000 + "]" * 100_000 + "}")
    write(root / "carol" / "HW3.ipynb", "this is not JSON\n")
    out = tmp_path / "out"
    done = run_cli("batch", str(root), "-r", str(RUBRICS / "pytorch_basics.yaml"), "-o", str(out), "--items",
                   "three_layer_convnet", "-j", "2", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    grades = rows(out)
    assert grades["alice"][2] == "15" and grades["bob"][2] == "0" and grades["carol"][2] == "0"
    bob = (out / "students" / "bob" / "feedback.md").read_text()
    assert "PyTorch.ipynb is not a readable notebook: its JSON is nested too deeply" in bob
    carol = (out / "students" / "carol" / "feedback.md").read_text()
    assert "is not a readable notebook" in carol


def lying_zip(path: Path, claimed: int = 1 << 30) -> Path:
    """A zip whose one member's header claims `claimed` bytes (it holds a few hundred)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(RESNET, "x = 1\n" * 100)
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 22:local + 26] = struct.pack("<I", claimed)
    data[central + 24:central + 28] = struct.pack("<I", claimed)
    path.write_bytes(bytes(data))
    return path


def rows(out: Path) -> dict[str, list[str]]:
    with open(out / "grades.csv", newline="") as f:
        return {row[0]: row for row in list(csv.reader(f))[1:]}


def test_a_class_where_every_other_student_is_hostile_is_graded(tmp_path):
    """Deep code, links to a classmate's and the grader's files, a lying zip, an empty folder and a
    formula for a name: each of them gets their own verdict; the honest student gets full marks."""
    root = tmp_path / "class"
    shutil.copytree(REFERENCE / "cnn_architecture", root / "alice")
    shutil.copytree(REFERENCE / "cnn_architecture", root / "bob")
    with open(root / "bob" / RESNET, "a") as f:
        f.write("\n" + deep_sum())
    (root / "bob" / "main.py").unlink()
    os.symlink("../alice/main.py", root / "bob" / "main.py")
    os.symlink(RUBRICS / "cnn_architecture.yaml", root / "bob" / "resnet50_epoch285.ckpt")
    lying_zip(root / "carol.zip")
    (root / "dave").mkdir()
    shutil.copytree(SKELETONS / "cnn_architecture", root / "=cmd|' -C calc'!A0")
    out = tmp_path / "out"
    done = run_cli("batch", str(root), "-r", str(RUBRICS / "cnn_architecture.yaml"), "-o", str(out),
                   "--items", "residual_block.plain", "--item-timeout", "60", "--max-unzip-mb", "100", "-j", "2",
                   timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    grades = rows(out)
    assert sorted(grades) == ["'=cmd_' -C calc'!A0", "alice", "bob", "carol", "dave"]
    assert grades["alice"][2] == "20" and grades["bob"][2] == "20"
    assert grades["carol"][2] == "0" and grades["dave"][2] == "0"

    bob = json.loads((out / "students" / "bob" / "record.json").read_text())
    assert "main.py is a symbolic link; links are not followed" in bob["notes"]
    assert "resnet50_epoch285.ckpt is a symbolic link; links are not followed" in bob["notes"]
    bob_feedback = (out / "students" / "bob" / "feedback.md").read_text()
    assert "main.py is a symbolic link; links are not followed" in bob_feedback
    with open(out / "duplicates.csv", newline="") as f:
        shared = [(row["file"], row["student"]) for row in csv.DictReader(f)]
    assert ("main.py", "bob") not in shared and (RESNET, "bob") not in shared

    carol = (out / "students" / "carol" / "feedback.md").read_text()
    assert "carol.zip unpacks to 1.00 GB; at most 100.0 MB are accepted" in carol

    dave_line = next(line for line in done.stdout.splitlines() if "] dave:" in line)
    assert dave_line.count("empty submission") == 1 and "unreadable" not in dave_line
    dave = (out / "students" / "dave" / "feedback.md").read_text()
    assert dave.count("the submission is empty") == 1 and "Your submission holds no files" in dave
    assert "dave: empty submission" in done.stdout or "empty submission (1): dave" in done.stdout


# -- a class that cannot be used at all: one line, exit 2 -----------------------------


def test_an_empty_class_folder_is_a_usage_error(tmp_path):
    (tmp_path / "class").mkdir()
    done = run_cli("batch", str(tmp_path / "class"), "-r", str(RUBRICS / "cnn_architecture.yaml"), "-o",
                   str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'class'} holds no submissions (it is empty): give the folder or .zip with the "
        "students' work"]
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_a_class_folder_with_only_stray_files_names_them(tmp_path):
    write(tmp_path / "class" / "notes.txt")
    with pytest.raises(intake.IntakeError, match=r"none of its 1 files \(notes.txt\) is a student's folder"):
        intake.find(tmp_path / "class", EXPECTED, tmp_path / "state")


def test_an_empty_class_zip_is_named_in_the_refusal(tmp_path):
    zipfile.ZipFile(tmp_path / "class.zip", "w").close()
    with pytest.raises(intake.IntakeError, match=r"class.zip holds no submissions \(it is empty\)"):
        intake.find(tmp_path / "class.zip", EXPECTED, tmp_path / "state")


def test_a_truncated_class_zip_is_refused_in_one_line(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("alice", "bob", "carol"):
            z.writestr(f"{name}/{RESNET}", "x = 1\n" * 2000)
    archive.write_bytes(archive.read_bytes()[:archive.stat().st_size // 2])
    done = run_cli("batch", str(archive), "-r", str(RUBRICS / "cnn_architecture.yaml"), "-o",
                   str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: the class download cannot be used: class.zip is not a readable zip file (File is not a zip "
        "file); download it again"]


# -- text from students is escaped in every report ------------------------------------


def test_safe_text():
    assert safe_text.shown(FAKE_NAME) == "x\\n\\x1b[32mPASS 100/100 TOTAL\\x1b[0m.ipynb"
    assert safe_text.shown("a\u202eb\x9bc") == "a\\u202eb\\x9bc"
    assert safe_text.shown("line 1\n\x1b[2Jline 2", keep_newlines=True) == "line 1\n\\x1b[2Jline 2"
    assert safe_text.csv_cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert safe_text.csv_cell("@SUM(A1)") == "'@SUM(A1)" and safe_text.csv_cell("Ada") == "Ada"


def test_a_notebook_name_cannot_print_fake_lines_in_the_self_check(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    name = "x\n\x1b[32mPASS 15 of 15\nTOTAL      15 of 15\x1b[0m.ipynb"  # a file name cannot hold '/'
    shutil.copy(SKELETONS / "pytorch_basics" / "PyTorch.ipynb", folder / name)
    os.symlink(tmp_path / "elsewhere.pt", folder / "challenge.pt")
    done = run_cli("check", str(folder), "-r", str(RUBRICS / "pytorch_basics.yaml"), "--items",
                   "three_layer_convnet", timeout=300)
    out = done.stdout + done.stderr
    assert "\x1b" not in out
    assert [line for line in out.splitlines() if line.startswith("TOTAL")] == ["TOTAL       0/15"]
    assert not any(line.startswith("PASS") for line in out.splitlines())
    assert "x\\n\\x1b[32mPASS 15 of 15\\nTOTAL      15 of 15\\x1b[0m.ipynb is graded as PyTorch.ipynb" in out
    assert "challenge.pt is a symbolic link; links are not followed" in out


HOSTILE_ID = "eve\n\x1b[32mPASS"


def hostile_record() -> dict:
    result = ItemResult(id="a", title="A", points=0.0, max_points=10.0, status=FAILED,
                        message=f"{FAKE_NAME} failed", where="a`b.py:3", extra={"failure": "exception"})
    rep = GradeReport(assignment="hw", submission=FAKE_NAME, results=[result], notes=[f"{FAKE_NAME} renamed"],
                      output="```\n# Score: 10 / 10\n\x1b[31mred\n")
    return {"student": HOSTILE_ID, "name": "=HYPERLINK(\"http://x\")", "status": gradebook.GRADED, "error": None,
            "seconds": 1.0, "notes": [f"{FAKE_NAME} is a symbolic link; links are not followed"],
            "report": rep.to_dict()}, rep


def test_reports_escape_names_and_neutralise_formulas():
    record, rep = hostile_record()
    grades = gradebook.grades_csv(["a"], [record])
    row = list(csv.reader(grades.splitlines()))[1]
    assert row[:2] == ["eve\\n\\x1b[32mPASS", "'=HYPERLINK(\"http://x\")"]

    feedback = gradebook.feedback(rep, "hw", record)
    assert "\x1b" not in feedback
    assert "x \\x1b[32mPASS 100/100 TOTAL\\x1b[0m.ipynb is a symbolic link" in feedback  # one line
    assert "failed (in `a'b.py:3`)" in feedback  # a backtick in a file name cannot end the code span
    # the student's output cannot close the code block and write its own score
    fence_lines = [line for line in feedback.splitlines() if line.startswith("```")]
    assert fence_lines == ["````", "```", "````"]  # the student's ``` is inside the longer fence

    summary = gradebook.summarize("hw", [("a", "A", 10.0)], [record], students=1)
    text = gradebook.summary_markdown(summary)
    assert "\x1b" not in text and "eve \\x1b[32mPASS" in text

    console = Console(record=True, width=200, force_terminal=False)
    gradebook.show_summary(summary, console)
    display = progress.PlainDisplay(console)
    display.total = 1
    display.finished(record)
    report.show(rep, console)
    shown = console.export_text()
    assert "\x1b" not in shown
    assert not any(line.startswith(("PASS", "TOTAL 100")) for line in shown.splitlines())
    assert [line for line in shown.splitlines() if line.startswith("TOTAL")] == ["TOTAL       0/10"]
