"""The grader's side of the sandbox: one isolated process per submission.

`StudentProcess.call(op, ...)` runs one operation in the student's process with
a deadline.  Whatever goes wrong there (an exception, an infinite loop, running
out of memory, exiting, killing itself, printing without end, touching what it
may not) comes back as a `StudentFailure` with a reason a person can read; the
process is then replaced by a fresh one for the next item, so one broken piece
of code costs only the items that need it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grader.errors import GraderError
from grader.sandbox import boundary, environment, fail_closed, fresh, protocol
from grader.sandbox.limits import LIMIT_KINDS, Limits, message as limit_message  # noqa: F401  (Limits: its home)
from grader.sandbox.children import LocalChild, SandboxedChild, main_module_hidden  # noqa: F401
from grader.sandbox.guard import BOUNDARY_TEXT, UNISOLATED_TEXT, system_read_roots
from grader.sandbox.worker import WorkerConfig

DEFAULT_REPLY_BYTES = 64 << 20
# Replies that hold a whole model's weights (and optimizer state) may be larger.
_REPLY_BYTES = {"parameters": 2 << 30, "train": 4 << 30, "values": 1 << 30}
_NOTE_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def isolated() -> bool:
    """Whether students' code runs inside the OS boundary here (bubblewrap)."""
    return boundary.available()[0]


