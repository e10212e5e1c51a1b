"""Probe reuse against the grader's own trusted computation, never against a classmate.

An accuracy item with a checkpoint can skip most of the student's evaluation when the
student's model is the reference model: the grader builds the REFERENCE model in its
own process, loads the same checkpoint into it (weights only), and computes its class
scores itself.  The student's first few calls of an ordinary evaluation (a secret
number of them, at least two, each a batch of randomly drawn images like every other
call) are compared with the reference's scores for the same images; when every one
agrees within PROBE_ATOL/PROBE_RTOL, with the same predicted classes, the reference's
predictions stand for the images not yet evaluated.  Nothing a student sends is ever
stored for another student: what one model does cannot change a classmate's grade.

The reference may stand in only when the calls not made would have stayed within every limit
(`Limits`): the grader times each of the student's calls with its own clock and reads the
memory of the student's processes from /proc, and projects both over the whole evaluation.
A model that would have run out of time or memory evaluated in full is evaluated in full, so
reuse never turns a limit's zero into points.

The reference's scores are kept per (reference code, checkpoint bytes, data, precision,
device) in the batch's private reuse store, computed once for the class.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import torch

from grader import checkpoints
from grader import evaluate
from grader.fingerprint import combine, grader_version, tree

PROBE_ATOL = 1e-4
PROBE_RTOL = 1e-4
# How much of an item's limits the whole evaluation, projected from the calls made, may use for
# the rest to be skipped: a wide margin, so that only clearly safe runs are reused and a run near a
# limit is evaluated in full, as it is without reuse.
TIME_SHARE = 0.5
MEMORY_SHARE = 0.25
SOURCE = "reference solution"  # what the instructor's record names as where predictions came from


class Limits:
    """What the student's calls cost, measured by the grader: whether the whole evaluation
    would have stayed well within the item's time and memory limits."""

    def __init__(self, budget_s: float, memory_bytes: int, memory_in_use=lambda: None):
        self.budget_s = budget_s  # the time the whole evaluation may take
        self.memory_bytes = memory_bytes  # what the student's process may allocate
        self.memory_in_use = memory_in_use  # () -> bytes the student's processes hold now, or None
        self.seconds: list[float] = []
        self.memory: list[int] = []

    def observe(self, seconds: float) -> None:
        """After each call: its time on the grader's clock, and the memory held after it."""
        self.seconds.append(seconds)
        held = self.memory_in_use()
        if held is not None:
            self.memory.append(held)

    def whole_run_fits(self, total_calls: int) -> bool:
        """False too when a call's memory could not be read: what is not measured is not skipped."""
        if not self.seconds or len(self.memory) != len(self.seconds) or len(self.memory) < 2:
            return False
        if max(self.seconds) * total_calls > TIME_SHARE * self.budget_s:  # the slowest call, every time
            return False
        # Memory kept from call to call grows on through the calls not made.
        growth = max(0, self.memory[-1] - self.memory[0]) / (len(self.memory) - 1)
        return growth * (total_calls - len(self.seconds)) <= MEMORY_SHARE * self.memory_bytes


def memory_in_use(student) -> int | None:
    """Bytes of data (VmData, what the memory limit counts) held by the student's processes:
    the sandbox's whole process tree (from its bubblewrap process), or the plain child and its
    children; None if unknown (then nothing is skipped)."""
    child = getattr(student, "_child", None)  # grader.sandbox.session.StudentProcess's running child
    proc = getattr(getattr(child, "sandbox", None), "_proc", None)
    root = proc.pid if proc is not None else getattr(child, "pid", None) if child is not None else None
    return _tree_data_bytes(root) if root else None


def _tree_data_bytes(root: int) -> int | None:
    if not os.path.exists(f"/proc/{root}/status"):
        return None
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) << 10 for line in f if line.startswith("VmData:")), 0)
        except (OSError, ValueError, IndexError):
            continue
    return total


