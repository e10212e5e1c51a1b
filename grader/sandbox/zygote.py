"""The warm process inside the bubblewrap sandbox that forks students' processes.

It imports PyTorch once, gives up the right to be traced or read (PR_SET_DUMPABLE 0)
and then only obeys its control socket, an inherited socketpair that no student
process holds (children close it first thing).  It holds nothing secret: the
sandbox it lives in shows no labels, reference, rubric, cache or other student.

Requests (JSON, one per SOCK_SEQPACKET message, file descriptors by SCM_RIGHTS):
  {"op": "start", "config": {...}} + [channel fd, output fd]  -> {"pid": n}
  {"op": "signal", "pid": n, "sig": s}                        -> {}
  {"op": "status", "pid": n}                                  -> {"exit": code or null}
  {"op": "reset"}   every other process killed, /tmp and /dev/shm emptied -> {"clean": bool}
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time

_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER, _PR_SET_PDEATHSIG = 4, 36, 1
NOBODY = 65534
SCRATCH = ("/tmp", "/dev/shm")


def main() -> None:
    control_fd, drop = int(sys.argv[1]), sys.argv[2] == "drop"
    if drop:  # started as the user namespace's root (the grader runs as root): become nobody for good
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no /proc/<pid>/mem for students
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphaned daemons come back to us, to be killed
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    sock = socket.socket(fileno=control_fd)
    import torch  # noqa: F401  (preloaded once: each student's process starts in ~0.1 s)
    import torchvision  # noqa: F401

    import grader.sandbox.worker  # noqa: F401

    exits: dict[int, int] = {}
    _reply(sock, {"ready": os.getpid(), "uid": os.getuid()})
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
        except OSError:
            break
        if not data:
            break
        request = json.loads(data)
        op = request.get("op")
        if op == "start":
            pid = _start(sock, fds, request["config"])
            _reply(sock, {"pid": pid})
        elif op == "signal":
            _close(fds)
            try:
                os.kill(int(request["pid"]), int(request["sig"]))
            except OSError:
                pass
            _reply(sock, {})
        elif op == "status":
            _reap(exits)
            _reply(sock, {"exit": exits.get(int(request["pid"]))})
        elif op == "reset":
            exits.clear()
            clean = _reset(exits)
            _reply(sock, {"clean": clean, "left": [] if clean else _leftovers()})
        else:
            break
    os._exit(0)


def _reply(sock: socket.socket, payload: dict) -> None:
    sock.sendall(json.dumps(payload).encode())


def _close(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _start(sock: socket.socket, fds: list[int], config: dict) -> int:
    channel, output = fds
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sock.close()  # the child never holds the control socket
            _close_all_but((channel, output))
            from grader.sandbox import fresh, worker

            settings = worker.WorkerConfig(**config)
            try:  # before any student code: namespaces, files and limits of its own
                fresh.enter(os.getuid(), os.getgid(), settings.disk_bytes, settings.workdir, settings.processes,
                            settings.open_files, settings.cpu_s)
            except (OSError, fresh.FreshStartFailed) as e:
                os.write(output, f"grader: the student's process could not start clean: {e}\n".encode())
                code = 70
                raise
            worker.serve(channel, output, settings)
            code = 0
        finally:
            os._exit(code)
    _close(fds)
    return pid


def _close_all_but(keep: tuple[int, ...]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _reap(exits: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        exits[pid] = os.waitstatus_to_exitcode(status)


def _others() -> list[int]:
    me = os.getpid()
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in (1, me)]


def _reset(exits: dict[int, int]) -> bool:
    """Kill every process but ourselves (pid 1 is bubblewrap's), reap them, empty the scratch
    folders.  False when that is not certain: the grader then rebuilds the sandbox."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)  # every process we may signal, except ourselves and pid 1
        except ProcessLookupError:
            pass
        _reap(exits)
        if not _others():
            break
        time.sleep(0.01)
    exits.clear()
    clean = not _others()
    mounted = _mount_points()
    for folder in SCRATCH:
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if any(m == path or m.startswith(path + "/") for m in mounted):
                continue  # the way to a read-only folder the grader mounted (not the student's)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, onerror=_chmod_and_retry)
                else:
                    os.unlink(path)
            except OSError:
                clean = False
    return clean and not _leftovers()


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def _leftovers() -> list[str]:
    mounted = _mount_points()
    files = [os.path.join(d, n) for d in SCRATCH for n in os.listdir(d)]
    files = [p for p in files if not any(m == p or m.startswith(p + "/") for m in mounted)]
    return ([f"pid {p}" for p in _others()] + files)[:10]


def _chmod_and_retry(function, path, _):
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
    function(path)


if __name__ == "__main__":
    main()
