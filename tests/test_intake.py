"""Finding each student in what an instructor downloads, and unpacking zips safely."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from grader.batch import intake, unpack
from grader.batch.unpack import UnpackLimits, UnpackRefused

EXPECTED = ["main.py", "vgg16_full.py", "resnet50_skeleton.py", "resnet50_epoch285.ckpt"]


def write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_zip(path: Path, members: dict[str, bytes | str], links: dict[str, str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in dict(links).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def find(root: Path, tmp: Path, **kw) -> dict[str, intake.Submission]:
    found = intake.find(root, EXPECTED, tmp / "state", **kw)
    return {s.id: s for s in found.submissions}, found


def files_of(sub: intake.Submission) -> dict[str, str]:
    return {p.relative_to(sub.folder).as_posix(): p.read_text() for p in sorted(sub.folder.rglob("*")) if p.is_file()}


def test_one_folder_or_zip_per_student(tmp_path):
    root = tmp_path / "class"
    write(root / "alice" / "resnet50_skeleton.py", "alice\n")
    make_zip(root / "bob.zip", {"hw1/resnet50_skeleton.py": "bob\n", "hw1/main.py": "m\n",
                                "__MACOSX/hw1/._main.py": "junk"})
    write(root / ".DS_Store")
    subs, found = find(root, tmp_path)
    assert sorted(subs) == ["alice", "bob"]
    assert subs["alice"].folder == root / "alice"  # graded in place, never copied
    assert files_of(subs["bob"]) == {"main.py": "m\n", "resnet50_skeleton.py": "bob\n"}
    assert "graded the files in hw1/" in subs["bob"].notes
    assert found.layout == "one folder per student + one zip per student"


def test_moodle_download_flat_and_in_folders(tmp_path):
    root = tmp_path / "moodle"
    write(root / "Kim Minji_1001_assignsubmission_file_resnet50_skeleton.py", "kim\n")
    write(root / "Kim Minji_1001_assignsubmission_file_main.py", "kim main\n")
    write(root / "Kim Minji_1001_assignsubmission_onlinetext_onlinetext.html", "<p>hi</p>")
    write(root / "Lee Jun_1002_assignsubmission_file_" / "resnet50_skeleton.py", "lee\n")
    make_zip(root / "Park Ara_1003_assignsubmission_file_hw.zip", {"resnet50_skeleton.py": "park\n"})
    subs, found = find(root, tmp_path)
    assert sorted(subs) == ["1001", "1002", "1003"]
    assert [subs[k].name for k in ("1001", "1002", "1003")] == ["Kim Minji", "Lee Jun", "Park Ara"]
    assert files_of(subs["1001"])["resnet50_skeleton.py"] == "kim\n"
    assert files_of(subs["1001"])["main.py"] == "kim main\n"
    assert files_of(subs["1002"]) == {"resnet50_skeleton.py": "lee\n"}
    assert files_of(subs["1003"]) == {"resnet50_skeleton.py": "park\n"}
    assert found.layout == "Moodle download"


def test_canvas_download_with_late_and_resubmitted_names(tmp_path):
    root = tmp_path / "canvas"
    write(root / "doejane_12345_678_resnet50_skeleton-1.py", "jane v2\n")
    write(root / "doejane_12345_678_main.py", "m\n")
    write(root / "smithjohn_LATE_23456_789_resnet50_skeleton.py", "john\n")
    subs, _ = find(root, tmp_path)
    assert sorted(subs) == ["12345", "23456"]
    assert files_of(subs["12345"]) == {"main.py": "m\n", "resnet50_skeleton.py": "jane v2\n"}
    assert any("renamed resnet50_skeleton-1.py to resnet50_skeleton.py" in n for n in subs["12345"].notes)
    assert subs["23456"].name == "smithjohn (late)"
    # the instructor's download is untouched
    assert (root / "doejane_12345_678_resnet50_skeleton-1.py").read_text() == "jane v2\n"


def test_blackboard_download_keeps_the_latest_attempt(tmp_path):
    root = tmp_path / "bb"
    write(root / "HW1_jdoe_attempt_2024-03-01-10-00-00.txt", "Name: Jane Doe (jdoe)\nAssignment: HW1\n")
    write(root / "HW1_jdoe_attempt_2024-03-01-10-00-00_resnet50_skeleton.py", "first\n")
    write(root / "HW1_jdoe_attempt_2024-03-02-09-30-00_resnet50_skeleton.py", "second\n")
    write(root / "HW1_asmith_attempt_2024-03-01-11-00-00_resnet50_skeleton.py", "smith\n")
    subs, _ = find(root, tmp_path)
    assert sorted(subs) == ["asmith", "jdoe"]
    assert subs["jdoe"].name == "Jane Doe"
    assert files_of(subs["jdoe"]) == {"resnet50_skeleton.py": "second\n"}
    assert "graded the latest of 2 attempts (2024-03-02-09-30-00)" in subs["jdoe"].notes


def test_gradescope_export_names_students(tmp_path):
    root = tmp_path / "gs"
    write(root / "submission_111" / "resnet50_skeleton.py")
    write(root / "submission_metadata.yml",
          "submission_111:\n  :submitters:\n  - :name: Ada Lovelace\n    :sid: '2024001'\n")
    subs, _ = find(root, tmp_path)
    assert list(subs) == ["2024001"]
    assert subs["2024001"].name == "Ada Lovelace"


def test_files_prefixed_with_the_student_and_unknown_files(tmp_path):
    root = tmp_path / "flat"
    write(root / "20231234_resnet50_skeleton.py", "a\n")
    write(root / "20231234-main.py", "b\n")
    write(root / "20235678 resnet50_skeleton.py", "c\n")
    write(root / "notes.txt", "?")
    subs, found = find(root, tmp_path)
    assert sorted(subs) == ["20231234", "20235678"]
    assert files_of(subs["20231234"]) == {"main.py": "b\n", "resnet50_skeleton.py": "a\n"}
    assert found.unassigned == ["notes.txt"]


def test_the_whole_download_as_one_zip(tmp_path):
    buf = {"class/alice/resnet50_skeleton.py": "a\n", "class/bob/resnet50_skeleton.py": "b\n"}
    archive = make_zip(tmp_path / "download.zip", buf)
    subs, _ = find(archive, tmp_path)
    assert sorted(subs) == ["alice", "bob"]


def test_the_output_folder_inside_the_download_is_no_student(tmp_path):
    root = tmp_path / "class"
    write(root / "alice" / "resnet50_skeleton.py")
    write(root / "graded" / "grades.csv", "student,total\n")
    found = intake.find(root, EXPECTED, tmp_path / "state", skip=[root / "graded"])
    assert [s.id for s in found.submissions] == ["alice"]


def test_restaging_only_when_the_upload_changes(tmp_path):
    root = tmp_path / "class"
    make_zip(root / "bob.zip", {"resnet50_skeleton.py": "v1\n"})
    subs, _ = find(root, tmp_path)
    staged = subs["bob"].folder / "resnet50_skeleton.py"
    assert staged.read_text() == "v1\n"
    mtime = staged.stat().st_mtime_ns
    subs, _ = find(root, tmp_path)
    assert (subs["bob"].folder / "resnet50_skeleton.py").stat().st_mtime_ns == mtime
    make_zip(root / "bob.zip", {"resnet50_skeleton.py": "v2\n"})
    os.utime(root / "bob.zip", ns=(mtime + 10**9, mtime + 10**9))
    subs, _ = find(root, tmp_path)
    assert (subs["bob"].folder / "resnet50_skeleton.py").read_text() == "v2\n"


def test_a_refused_zip_is_a_problem_of_that_student_only(tmp_path):
    root = tmp_path / "class"
    (root / "carol.zip").parent.mkdir(parents=True)
    (root / "carol.zip").write_bytes(b"this is not a zip")
    write(root / "dave" / "resnet50_skeleton.py")
    subs, _ = find(root, tmp_path)
    assert "not a readable zip file" in subs["carol"].problem
    assert subs["dave"].problem is None


# -- unpacking ------------------------------------------------------------------------


def test_unpack_refuses_paths_outside_and_links(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"../escape.py": "x", "/abs.py": "x", "C:/win.py": "x",
                                               "ok/../../up.py": "x", "good.py": "fine"},
                       links={"link.py": "/etc/passwd"})
    target = tmp_path / "out"
    target.mkdir()
    done = unpack.unpack(archive, target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == ["good.py"]
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "up.py").exists()
    assert len([n for n in done.notes if "outside the submission folder" in n]) == 4
    assert any("link.py in evil.zip is a symbolic link; links are not followed" in n for n in done.notes)


def test_unpack_counts_real_bytes_not_the_header(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.bin", b"\0" * (3 << 20))
    # Rewrite the declared sizes to lie (a zip bomb announces small files).
    data = bytearray(archive.read_bytes())
    real = (3 << 20).to_bytes(4, "little")
    data = data.replace(real, (10).to_bytes(4, "little"))
    archive.write_bytes(bytes(data))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UnpackRefused):  # refused, whether by the byte count or by the lie itself
        unpack.unpack(archive, target, UnpackLimits(max_bytes=1 << 20))
    assert sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) <= 1 << 20


def test_unpack_caps_declared_size_and_file_count(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.py": "x" * 100 for i in range(20)})
    with pytest.raises(UnpackRefused, match="holds 20 files"):
        unpack.unpack(archive, tmp_path / "a", UnpackLimits(max_files=10))
    with pytest.raises(UnpackRefused, match="unpacks to"):
        unpack.unpack(archive, tmp_path / "b", UnpackLimits(max_bytes=1000))


def test_unpack_never_writes_through_a_hard_link_into_the_download(tmp_path):
    original = write(tmp_path / "download" / "alice" / "resnet50_skeleton.py", "the student's upload\n")
    make_zip(tmp_path / "download" / "alice" / "extra.zip", {"resnet50_skeleton.py": "from the zip\n"})
    subs, _ = find(tmp_path / "download", tmp_path)
    assert files_of(subs["alice"])["resnet50_skeleton.py"] == "from the zip\n"
    assert original.read_text() == "the student's upload\n"


def test_encrypted_zip_is_refused_with_a_reason(tmp_path):
    archive = make_zip(tmp_path / "locked.zip", {"a.py": "x"})
    data = bytearray(archive.read_bytes())
    # set the 'encrypted' flag bit in the local and central headers
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + offset] |= 1
    archive.write_bytes(bytes(data))
    with pytest.raises(UnpackRefused, match="password"):
        unpack.unpack(archive, tmp_path / "out")


def test_planning_one_student_into_a_fresh_output_says_the_others_are_not_graded(tmp_path):
    from grader import batch
    from grader.batch import progress

    root = tmp_path / "class"
    for name in ("alice", "bob", "carol"):
        write(root / name / "resnet50_skeleton.py")
    config = batch.BatchConfig(submissions=root, rubric=Path(__file__).parents[1] / "rubrics" / "cnn_architecture.yaml",
                               out=tmp_path / "out", items=["residual_block.plain"], students=["bob"])
    [line] = progress._plan_lines(batch.plan(config))
    assert "3 students (one folder per student); grading 1, 2 not graded in this run;" in line
