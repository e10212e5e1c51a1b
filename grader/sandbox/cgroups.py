"""A control group around one sandbox: how many tasks and how much memory it may use.

Each sandbox (bubblewrap, its warm process and the student's processes) runs in a
cgroup of its own, made under the grader's, where this machine lets the grader make one
(root, or a delegated cgroup): cgroup v2 (pids and memory controllers) or the v1 `pids`
and `memory` hierarchies.  The grader sets `pids.max` and the memory limit before each
student's process starts and reads the kernel's counters (forks refused, OOM kills)
around every operation, so it knows which limit stopped the code, whatever the code
then did with the error.  Where no cgroup can be made, resource limits alone apply
(grader.sandbox.fresh), and the report's isolation line says so.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

_CONTROLLERS = ("pids", "memory")
_names = itertools.count()


@dataclass(frozen=True)
class Counters:
    refused_forks: int = 0  # forks and threads refused at pids.max
    oom_kills: int = 0  # processes killed for going past the memory limit


class Group:
    """The cgroup folder(s) of one sandbox: one with v2, one per controller with v1."""

    def __init__(self, folders: dict[str, Path], version: int):
        self.folders, self.version = folders, version

    def join_files(self) -> list[str]:
        return sorted({str(folder / "cgroup.procs") for folder in self.folders.values()})

    def tasks(self) -> int:
        return _number(self.folders["pids"] / "pids.current")

    def memory(self) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        return _number(self.folders["memory"] / name)

    def set(self, tasks: int, memory_bytes: int) -> None:
        _write(self.folders["pids"] / "pids.max", str(tasks))
        _write(self.folders["memory"] / ("memory.max" if self.version == 2 else "memory.limit_in_bytes"),
               str(memory_bytes))
        if self.version == 2:
            _write(self.folders["memory"] / "memory.swap.max", "0", must=False)

    def counters(self) -> Counters:
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        return Counters(_field(self.folders["pids"] / "pids.events", "max"),
                        _field(self.folders["memory"] / events, "oom_kill"))

    def close(self) -> None:
        """Removed once empty (its processes were killed just before)."""
        for folder in set(self.folders.values()):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def create() -> Group | None:
    """A new cgroup for a sandbox, or None where none can be made here."""
    where = _parents()
    if where is None:
        return None
    version, parents = where
    name = f"grader-{os.getpid()}-{next(_names)}"
    made: dict[str, Path] = {}
    try:
        for controller, parent in parents.items():
            folder = parent / name
            if folder not in made.values():
                folder.mkdir()
            made[controller] = folder
    except OSError:
        Group(made, version).close()
        return None
    return Group(made, version)


def _parents() -> tuple[int, dict[str, Path]] | None:
    """The grader's own cgroup in each controller's hierarchy (v2 preferred)."""
    mounts, own = _mounts(), _own_cgroups()
    v2 = mounts.get("cgroup2")
    if v2 is not None and "" in own:
        folder = _inside(v2, own[""])
        enabled = _read(folder / "cgroup.subtree_control").split()
        if all(c in enabled for c in _CONTROLLERS) or _enable(folder):
            return 2, {c: folder for c in _CONTROLLERS}
    parents = {}
    for controller in _CONTROLLERS:
        if controller not in mounts or controller not in own:
            return None
        parents[controller] = _inside(mounts[controller], own[controller])
    return 1, parents


def _enable(folder: Path) -> bool:
    available = _read(folder / "cgroup.controllers").split()
    if not all(c in available for c in _CONTROLLERS):
        return False
    return _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in _CONTROLLERS), must=False)


def _mounts() -> dict[str, tuple[str, str]]:
    """controller (or "cgroup2") -> (mount point, root of the mount inside the hierarchy)."""
    found: dict[str, tuple[str, str]] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, kind = left.split(), right.split()
                if len(kind) < 3 or len(fields) < 5:
                    continue
                root, point = fields[3], fields[4].replace("\\040", " ")
                if kind[0] == "cgroup2":
                    found.setdefault("cgroup2", (point, root))
                elif kind[0] == "cgroup":
                    for option in kind[2].split(","):
                        if option in _CONTROLLERS:
                            found.setdefault(option, (point, root))
    except OSError:
        pass
    return found


def _own_cgroups() -> dict[str, str]:
    own: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(",") if controllers else [""]:
                    own[controller] = path
    except (OSError, ValueError):
        pass
    return own


def _inside(mount: tuple[str, str], path: str) -> Path:
    point, root = mount
    if root != "/" and path.startswith(root):
        path = path[len(root):]
    return Path(point) / path.lstrip("/")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str, must: bool = True) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        if must:
            raise
        return False


def _number(path: Path) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _field(path: Path, name: str) -> int:
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name and parts[1].isdigit():
            return int(parts[1])
    return 0
