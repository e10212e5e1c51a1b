"""Issue 17, point 2: hard limits on what a student's code writes, starts and allocates.
Each attack fails its own item with the one message for its limit, the same whichever
mechanism stopped it (a cgroup's counter, a resource limit, a full tmpfs); the host's disk
and task count stay untouched, and an honest classmate graded next is graded as alone."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from grader.sandbox import boundary, cgroups
from grader.sandbox.session import Limits, StudentFailure, StudentProcess, isolated
from tests.conftest import run_cli
from tests.hostile.test_fresh_state import ATTACKS
from tests.processes import descendants
from tests.test_boundary import a_classmate_is_graded_right

pytestmark = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]}")


def hostile(tmp_path: Path, **limits) -> StudentProcess:
    folder = tmp_path / "hostile"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "attacks.py").write_text(ATTACKS.read_text())
    return StudentProcess({"attacks.py": folder / "attacks.py"}, Limits(timeout_s=60, **limits))


def failure_of(process: StudentProcess, name: str, *args) -> StudentFailure:
    with pytest.raises(StudentFailure) as caught:
        process.call("call", file="attacks.py", name=name, args=list(args))
    return caught.value


@pytest.fixture(params=["cgroup", "resource limits"])
def mechanism(request, monkeypatch):
    """Both ways a sandbox is bounded: with its cgroup, and with resource limits alone."""
    boundary._close_idle()  # a warm sandbox made the other way is not reused
    if request.param == "cgroup":
        if cgroups.create() is None:
            pytest.skip("no cgroup can be made here")
    else:
        monkeypatch.setattr(cgroups, "create", lambda: None)
    yield request.param
    boundary._close_idle()


def _host_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


@pytest.mark.parametrize("where", ["/submission", "/tmp", "/dev/shm"])
def test_a_disk_filler_fails_its_item_and_never_reaches_the_host_disk(tmp_path, where):
    with hostile(tmp_path, disk_mb=32) as process:
        process.call("load", file="attacks.py")
        workdir = process._child.sandbox.workdir  # the host folder behind the handed-in files
        before = _host_size(workdir)
        with _Peak(lambda: _host_size(workdir)) as host:
            failure = failure_of(process, "fill_disk", where)
        if where == "/tmp" and failure.kind != "disk":  # where Landlock keeps /tmp read-only
            assert "PermissionError" in failure.message, failure.message
        else:
            assert failure.kind == "disk"
            assert failure.message.startswith("wrote more than 32 MB (/tmp, /dev/shm and its folder together)")
        assert host.peak == before  # sampled while it wrote: not one byte reached the host folder
    a_classmate_is_graded_right(tmp_path)


def test_the_next_operation_after_a_full_disk_has_its_space_back(tmp_path):
    with hostile(tmp_path, disk_mb=32) as process:
        assert failure_of(process, "fill_disk", "/submission").kind == "disk"
        assert failure_of(process, "fill_disk", "/dev/shm").kind == "disk"  # a fresh tmpfs, full again
        assert process.call("call", file="attacks.py", name="find_ipc")["tensor"].tolist() == [0.0] * 5


def _tasks() -> int:
    count = 0
    for pid in descendants(os.getpid()):
        try:
            count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return count


class _Peak:
    """The largest value `measure` gave while the block ran (sampled every 50 ms)."""

    def __init__(self, measure):
        self.measure, self.peak, self._stop = measure, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("bomb", ["fork_bomb", "thread_bomb"])
def test_fork_and_thread_bombs_are_stopped_at_the_process_limit(tmp_path, mechanism, bomb):
    with hostile(tmp_path, processes=64) as process:
        process.call("load", file="attacks.py")
        baseline = _Peak(_tasks)
        with baseline:
            time.sleep(0.3)
        with _Peak(_tasks) as watch:
            failure = failure_of(process, bomb)
    assert failure.kind == "processes", failure.message
    assert failure.message.startswith("started more than 64 processes (threads count as processes)")
    assert watch.peak <= baseline.peak + 64 + 8  # 3,000 asked for; the grader's own threads vary a little
    deadline = time.monotonic() + 10
    while _tasks() > baseline.peak + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tasks() <= baseline.peak + 4  # every process and thread of the bomb ended with it
    a_classmate_is_graded_right(tmp_path)


def test_a_memory_hog_of_several_processes_gets_the_memory_message(tmp_path, mechanism):
    if mechanism != "cgroup":
        pytest.skip("resource limits bound each process, not the sandbox: the single allocation test covers them")
    with hostile(tmp_path, memory_mb=256) as process:
        failure = failure_of(process, "memory_hog", 100, 4)  # 4 x 100 MB, each under the per-process limit
    assert failure.kind == "memory"
    assert failure.message.startswith("used more than 256 MB of memory")
    a_classmate_is_graded_right(tmp_path)


def test_one_large_allocation_gets_the_same_memory_message(tmp_path):
    with hostile(tmp_path, memory_mb=256) as process:
        failure = failure_of(process, "big_allocation", 1024)
        assert failure.kind == "memory"
        assert failure.message.startswith("used more than 256 MB of memory")
        assert process.call("call", file="attacks.py", name="big_allocation", args=[16])["tensor"].tolist() \
            == [float(16 << 18)]  # the next operation runs normally
    a_classmate_is_graded_right(tmp_path)


BOMB_RUBRIC = textwrap.dedent("""
    assignment: bombs
    files: [net.py]
    limits: {{processes: {processes}}}
    items:
      - {{id: bomb.params, points: 5, check: param_count, target: {{file: net.py, name: Bomb}}, expected: 112,
         limits: {{processes: 32}}}}
      - {{id: net.params, points: 5, check: param_count, target: {{file: net.py, name: Net}}, expected: 112}}