class StudentFailure(GraderError):
    """Something the student's code did that ends the current item.

    kind: exception | syntax | missing | exit | crash | timeout | memory | output | violation | tamper,
    or a hard limit: disk | processes | files | cpu (grader.sandbox.limits)
    """

    def __init__(self, kind: str, message: str, file: str | None = None, line: int | None = None,
                 code: str | None = None, output: str = ""):
        super().__init__(message)
        self.kind, self.message, self.file, self.line, self.code, self.output = kind, message, file, line, code, output

    @classmethod
    def from_info(cls, info: dict, output: str = "") -> "StudentFailure":
        """From the student's process, which its code controls: text bounded, no terminal escapes."""
        if not isinstance(info, dict):
            info = {"message": "sent a malformed error"}
        message = _text(info.get("message") or "failed", 2000)
        if info.get("while"):
            message = f"{message} (while {_text(info['while'], 200)})"
        line = info.get("line")
        failure = cls(_text(info.get("kind", "exception"), 20), message, _text(info.get("file"), 300),
                      line if isinstance(line, int) else None, _text(info.get("code"), 2000), output)
        trace = info.get("trace")  # the student's frames, for --verbose
        failure.trace = [_text(t, 300) for t in trace[:20]] if isinstance(trace, list) else []
        return failure

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
    """A submission's isolated process, restarted after each failure.

    With bubblewrap (see grader.sandbox.boundary) the process runs inside the OS
    boundary, in a sandbox this grader process leases for the submission; without it,
    as a plain child process with only the in-process layers (guard, Landlock)."""

    def __init__(self, files: dict[str, Path], limits: Limits, *, readable: list[str] = (),
                 device: str = "cpu", threads: int = 1, on_note: Callable[[str], None] | None = None,
                 deadline: float | None = None, private: list[str] = (),
                 notebook: dict | None = None, own_folder: Path | None = None, allow_unisolated: bool = False):
        self.files = dict(files)
        self.private = [os.path.realpath(p) for p in private]  # kept from the student even inside read roots
        self.deadline = deadline  # time.monotonic() by which the whole submission must be done
        self.notebook = notebook  # the rubric's notebook options, for .ipynb submissions
        self.limits = limits
        self.readable = [os.path.realpath(p) for p in readable]
        self.own_folder = os.path.realpath(own_folder) if own_folder else None
        self.device = device
        self.threads = threads
        self.on_note = on_note
        self.isolation: dict[str, str] = {}
        self.notes: list[str] = []
        self.report_notes: list[str] = []  # notes the report shows (e.g. pretrained weights not available)
        self.fatal_imports: dict[str, StudentFailure] = {}
        self.load_results: dict[str, dict] = {}  # file -> what loading it reported (kept across restarts)
        self.hang_sites: dict[tuple[str, int], StudentFailure] = {}  # where an operation timed out
        self.current_item: str | None = None  # the rubric item being graded, for messages
        self.sandboxed = isolated()
        if not self.sandboxed and not allow_unisolated:  # fail closed (grader.sandbox.fail_closed)
            raise fail_closed.IsolationRefused(boundary.available()[1])
        self._loaded: dict[str, dict] = {}
        self._child = None
        self._channel: protocol.Channel | None = None
        self._output: _Output | None = None
        self._reader: threading.Thread | None = None
        self._paths: dict[str, str] = {}  # host path -> the path the student's process sees
        self._watch = None  # the sandbox's counters when the current operation began
        self._breach: str | None = None  # the hard limit they say it went past
        self.starts = 0

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> "StudentProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _split_readable(self) -> tuple[dict[str, Path], list[str]]:
        """Readable files of the submission's own folder are copied in beside its code (its
        path inside is the same for everyone); the rest are mounted read-only where they are."""
        copied, binds = dict(self.files), []
        for path in self.readable:
            if self.sandboxed and self.own_folder and path.startswith(self.own_folder + os.sep):
                rel = path[len(self.own_folder) + 1:]
                copied[rel] = Path(path)
                self._paths[path] = f"{boundary.INSIDE}/{rel}"
            else:
                binds.append(path)
        return copied, binds

    def _config(self, workdir: str, binds: list[str], weight_caches: list[str]) -> WorkerConfig:
        handed_in = [fresh.HANDED_IN] if self.sandboxed else []  # the files as handed in, read-only
        return WorkerConfig(workdir=workdir, read_roots=system_read_roots() + binds + handed_in,
                            memory_bytes=int(self.limits.memory_mb) << 20, threads=self.threads,
                            device=self.device, private=self.private, notebook=self.notebook,
                            weight_caches=weight_caches, boundary=self.sandboxed,
                            disk_bytes=int(self.limits.disk_mb * (1 << 20)), processes=self.limits.processes,
                            open_files=self.limits.open_files, cpu_s=self.limits.cpu_s,
                            font_cache=environment.font_cache(), import_s=self.limits.import_s)

    def _start(self) -> None:
        from grader.sandbox import pretrained

        began = time.monotonic()
        copied, binds = self._split_readable()
        caches = pretrained.hub_cache_dirs()
        if self.sandboxed:
            try:
                self._child = SandboxedChild(copied, binds + caches, self.device,
                                             lambda workdir: self._config(workdir, binds, caches))
            except boundary.SandboxLost as e:
                fail_closed.check_still_works(e)  # bubblewrap broke: BoundaryLost, never a zero
                raise StudentFailure("crash", f"the sandbox could not start: {e}") from None
        else:
            self._child = LocalChild(copied, lambda workdir: self._config(workdir, binds, caches))
        self._channel = protocol.Channel(self._child.channel_fd)
        self._output = _Output(limit=int(self.limits.output_mb * (1 << 20)))
        self._reader = threading.Thread(target=self._drain, args=(self._child.output_fd, self._output), daemon=True)
        self._reader.start()
        self.starts += 1
        self._loaded = {}
        ready = self._receive(deadline=time.monotonic() + 60, timeout=60, what="starting the sandbox",
                              bound=1 << 20)
        self.isolation = dict(ready.get("ready", {}))
        # Which boundary and limits graded it, said by the grader: the student's process could claim anything.
        self.isolation["boundary"] = BOUNDARY_TEXT if self.sandboxed else UNISOLATED_TEXT
        if self.sandboxed:
            self.isolation["limits"] = self._child.sandbox.limits_text(self.limits)
        if self.deadline is not None:  # starting a sandbox is the grader's time, not the submission's
            self.deadline += time.monotonic() - began

    def _drain(self, fd: int, output: _Output) -> None:
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
        try:
            os.close(fd)
        except OSError:
            pass

    def _kill(self) -> None:
        child = self._child
        if child is not None:
            child.kill()

    def _stop(self) -> None:
        self._read_counters()
        child = self._child
        if child is not None:
            if self._channel is not None and child.alive():
                try:
                    self._channel.send_bytes(protocol.encode({"op": "exit"}), deadline=time.monotonic() + 2)
                    child.join(2)
                except (OSError, TimeoutError):
                    pass
            child.kill()
            child.close()  # every process of the student's ends here
        if self._channel is not None:
            self._channel.close()
        if self._reader is not None:
            self._reader.join(timeout=2)
        self._child = self._channel = self._reader = None

    def close(self) -> None:
        self._stop()

    def use_limits(self, limits: Limits) -> None:
        """The limits of the next operations (an item may have its own): a process started
        under other hard limits is replaced by one started under these."""
        if limits.process_key() != self.limits.process_key():
            self._stop()
        self.limits = limits

    @property
    def output(self) -> str:
        return self._output.text() if self._output else ""

    # -- calls --------------------------------------------------------------

    def call(self, op: str, *, timeout: float | None = None, on_progress: Callable[[dict], None] | None = None,
             max_reply_bytes: int | None = None, stated_timeout: float | None = None,
             **args):  # max_reply_bytes: the reply's expected size (bound)
        """Run one operation; return its result or raise StudentFailure.

        Any operation naming a file imports it first; an import that failed once
        fails again at once (an endless loop at import costs one timeout, not one per item).
        max_reply_bytes: the most the reply may hold (what the caller expects, e.g. N class
        ids); a larger reply fails the operation without being read.
        stated_timeout: the limit a timeout message names, when `timeout` is what is left of a
        longer one (the calls of one evaluation share its limit): what is left depends on the
        machine's load, and a verdict must not.
        """
        file = args.get("file")
        if file in self.fatal_imports:
            raise self.fatal_imports[file]
        if file is not None and op != "load" and file not in self._loaded:
            self.call("load", file=file, timeout=timeout)
        if op == "load" and file in self._loaded:
            return self._loaded[file]
        if self._child is None or not self._child.alive():
            self._stop()
            self._start()
        timeout, limit = self._budget(timeout or self.limits.timeout_s)
        what = _describe_op(op, args)
        bound = max_reply_bytes or _expected_reply_bytes(op, args)
        self._watch, self._breach = self._counters(), None
        try:
            try:
                result = self._call(op, args, file, timeout, limit, what, bound, on_progress, stated_timeout)
            except StudentFailure as failure:
                raise self._past_limit(what) or self._as_limit(failure) from None
            breach = self._past_limit(what)
            if breach:
                raise breach
        except StudentFailure as failure:
            if op == "load":
                self.fatal_imports[file] = failure
            raise
        finally:
            self._watch = None
        if op == "load":
            self._loaded[file] = self.load_results[file] = result
        return result

    def _counters(self):
        counters = getattr(self._child, "counters", None)
        return counters() if counters else None

    def _read_counters(self) -> None:
        """What the kernel counted since the operation began: forks refused at the process
        limit, processes killed at the memory limit (read before its processes are ended)."""
        before = self._watch
        after = self._counters() if before is not None and self._breach is None else None
        if after is not None:
            self._breach = "processes" if after.refused_forks > before.refused_forks else \
                "memory" if after.oom_kills > before.oom_kills else None

    def _past_limit(self, what: str) -> StudentFailure | None:
        """A breach the kernel counted fails the operation, even when the student's code caught
        the error; the process (and every process it started) ends."""
        self._read_counters()
        kind, self._breach = self._breach, None
        if kind is None:
            return None
        output = self.output
        self._stop_after_failure()
        return StudentFailure(kind, f"{limit_message(kind, self.limits)} while {what}", output=output)

    def _as_limit(self, failure: StudentFailure) -> StudentFailure:
        """A hard limit the student's process ran into: the one message for it."""
        if failure.kind not in LIMIT_KINDS:
            return failure
        detail = failure.message if failure.kind == "memory" else ""
        text = limit_message(failure.kind, self.limits, detail)
        limited = StudentFailure(failure.kind, text, failure.file, failure.line, failure.code, failure.output)
        limited.trace = getattr(failure, "trace", [])
        if failure.kind != "memory":
            self._stop_after_failure()  # its leftover processes, files or threads end with it
        return limited

    def _call(self, op, args, file, timeout, limit, what, bound, on_progress, stated_timeout=None):
        try:
            try:
                self._channel.send_bytes(protocol.encode({"op": op, "args": self._inside(args)}),
                                         deadline=time.monotonic() + timeout)
            except TimeoutError:
                self._stop_after_failure()
                raise StudentFailure("timeout", f"did not read its request within {timeout:g} s while {what}") \
                    from None
            response = self._receive(deadline=time.monotonic() + timeout, timeout=timeout, what=what,
                                     on_progress=on_progress, limit=limit, bound=bound, stated=stated_timeout)
            if "violations" in response or "tampered" in response:
                self._stop()  # a process that broke the rules is not reused
                raise self._integrity_failure(response)
            if "error" in response:
                raise StudentFailure.from_info(response["error"], self.output)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise self._death(what) from e
        return response["result"]

    def _inside(self, value):
        """Paths of the submission's own files as its process sees them."""
        if isinstance(value, str):
            return self._paths.get(value, value)
        if isinstance(value, dict):
            return {k: self._inside(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._inside(v) for v in value]
        return value

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
            names = ", ".join(_clean(str(n))[:80] for n in list(response["tampered"])[:5])
            return StudentFailure("tamper", f"the submission replaced PyTorch functions ({names}); "
                                            "submissions may not change PyTorch itself", output=self.output)
        first = _clean(str(response["violations"][0]))[:_NOTE_CHARS]
        return StudentFailure("violation", f"blocked: {first}", output=self.output)

    def _receive(self, deadline: float, timeout: float, what: str, on_progress=None,
                 limit: str | None = None, bound: int = DEFAULT_REPLY_BYTES, stated: float | None = None) -> dict:
        next_sample = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                file, line, code = self._where_stuck()
                self._stop_after_failure()
                message = f"{limit} while {what}" if limit else \
                    f"did not finish within {stated or timeout:g} s while {what} (an endless loop?)"
                failure = StudentFailure("timeout", message, file, line, code, output=self.output)
                self._remember_hang(failure, what)
                raise failure
            if self.hang_sites and now >= next_sample:
                self._fail_if_at_hang_site()
                next_sample = time.monotonic() + 1.0
            try:
                data = self._channel.poll(min(remaining, 0.5), bound)
            except EOFError:
                raise self._death(what) from None
            except protocol.TooLarge:
                self._stop_after_failure()
                raise StudentFailure("crash", f"sent a reply larger than expected while {what} "
                                              f"(more than {_size(bound)})", output=self.output) from None
            except OSError:
                raise self._death(what) from None
            if self._output is not None and self._output.exceeded:
                self._stop_after_failure()
                raise StudentFailure("output", f"printed more than {self.limits.output_mb:g} MB while {what}; "
                                               "output is limited", output=self.output)
            if data is None:
                if not self._child.alive():
                    raise self._death(what)
                continue
            try:
                message = protocol.decode(data)
                if not isinstance(message, dict):
                    raise protocol.ProtocolError("not a message")
            except protocol.ProtocolError as e:
                self._stop_after_failure()
                raise StudentFailure("crash", f"sent a malformed reply while {what}: {e}") from None
            if "note" in message:
                self._note(message)
                continue
            if "progress" in message:
                if on_progress and isinstance(message["progress"], dict):
                    on_progress(message["progress"])
                continue
            return message

    def _note(self, message: dict) -> None:
        """A note from the student's process: its code may have sent it, so it is bounded,
        cleaned of control characters, and reaches the report only in the one form the
        sandbox itself writes (weights not available offline)."""
        note = _clean(str(message["note"]))[:_NOTE_CHARS]
        self.notes.append(note)
        if message.get("report") is True and note.startswith("pretrained weights ") \
                and note not in self.report_notes and len(self.report_notes) < 5:
            self.report_notes.append(note)
        if self.on_note:
            self.on_note(note)

    # -- hangs ----------------------------------------------------------------

    def _remember_hang(self, failure: StudentFailure, what: str) -> None:
        """Later operations that reach this same line fail at once with the same reason."""
        if failure.file and failure.line:
            during = f", during {self.current_item}" if self.current_item else ""
            reason = f"timed out {what.replace('running ', 'in ')}, {failure.file}:{failure.line}{during}"
            self.hang_sites.setdefault((failure.file, failure.line), StudentFailure(
                "timeout", reason, failure.file, failure.line, failure.code))

    def _fail_if_at_hang_site(self) -> None:
        file, line, _ = self._where_stuck(settle=0.3)
        known = self.hang_sites.get((file, line)) if file else None
        if known is not None:
            self._stop_after_failure()
            raise StudentFailure(known.kind, known.message, known.file, known.line, known.code,
                                 output=self.output)

    def _where_stuck(self, settle: float = 1.0) -> tuple[str | None, int | None, str | None]:
        """The student's file and line a running operation is at (its innermost frame).

        The student's process prints its stack on SIGUSR1 (faulthandler); the stack is
        read from its output, then removed from it.
        """
        child, out = self._child, self._output
        if child is None or out is None or not child.alive():
            return None, None, None
        before = out.total
        child.signal(signal.SIGUSR1)
        deadline, last = time.monotonic() + settle, -1
        while time.monotonic() < deadline and (out.total == before or out.total != last):
            last = out.total
            time.sleep(0.05)
        text = out.since(before)
        out.drop_after(before)
        workdir = child.workdir.rstrip("/") + "/"
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
        child = self._child
        code = None
        if child is not None:
            child.join(5)
            code = child.exit_code()
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
        if code == -signal.SIGXCPU:
            return StudentFailure("cpu", f"{limit_message('cpu', self.limits)} while {what}", output=output)
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (it may have run out of memory)" if -code == signal.SIGKILL else ""
            return StudentFailure("crash", f"the process was killed by {name} while {what}{hint}", output=output)
        return StudentFailure("crash", f"the process exited with code {code} while {what}", output=output)


def _expected_reply_bytes(op: str, args: dict) -> int:
    """The most a reply may hold when the caller does not say: predictions are bounded by the
    number of images sent (up to 1,000 float logits each), the rest by the kind of operation."""
    if op == "predict":
        try:
            count = len(args["indices"]) if args.get("indices") is not None else int(args["images"]["shape"][0])
            return (1 << 20) + count * 4000
        except (KeyError, TypeError, ValueError, IndexError):
            pass
    return _REPLY_BYTES.get(op, DEFAULT_REPLY_BYTES)


def _text(value, limit: int) -> str | None:
    """Text from the student's process kept for messages: bounded, with line breaks but no
    other control characters."""
    if value is None:
        return None
    return "\n".join(_CONTROL.sub("", part) for part in str(value)[:limit].split("\n"))


def _clean(text: str) -> str:
    """One line without control characters (no terminal escapes, no fake report lines)."""
    return _CONTROL.sub("", text.replace("\n", " ").replace("\t", " "))


def _size(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


_main_module_hidden = main_module_hidden  # the batch's worker processes start the same way


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
