"""The grader's side of the sandbox: one isolated process per submission.

`StudentProcess.call(op, ...)` runs one operation in the student's process with
a deadline.  Whatever goes wrong there (an exception, an infinite loop, running
out of memory, exiting, killing itself, printing without end, touching what it
may not) comes back as a `StudentFailure` with a reason a person can read; the
process is then replaced by a fresh one for the next item, so one broken piece
of code costs only the items that need it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grader.sandbox import protocol
from grader.sandbox.guard import system_read_roots

_PRELOAD = ["torch", "torchvision", "grader.sandbox.worker"]  # torchvision loads native code: before the guard
_context = None


def context():
    """Linux: a fork server that has imported torch once forks each student's process
    (about 0.1 s instead of 3 s).  Elsewhere fork is unsafe with PyTorch: spawn."""
    global _context
    if _context is None:
        if sys.platform == "linux":
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(_PRELOAD)
        else:
            _context = multiprocessing.get_context("spawn")
    return _context


@dataclass
class Limits:
    timeout_s: float = 120.0  # per operation
    memory_mb: int = 4096
    output_mb: float = 10.0
    total_s: float | None = None  # the whole submission (see StudentProcess.deadline)


class StudentFailure(Exception):
    """Something the student's code did that ends the current item.

    kind: exception | syntax | missing | exit | crash | timeout | memory | output | violation | tamper
    """

    def __init__(self, kind: str, message: str, file: str | None = None, line: int | None = None,
                 code: str | None = None, output: str = ""):
        super().__init__(message)
        self.kind, self.message, self.file, self.line, self.code, self.output = kind, message, file, line, code, output

    @classmethod
    def from_info(cls, info: dict, output: str = "") -> "StudentFailure":
        message = info.get("message", "failed")
        if info.get("while"):
            message = f"{message} (while {info['while']})"
        return cls(info.get("kind", "exception"), message, info.get("file"), info.get("line"), info.get("code"),
                   output)

    def where(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or ""


@dataclass
class _Output:
    """Collects what the student's code prints: the start and the end, and a byte count."""

    limit: int
    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    total: int = 0
    exceeded: bool = False
    KEEP = 8192

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self.head) < self.KEEP:
            self.head += chunk[: self.KEEP - len(self.head)]
        self.tail = (self.tail + chunk)[-self.KEEP:]
        if self.total > self.limit:
            self.exceeded = True

    def since(self, start: int) -> str:
        """What was printed after the first `start` bytes (as far as the tail still holds it)."""
        size = self.total - start
        return bytes(self.tail[-size:]).decode(errors="replace") if 0 < size <= len(self.tail) else ""

    def drop_after(self, start: int) -> None:
        """Forget what was printed after the first `start` bytes."""
        size = self.total - start
        if 0 < size <= len(self.tail):
            del self.tail[-size:]
            del self.head[start:]
            self.total = start

    def text(self) -> str:
        if self.total <= self.KEEP:
            return bytes(self.head).decode(errors="replace")
        return (bytes(self.head).decode(errors="replace") + f"\n... [{self.total:,} bytes in all] ...\n"
                + bytes(self.tail).decode(errors="replace"))


