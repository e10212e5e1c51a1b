"""Writing a file whole or not at all: into a temporary name in the same folder, then
os.replace over the target.  A reader (another worker, a rerun after a kill) sees the old
file or the new one, never half of one.

    atomic.write_text(out / "grades.csv", text)
    with atomic.replacing(out / "model.pt") as tmp:
        torch.save(state, tmp)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator


def temporary(path: Path) -> Path:
    """The temporary name `path` is written under (hidden; the pid keeps concurrent writers apart)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to fill (a file or a folder); it replaces `path` when the block ends
    without an error, and is removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data, indent: int | None = None) -> None:
    write_text(path, json.dumps(data, indent=indent) + ("\n" if indent is not None else ""))
