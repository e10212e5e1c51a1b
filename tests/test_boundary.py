"""The OS boundary (bubblewrap): a student's code, with the grader's audit hook switched
off, reaches nothing secret, leaves nothing behind for a classmate, cannot stall or
bloat the grader, and ends with its grading.  See tests/hostile/boundary_attacks.py."""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path

import pytest
import torch

from grader import datasets
from grader.sandbox import boundary
from grader.sandbox.session import Limits, StudentFailure, StudentProcess, isolated
from tests.conftest import REFERENCE, ROOT
from tests.processes import descendants

ATTACKS = Path(__file__).parent / "hostile" / "boundary_attacks.py"
SECRET = "do-not-leak-4f1c"
GOOD = ("import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3)\n    def forward(self, x):\n        return self.conv(x)\n")

pytestmark = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]} "
                                                       "(CI installs bubblewrap, so these run there)")


@pytest.fixture()
def secrets(tmp_path, monkeypatch, private_cache):
    """What the grader's machine holds: an environment secret, labels in the cache, a private folder."""
    monkeypatch.setenv("GRADER_TEST_SECRET", SECRET)
    labels = datasets.cache_root() / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    (labels / "test.npy").write_bytes(b"labels")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "answers.txt").write_text("42")
    return {"labels": labels / "test.npy", "outside": outside}


def student(tmp_path: Path, **kwargs) -> StudentProcess:
    folder = tmp_path / "student"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "attacks.py").write_text(ATTACKS.read_text())
    (folder / "good.py").write_text(GOOD)
    files = {"attacks.py": folder / "attacks.py", "good.py": folder / "good.py"}
    return StudentProcess(files, Limits(timeout_s=kwargs.pop("timeout_s", 20), memory_mb=4096), **kwargs)


def attack(process: StudentProcess, name: str, *args, **kwargs) -> list[float]:
    return process.call("call", file="attacks.py", name=name, args=list(args), **kwargs)["tensor"].tolist()


def a_classmate_is_graded_right(tmp_path: Path) -> None:
    with student(tmp_path / "classmate") as classmate:
        built = classmate.call("build", file="good.py", name="Net")
        assert built["param_count"] == 4 * 3 * 9 + 4
        out = classmate.call("forward", handle=built["handle"], inputs=[torch.zeros(1, 3, 8, 8)])
        assert tuple(out["tensor"].shape) == (1, 4, 6, 6)


def test_the_grader_environment_and_processes_are_invisible(tmp_path, secrets):
    with student(tmp_path) as process:
        assert attack(process, "secret_in_environ") == [0.0]
        # bubblewrap's init, the warm process and this one: no grader process, no classmate
        assert attack(process, "visible_processes")[0] <= 3
        assert process.isolation["boundary"].startswith("bubblewrap")


@pytest.mark.parametrize("what", ["shadow", "reference", "sample", "labels", "outside", "other_root"])
def test_nothing_secret_is_readable(tmp_path, secrets, what):
    path = {"shadow": "/etc/shadow", "reference": str(REFERENCE / "cnn_architecture" / "resnet50_skeleton.py"),
            "sample": str(datasets.SAMPLE_ZIP), "labels": str(secrets["labels"]),
            "outside": str(secrets["outside"] / "answers.txt"), "other_root": "/root/.bashrc"}[what]
    with student(tmp_path, readable=[str(datasets.arrays_dir())]) as process:
        assert attack(process, "can_read", path) == [0.0], path


def test_what_an_item_needs_is_readable_and_nothing_is_writable_outside(tmp_path, secrets):
    arrays = datasets.arrays_dir()
    (arrays / "train.npy").write_bytes(b"images")
    with student(tmp_path, readable=[str(arrays)]) as process:
        assert attack(process, "can_read", str(arrays / "train.npy")) == [1.0]
        assert attack(process, "can_write", str(arrays / "train.npy")) == [0.0]
        assert attack(process, "can_write", str(secrets["outside"] / "new.txt")) == [0.0]
        assert attack(process, "can_write", str(ROOT / "grader" / "evil.py")) == [0.0]
        assert attack(process, "can_write", "/submission/mine.txt") == [1.0]  # its own copy
    assert (arrays / "train.npy").read_bytes() == b"images"
    assert not (secrets["outside"] / "new.txt").exists() and not (ROOT / "grader" / "evil.py").exists()


