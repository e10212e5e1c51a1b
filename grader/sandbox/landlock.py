"""Kernel-enforced limits on what a student's process may touch (Linux Landlock).

Landlock lets an unprivileged process give up rights for good: once applied,
nothing the student's code does can read outside the allowed folders, write
outside its working folder, run programs, open TCP connections or signal
processes outside its own sandbox.  Where the kernel lacks Landlock the caller
falls back to Python's audit hooks alone and says so.
"""

from __future__ import annotations

import ctypes
import os
import platform

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}

# Filesystem rights (landlock.h).
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
_WRITE_TREE = sum(1 << b for b in range(4, 13))  # remove/make dir, file, sock, fifo, sym...
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3

_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 where there is none."""
    numbers = _SYSCALLS.get(platform.machine())
    if platform.system() != "Linux" or numbers is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def restrict(read_paths: list[str], write_paths: list[str]) -> str:
    """Apply the policy to this process for good; returns a description of what holds.

    read_paths: folders or files that may be read (and folders listed).
    write_paths: folders where anything may be created, written or removed.
    Nothing may be executed; no TCP; no signals to processes outside.
    """
    abi = abi_version()
    if abi < 1:
        return "unavailable"
    libc = ctypes.CDLL(None, use_errno=True)
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]

    write_rights = WRITE_FILE | READ_FILE | READ_DIR | _WRITE_TREE
    if abi >= 2:
        write_rights |= REFER
    if abi >= 3:
        write_rights |= TRUNCATE
    handled_fs = write_rights | EXECUTE
    attr = _RulesetAttr(fs=handled_fs)
    size = 8
    if abi >= 4:
        attr.net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size = 24
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return f"unavailable (errno {ctypes.get_errno()})"
    try:
        for path, rights in [(p, READ_FILE | READ_DIR) for p in read_paths] + [
            (p, write_rights) for p in write_paths
        ]:
            _allow(libc, add_rule, fd, path, rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"unavailable (no_new_privs errno {ctypes.get_errno()})"
        if libc.syscall(restrict_self, fd, ctypes.c_uint32(0)) != 0:
            return f"unavailable (errno {ctypes.get_errno()})"
    finally:
        os.close(fd)
    parts = ["files"]
    if abi >= 4:
        parts.append("tcp")
    if abi >= 6:
        parts.append("signals")
    return f"landlock v{abi} ({', '.join(parts)})"


def _allow(libc, add_rule: int, ruleset_fd: int, path: str, rights: int) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist needs no rule
    try:
        if not os.path.isdir(path):
            rights &= WRITE_FILE | READ_FILE | TRUNCATE  # rights that make sense on a file
        rule = _PathBeneath(allowed=rights, parent_fd=pfd)
        libc.syscall(add_rule, ruleset_fd, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(pfd)
