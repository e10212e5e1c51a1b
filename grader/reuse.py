"""Work reused across a class, so grading 200 students costs little more than one.

Two kinds, both decided by the grader (never by the student's process):

* exact: an item whose inputs are the same as an earlier student's (the code of the
  files it uses, after removing comments and formatting; the checkpoint's bytes; the
  rubric item; the data; the options) gets that student's result without running.
  In CNN Architecture every student hands in the same vgg16_full.py, so VGG16's
  10,000-image evaluation runs once for the class.
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

import ast
import contextlib
import hashlib
import json
import os
import secrets
import threading
from pathlib import Path

import torch

from grader.fingerprint import FileHashes, combine, grader_version


class Reuse:
    def __init__(self, folder: Path):
        """Open a run's store (made by `for_run`), shared by all workers of that run."""
        self.folder = Path(folder)
        self.seed = int((self.folder / "seed").read_text(), 16)
        self.hashes = FileHashes()
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
        _write_bytes(folder / "seed", secrets.token_hex(8).encode())
        return cls(folder)

    # -- exact reuse ------------------------------------------------------------------

    def item_key(self, item, submission: Path, options, data_key: str, checkpoint: Path | None) -> str:
        return combine({
            "item": item.model_dump(mode="json"),
            "code": {f: code_digest(submission / f) for f in files_used(item, submission)},
            "checkpoint": self.hashes.of(checkpoint) if checkpoint else None,
            "data": data_key,
            "options": {"precision": options.precision, "device": options.device},
            "grader": grader_version(),
        })

    def get(self, key: str) -> dict | None:
        path = self.folder / "exact" / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, result: dict, student: str) -> None:
        _write_json(self.folder / "exact" / f"{key}.json", {"result": result, "student": student})

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
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        torch.save({"scores": scores.float()}, tmp)
        os.replace(tmp, folder / f"{key}.pt")
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


def files_used(item, submission: Path) -> list[str]:
    """The item's target file and the submission files it imports, transitively."""
    target = getattr(item, "target", None)
    if target is None:
        return sorted(p.name for p in submission.glob("*.py"))
    local = {p.stem: p.name for p in submission.glob("*.py")}
    seen, todo = set(), [target.file]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = submission / name
        if path.suffix != ".py" or not path.is_file():
            continue
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            todo.extend(local[m.split(".")[0]] for m in modules if m.split(".")[0] in local)
    return sorted(seen)


def code_digest(path: Path) -> str | None:
    """The code without comments or formatting (the file's bytes when it does not parse)."""
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    if path.suffix == ".ipynb":
        from grader.duplicates import notebook_code

        text = notebook_code(text)
    try:
        normalised = ast.dump(ast.parse(text))
    except SyntaxError:
        normalised = text
    return hashlib.sha256(normalised.encode()).hexdigest()


def _write_json(path: Path, data: dict) -> None:
    _write_bytes(path, json.dumps(data).encode())


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