""")
BOMB = textwrap.dedent("""
    import os
    import time
    import torch.nn as nn


    class Bomb(nn.Module):
        def __init__(self):
            super().__init__()
            import grader.sandbox.guard as guard
            guard._policy = None  # the audit hook would refuse fork: the limits alone are tested
            for _ in range(500):
                try:
                    if os.fork() == 0:
                        time.sleep(60)
                        os._exit(0)
                except OSError:
                    break
            self.conv = nn.Conv2d(3, 4, 3)


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
""")


def test_an_items_own_limit_applies_to_it_alone(tmp_path):
    (tmp_path / "rubric.yaml").write_text(BOMB_RUBRIC.format(processes=256))
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "net.py").write_text(BOMB)
    done = run_cli("check", str(tmp_path / "student"), "--rubric", str(tmp_path / "rubric.yaml"), timeout=300)
    lines = done.stdout.splitlines()
    bomb = next(line for line in lines if "bomb.params" in line)
    net = next(line for line in lines if "net.params" in line)
    assert bomb.startswith("FAIL") and "started more than 32 processes" in bomb, done.stdout
    assert net.startswith("PASS"), done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_limit_too_small_for_any_python_process_is_refused_with_its_line(tmp_path):
    (tmp_path / "rubric.yaml").write_text(BOMB_RUBRIC.format(processes=2))
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "net.py").write_text(BOMB)
    done = run_cli("check", str(tmp_path / "student"), "--rubric", str(tmp_path / "rubric.yaml"), timeout=120)
    assert done.returncode != 0
    assert "rubric.yaml:4: limits.processes: 2 is too small: it must be at least 8" in done.stderr
    assert "Traceback" not in done.stderr


def test_cpu_time_and_open_files_have_their_own_messages(tmp_path):
    with hostile(tmp_path, cpu_s=2, open_files=128) as process:
        spun = failure_of(process, "spin", 30)
        assert spun.kind == "cpu" and spun.message.startswith("used more than 2 s of CPU time"), spun.message
        hoarded = failure_of(process, "hoard_files")
        assert hoarded.kind == "files" and hoarded.message.startswith("opened more than 128 files at once")
        assert process.call("call", file="attacks.py", name="spin", args=[0.1])["tensor"].tolist() == [0.0]
