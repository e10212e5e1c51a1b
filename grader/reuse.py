"""Work reused across a class, so grading 200 students costs little more than one.

Two kinds, both decided by the grader (never by the student's process):

* exact: a submission whose inputs are byte for byte those of one graded earlier in
  the run (the raw bytes of every file the student's process can read, under the names
  they are graded as; the checkpoints; the rubric and reference; the items graded; the
  options) gets that grading's results, notes and output without running.  Only a
  whole grading is reused: the items of one submission share its process, so an item
  run after other items ran must not be mixed with results from another process.  The
  unchanged skeleton and copies of the same file are graded once for the class.
* probe: for an accuracy item, the student's model (with its checkpoint loaded) first
  runs on a probe batch of test images drawn with a secret seed chosen per run.  When
  its logits equal, within PROBE_ATOL/PROBE_RTOL and with the same predicted classes,
  those of a model already evaluated on the whole test set, that model's predictions
  are reused: differently written but equivalent code is evaluated once.

Results live in files under the batch's private folder (OUT/.grader/reuse/RUN/), so
the parallel workers of a batch share them; student processes cannot read them.
The instructor's record of every reused result says so, and from whom; what the
student sees never names another student.
"""

from __future__ import annotations

import hashlib
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

PROBE_SIZE = 128
PROBE_ATOL = 1e-4
PROBE_RTOL = 1e-4


class Reuse:
    def __init__(self, folder: Path):
        """Open a run's store (made by `for_run`), shared by all workers of that run."""
        self.folder = Path(folder)
        self.seed = int((self.folder / "seed").read_text(), 16)
        # The batch's remembered file hashes (OUT/.grader/file-hashes.json), so that a class's
        # checkpoints are not all read again; files are hashed afresh when size or time differ.
        self.hashes = FileHashes(self.folder.parent.parent / "file-hashes.json")
        self._lock = threading.Lock()
        self._probes: dict[str, dict[str, dict]] = {}  # model key -> file name -> probe record

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

    # -- probe reuse ------------------------------------------------------------------

    def probe_indices(self, total: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed % (2**63))
        return torch.randperm(total, generator=generator)[: min(PROBE_SIZE, total)]

    def model_key(self, item, checkpoint: Path | None, data_key: str, options) -> str:
        return combine({"item": item.id, "checkpoint": self.hashes.of(checkpoint) if checkpoint else None,
                        "data": data_key, "precision": options.precision, "grader": grader_version()})

    def match(self, model_key: str, logits: torch.Tensor) -> dict | None:
        """An evaluated model whose probe logits equal these: its predictions and student."""
        for record in self._load_probes(model_key).values():
            theirs = record["logits"]
            if theirs.shape == logits.shape and torch.equal(theirs.argmax(1), logits.argmax(1)) and \
                    torch.allclose(theirs, logits.float(), atol=PROBE_ATOL, rtol=PROBE_RTOL):
                return record
        return None

    def remember(self, model_key: str, logits: torch.Tensor, predictions: torch.Tensor, student: str) -> None:
        folder = self.folder / "probes" / model_key
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(f"{student}:{os.getpid()}".encode()).hexdigest()[:16] + ".pt"
        with atomic.replacing(folder / name) as tmp:
            torch.save({"logits": logits.float(), "predictions": predictions.long(), "student": student}, tmp)

    def _load_probes(self, model_key: str) -> dict[str, dict]:
        folder = self.folder / "probes" / model_key
        with self._lock:
            known = self._probes.setdefault(model_key, {})
            if folder.is_dir():
                for path in folder.glob("*.pt"):
                    if path.name not in known:
                        try:
                            known[path.name] = torch.load(path, weights_only=True)
                        except (OSError, RuntimeError, EOFError):
                            continue  # being written by another worker
            return dict(known)


