"""The boundary as a user meets it through the `grader` command: a daemon that outlives
nothing, a hang that costs one item's time limit, and plain words where there is no
OS isolation."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from grader.sandbox import boundary
from grader.sandbox.session import isolated
from tests.cnn_class import BLOCK_ITEMS, LOOP, REFERENCE, RESNET_FILE, at_import, in_block_forward
from tests.conftest import RUBRICS, run_cli
from tests.processes import descendants

needs_bwrap = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]} "
                                                        "(CI installs bubblewrap, so these run there)")

DAEMON = """import os as _os, time as _time
import grader.sandbox.guard as _guard
_guard._policy = None
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        while True:
            print("still here", flush=True)
            _time.sleep(0.2)
    _os._exit(0)
"""


def submission(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "submission"
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / RESNET_FILE).write_text(edit((REFERENCE / RESNET_FILE).read_text()))
    return folder


def check(folder: Path, *args: str, checkpoints: Path, data: Path, env: dict | None = None):
    return run_cli("check", str(folder), "--rubric", str(RUBRICS / "cnn_architecture.yaml"), "-c", str(checkpoints),
                   "--data-dir", str(data), *args, timeout=300, env=env)


def _sandboxed_python() -> set[int]:
    """Processes started inside a sandbox of this worktree's grader, anywhere on the machine."""
    marker = f"sys.path.insert(0, {str(Path(boundary.grader_package()).parent)!r})".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                pass
    return found


@needs_bwrap
def test_a_daemon_neither_outlives_check_nor_holds_its_output(tmp_path, cnn_checkpoints, labelled_by_vgg):
    folder = submission(tmp_path, at_import(DAEMON))
    mine = descendants(os.getpid())
    started = time.monotonic()
    result = check(folder, "--items", "residual_block.plain", checkpoints=cnn_checkpoints, data=labelled_by_vgg)
    assert time.monotonic() - started < 120  # the output closed when grading ended
    assert result.returncode == 0, result.stdout + result.stderr
    assert next(line for line in result.stdout.splitlines() if "residual_block.plain" in line).startswith("PASS")
    deadline = time.monotonic() + 10
    while (_sandboxed_python() - mine) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (_sandboxed_python() - mine), "a process of the submission outlived `grader check`"


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def test_a_hang_costs_one_item_timeout_not_one_per_item(tmp_path, cnn_checkpoints, labelled_by_vgg):
    folder = submission(tmp_path, in_block_forward(LOOP))
    started = time.monotonic()
    result = check(folder, "--items", ",".join(BLOCK_ITEMS), "--item-timeout", "20",
                   checkpoints=cnn_checkpoints, data=labelled_by_vgg)
    elapsed = time.monotonic() - started
    line = _line_of(folder / RESNET_FILE, LOOP)
    lines = {item: next(text for text in result.stdout.splitlines() if item in text) for item in BLOCK_ITEMS}
    first, *later = BLOCK_ITEMS
    assert "did not finish within 20 s while running forward (an endless loop?)" in lines[first]
    for item in later:
        assert lines[item].startswith("FAIL")
        assert f"timed out in forward, resnet50_skeleton.py:{line}, during {first}" in lines[item], lines[item]
    # waiting for the hang once per item would take 60 s (plus starting up)
    assert elapsed < 55, f"three items took {elapsed:.0f} s: the hang was waited for more than once"


def test_check_says_plainly_when_there_is_no_os_isolation(tmp_path, cnn_checkpoints, labelled_by_vgg):
    """A self-check (--public: a student's own code) runs with a loud note; grading with the
    instructor's full rubric refuses (tests/hostile/test_fail_closed.py has the rest)."""
    folder = submission(tmp_path, lambda src: src)
    result = check(folder, "--items", "residual_block.plain", "--public",
                   checkpoints=cnn_checkpoints, data=labelled_by_vgg, env={"GRADER_NO_ISOLATION": "1"})
    assert result.returncode == 0, result.stderr
    assert "This code ran WITHOUT OS isolation: GRADER_NO_ISOLATION=1 is set." in result.stdout
    refused = check(folder, "--items", "residual_block.plain",
                    checkpoints=cnn_checkpoints, data=labelled_by_vgg, env={"GRADER_NO_ISOLATION": "1"})
    assert refused.returncode == 2 and "--unsafe-no-isolation" in refused.stderr


def test_batch_refuses_to_grade_a_class_without_isolation(tmp_path):
    (tmp_path / "class" / "alice").mkdir(parents=True)
    result = run_cli("batch", str(tmp_path / "class"), "--rubric", str(RUBRICS / "cnn_architecture.yaml"),
                     "-o", str(tmp_path / "out"), env={"GRADER_NO_ISOLATION": "1"}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot be isolated here" in result.stderr and "--unsafe-no-isolation" in result.stderr
    assert not (tmp_path / "out").exists()


HOSTILE_CLASSMATE = """import os as _os
import grader.sandbox.guard as _guard
_guard._policy = None
for _path in ("/dev/shm/answers", "/tmp/answers", "/submission/../answers"):
    try:
        open(_path, "w").write("20")
    except OSError:
        pass
if _os.fork() == 0:
    _os.setsid()
    while True:
        for _path in ("/dev/shm/answers", "/tmp/answers"):
            try:
                open(_path, "w").write("20")
            except OSError:
                pass
"""

READS_MARKS = """import os as _os
for _path in ("/dev/shm/answers", "/tmp/answers"):
    if _os.path.exists(_path):
        raise SystemExit("found what the classmate left: " + _path)
"""


@needs_bwrap
def test_a_hostile_classmate_changes_nobody_elses_grade(tmp_path, cnn_checkpoints, labelled_by_vgg):
    """Graded one after the other in the same warm sandbox (-j 1): what the first leaves behind
    (files in /tmp and /dev/shm, a daemon still writing them) is gone for the second."""
    download = tmp_path / "class"
    for name, edit in (("aaa_hostile", at_import(HOSTILE_CLASSMATE)), ("bbb_honest", at_import(READS_MARKS))):
        shutil.copytree(REFERENCE, download / name, ignore=shutil.ignore_patterns("__pycache__"))
        (download / name / RESNET_FILE).write_text(edit((REFERENCE / RESNET_FILE).read_text()))
    out = tmp_path / "out"
    result = run_cli("batch", str(download), "-r", str(RUBRICS / "cnn_architecture.yaml"), "-o", str(out),
                     "-c", str(cnn_checkpoints), "--data-dir", str(labelled_by_vgg), "--items",
                     "residual_block.plain", "-j", "1", "--no-reuse", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    grades = (out / "grades.csv").read_text().splitlines()
    assert "bbb_honest,,20,20" in grades, grades  # it found nothing the hostile classmate left
    assert not Path("/dev/shm/answers").exists() and not (tmp_path / "answers").exists()
