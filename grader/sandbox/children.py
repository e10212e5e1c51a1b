"""How a student's process is started, signalled and ended: inside the bubblewrap
sandbox (Linux with bubblewrap), or as a plain child process where there is none."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import types
from dataclasses import asdict
from pathlib import Path

from grader.sandbox import boundary

_PRELOAD = ["torch", "torchvision", "grader.sandbox.worker"]  # torchvision loads native code: before the guard
_context = None
_START_LOCK = threading.Lock()


class SandboxedChild:
    """A process forked by the sandbox's warm process; its files live in the sandbox's folder."""

    def __init__(self, files: dict[str, Path], binds: list[str], device: str, make_config):
        self.sandbox = boundary.lease(tuple(sorted(set(binds))), device)
        self.workdir = boundary.INSIDE
        try:
            _copy_in(files, self.sandbox.workdir, owner=boundary.NOBODY if os.getuid() == 0 else None)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            out_r, out_w = os.pipe()
            try:
                self.pid = self.sandbox.spawn(theirs.fileno(), out_w, asdict(make_config(self.workdir)))
            finally:
                theirs.close()
                os.close(out_w)
        except boundary.SandboxLost:
            self.sandbox.close()
            raise
        self.channel_fd, self.output_fd = ours.detach(), out_r
        self._code: int | None = None

    def alive(self) -> bool:
        return self.exit_code() is None

    def counters(self):
        """The sandbox's cgroup counters (forks refused, OOM kills), or None without a cgroup."""
        return self.sandbox.counters()

    def exit_code(self) -> int | None:
        if self._code is None:
            try:
                self._code = self.sandbox.exit_code(self.pid)
            except boundary.SandboxLost:
                self._code = -signal.SIGKILL
        return self._code

    def signal(self, sig: int) -> None:
        try:
            self.sandbox.signal(self.pid, sig)
        except boundary.SandboxLost:
            pass

    def kill(self) -> None:
        try:
            self.sandbox.signal(-self.pid, signal.SIGKILL)  # it leads its own process group
        except boundary.SandboxLost:
            pass

    def join(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        while self.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        """Every process of the student's ends (the sandbox is reset or torn down)."""
        boundary.give_back(self.sandbox)


class LocalChild:
    """Without the sandbox: a multiprocessing child in a private temporary folder."""

    def __init__(self, files: dict[str, Path], make_config):
        from grader.sandbox.worker import serve

        self._tmp = tempfile.mkdtemp(prefix="grader-")
        self.workdir = os.path.realpath(self._tmp)
        _copy_in(files, self._tmp)
        ctx = context()
        parent, child = ctx.Pipe(duplex=True)
        out_reader, out_writer = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=serve, args=(child, out_writer, make_config(self.workdir)), daemon=True)
        with main_module_hidden():
            self._proc.start()
        child.close()
        out_writer.close()
        self._keep = (parent, out_reader)
        self.pid = self._proc.pid
        self.channel_fd, self.output_fd = os.dup(parent.fileno()), os.dup(out_reader.fileno())
        parent.close()
        out_reader.close()

    def alive(self) -> bool:
        return self._proc.is_alive()

    def exit_code(self) -> int | None:
        return self._proc.exitcode

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except OSError:
            pass

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the student's process leads its own group
        except OSError:
            pass
        try:
            self._proc.kill()
        except Exception:
            pass

    def join(self, timeout: float) -> None:
        if self._proc._popen is not None:
            self._proc.join(timeout=timeout)

    def close(self) -> None:
        self.kill()
        self.join(5)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _copy_in(files: dict[str, Path], folder: str, owner: int | None = None) -> None:
    for name, source in files.items():
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    if owner is not None:  # the student's process (uid 65534) may change its own copy, as before
        for path in [Path(folder), *Path(folder).rglob("*")]:
            os.chown(path, owner, owner)


def context():
    """Without the sandbox on Linux: a fork server that has imported torch once forks each
    student's process (about 0.1 s instead of 3 s).  Elsewhere fork is unsafe with PyTorch: spawn."""
    global _context
    if _context is None:
        if sys.platform == "linux":
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(_PRELOAD)
        else:
            _context = multiprocessing.get_context("spawn")
    return _context


@contextlib.contextmanager
def main_module_hidden():
    """Start children without re-importing the parent's __main__ (a script, pytest, the CLI).

    multiprocessing re-imports __main__ in every new process unless it has no file;
    the worker's entry point is importable by name, so the child does not need it.
    """
    main = sys.modules.get("__main__")
    stand_in = types.ModuleType("__main__")
    with _START_LOCK:
        sys.modules["__main__"] = stand_in
        try:
            yield
        finally:
            sys.modules["__main__"] = main
