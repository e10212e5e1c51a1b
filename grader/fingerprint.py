"""What a verdict depends on, as content hashes: how a rerun of a batch knows whom to skip.

A student's fingerprint covers their files, the rubric and reference solution, the
instructor's checkpoints, the test data, the grading options and the grader's own
code.  File hashes are remembered by path, size and modification time, so a rerun
does not read every checkpoint of the class again.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

_CHUNK = 1 << 20


class FileHashes:
    """sha256 of files, remembered in a JSON file between runs."""

    def __init__(self, store: Path | None = None):
        self.store = store
        self._known: dict[str, list] = {}
        self._changed = False
        if store is not None and store.is_file():
            try:
                self._known = json.loads(store.read_text())
            except (OSError, ValueError):
                self._known = {}

    def of(self, path: Path) -> str:
        path = Path(path)
        st = path.stat()
        key = str(path.resolve())
        known = self._known.get(key)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return known[2]
        digest = file_sha256(path)
        self._known[key] = [st.st_size, st.st_mtime_ns, digest]
        self._changed = True
        return digest

    def save(self) -> None:
        if self.store is None or not self._changed:
            return
        from grader import atomic

        atomic.write_json(self.store, self._known)
        self._changed = False


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree(folder: Path, hashes: FileHashes) -> dict[str, str]:
    """{relative path: sha256} for the files grading reads from a folder."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if path.is_symlink() or not path.is_file():
            continue
        if any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        out[rel.as_posix()] = hashes.of(path)
    return out


def tree_stamp(folder: Path) -> str:
    """A cheap stamp of a folder's contents (names, sizes and modification times, no reading):
    a change means decoding or copying it again."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(dirpath, folder)}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def grader_version() -> str:
    """The package version and a hash of its code: a fixed grader bug regrades everyone."""
    try:
        from importlib.metadata import version

        number = version("cnn-grader")  # the distribution name; the import package is grader
    except Exception:  # not installed, e.g. run from a source tree
        number = "unknown"
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".zip", ".json") and "__pycache__" not in path.parts:
            h.update(path.relative_to(root).as_posix().encode())
            h.update(file_sha256(path).encode())
    return f"{number}+{h.hexdigest()[:12]}"


def combine(parts: dict) -> str:
    """One hash for a JSON-able description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_hash(path: Path, normalise: Callable[[str], str]) -> str | None:
    """sha256 of a source file's code after `normalise` (a notebook: its code cells); None when unreadable.

    duplicates and reuse differ only in `normalise`: how much of the code's form may change."""
    from grader.notebook import code_text

    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if Path(path).suffix == ".ipynb":
        text = code_text(text)
    return hashlib.sha256(normalise(text).encode()).hexdigest()
