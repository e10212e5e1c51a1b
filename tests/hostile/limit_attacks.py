"""A hostile submission for the per-student state and the hard limits: each function
switches off the grader's audit hook first, so what is tested is the sandbox alone.
Each returns a tensor (what it managed), or fails the way the kernel made it fail."""

import ctypes
import errno
import os
import threading
import time

import torch

KEY = 0x5EED17  # SysV key shared by the attacker and its accomplice
KEY_NAME = b"grader-answer"
_ADD_KEY, _KEYCTL, _KEYCTL_SEARCH = 248, 250, 10  # x86_64
_SESSION, _USER = -3, -4  # special keyring ids
_IPC_CREAT = 0o1000


def _unhook():
    import grader.sandbox.guard as guard

    guard._policy = None


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def leave_ipc():
    """SysV shared memory, a message queue, a semaphore and keys in the user and session keyrings."""
    _unhook()
    libc = _libc()
    libc.shmat.restype = ctypes.c_void_p
    made = []
    shm = libc.shmget(KEY, 4096, _IPC_CREAT | 0o666)
    if shm >= 0:
        address = libc.shmat(shm, None, 0)
        ctypes.memmove(address, b"answer:112", 10)
    made.append(shm >= 0)
    made.append(libc.msgget(KEY, _IPC_CREAT | 0o666) >= 0)
    made.append(libc.semget(KEY, 1, _IPC_CREAT | 0o666) >= 0)
    for ring in (_USER, _SESSION):
        made.append(libc.syscall(_ADD_KEY, b"user", KEY_NAME, b"112", 3, ring) >= 0)
    return torch.tensor([1.0 if m else 0.0 for m in made])


def find_ipc():
    """What a classmate left: 1.0 where found."""
    _unhook()
    libc = _libc()
    found = [libc.shmget(KEY, 0, 0) >= 0, libc.msgget(KEY, 0) >= 0, libc.semget(KEY, 0, 0) >= 0]
    for ring in (_USER, _SESSION):
        found.append(libc.syscall(_KEYCTL, _KEYCTL_SEARCH, ring, b"user", KEY_NAME, 0) >= 0)
    return torch.tensor([1.0 if f else 0.0 for f in found])


def fill_disk(folder):
    """Writes 1 MB blocks until the disk is full (that error is swallowed), then says how many
    MB it wrote; a write refused outright (Landlock keeps /tmp read-only) is raised."""
    _unhook()
    block, written = b"x" * (1 << 20), 0
    try:
        with open(os.path.join(folder, "filler.bin"), "wb") as f:
            while written < 4096:
                f.write(block)
                f.flush()
                written += 1
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    return torch.tensor([float(written)])


def fork_bomb():
    """Forks children that sleep, until a fork fails (the error is swallowed)."""
    _unhook()
    started = 0
    for _ in range(3000):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        started += 1
    return torch.tensor([float(started)])


def thread_bomb():
    """3,000 sleeping threads, or as many as it may start (the error is swallowed)."""
    _unhook()
    started = 0
    for _ in range(3000):
        try:
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        except RuntimeError:
            break
        started += 1
    return torch.tensor([float(started)])


def memory_hog(mb_each, processes):
    """Several processes, each below any per-process limit, together past the sandbox's."""
    _unhook()
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            chunk = bytearray(mb_each << 20)
            for i in range(0, len(chunk), 4096):
                chunk[i] = 1
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    time.sleep(6)  # the children fill their memory meanwhile
    return torch.tensor([float(len(children))])


def big_allocation(mb):
    _unhook()
    return torch.ones(mb << 18).sum().reshape(1)  # float32: mb << 18 numbers are mb MB


def spin(seconds):
    """Busy for this many seconds of wall-clock time (CPU time, one thread)."""
    _unhook()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return torch.zeros(1)


def hoard_files():
    """Opens files until it may not (the error is swallowed), keeping them all open."""
    _unhook()
    held = []
    for _ in range(5000):
        try:
            held.append(open("/dev/null"))
        except OSError:
            break
    hoard_files.held = held
    return torch.tensor([float(len(held))])
