"""Hardening applied inside a student's process before any of its code runs.

The security boundary is the bubblewrap sandbox around the process (grader.sandbox.boundary);
these layers come on top of it, and are all there is where bubblewrap is missing.  They catch
honest mistakes with precise messages; a determined student can switch the Python-level ones off.

Layers, strongest first:
  * its own process and session (the grader kills the whole group when done);
  * resource limits (memory, core dumps) and a clean environment in a private folder;
  * a network namespace where the OS allows one (no interface, so no network);
  * Landlock where the kernel has it: reads only from the Python installation,
    the system, the submission and the grader's data; writes only in its folder;
    no programs run; no signals to other processes;
  * a Python audit hook that refuses forks, subprocesses, sockets and file access
    outside those folders with a precise message, and records each attempt;
  * a snapshot of PyTorch's functions, to tell when a submission replaces one.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import resource
import signal
import sys
import sysconfig
import types
from dataclasses import dataclass, field
from typing import Callable

from grader.sandbox import environment, landlock

# What the report says of the boundary (the grader sets it itself: grader.sandbox.session).
BOUNDARY_TEXT = "bubblewrap: own user, pid, mount, network, IPC and UTS namespaces; uid 65534; no capabilities"
UNISOLATED_TEXT = "none: this code ran WITHOUT OS isolation (bubblewrap is not available)"


@dataclass
class Policy:
    workdir: str
    read_roots: list[str]
    memory_bytes: int
    threads: int = 1
    private: list[str] = field(default_factory=list)  # never readable, even inside a read root
    violations: list[str] = field(default_factory=list)
    notify: Callable[[str], None] | None = None
    boundary: bool = False  # already inside the bubblewrap sandbox: its namespaces hold


_policy: Policy | None = None
_TORCH_SNAPSHOT: dict[tuple[str, str], object] = {}

# Audit events that start processes or open network connections: never allowed.
_PROCESS_EVENTS = {
    "os.fork": "start a new process (os.fork)",
    "os.forkpty": "start a new process (os.forkpty)",
    "os.system": "run a shell command (os.system)",
    "os.posix_spawn": "start a program (os.posix_spawn)",
    "os.spawn": "start a program (os.spawn*)",
    "os.exec": "replace the process with a program (os.exec*)",
    "subprocess.Popen": "start a program (subprocess)",
    "os.startfile": "start a program (os.startfile)",
    "pty.spawn": "start a program (pty.spawn)",
}
_NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                   "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"}
_LOWLEVEL_EVENTS = {"ctypes.dlopen": "load native code through ctypes",
                    "ctypes.dlsym": "look up native functions through ctypes",
                    "sys.addaudithook": "install an audit hook",
                    "sys.remote_exec": "attach a debugger"}
_WRITE_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown",
                 "os.truncate", "os.utime", "os.link", "os.symlink", "shutil.rmtree",
                 "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr"}
_LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob"}
_PROTECTED_MODULES = ("torch", "torch.nn", "torch.nn.functional", "torch.Tensor", "torch.nn.Module",
                      "numpy", "builtins")


def system_read_roots() -> list[str]:
    """Where a Python process legitimately reads: the interpreter, installed packages, the OS."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(p)
    for p in sys.path:
        if p and p.endswith(("site-packages", "dist-packages")):
            roots.add(p)
    for mod_name in ("torch", "torchvision", "numpy", "PIL", "grader"):
        mod = sys.modules.get(mod_name)
        if mod is not None and getattr(mod, "__file__", None):
            roots.add(os.path.dirname(mod.__file__))
    roots.update(["/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc", "/proc", "/sys", "/dev",
                  "/opt/conda", "/usr/local"])
    return sorted(r for r in {os.path.realpath(r) for r in roots} if os.path.exists(r))


