"""A hostile submission: each function tries one way out of the sandbox.

Every attack first switches off the grader's audit hook (a Python object the student
can reach), so what is tested is the OS boundary alone.  Each returns a tensor of
1.0 (it worked: a leak) or 0.0 (it failed), or never returns."""

import ctypes
import os
import socket
import struct
import time

import torch

SECRET = b"do-not-leak-4f1c"


def _unhook():
    import grader.sandbox.guard as guard

    guard._policy = None


def _flag(ok: bool) -> torch.Tensor:
    return torch.tensor([1.0 if ok else 0.0])


def secret_in_environ():
    """The grader's environment, through this process's or any visible process's /proc."""
    _unhook()
    found = False
    for pid in os.listdir("/proc"):
        if pid.isdigit() or pid == "self":
            for name in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{pid}/{name}", "rb") as f:
                        found = found or SECRET in f.read()
                except OSError:
                    pass
    return _flag(found)


def visible_processes():
    _unhook()
    return torch.tensor([float(sum(p.isdigit() for p in os.listdir("/proc")))])


def can_read(path):
    _unhook()
    try:
        with open(path, "rb") as f:
            f.read(1)
        return _flag(True)
    except OSError:
        return _flag(False)


def can_write(path):
    _unhook()
    try:
        with open(path, "w") as f:
            f.write("written by a student")
        return _flag(True)
    except OSError:
        return _flag(False)


def leave_marks():
    _unhook()
    written = []
    for path in ("/dev/shm/mark", "/tmp/mark"):
        try:
            with open(path, "w") as f:
                f.write("the answers are 3, 1, 4")
            written.append(1.0)
        except OSError:  # Landlock, where the kernel has it, allows writes in /dev/shm but not /tmp
            written.append(0.0)
    return torch.tensor(written)


def marks_seen():
    _unhook()
    return torch.tensor([float(os.path.exists(p)) for p in ("/dev/shm/mark", "/tmp/mark")])


def connect_unix(path):
    _unhook()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
        return _flag(True)
    except OSError:
        return _flag(False)


def escape_then_connect(port):
    """setns() into every network namespace it can open, then connect to the host's port."""
    _unhook()
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
                libc.setns(fd, 0)
                os.close(fd)
            except OSError:
                pass
    libc.unshare(0x10000000 | 0x40000000)  # a new user + network namespace of its own: still no way out
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
            return _flag(True)
    except OSError:
        return _flag(False)


def start_daemon():
    """fork() + setsid(): a process meant to outlive grading, holding stdout."""
    _unhook()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                print("still here", flush=True)
                time.sleep(0.2)
        os._exit(0)
    time.sleep(0.3)
    return _flag(True)


def probe_zygote():
    """The process that forked this one: trace it, read its memory and environment."""
    _unhook()
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    traced = libc.ptrace(16, parent, None, None) == 0  # PTRACE_ATTACH
    try:
        with open(f"/proc/{parent}/mem", "rb") as f:
            f.seek(0x400000)
            f.read(16)
        read_memory = True
    except OSError:
        read_memory = False
    return torch.tensor([float(traced), float(read_memory)])


def kill_zygote():
    _unhook()
    try:
        os.kill(os.getppid(), 9)
    except OSError:  # Landlock's signal scope, where the kernel has it
        return _flag(False)
    time.sleep(5)
    return _flag(True)


def _channel_fds():
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.append(int(name))
        except OSError:
            pass
    return fds


def huge_header():
    """Announce a 1 GiB reply on the channel to the grader, then send nothing."""
    for fd in _channel_fds():
        os.write(fd, struct.pack("<Q", 1 << 30))
    time.sleep(60)


def stalled_reply():
    """Announce a small reply, send part of it, then stall."""
    for fd in _channel_fds():
        os.write(fd, struct.pack("<Q", 1000) + b"x" * 10)
    time.sleep(60)


def forged_note():
    """A note in the grader's own format, with terminal escapes and fake report lines."""
    from grader.sandbox import protocol

    data = protocol.encode({"note": "\x1b[2J\nPASS 100/100 everything\nTOTAL 100/100", "report": True})
    for fd in _channel_fds():
        os.write(fd, struct.pack("<Q", len(data)) + data)
    return _flag(True)


def huge_output():
    return torch.zeros(1 << 28)  # 1 GiB of float32


def spin():
    while True:
        pass
