"""A fresh start for each student's process inside the warm sandbox.

The sandbox's warm process forks every student's process; what two students' processes
share there would survive from one student to the next (SysV shared memory, message
queues, semaphores, keyrings, scratch files).  So each forked process, before any of the
student's code runs, gets namespaces of its own and gives up every right to change them:

  * new user, IPC and mount namespaces (SysV IPC and the user keyring are per namespace),
    and a new anonymous session keyring (the session keyring is inherited on fork);
  * one size-limited tmpfs holding /tmp, /dev/shm and the student's folder (/submission, a
    copy of the handed-in files), so all it writes is bounded and in memory, never on the
    host disk; the handed-in files stay readable, read-only, at /handed-in;
  * resource limits: processes and threads (RLIMIT_NPROC, counted per user namespace, so
    per student), open files, CPU time;
  * no capabilities at all (bounding set included), no_new_privs, and a seccomp filter
    refusing new user namespaces (with one the student could mount an unlimited tmpfs).

When the last process of the student ends, the namespaces and the tmpfs vanish with it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import shutil
import struct

from grader.errors import GraderError

HANDED_IN = "/handed-in"  # the handed-in files, read-only (checkpoints are read from here)
SCRATCH_ROOT = "/.student"  # an empty mount point the sandbox provides; mounted over and left
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_SET_SECCOMP = 4, 24, 38, 47, 22
_KEYCTL_JOIN_SESSION_KEYRING = 1
_SYSCALLS = {  # machine: (audit arch, unshare, clone, clone3, keyctl, capset)
    "x86_64": (0xC000003E, 272, 56, 435, 250, 126),
    "aarch64": (0xC00000B7, 97, 220, 435, 219, 91),
}


class FreshStartFailed(GraderError):
    """The student's process could not be given its own state: it must not run."""


def enter(uid: int, gid: int, scratch_bytes: int, workdir: str, processes: int, open_files: int,
          cpu_s: float) -> None:
    """Called in the forked process as the sandbox's user, before any student code."""
    libc = ctypes.CDLL(None, use_errno=True)
    machine = platform.machine()
    if machine not in _SYSCALLS:
        raise FreshStartFailed(f"no per-student namespaces on {machine}")
    numbers = _SYSCALLS[machine]
    _own_namespaces(libc, uid, gid)
    _call(libc.syscall(numbers[4], _KEYCTL_JOIN_SESSION_KEYRING, None), "a new session keyring")
    _own_files(libc, uid, gid, scratch_bytes, workdir)
    _limit(processes, open_files, cpu_s)
    _drop_capabilities(libc, numbers[5])
    _refuse_user_namespaces(libc, numbers)


def _call(result: int, what: str) -> None:
    if result < 0:
        raise FreshStartFailed(f"{what}: {os.strerror(ctypes.get_errno())}")


def _own_namespaces(libc, uid: int, gid: int) -> None:
    # /proc/self/*_map of a non-dumpable process belong to root: dumpable only while writing them
    # (nothing of any student runs in this sandbox at this moment, no one can attach meanwhile).
    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:  # the OOM killer takes a student, not the warm process
            f.write("1000")
        _call(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWIPC | _CLONE_NEWNS), "new namespaces")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    finally:
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _mount(libc, source, target: str, fstype, flags: int, data) -> None:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    _call(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _own_files(libc, uid: int, gid: int, scratch_bytes: int, workdir: str) -> None:
    """One tmpfs of scratch_bytes (plus what was handed in) for /tmp, /dev/shm and the folder."""
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)
    _mount(libc, workdir, HANDED_IN, None, _MS_BIND | _MS_REC, None)
    _mount(libc, None, HANDED_IN, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
    handed = _size_of(HANDED_IN)
    size = scratch_bytes + handed + (1 << 20)
    _mount(libc, "student", SCRATCH_ROOT, "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={size},mode=0755,uid={uid},gid={gid}")
    kept = _read_only_mounts_under(("/tmp", "/dev/shm"))
    for name, target, mode in (("tmp", "/tmp", 0o1777), ("shm", "/dev/shm", 0o1777), ("submission", workdir, 0o755)):
        inside = f"{SCRATCH_ROOT}/{name}"
        if name == "submission":
            shutil.copytree(HANDED_IN, inside, symlinks=True)
        else:
            os.mkdir(inside)
        os.chmod(inside, mode)
        _mount(libc, inside, target, None, _MS_BIND, None)
    _call(libc.umount2(SCRATCH_ROOT.encode(), _MNT_DETACH), "unmount the scratch root")
    for path, fd, folder in kept:  # what the grader mounted under /tmp (a test's data, a checkpoint): still there
        if folder:
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o444))
        _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
        _mount(libc, None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
        os.close(fd)


def _read_only_mounts_under(tops: tuple[str, ...]) -> list[tuple[str, int, bool]]:
    """The outermost mounts below these folders, each held open (O_PATH) to be mounted again."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    below = sorted({p for p in points if any(p.startswith(top + "/") for top in tops)}, key=len)
    outermost = [p for i, p in enumerate(below) if not any(p.startswith(q + "/") for q in below[:i])]
    return [(p, os.open(p, os.O_PATH), os.path.isdir(p)) for p in outermost if os.path.exists(p)]


def _size_of(folder: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _limit(processes: int, open_files: int, cpu_s: float) -> None:
    cpu = max(1, int(cpu_s))
    for kind, soft, hard in ((resource.RLIMIT_NPROC, processes, processes),
                             (resource.RLIMIT_NOFILE, open_files, open_files),
                             (resource.RLIMIT_CPU, cpu, cpu + 2)):  # SIGXCPU first, SIGKILL 2 s later
        _, ceiling = resource.getrlimit(kind)
        if ceiling != resource.RLIM_INFINITY:  # a limit may only go down here
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(kind, (soft, hard))


def _drop_capabilities(libc, capset: int) -> None:
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability: ignored
    libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two empty {effective, permitted, inheritable}
    _call(libc.syscall(capset, header, data), "dropping capabilities")
    _call(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _refuse_user_namespaces(libc, numbers) -> None:
    """seccomp: unshare/clone with CLONE_NEWUSER -> EPERM; clone3 -> ENOSYS (glibc falls back
    to clone, whose flags a filter can read); any other ABI (i386, x32) -> ENOSYS."""
    arch, unshare, clone, clone3 = numbers[:4]
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    program = [  # (code, jump if true, jump if false, k); jumps count from the next instruction
        (ld, 0, 0, 4),  # 0: the ABI
        (jeq, 1, 0, arch),  # 1: native -> 3
        (ret, 0, 0, enosys),  # 2
        (ld, 0, 0, 0),  # 3: the syscall number
        (jge, 7, 0, 0x40000000),  # 4: x32 -> 12
        (jeq, 6, 0, clone3),  # 5: -> 12
        (jeq, 1, 0, unshare),  # 6: -> 8
        (jeq, 0, 3, clone),  # 7: -> 8, else 11
        (ld, 0, 0, 16),  # 8: its flags (first argument, low 32 bits)
        (jset, 0, 1, _CLONE_NEWUSER),  # 9: -> 10, else 11
        (ret, 0, 0, eperm),  # 10
        (ret, 0, 0, allow),  # 11
        (ret, 0, 0, enosys),  # 12
    ]
    blob = b"".join(struct.pack("HBBI", *p) for p in program)
    buffer = ctypes.create_string_buffer(blob)
    fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buffer))
    _call(libc.prctl(_PR_SET_SECCOMP, 2, ctypes.c_char_p(fprog), 0, 0), "the seccomp filter")