def enter(policy: Policy, output_fd: int | None) -> dict[str, str]:
    """Harden this process; returns what isolation holds, for the report."""
    global _policy
    _policy = policy
    status: dict[str, str] = {}
    os.setsid()
    _die_with_grader()
    if output_fd is not None:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
    if policy.boundary:
        status["boundary"] = BOUNDARY_TEXT
        status["network"] = "namespace (bubblewrap: no interface but loopback)"
    else:
        status["boundary"] = UNISOLATED_TEXT
        status["network"] = _isolate_network()
    _limit_resources(policy.memory_bytes)
    _clean_environment(policy)
    os.makedirs(os.path.join(policy.workdir, "tmp"), exist_ok=True)
    os.chdir(policy.workdir)
    # Only the submission and installed packages are importable: never the grader's working folder.
    sys.path[:] = [policy.workdir] + [
        p for p in sys.path
        if p and os.path.realpath(p) != policy.workdir and _within(os.path.realpath(p), policy.read_roots)
    ]
    own = _own_places(policy)
    status["files"] = landlock.restrict(policy.read_roots + own, own + ["/dev"])
    exposed = [p for p in policy.private if _within(p, policy.read_roots)]
    if exposed:  # Landlock cannot take back part of a folder it allows: the audit hook alone guards these
        status["private"] = f"audit hook only for {', '.join(exposed)} (inside a readable system folder)"
    snapshot_torch()
    sys.addaudithook(_audit)
    return status


def _die_with_grader() -> None:
    """End this process when the grader's process ends, even by SIGKILL.

    The student's process is a child of multiprocessing's fork server, which only exits
    once every child has closed the "alive" pipe it hands them.  Closing ours lets the
    server exit with the grader; PR_SET_PDEATHSIG then has the kernel kill this process,
    so a killed batch never leaves a student's endless loop running.
    """
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(forkserver, "_forkserver", None)
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is not None:
        try:
            os.close(alive)
        except OSError:
            pass
        server._forkserver_alive_fd = None


def _isolate_network() -> str:
    if sys.platform != "linux":
        return "not isolated (no network namespaces on this OS; sockets are refused by the audit hook)"
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
    if libc.unshare(CLONE_NEWNET) == 0:
        return "namespace"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        # Map ourselves so file ownership still reads sensibly inside.
        try:
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"{gid} {gid} 1")
        except OSError:
            pass
        return "namespace (user)"
    return "audit hook only (namespaces not permitted here)"