class StudentProcess:
    """A submission's isolated process, restarted after each failure."""

    def __init__(self, files: dict[str, Path], limits: Limits, *, readable: list[str] = (),
                 device: str = "cpu", threads: int = 1, on_note: Callable[[str], None] | None = None,
                 deadline: float | None = None, private: list[str] = (),
                 notebook: dict | None = None):
        self.files = files
        self.private = [os.path.realpath(p) for p in private]  # kept from the student even inside read roots
        self.deadline = deadline  # time.monotonic() by which the whole submission must be done
        self.notebook = notebook  # the rubric's notebook options, for .ipynb submissions
        self.limits = limits
        self.readable = [os.path.realpath(p) for p in readable]
        self.device = device
        self.threads = threads
        self.on_note = on_note
        self.isolation: dict[str, str] = {}
        self.notes: list[str] = []
        self.report_notes: list[str] = []  # notes the report shows (e.g. pretrained weights not available)
        self.fatal_imports: dict[str, StudentFailure] = {}
        self.load_results: dict[str, dict] = {}  # file -> what loading it reported (kept across restarts)
        self._loaded: dict[str, dict] = {}
        self._proc = None
        self._conn = None
        self._output: _Output | None = None
        self._reader: threading.Thread | None = None
        self._workdir: str | None = None
        self.starts = 0

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> "StudentProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        from grader.sandbox.worker import WorkerConfig, serve

        self._workdir = tempfile.mkdtemp(prefix="grader-")
        for name, source in self.files.items():
            target = Path(self._workdir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        ctx = context()
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        out_reader, out_writer = ctx.Pipe(duplex=False)
        config = WorkerConfig(workdir=os.path.realpath(self._workdir),
                              read_roots=system_read_roots() + self.readable,
                              memory_bytes=int(self.limits.memory_mb) << 20, threads=self.threads,
                              device=self.device, private=self.private,
                              notebook=self.notebook)
        self._proc = ctx.Process(target=serve, args=(child_conn, out_writer, config), daemon=True)
        with _main_module_hidden():
            self._proc.start()
        child_conn.close()
        out_writer.close()
        self._conn = parent_conn
        self._output = _Output(limit=int(self.limits.output_mb * (1 << 20)))
        self._reader = threading.Thread(target=self._drain, args=(out_reader, self._output), daemon=True)
        self._reader.start()
        self.starts += 1
        self._loaded = {}
        ready = self._receive(deadline=time.monotonic() + 60, timeout=60, what="starting the sandbox")
        self.isolation = ready.get("ready", {})

    def _drain(self, reader, output: _Output) -> None:
        fd = reader.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            output.add(chunk)
            if output.exceeded:
                self._kill()
                break
        reader.close()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.pid is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the student's process leads its own group
        except (ProcessLookupError, PermissionError, OSError):
            pass
        try:
            proc.kill()
        except Exception:
            pass

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive() and self._conn is not None:
                try:
                    self._conn.send_bytes(protocol.encode({"op": "exit"}))
                    self._proc.join(timeout=2)
                except (OSError, ValueError):
                    pass
            self._kill()
            if self._proc._popen is not None:
                self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._proc = self._conn = self._reader = self._workdir = None

    def close(self) -> None:
        self._stop()

    @property
    def output(self) -> str:
        return self._output.text() if self._output else ""

    # -- calls --------------------------------------------------------------

    def call(self, op: str, *, timeout: float | None = None, on_progress: Callable[[dict], None] | None = None,
             max_reply_bytes: int | None = None, **args):  # max_reply_bytes: the reply's expected size (bound)
        """Run one operation; return its result or raise StudentFailure.

        Any operation naming a file imports it first; an import that failed once
        fails again at once (an endless loop at import costs one timeout, not one per item).
        """
        file = args.get("file")
        if file in self.fatal_imports:
            raise self.fatal_imports[file]
        if file is not None and op != "load" and file not in self._loaded:
            self.call("load", file=file, timeout=timeout)
        if op == "load" and file in self._loaded:
            return self._loaded[file]
        if self._proc is None or not self._proc.is_alive():
            self._stop()
            self._start()
        timeout, limit = self._budget(timeout or self.limits.timeout_s)
        try:
            self._conn.send_bytes(protocol.encode({"op": op, "args": args}))
            response = self._receive(deadline=time.monotonic() + timeout, timeout=timeout,
                                     what=_describe_op(op, args), on_progress=on_progress, limit=limit)
            if "violations" in response or "tampered" in response:
                self._stop()  # a process that broke the rules is not reused
                raise self._integrity_failure(response)
            if "error" in response:
                raise StudentFailure.from_info(response["error"], self.output)
        except StudentFailure as failure:
            if op == "load":
                self.fatal_imports[file] = failure
            raise
        except (BrokenPipeError, ConnectionResetError) as e:
            failure = self._death(_describe_op(op, args))
            if op == "load":
                self.fatal_imports[file] = failure
            raise failure from e
        if op == "load":
            self._loaded[file] = self.load_results[file] = response["result"]
        return response["result"]

    def _budget(self, timeout: float) -> tuple[float, str | None]:
        """This operation's time limit: its own, or what is left of the submission's."""
        if self.deadline is None:
            return timeout, None
        left = self.deadline - time.monotonic()
        total = f"{self.limits.total_s:g} s" if self.limits.total_s else "time"
        if left <= 0:
            raise StudentFailure("timeout", f"not run: the submission used up its {total} limit")
        if left < timeout:
            return left, f"the submission used up its {total} limit"
        return timeout, None

    def _integrity_failure(self, response: dict) -> StudentFailure:
        if response.get("tampered"):
            names = ", ".join(response["tampered"][:5])
            return StudentFailure("tamper", f"the submission replaced PyTorch functions ({names}); "
                                            "submissions may not change PyTorch itself", output=self.output)
        first = response["violations"][0]
        return StudentFailure("violation", f"blocked: {first}", output=self.output)

    def _receive(self, deadline: float, timeout: float, what: str, on_progress=None,
                 limit: str | None = None) -> dict:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                file, line, code = self._where_stuck()
                self._stop_after_failure()
                message = f"{limit} while {what}" if limit else \
                    f"did not finish within {timeout:g} s while {what} (an endless loop?)"
                raise StudentFailure("timeout", message, file, line, code, output=self.output)
            try:
                ready = self._conn.poll(min(remaining, 0.5))
            except (OSError, ValueError):
                ready = True
            if self._output is not None and self._output.exceeded:
                self._stop_after_failure()
                raise StudentFailure("output", f"printed more than {self.limits.output_mb:g} MB while {what}; "
                                               "output is limited", output=self.output)
            if not ready:
                if not self._proc.is_alive():
                    raise self._death(what)
                continue
            try:
                message = protocol.decode(self._conn.recv_bytes(maxlength=protocol.MAX_MESSAGE_BYTES))
            except (EOFError, OSError):
                raise self._death(what) from None
            except protocol.ProtocolError as e:
                self._stop_after_failure()
                raise StudentFailure("crash", f"sent a malformed reply while {what}: {e}") from None
            if "note" in message:
                self.notes.append(message["note"])
                if message.get("report") and message["note"] not in self.report_notes:
                    self.report_notes.append(message["note"])
                if self.on_note:
                    self.on_note(message["note"])
                continue
            if "progress" in message:
                if on_progress:
                    on_progress(message["progress"])
                continue
            return message

    def _where_stuck(self) -> tuple[str | None, int | None, str | None]:
        """The student's file and line a timed-out operation was running, if it can tell.

        The student's process prints its stack on SIGUSR1 (faulthandler); the stack is
        read from its output, then removed from it.
        """
        proc, out = self._proc, self._output
        if proc is None or out is None or not proc.is_alive() or not self._workdir:
            return None, None, None
        before = out.total
        try:
            os.kill(proc.pid, signal.SIGUSR1)
        except OSError:
            return None, None, None
        deadline, last = time.monotonic() + 1.0, -1
        while time.monotonic() < deadline and (out.total == before or out.total != last):
            last = out.total
            time.sleep(0.1)
        text = out.since(before)
        out.drop_after(before)
        workdir = os.path.realpath(self._workdir) + os.sep
        for match in re.finditer(r'File "([^"]+)", line (\d+)', text):
            path, number = match.group(1), int(match.group(2))
            if path.startswith(workdir):
                rel = path[len(workdir):]
                return rel, number, _source_line(self.files.get(rel), number)
        return None, None, None

    def _stop_after_failure(self) -> None:
        self._kill()
        self._stop()

    def _death(self, what: str) -> StudentFailure:
        proc = self._proc
        if proc is not None:
            proc.join(timeout=5)
        code = proc.exitcode if proc is not None else None
        output_exceeded = self._output is not None and self._output.exceeded
        notes = list(self.notes)
        output = self.output
        self._stop()
        if output_exceeded:
            return StudentFailure("output", f"printed more than {self.limits.output_mb:g} MB while {what}; "
                                            "output is limited", output=output)
        exit_note = next((n for n in reversed(notes) if "os._exit" in n or "kill its own process" in n), None)
        if exit_note:
            return StudentFailure("exit", f"{exit_note.replace('the submission ', 'ended its own process: ')} "
                                          f"while {what}", output=output)
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (it may have run out of memory)" if -code == signal.SIGKILL else ""
            return StudentFailure("crash", f"the process was killed by {name} while {what}{hint}", output=output)
        return StudentFailure("crash", f"the process exited with code {code} while {what}", output=output)


@contextlib.contextmanager
def _main_module_hidden():
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


_START_LOCK = threading.Lock()


_OP_TEXT = {
    "load": "importing {file}",
    "build": "building {name}",
    "forward": "running forward",
    "call": "calling {name}",
    "predict": "predicting the test images",
    "load_state": "loading weights",
    "train": "training",
    "values": "reading variables of {file}",
}


def _source_line(path: Path | None, number: int) -> str | None:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[number - 1] if path else None
    except (OSError, IndexError):
        return None
    return f"{number:>4} | {text.rstrip()}" if text is not None else None


def _describe_op(op: str, args: dict) -> str:
    """What the student's process was doing, for messages: 'importing resnet50_skeleton.py'."""
    return _OP_TEXT.get(op, op).format_map({k: args.get(k, "?") for k in ("file", "name")})