def test_scratch_folders_are_not_shared_with_the_next_student(tmp_path):
    with student(tmp_path / "a") as first:
        written = attack(first, "leave_marks")
        assert written[0] == 1.0  # /dev/shm, at least
        assert attack(first, "marks_seen") == written
    with student(tmp_path / "b") as second:
        assert attack(second, "marks_seen") == [0.0, 0.0]


def test_no_socket_outside_can_be_reached(tmp_path):
    path = f"/tmp/grader-test-{os.getpid()}.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tcp = socket.socket()
    try:
        unix.bind(path)
        unix.listen()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        tcp.settimeout(0.5)
        with student(tmp_path) as process:
            assert attack(process, "connect_unix", path) == [0.0]
            assert attack(process, "escape_then_connect", tcp.getsockname()[1]) == [0.0]
        with pytest.raises(socket.timeout):
            tcp.accept()  # nobody ever connected
    finally:
        unix.close()
        tcp.close()
        os.unlink(path)


def _sandbox_processes() -> set[int]:
    """Processes of this test's sandboxes, seen from outside."""
    found = set()
    for pid in descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"bwrap"):
                found |= descendants(pid)
        except OSError:
            pass
    return found


def test_a_daemon_ends_with_grading(tmp_path):
    before = _sandbox_processes()
    with student(tmp_path) as process:
        assert attack(process, "start_daemon") == [1.0]
        during = _sandbox_processes() - before
        assert len(during) >= 2  # the student's process and its daemon, at least
    deadline = time.monotonic() + 10
    while _sandbox_processes() & during and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (_sandbox_processes() & during)


def test_the_warm_process_cannot_be_traced_and_its_death_costs_one_item(tmp_path):
    with student(tmp_path / "a") as process:
        assert attack(process, "probe_zygote") == [0.0, 0.0]
        try:
            assert attack(process, "kill_zygote") == [0.0]  # refused (Landlock's signal scope)
        except StudentFailure as killed:  # or done: the student's own process dies with it
            assert killed.kind == "crash", killed.message
        # the same student's next item runs in a new sandbox
        assert process.call("build", file="good.py", name="Net")["param_count"] == 112
    a_classmate_is_graded_right(tmp_path)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_huge_announced_reply_is_refused_at_once(tmp_path):
    with student(tmp_path, timeout_s=30) as process:
        started, rss = time.monotonic(), _rss_mb()
        with pytest.raises(StudentFailure) as refused:
            attack(process, "huge_header")
        assert time.monotonic() - started < 5
        assert "sent a reply larger than expected while calling huge_header" in refused.value.message
        assert _rss_mb() - rss < 100  # nothing of the announced 1 GiB was allocated
        assert process.call("build", file="good.py", name="Net")["param_count"] == 112


def test_a_stalled_reply_fails_within_the_time_limit(tmp_path):
    with student(tmp_path, timeout_s=3) as process:
        started = time.monotonic()
        with pytest.raises(StudentFailure) as stalled:
            attack(process, "stalled_reply")
        assert time.monotonic() - started < 10
        assert stalled.value.kind == "timeout" and "did not finish within 3 s" in stalled.value.message


def test_a_huge_output_tensor_is_bounded(tmp_path):
    with student(tmp_path, timeout_s=60) as process:
        rss = _rss_mb()
        with pytest.raises(StudentFailure) as refused:
            attack(process, "huge_output", max_reply_bytes=1 << 20)
        assert "sent a reply larger than expected" in refused.value.message
        assert _rss_mb() - rss < 100


def test_a_forged_note_is_cleaned_and_stays_out_of_the_report(tmp_path):
    with student(tmp_path) as process:
        attack(process, "forged_note")
        assert process.report_notes == []
        note = next(n for n in process.notes if "PASS" in n)
        assert "\x1b" not in note and "\n" not in note


def test_a_dead_warm_process_costs_only_the_current_item(tmp_path):
    """Where the kernel lets a student signal the warm process (no Landlock scopes), it may die:
    the sandbox is rebuilt and only the running item fails."""
    import signal
    import threading

    with student(tmp_path / "a", timeout_s=60) as process:
        process.call("ping")
        outer = process._child.sandbox._proc.pid
        zygote = min(p for p in descendants(outer) if b"zygote" in Path(f"/proc/{p}/cmdline").read_bytes())
        threading.Timer(1.0, os.kill, (zygote, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(StudentFailure) as failed:
            attack(process, "spin")
        assert failed.value.kind == "crash" and time.monotonic() - started < 15
        assert process.call("build", file="good.py", name="Net")["param_count"] == 112
    a_classmate_is_graded_right(tmp_path)
