"""The hard limits on a student's process, and the one message for each.

A limit is enforced by whatever this machine has (a cgroup, a resource limit, a
size-limited tmpfs: see grader.sandbox.cgroups and grader.sandbox.fresh); whichever
observed it, the item fails with the same words, built here from the rubric's value.
"""

from __future__ import annotations

from dataclasses import dataclass

# What a hard limit's breach is called in a StudentFailure's kind (and an item's "failure").
LIMIT_KINDS = ("memory", "disk", "processes", "files", "cpu")


@dataclass
class Limits:
    timeout_s: float = 120.0  # per operation
    memory_mb: int = 4096
    output_mb: float = 10.0
    total_s: float | None = None  # the whole submission (see StudentProcess.deadline)
    disk_mb: float = 512.0  # written to /tmp, /dev/shm and the student's folder together
    processes: int = 256  # processes and threads at once
    open_files: int = 1024
    cpu_s: float = 3600.0  # CPU time of one student process
    import_s: float | None = None  # importing one .py file; then it is stopped, and what it defined is kept

    def process_key(self) -> tuple:
        """The limits a student's process is started with: a change needs a new process."""
        return (self.memory_mb, self.disk_mb, self.processes, self.open_files, self.cpu_s)


def message(kind: str, limits: Limits, detail: str = "") -> str:
    """The item's message when the student's code went past a limit."""
    text = {
        "memory": f"used more than {limits.memory_mb:g} MB of memory",
        "disk": f"wrote more than {limits.disk_mb:g} MB (/tmp, /dev/shm and its folder together)",
        "processes": f"started more than {limits.processes} processes (threads count as processes)",
        "files": f"opened more than {limits.open_files} files at once",
        "cpu": f"used more than {limits.cpu_s:g} s of CPU time",
    }[kind]
    return f"{text} ({detail})" if detail else text


# -- seen from inside the student's process (grader.sandbox.worker) ------------------------

_DISK_SLACK = 256 << 10  # the student's tmpfs has 1 MiB more than the limit: this little left is "full"


def exception_kind(e: BaseException) -> str | None:
    """The hard limit an exception in the student's code comes from, if any."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk"
    if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
        return "files"
    if isinstance(e, OSError) and e.errno == errno.EAGAIN and e.filename is None:
        return "processes"  # fork() refused
    if isinstance(e, RuntimeError) and "can't start new thread" in str(e):
        return "processes"
    return None


def reached(processes: int, open_files: int) -> str | None:
    """A hard limit the student's process is at after an operation, though its code may have
    caught the error: its scratch space full, or as many tasks or open files as allowed."""
    import errno
    import os

    try:
        space = os.statvfs("/tmp")
        if space.f_bavail * space.f_frsize < _DISK_SLACK:
            return "disk"
        if len(os.listdir("/proc/self/fd")) >= open_files - 1:
            return "files"
        if _student_tasks() >= processes:
            return "processes"
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE):  # not even one more file to list them with
            return "files"
    return None


def _student_tasks() -> int:
    """Tasks in the sandbox but bubblewrap's (pid 1) and the warm process (our parent)."""
    import os

    skip, count = {1, os.getppid()}, 0
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in skip:
            try:
                count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass
    return count