class Probe:
    """The reference model with the student's checkpoint (built when first needed), and its class
    scores: read from the run's store when an earlier student's evaluation computed them."""

    def __init__(self, build, images: torch.Tensor, normalize, options, store, key: str, calls: int,
                 on_spent=None, limits: Limits | None = None):
        self.build = build  # () -> the reference model with the checkpoint loaded, or None
        self.images = images
        self.mean, self.std = normalize
        self.options = options
        self.store = store
        self.key = key
        self.calls = calls  # how many of the student's calls must agree
        self.on_spent = on_spent or (lambda seconds: None)  # the grader's own time, not the student's
        self.limits = limits  # None: nothing skipped (no measure of what the calls cost)
        self._full: torch.Tensor | None = store.trusted(key)
        self._model = None
        self._unusable = False

    def _scores(self, indices: torch.Tensor) -> torch.Tensor | None:
        if self._model is None and not self._unusable:
            self._model = self.build()
            self._unusable = self._model is None
        if self._unusable:
            return None
        return evaluate.predict(self._model, self.images, self.mean, self.std, device=self.options.device,
                                batch_size=self.options.batch_size, precision=self.options.precision,
                                indices=indices, return_logits=True)

    def agrees(self, indices: torch.Tensor, scores: torch.Tensor) -> bool:
        if len(indices) == 0:
            return True
        started = time.monotonic()
        theirs = self._full[indices] if self._full is not None else self._scores(indices)
        self.on_spent(time.monotonic() - started)
        return theirs is not None and theirs.shape == scores.shape and \
            torch.equal(theirs.argmax(1), scores.argmax(1)) and \
            torch.allclose(theirs, scores.float(), atol=PROBE_ATOL, rtol=PROBE_RTOL)

    def may_skip(self, total_calls: int) -> bool:
        """Whether the calls not yet made may be skipped: only when, measured on the calls made,
        the whole evaluation would stay well within the item's limits."""
        return self.limits is not None and self.limits.whole_run_fits(total_calls)

    def predictions(self) -> torch.Tensor:
        """The reference's class for every image (asked only after agrees() said yes throughout)."""
        if self._full is None:
            started = time.monotonic()
            with self.store.computing(self.key):  # one worker computes, the others wait and read
                self._full = self.store.trusted(self.key)
                if self._full is None:
                    self._full = self._scores(torch.arange(self.images.shape[0]))
                    self.store.keep_trusted(self.key, self._full)
            self.on_spent(time.monotonic() - started)
        return self._full.argmax(dim=1)


def probe_calls(total_calls: int) -> int:
    """A secret number of calls, at least 2, at most a quarter of them."""
    return 2 + secrets.randbelow(max(1, total_calls // 4 - 1))


def for_item(ctx, item, checkpoint: Path, data, spec, total_calls: int, limits: Limits | None = None) -> Probe | None:
    """The probe for an accuracy item, or None (no reference, no reuse store, too few calls).
    A reference that cannot be built, or a checkpoint that does not load into it, makes every
    comparison fail: the student's model is then evaluated in full."""
    reference, store = ctx.reference, ctx.reuse
    if reference is None or store is None or total_calls < 3:
        return None
    t = item.target

    def build() -> torch.nn.Module | None:
        try:
            model = reference.build(t.file, t.name, t.args, t.kwargs, seed=0, section=t.section)
            # weights only, never unpickled code; refused before allocating more than the rubric allows
            state, _ = checkpoints.read_state_dict(str(checkpoint), int(ctx.rubric.limits.memory_mb) << 20)
            if not isinstance(model, torch.nn.Module) or not checkpoints.fit(model, state)["ok"]:
                return None
        except Exception:
            return None
        return model.eval()

    key = combine({"reference": tree(reference.folder, store.hashes), "target": t.model_dump(mode="json"),
                   "checkpoint": store.hashes.of(checkpoint), "data": spec.model_dump(mode="json"),
                   "images": [store.hashes.of(Path(data.images.path)), list(data.images.shape)],
                   "precision": ctx.options.precision, "device": ctx.options.device, "grader": grader_version()})

    def credit(seconds: float) -> None:  # the grader's own work does not use up the student's time
        if getattr(ctx.student, "deadline", None) is not None:
            ctx.student.deadline += seconds

    return Probe(build, data.images.open(), (spec.normalize.mean, spec.normalize.std), ctx.options, store, key,
                 probe_calls(total_calls), credit, limits)