def _limit_resources(memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes > 0 and hasattr(resource, "RLIMIT_DATA"):
        # The process starts with PyTorch already mapped; the limit is on top of that.
        limit = _vm_data() + memory_bytes
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        except (ValueError, OSError):
            pass


def _vm_data() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _clean_environment(policy: Policy) -> None:
    keep = {k: v for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")}
    os.environ.clear()
    os.environ.update(keep)
    os.environ["HOME"] = policy.workdir
    os.environ["TMPDIR"] = os.path.join(policy.workdir, "tmp")
    os.environ["OMP_NUM_THREADS"] = str(policy.threads)
    os.environ["TORCH_HOME"] = os.path.join(policy.workdir, "tmp", "torch")
    os.environ.update(environment.variables(policy.workdir))  # matplotlib without a display or fc-list


def _protected_owners() -> dict[str, object]:
    import numpy
    import torch

    return {"torch": torch, "torch.nn": torch.nn, "torch.nn.functional": torch.nn.functional,
            "torch.Tensor": torch.Tensor, "torch.nn.Module": torch.nn.Module, "numpy": numpy}


def _attributes(owner) -> dict[str, object]:
    """Callables reachable from a module, or from a class through its whole MRO
    (torch.Tensor.argmax lives on a C base class), without binding them."""
    if isinstance(owner, type):
        return {name: inspect.getattr_static(owner, name) for name in dir(owner)}
    return {name: value for name, value in vars(owner).items() if not isinstance(value, types.ModuleType)}


def snapshot_torch() -> None:
    """Remember PyTorch's functions and classes, to notice a submission that swaps one."""
    _TORCH_SNAPSHOT.clear()
    for owner_name, owner in _protected_owners().items():
        for attr, value in _attributes(owner).items():
            if callable(value) or isinstance(value, (staticmethod, classmethod, property)):
                _TORCH_SNAPSHOT[(owner_name, attr)] = value


def tampered() -> list[str]:
    """Names of PyTorch functions a submission has replaced or removed."""
    owners = _protected_owners()
    current = {name: _attributes(owner) for name, owner in owners.items()}
    return [f"{owner_name}.{attr}" for (owner_name, attr), original in _TORCH_SNAPSHOT.items()
            if current[owner_name].get(attr) is not original]


def _violation(what: str) -> PermissionError:
    assert _policy is not None
    message = f"the submission tried to {what}"
    _policy.violations.append(message)
    if _policy.notify is not None:
        try:
            _policy.notify(message)
        except Exception:
            pass
    return PermissionError(f"grader sandbox: {message}, which is not allowed")


def _path_of(arg) -> str | None:
    if isinstance(arg, int) or arg is None:
        return None
    if isinstance(arg, bytes):
        arg = os.fsdecode(arg)
    try:
        return os.path.realpath(os.fspath(arg))
    except (TypeError, ValueError):
        return None


def _within(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _private(path: str, policy: Policy) -> bool:
    """In a folder the grader keeps from submissions (reference, rubric, other students,
    results), unless granted explicitly (a checkpoint of the student's own, say)."""
    if not policy.private or not _within(path, policy.private) or _within(path, [policy.workdir]):
        return False
    granted = [r for r in policy.read_roots if _within(r, policy.private)]
    return not _within(path, granted)


def _is_write(mode, flags) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
        return True
    return False


def _own_places(policy: Policy) -> list[str]:
    """Where the student's code may write: its folder, and inside the sandbox /tmp and /dev/shm
    too, which are its own there (a fresh size-limited tmpfs per student: grader.sandbox.fresh),
    so tempfile and libraries that write scratch files work as on a laptop.  Without the
    sandbox they are this computer's, and stay refused."""
    return [policy.workdir, *(("/tmp", "/dev/shm") if policy.boundary else ())]


def _audit(event: str, args: tuple) -> None:
    policy = _policy
    if policy is None:
        return
    if event == "open":
        path = _path_of(args[0])
        if path is None:
            return
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else None
        if _is_write(mode, flags):
            if not (_within(path, _own_places(policy)) or path == "/dev/null"):
                raise _violation(f"write to {path} outside its own folder")
        elif not _within(path, policy.read_roots + _own_places(policy)) or _private(path, policy):
            raise _violation(f"read {path}, outside the submission")
    elif event in _WRITE_EVENTS:
        for arg in args[:2]:
            path = _path_of(arg) if isinstance(arg, (str, bytes, os.PathLike)) else None
            if path is not None and not _within(path, _own_places(policy)):
                raise _violation(f"change {path} outside its own folder ({event})")
    elif event in _LIST_EVENTS:
        path = _path_of(args[0]) if args and isinstance(args[0], (str, bytes, os.PathLike)) else None
        if path is not None and (not _within(path, policy.read_roots + _own_places(policy)) or _private(path, policy)):
            raise _violation(f"list the folder {path}, outside the submission")
    elif event in _PROCESS_EVENTS:
        raise _violation(_PROCESS_EVENTS[event])
    elif event in _NETWORK_EVENTS:
        raise _violation(f"use the network ({event})")
    elif event in _LOWLEVEL_EVENTS:
        raise _violation(_LOWLEVEL_EVENTS[event])
    elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
        pid = args[0] if args else None
        if event == "os.kill" and pid in (os.getpid(), 0):
            _violation(f"kill its own process (os.kill with signal {args[1]})")  # recorded, then allowed
            return
        raise _violation(f"send a signal to another process ({event} {pid})")
