"""The student's process: whatever its code does, the grader gets a clear reason and
carries on; nothing escapes its folder, the network or its process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grader.sandbox.session import Limits, StudentFailure, StudentProcess, isolated

GOOD = """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
    def forward(self, x):
        return self.conv(x)
"""

HOSTILE = {
    "loop.py": ("while True:\n    pass\n", "timeout", "did not finish within 3 s while importing loop.py"),
    "exits.py": ("import os\nos._exit(3)\n", "exit", "called os._exit(3)"),
    "kills.py": ("import os\nos.kill(os.getpid(), 9)\n", "exit", "kill its own process"),
    "sysexit.py": ("import sys\nsys.exit(0)\n", "exit", "called sys.exit(0)"),
    "forks.py": ("import os\nwhile True:\n    os.fork()\n", "violation", "start a new process (os.fork)"),
    "spawns.py": ("import subprocess\nsubprocess.run(['true'])\n", "violation", "start a program (subprocess)"),
    "floods.py": ("print('x' * (50 << 20))\n", "output", "printed more than 1 MB"),
    "hogs.py": ("import torch\nx = torch.zeros(5_000_000_000)\n", "memory", "ran out of memory"),
    "writes.py": ("open('../escaped.txt', 'w').write('x')\n", "violation", "outside its own folder"),
    "reads.py": ("open({secret!r}).read()\n", "violation", "outside the submission"),
    "network.py": ("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n", "violation", "network"),
    "patches.py": ("import torch\ntorch.eq = lambda a, b: a == a\n", "tamper", "torch.eq"),
    "patches_method.py": ("import torch\ntorch.Tensor.argmax = lambda self, dim=None: self\n", "tamper",
                          "torch.Tensor.argmax"),
    "ctypes_fork.py": ("import ctypes\nctypes.CDLL(None).fork()\n", "violation", "ctypes"),
    "raises.py": ("def f():\n    return 1 / 0\nf()\n", "exception", "ZeroDivisionError"),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("student")
    secret = tmp_path_factory.mktemp("secret") / "solution.py"
    secret.write_text("ANSWER = 42\n")
    (folder / "good.py").write_text(GOOD)
    for name, (source, _, _) in HOSTILE.items():
        (folder / name).write_text(source.format(secret=str(secret)))
    return folder


@pytest.fixture(scope="module")
def student(workspace):
    files = {p.name: p for p in workspace.iterdir()}
    with StudentProcess(files, Limits(timeout_s=3, memory_mb=1024, output_mb=1), threads=1) as process:
        yield process


def test_builds_and_runs_student_code(student):
    built = student.call("build", file="good.py", name="Net", kwargs={"width": 5})
    assert built["param_count"] == 5 * 3 * 9 + 5
    out = student.call("forward", handle=built["handle"], inputs=[torch.zeros(2, 3, 8, 8)])
    assert tuple(out["tensor"].shape) == (2, 5, 8, 8)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_is_reported_and_the_process_recovers(student, workspace, name):
    _, kind, text = HOSTILE[name]
    with pytest.raises(StudentFailure) as caught:
        student.call("load", file=name)
    if name == "reads.py" and student.sandboxed and caught.value.kind == "exception":
        # The secret lives under this machine's /tmp; inside the sandbox /tmp is the student's own
        # (empty) tmpfs, so the guard lets the read through and the OS finds nothing there.
        assert "No such file or directory" in caught.value.message, caught.value.message
    else:
        assert caught.value.kind == kind, caught.value.message
        assert text in caught.value.message
    # The next operation runs in a working process.
    assert student.call("build", file="good.py", name="Net")["param_count"] > 0
    assert not (workspace.parent / "escaped.txt").exists()


def test_a_failed_import_fails_again_at_once(student):
    with pytest.raises(StudentFailure):
        student.call("load", file="loop.py")
    with pytest.raises(StudentFailure) as again:
        student.call("build", file="loop.py", name="anything", timeout=30)
    assert again.value.kind == "timeout"  # the recorded failure, without waiting another 30 s


def test_isolation_is_reported(student):
    student.call("ping")
    assert set(student.isolation) == {"boundary", "network", "files"} | ({"limits"} if isolated() else set())
    assert student.isolation["network"]
    if isolated():
        assert student.isolation["boundary"].startswith("bubblewrap")


def test_student_sees_a_clean_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "do-not-leak")
    (tmp_path / "env.py").write_text("import os\nKEYS = sorted(os.environ)\nCWD = os.getcwd()\n")
    (tmp_path / "probe.py").write_text(
        "import torch, env\n"
        "def leaked():\n    return torch.tensor([float('GRADER_SECRET_TOKEN' in env.KEYS)])\n")
    with StudentProcess({"env.py": tmp_path / "env.py", "probe.py": tmp_path / "probe.py"}, Limits()) as process:
        out = process.call("call", file="probe.py", name="leaked")
    assert out["tensor"].item() == 0.0
