"""Work reused across a class, so grading 200 students costs little more than one.

Two kinds, both decided by the grader (never by the student's process):

* exact: an item whose inputs are the same as an earlier student's (the code of the
  files it uses, after removing comments and formatting; the checkpoint's bytes; the
  rubric item; the data; the options) gets that student's result without running.
  In CNN Architecture every student hands in the same vgg16_full.py, so VGG16's
  10,000-image evaluation runs once for the class.
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

import ast
import hashlib
import json
import os
import secrets
import threading
from pathlib import Path

import torch

from grader import atomic
from grader.fingerprint import FileHashes, code_hash, combine, grader_version

PROBE_SIZE = 128
PROBE_ATOL = 1e-4
PROBE_RTOL = 1e-4


class Reuse:
    def __init__(self, folder: Path):
        """Open a run's store (made by `for_run`), shared by all workers of that run."""
        self.folder = Path(folder)
        self.seed = int((self.folder / "seed").read_text(), 16)
        self.hashes = FileHashes()
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
        atomic.write_json(self.folder / "exact" / f"{key}.json", {"result": result, "student": student})

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
    return code_hash(path, _syntax_tree) if path.is_file() else None


def _syntax_tree(text: str) -> str:
    try:
        return ast.dump(ast.parse(text))
    except SyntaxError:
        return text

