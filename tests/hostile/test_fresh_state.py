"""Issue 17, point 1: every student starts from nothing another student touched.  A
student leaves SysV shared memory, a message queue, a semaphore and keys in its user and
session keyrings; the next student graded in the same warm sandbox finds none of them,
and a skeleton that would copy a classmate's answer from them gets what it gets alone."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import pytest

from grader.sandbox import boundary
from grader.sandbox.session import Limits, StudentProcess, isolated
from tests.conftest import run_cli

ATTACKS = Path(__file__).parent / "limit_attacks.py"

pytestmark = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]}")


def attacker(tmp_path: Path, name: str) -> StudentProcess:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "attacks.py").write_text(ATTACKS.read_text())
    return StudentProcess({"attacks.py": folder / "attacks.py"}, Limits(timeout_s=30))


def call(process: StudentProcess, name: str, *args) -> list[float]:
    return process.call("call", file="attacks.py", name=name, args=list(args))["tensor"].tolist()


def test_ipc_and_keyrings_left_by_one_student_are_gone_for_the_next(tmp_path):
    with attacker(tmp_path, "first") as first:
        assert call(first, "leave_ipc") == [1.0] * 5  # all five were made
        assert call(first, "find_ipc") == [1.0] * 5  # and the same student's process sees them
        sandbox = first._child.sandbox
    with attacker(tmp_path, "second") as second:
        found = call(second, "find_ipc")
        assert second._child.sandbox is sandbox  # the same warm sandbox graded both
    assert found == [0.0] * 5


SKELETON = textwrap.dedent("""
    import ctypes
    import torch.nn as nn


    def _classmates_answer():
        import grader.sandbox.guard as guard
        guard._policy = None  # the audit hook would refuse ctypes: the boundary alone is tested
        libc = ctypes.CDLL(None)
        libc.shmat.restype = ctypes.c_void_p
        shm = libc.shmget(0x5EED17, 0, 0)
        return shm >= 0 and ctypes.string_at(libc.shmat(shm, None, 0), 10) == b"answer:112"


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if not _classmates_answer():
                raise NotImplementedError("TODO: build the layers")
            self.conv = nn.Conv2d(3, 4, 3)
""")
HOSTILE = textwrap.dedent("""
    import torch.nn as nn
    from attacks import leave_ipc


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            leave_ipc()
            self.conv = nn.Conv2d(3, 4, 3)
""")
RUBRIC = textwrap.dedent("""
    assignment: fresh_state
    files: [net.py, attacks.py]
    items:
      - {id: net.params, points: 25, check: param_count, target: {file: net.py, name: Net}, expected: 112}
""")


def _class(root: Path, students: dict[str, str]) -> Path:
    for name, code in students.items():
        (root / name).mkdir(parents=True)
        (root / name / "net.py").write_text(code)
        (root / name / "attacks.py").write_text(ATTACKS.read_text())
    return root


def _points(out: Path) -> dict[str, str]:
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row["total"] for row in csv.DictReader(f)}


def test_a_skeleton_gets_the_same_points_after_a_hostile_classmate_as_alone(tmp_path):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(RUBRIC)
    alone = _class(tmp_path / "alone", {"b_skeleton": SKELETON})
    together = _class(tmp_path / "class", {"a_hostile": HOSTILE, "b_skeleton": SKELETON})
    results = {}
    for name, folder in (("alone", alone), ("together", together)):
        done = run_cli("batch", str(folder), "-r", str(rubric), "-o", str(tmp_path / f"out-{name}"), "--jobs", "1",
                       timeout=600)
        assert done.returncode in (0, 1), done.stderr
        results[name] = _points(tmp_path / f"out-{name}")
    assert results["together"]["a_hostile"] == "25"  # the classmate's own code is right
    assert results["alone"]["b_skeleton"] == "0"
    assert results["together"]["b_skeleton"] == results["alone"]["b_skeleton"]
