"""The OS boundary around students' code: a bubblewrap sandbox per grader process.

Inside the sandbox there is only what a student's code needs: the OS's /usr, the
Python installation, the grader's package (without its data folder), the training
arrays and checkpoints an item reads, read-only; the student's own copy, writable,
always at /submission; and a private /tmp, /dev and /dev/shm.  The sandbox has its
own user, pid, mount, network, IPC and UTS namespaces, no capabilities, no_new_privs,
and runs as uid 65534 (nobody), outside too when the grader runs as root.

One warm process inside it (grader.sandbox.zygote) forks each student's process,
which first takes user, IPC and mount namespaces, scratch folders and limits of its
own (grader.sandbox.fresh); between two students every process in the sandbox is
killed, or the sandbox is rebuilt.  Where the grader may, the sandbox runs in a cgroup
of its own (grader.sandbox.cgroups).  A sandbox is never shared by two students at
once: each StudentProcess leases one (see `lease`).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from grader.errors import GraderError
from grader.sandbox import cgroups, environment, fresh, gpu

INSIDE = "/submission"  # the student's folder inside: the same for everyone
NOBODY = 65534
_ENV_KEEP = ("LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")
_available: tuple[bool, str] | None = None
_lock = threading.Lock()
_idle: list["Sandbox"] = []


class SandboxLost(GraderError):
    """The sandbox's warm process died or stopped answering; it is torn down."""


def available() -> tuple[bool, str]:
    """(True, "") when students' code can run under bubblewrap here, else (False, why).

    Tried once per process with a trivial sandbox.  GRADER_NO_ISOLATION=1 forces False
    (tests of the unisolated path)."""
    global _available
    if _available is None:
        _available = _probe()
    return _available


def probe_again() -> tuple[bool, str]:
    """available(), tried now rather than remembered: bubblewrap may have broken since."""
    global _available
    _available = _probe()
    return _available


def _probe() -> tuple[bool, str]:
    if os.environ.get("GRADER_NO_ISOLATION") == "1":
        return False, "GRADER_NO_ISOLATION=1 is set"
    if sys.platform != "linux":
        return False, f"bubblewrap needs Linux (this is {sys.platform})"
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    try:
        with _userns() as (userns_args, fds):
            argv = ["bwrap", *_namespace_args(userns_args), *_system_binds(), "--", "/bin/true"]
            done = subprocess.run(argv, pass_fds=fds, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"bubblewrap could not start: {e}"
    if done.returncode == 0:
        return True, ""
    return False, f"bubblewrap could not start ({(done.stderr or '').strip()[:200]})"


class _userns:
    """The user namespace the sandbox runs in.

    As root, bubblewrap's own --unshare-user would map the sandbox's user to uid 0
    outside; instead a namespace is made here mapping root (for bubblewrap's set-up
    only) and 65534 to themselves, and the sandbox's first process drops to 65534 for
    good.  As any other user, bubblewrap's --unshare-user maps that user to 65534.  Either way
    the warm process may make one more user namespace per student (grader.sandbox.fresh),
    which then refuses any further one (seccomp): no --disable-userns."""

    def __enter__(self):
        self.fd = None
        if os.getuid() != 0:
            return ["--unshare-user", "--uid", str(NOBODY),
                    "--gid", str(NOBODY), "--cap-drop", "ALL"], ()
        holder = subprocess.Popen(["unshare", "--user", "--", "sleep", "30"], stdin=subprocess.DEVNULL)
        try:
            mine, deadline = os.readlink("/proc/self/ns/user"), time.monotonic() + 10
            while os.readlink(f"/proc/{holder.pid}/ns/user") == mine:
                if time.monotonic() > deadline or holder.poll() is not None:
                    raise OSError("could not make a user namespace")
                time.sleep(0.005)
            for kind in ("uid", "gid"):
                with open(f"/proc/{holder.pid}/{kind}_map", "w") as f:
                    f.write(f"0 0 1\n{NOBODY} {NOBODY} 1\n")
            self.fd = os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY)
        finally:
            holder.kill()
            holder.wait()
        return ["--userns", str(self.fd), "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
                "--cap-add", "CAP_SETGID"], (self.fd,)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


