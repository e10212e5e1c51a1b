"""Symbolic links in a submission: never followed, never copied, and the student is told.

A link named like a checkpoint could point at the label cache or a classmate's file;
whatever it points at, the grader reads the submission's own bytes only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from grader import safe_text

MAX_NOTES = 5


def symlinks(folder: Path, ignore: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Symbolic links under `folder` (relative paths), found without following any."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk does not enter linked folders
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            if path.is_symlink() and not ignore(name):
                found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def notes(found: list[str]) -> list[str]:
    """What the student is told about the links in their upload."""
    lines = [f"{safe_text.shown(link)} is a symbolic link; links are not followed" for link in found[:MAX_NOTES]]
    if len(found) > MAX_NOTES:
        lines.append(f"{len(found) - MAX_NOTES} more symbolic links were not followed")
    return lines
