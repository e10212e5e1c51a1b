"""Work reused across a class, so grading 200 students costs little more than one.

Two kinds, both decided by the grader (never by the student's process):

* exact: a submission whose inputs are byte for byte those of one graded earlier in
  the run (the raw bytes of every file the student's process can read, under the names
  they are graded as; the checkpoints; the rubric and reference; the items graded; the
  options) gets that grading's results, notes and output without running.  Only a
  whole grading is reused: the items of one submission share its process, so an item
  run after other items ran must not be mixed with results from another process.  The
  unchanged skeleton and copies of the same file are graded once for the class.
* probe: for an accuracy item with a checkpoint, when the student's first few calls of
  the evaluation give the class scores the REFERENCE model with the same checkpoint
  gives (computed here, in the grader's process: grader.probe), the reference's
  predictions stand for the rest: differently written but equivalent code is not
  evaluated in full.  Nothing a student's process sends is stored for a classmate.

Results live in files under the batch's private folder (OUT/.grader/reuse/RUN/), so
the parallel workers of a batch share them; student processes cannot read them.
The instructor's record of every reused result says so, and from whom; what the
student sees never names another student.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import sys
import threading
from pathlib import Path

import torch

from grader import atomic
from grader.fingerprint import FileHashes, combine, grader_version, tree


class Reuse:
    def __init__(self, folder: Path):
        """Open a run's store (made by `for_run`), shared by all workers of that run."""
        self.folder = Path(folder)
        self.seed = int((self.folder / "seed").read_text(), 16)
        # The batch's remembered file hashes (OUT/.grader/file-hashes.json), so that a class's
        # checkpoints are not all read again; files are hashed afresh when size or time differ.
        self.hashes = FileHashes(self.folder.parent.parent / "file-hashes.json")
        self._lock = threading.Lock()
        self._trusted: dict[str, torch.Tensor] = {}  # key -> the reference's class scores

    @classmethod
    def open(cls, folder: str | None) -> "Reuse | None":
        """The run's store, or None (no reuse) when there is none or it is gone."""
        try:
            return cls(Path(folder)) if folder else None
        except (OSError, ValueError):
            return None

    @classmethod
    def for_run(cls, state_dir: Path) -> "Reuse":
        """A fresh store with a new secret seed, for one batch run."""
        # Earlier runs' stores stay: jobs of an interrupted run (on a cluster) may still use theirs.
        folder = Path(state_dir) / "reuse" / secrets.token_hex(4)
        atomic.write_bytes(folder / "seed", secrets.token_hex(8).encode())
        return cls(folder)

    # -- exact reuse ------------------------------------------------------------------

    def item_keys(self, rubric, items, files: dict[str, Path], readable: dict[str, Path], options) -> list[str]:
        """One key per item, in order: everything the item's verdict depends on.

        `files`: every file copied into the student's folder, by the name it is graded under
        (a renamed notebook under the course's name); `readable`: the other files the
        student's process may read (the submission's checkpoints and large files, the
        instructor's checkpoints), by a name that says where they are.  Raw bytes, nothing
        normalised: Python reads coding cookies and notebooks in ways a normaliser does not,
        and the process can read any of these files, so a byte anywhere makes another key."""
        shared = combine({
            "files": {name: self.hashes.of(path) for name, path in sorted(files.items())},
            "readable": {name: self.hashes.of(path) for name, path in sorted(readable.items())},
            "rubric": rubric.model_dump(mode="json"),  # items (messages name them), data, limits, notebook
            "reference": self._reference_digest(rubric),
            "selection": [item.id for item in items],  # earlier items run in the same process
            "options": {k: str(v) for k, v in sorted(vars(options).items())},
            "data": [os.environ.get("GRADER_DATA_DIR"), os.environ.get("GRADER_CACHE_DIR")],
            "grader": grader_version(),
            "python": [sys.version, platform.machine(), torch.__version__],  # Slurm nodes may differ
        })
        return [combine({"item": item.model_dump(mode="json"), "position": n, "submission": shared})
                for n, item in enumerate(items)]

    def _reference_digest(self, rubric) -> dict | None:
        folder = rubric.reference_dir()
        return tree(folder, self.hashes) if folder is not None and folder.is_dir() else None

    def get(self, keys: list[str]) -> dict | None:
        """A whole earlier grading of the same inputs: its results (one per key), the notes
        and output of its process, and whose it was."""
        path = self.folder / "exact" / f"{combine(keys)}.json"
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return earlier if earlier.get("keys") == keys else None

    def put(self, keys: list[str], graded: dict, student: str) -> None:
        atomic.write_json(self.folder / "exact" / f"{combine(keys)}.json", {**graded, "keys": keys, "student": student})

    # -- probe reuse: the reference's own scores (grader.probe) -----------------------

    def trusted(self, key: str) -> torch.Tensor | None:
        """Class scores the grader computed with the reference model, or None."""
        path = self.folder / "trusted" / f"{key}.pt"
        with self._lock:
            if key not in self._trusted and path.is_file():
                try:
                    self._trusted[key] = torch.load(path, weights_only=True)["scores"]
                except (OSError, RuntimeError, EOFError, KeyError, TypeError):
                    return None  # being written: computed again, or waited for under the lock
            return self._trusted.get(key)

    def keep_trusted(self, key: str, scores: torch.Tensor) -> None:
        folder = self.folder / "trusted"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(folder / f"{key}.pt") as tmp:
            torch.save({"scores": scores.float()}, tmp)
        with self._lock:
            self._trusted[key] = scores.float()

    @contextlib.contextmanager
    def computing(self, key: str):
        """Held while one worker computes the reference's scores for `key`; the others wait."""
        (self.folder / "trusted").mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: at worst two workers compute the same scores
            yield
            return
        with open(self.folder / "trusted" / f"{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