def _namespace_args(userns_args: list[str]) -> list[str]:
    return [*userns_args, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        args += ["--ro-bind-try", name, name]
    return args + ["--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--tmpfs", "/tmp",
                   "--perms", "01777", "--tmpfs", "/dev/shm",
                   # mount points for each student's own files (grader.sandbox.fresh)
                   "--dir", fresh.HANDED_IN, "--dir", fresh.SCRATCH_ROOT]


def _python_roots() -> list[str]:
    """The interpreter and every folder its imports come from (not the grader's working folder)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    for name in ("torch", "torchvision", "numpy", "PIL"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.add(str(Path(module.__file__).resolve().parents[1]))
    return _outermost(r for r in roots if r and os.path.isdir(r) and not r.startswith("/usr/"))


def _parent_dirs(paths: list[str]) -> list[str]:
    """Mount points' parents made traversable: bubblewrap would copy /root's mode 700."""
    parents = sorted({str(p) for path in paths for p in Path(path).parents if str(p) != "/"}, key=len)
    return [a for parent in parents for a in ("--perms", "0755", "--dir", parent)]


def _outermost(paths) -> list[str]:
    kept: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths}, key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def grader_package() -> Path:
    import grader

    return Path(grader.__file__).resolve().parent


class Sandbox:
    """One bubblewrap sandbox with its warm process; `binds` are extra read-only paths."""

    def __init__(self, binds: tuple[str, ...], device: str):
        self.key = (binds, device)
        self.binds, self.device = binds, device
        self.workdir = tempfile.mkdtemp(prefix="grader-sandbox-")
        self._log = tempfile.TemporaryFile()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._one_at_a_time = threading.Lock()  # the output reader thread may kill while a call waits
        self.uid = None
        self.group = cgroups.create()  # None: resource limits alone bound it
        self._baseline = (0, 0)  # tasks and memory of the sandbox before any student's process
        self._start()

    # -- start and stop ---------------------------------------------------------

    def _argv(self, userns_args: list[str], control_fd: int, drop: bool) -> list[str]:
        package = grader_package()
        args = ["bwrap", *_namespace_args(userns_args), *_system_binds()]
        roots = _python_roots() + [str(package)]
        libraries = environment.sandbox_args()  # what ordinary library code needs (matplotlib's fonts)
        args += _parent_dirs(roots + list(self.binds) + libraries[2::3])
        for root in roots:
            args += ["--ro-bind", root, root]
        if (package / "data").is_dir():
            args += ["--tmpfs", str(package / "data")]  # the labelled CIFAR-10 sample: never inside
        for path in self.binds:
            args += ["--ro-bind", path, path]
        args += libraries
        args += gpu.bwrap_args(bound=roots) if self.device.startswith("cuda") else []  # nodes, driver libraries
        args += ["--bind", self.workdir, INSIDE, "--chdir", INSIDE, "--clearenv",
                 "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
        for name in _ENV_KEEP:
            if name in os.environ:
                args += ["--setenv", name, os.environ[name]]
        code = (f"import sys; sys.path.insert(0, {str(package.parent)!r}); "
                "from grader.sandbox.zygote import main; main()")
        return args + ["--", sys.executable, "-I", "-c", code, str(control_fd), "drop" if drop else "keep"]

    def _start(self) -> None:
        if os.getuid() == 0:
            os.chown(self.workdir, NOBODY, NOBODY)
            os.chmod(self.workdir, 0o711)  # bubblewrap, still root inside, must enter it
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with _userns() as (userns_args, fds):
                argv = _in_group(self.group, self._argv(userns_args, theirs.fileno(), drop=os.getuid() == 0))
                self._proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(), *fds), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=self._log)
        finally:
            theirs.close()
        self._sock = ours
        try:
            ready = self._request({"op": "hello"}, timeout=120, expect_reply_only=True)
        except SandboxLost as e:
            self.close()
            raise SandboxLost(f"the sandbox did not start: {e}") from None
        self.uid = ready.get("uid")
        if self.group is not None:
            self._baseline = (self.group.tasks(), self.group.memory())

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()  # bubblewrap's death ends its pid namespace: every process inside
            self._proc.wait()
        if self._sock is not None:
            self._sock.close()
        self._proc = self._sock = None
        if self.group is not None:
            self.group.close()
            self.group = None
        _empty(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stderr_tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace")

    # -- requests to the warm process -------------------------------------------

    def _request(self, request: dict, fds=(), timeout: float = 10.0, expect_reply_only: bool = False) -> dict:
        with self._one_at_a_time:
            return self._exchange(request, fds, timeout, expect_reply_only)

    def _exchange(self, request: dict, fds, timeout: float, expect_reply_only: bool) -> dict:
        if self._sock is None or not self.alive():
            raise SandboxLost("the sandbox is not running")
        try:
            if not expect_reply_only:
                socket.send_fds(self._sock, [json.dumps(request).encode()], list(fds))
            self._sock.settimeout(timeout)
            data = self._sock.recv(1 << 16)
        except (OSError, socket.timeout) as e:
            self._teardown()
            raise SandboxLost(f"no answer ({e or 'timeout'}); {self.stderr_tail()}") from None
        if not data:
            self._teardown()
            raise SandboxLost(f"its warm process ended; {self.stderr_tail()}")
        try:
            return json.loads(data)
        except ValueError:
            self._teardown()
            raise SandboxLost("a malformed answer") from None

    def _teardown(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def spawn(self, channel_fd: int, output_fd: int, config: dict) -> int:
        """A student's process; the sandbox's cgroup (if any) first allows it `config`'s
        processes and memory on top of what the sandbox itself holds."""
        if self.group is not None:
            tasks, memory = self._baseline
            try:
                self.group.set(tasks + config["processes"], memory + config["memory_bytes"])
            except OSError as e:
                raise SandboxLost(f"its limits could not be set: {e}") from None
        return int(self._request({"op": "start", "config": config}, fds=(channel_fd, output_fd))["pid"])

    def signal(self, pid: int, sig: int) -> None:
        self._request({"op": "signal", "pid": pid, "sig": int(sig)})

    def limits_text(self, limits) -> str:
        """For the report's isolation line: what bounds a student's process in this sandbox."""
        tasks = f"cgroup v{self.group.version} (pids, memory) and resource limits" if self.group is not None \
            else "resource limits only (no cgroup can be made here)"
        return (f"{tasks}; own user, IPC and mount namespaces per student process; "
                f"/tmp, /dev/shm and its folder on one {limits.disk_mb:g} MB tmpfs")

    def counters(self) -> "cgroups.Counters | None":
        return self.group.counters() if self.group is not None else None

    def exit_code(self, pid: int) -> int | None:
        return self._request({"op": "status", "pid": pid})["exit"]

    def reset(self) -> bool:
        """Kill everything in the sandbox, empty /tmp, /dev/shm and the student's folder."""
        try:
            clean = bool(self._request({"op": "reset"}, timeout=15).get("clean"))
        except SandboxLost:
            return False
        return _empty(self.workdir) and clean


def _in_group(group: "cgroups.Group | None", argv: list[str]) -> list[str]:
    """bubblewrap started inside the cgroup: a shell joins it, then becomes bubblewrap."""
    if group is None:
        return argv
    join = 'for f in "$@"; do [ "$f" = -- ] && { shift; break; }; echo $$ > "$f" || exit 125; shift; done; exec "$@"'
    return ["/bin/sh", "-c", join, "sh", *group.join_files(), "--", *argv]


def _empty(folder: str) -> bool:
    try:
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        return True
    except OSError:
        return False


def lease(binds: tuple[str, ...], device: str) -> Sandbox:
    """A clean sandbox with these read-only paths, warm when one was returned before."""
    key = (tuple(binds), device)
    with _lock:
        while _idle:
            sandbox = _idle.pop()
            if sandbox.key == key and sandbox.alive():
                return sandbox
            sandbox.close()
    return Sandbox(tuple(binds), device)


def give_back(sandbox: Sandbox) -> None:
    """After a student: kept warm when it could be cleaned completely, else closed."""
    if sandbox.alive() and sandbox.reset():
        with _lock:
            _idle.append(sandbox)
            while len(_idle) > 1:
                _idle.pop(0).close()
    else:
        sandbox.close()


@atexit.register
def _close_idle() -> None:
    with _lock:
        while _idle:
            _idle.pop().close()
