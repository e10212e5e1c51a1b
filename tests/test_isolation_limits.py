"""The isolation `grader check` and `grader batch` share: endless loops reported as such
(with the line) through the CLI, the per-submission time limit, processes that never
outlive the grader, and folders a student may never read."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.sandbox.session import Limits, StudentFailure, StudentProcess
from tests.cnn_class import LOOP, REFERENCE, RESNET_FILE, at_import, in_block_forward
from tests.conftest import ROOT, RUBRICS, run_cli
from tests.processes import descendants, wait_gone


def submission(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "submission"
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / RESNET_FILE).write_text(edit((REFERENCE / RESNET_FILE).read_text()))
    return folder


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def check(folder: Path, *args: str, checkpoints: Path, data: Path):
    return run_cli("check", str(folder), "--rubric", str(RUBRICS / "cnn_architecture.yaml"), "-c", str(checkpoints),
                   "--data-dir", str(data), *args, timeout=300)


def test_check_reports_an_endless_loop_at_import_with_its_line(tmp_path, cnn_checkpoints, labelled_by_vgg):
    folder = submission(tmp_path, at_import(LOOP))
    result = check(folder, "--items", "residual_block.plain,vgg16.accuracy", "--item-timeout", "2",
                   checkpoints=cnn_checkpoints, data=labelled_by_vgg)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "did not finish within 2 s while importing resnet50_skeleton.py (an endless loop?)" in out
    assert "resnet50_skeleton.py:2" in out and "while True:" in out
    # the other file's item is graded as usual
    vgg = next(line for line in out.splitlines() if "vgg16.accuracy" in line)
    assert vgg.startswith("PASS") and "100.00%" in vgg


def test_check_reports_an_endless_loop_in_forward(tmp_path, cnn_checkpoints, labelled_by_vgg):
    folder = submission(tmp_path, in_block_forward(LOOP))
    result = check(folder, "--items", "residual_block.plain,resnet50_layer4.blanks", "--item-timeout", "2",
                   checkpoints=cnn_checkpoints, data=labelled_by_vgg)
    assert result.returncode == 1
    plain = next(line for line in result.stdout.splitlines() if "residual_block.plain" in line)
    assert plain.startswith("FAIL") and "did not finish within 2 s while running forward (an endless loop?)" in plain
    line = _line_of(folder / RESNET_FILE, LOOP)
    assert f"resnet50_skeleton.py:{line}" in plain  # the loop's line, inside ResidualBlock.forward
    blanks = next(line for line in result.stdout.splitlines() if "resnet50_layer4.blanks" in line)
    assert blanks.startswith("PASS")  # built, never run: the loop costs nothing here


def test_the_whole_submission_has_a_time_limit(tmp_path, cnn_checkpoints, labelled_by_vgg):
    folder = submission(tmp_path, in_block_forward(LOOP))
    started = time.monotonic()
    result = check(folder, "--items", "residual_block.downsample,residual_block.plain", "--timeout", "4",
                   "--item-timeout", "60", checkpoints=cnn_checkpoints, data=labelled_by_vgg)
    assert time.monotonic() - started < 40
    lines = result.stdout.splitlines()
    first = next(line for line in lines if "residual_block.downsample" in line)
    second = next(line for line in lines if "residual_block.plain" in line)
    assert "the submission used up its 4 s limit while running forward" in first
    assert "used up its 4 s" in second


def test_killing_the_grader_ends_the_students_process(tmp_path, cnn_checkpoints, labelled_by_vgg):
    folder = submission(tmp_path, at_import(LOOP))
    proc = subprocess.Popen([sys.executable, "-m", "grader", "check", str(folder), "--rubric",
                             str(RUBRICS / "cnn_architecture.yaml"), "--items", "residual_block.plain",
                             "--item-timeout", "120"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        family: set[int] = set()
        while time.monotonic() < deadline and len(family) < 3:  # fork server, resource tracker, student
            time.sleep(0.5)
            family = descendants(proc.pid)
        assert len(family) >= 3, family
        time.sleep(1)  # the student's process is now inside its endless loop
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    wait_gone(family, seconds=20)


def test_private_folders_stay_private_even_inside_a_readable_one(tmp_path):
    shared = tmp_path / "shared"
    (shared / "secret").mkdir(parents=True)
    (shared / "public.txt").write_text("fine")
    (shared / "secret" / "answers.txt").write_text("42")
    granted = shared / "secret" / "granted.ckpt"
    granted.write_text("mine")
    code = tmp_path / "reader.py"
    code.write_text("def read(path):\n    return open(path).read()\n")
    with StudentProcess({"reader.py": code}, Limits(timeout_s=30), readable=[str(shared), str(granted)],
                        private=[str(shared / "secret")]) as student:
        def read(path: Path):
            return student.call("call", file="reader.py", name="read", args=[str(path)])

        with pytest.raises(StudentFailure) as refused:
            read(shared / "secret" / "answers.txt")
        assert refused.value.kind == "violation" and "answers.txt" in refused.value.message
        # a file granted explicitly stays readable; a read that returns text is not a tensor (an
        # ordinary failure of the call, not a refusal)
        with pytest.raises(StudentFailure) as not_a_tensor:
            read(granted)
        assert not_a_tensor.value.kind == "exception" and "str, not a tensor" in not_a_tensor.value.message
        with pytest.raises(StudentFailure) as public:
            read(shared / "public.txt")
        assert public.value.kind == "exception"
