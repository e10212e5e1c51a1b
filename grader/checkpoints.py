"""Reading checkpoints safely and explaining exactly why one does not fit a model.

Formats: a raw state_dict, {'net': ...}, {'state_dict': ...}, {'model': ...},
{'model_state_dict': ...}, keys prefixed 'module.' (DataParallel) or '_orig_mod.'
(torch.compile), and .safetensors.  Pickled checkpoints are only ever read with
torch.load(weights_only=True): one that needs full unpickling could run code and
is refused, never executed; and nothing is read that declares more than the file holds or
the rubric allows (grader.checkpoint_scan), because the grader's own process reads them too.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict

import torch

from grader.checkpoint_scan import CheckpointRefused, check

WRAPPER_KEYS = ("state_dict", "net", "model", "model_state_dict", "module", "weights")
PREFIXES = ("module.", "_orig_mod.")


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm's statistics, not parameters

__all__ = ["CheckpointRefused", "read_state_dict", "parameter_count", "fit", "group_keys", "search_order"]


def read_state_dict(path: str, max_bytes: int | None = None,
                    data: bytes | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors in a checkpoint file, plus notes on how they were found; CheckpointRefused,
    before anything is allocated, for a file that declares more than it holds or than `max_bytes`
    (None: the student's process, whose own memory limit bounds it).  `data`: the file's bytes
    when the grader sent them (the handed-in file, whatever the student's code left at `path`)."""
    notes: list[str] = []
    name = os.path.basename(path)
    if data is None:  # bytes sent by the grader were scanned by the grader, bounded
        check(path, max_bytes if max_bytes is not None else 1 << 62)
    try:
        obj = _load(path, name, data)
    except MemoryError:
        raise CheckpointRefused(f"{name}: reading it needs more memory than the grader has") from None
    state = _unwrap(obj, notes)
    return _strip_prefixes(state, notes), notes


def parameter_count(path: str, max_bytes: int) -> int:
    """The parameters in a checkpoint's weights, counted by the grader (BatchNorm's running
    statistics are buffers, not parameters): the figure the instructor sees."""
    state, _ = read_state_dict(path, max_bytes)
    return sum(t.numel() for k, t in state.items() if not k.endswith(BUFFERS))


def _load(path: str, name: str, data: bytes | None = None):
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load, load_file

        try:
            obj = load(data) if data is not None else load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointRefused(f"{name} is not a readable .safetensors file: {e}") from None
    else:
        not_one = _not_a_checkpoint(path, data)
        if not_one:
            raise CheckpointRefused(f"{name} is not a checkpoint ({not_one}); save one with "
                                    "torch.save(model.state_dict(), PATH)")
        try:
            obj = torch.load(io.BytesIO(data) if data is not None else path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            detail = str(e).strip().splitlines()
            culprit = next((line.strip() for line in detail if "GLOBAL" in line), None)
            what = f"a pickled Python object ({culprit.split('GLOBAL', 1)[1].split()[0]})" if culprit else \
                "pickled data that is not plain tensors"
            raise CheckpointRefused(
                f"{name} holds {what}; loading it could run code, so it was refused and not loaded. "
                "Save the weights alone: torch.save(model.state_dict(), PATH)"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
            raise CheckpointRefused(f"{name} is not a PyTorch checkpoint that can be read: {_first_line(e)}") from None
    return obj


def _not_a_checkpoint(path: str, data: bytes | None = None) -> str | None:
    """Why a file cannot be a torch.save file at all, before calling it pickled data: torch.save
    writes a zip (since PyTorch 1.6) or, in the legacy format, a pickle (protocol 2+ starts
    with 0x80)."""
    if data is not None:
        head = data[:512]
    else:
        try:
            with open(path, "rb") as f:
                head = f.read(512)
        except OSError as e:
            return f"cannot be read: {e.strerror or e}"
    if not head:
        return "the file is empty"
    if head.startswith(b"PK") or head[0] == 0x80:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"its first bytes {head[:8].hex(' ')} are neither a zip nor a pickle"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"it is a text file starting {first!r}" if first else "it holds only blank text"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _unwrap(obj, notes: list[str]) -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        training = obj.get("training")
        if isinstance(training, dict) and "epochs_done" in training and _is_state_dict(obj.get("model")):
            done, total = training.get("epochs_done"), training.get("epochs")
            notes.append(f"written by grader train: {done:g} of {total:g} epochs"
                         + (" (stopped by its time budget; grader train resumes it)"
                            if training.get("stopped_by_budget") else ""))
            return obj["model"]
        for key in WRAPPER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                notes.append(f"weights read from the checkpoint's '{key}' entry")
                return obj[key]
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise CheckpointRefused(
            f"no model weights found in the checkpoint: its top-level keys are {keys}; expected a state_dict "
            f"or one of {', '.join(repr(k) for k in WRAPPER_KEYS)}"
        )
    raise CheckpointRefused(f"the checkpoint holds a {type(obj).__name__}, not a state_dict")


def _strip_prefixes(state: dict, notes: list[str]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            notes.append(f"'{prefix}' prefix removed from every key")
            state = OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state


def fit(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict:
    """Load `state` strictly into `model`, or return exactly what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    # Checkpoints from before BatchNorm counted batches lack num_batches_tracked: harmless.
    benign = [k for k in missing if k.endswith("num_batches_tracked")]
    if benign:
        state = dict(state)
        state.update({k: own[k] for k in benign})
        missing = [k for k in missing if k not in benign]
    unexpected = [k for k in state if k not in own]
    mismatched = {
        k: [list(state[k].shape), list(own[k].shape)]
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    }
    if missing or unexpected or mismatched:
        return {"ok": False, "missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    model.load_state_dict(state, strict=True)
    return {"ok": True}


def group_keys(keys: list[str], other_side: list[str]) -> dict[str, list[str]]:
    """Group keys by the outermost module that the other side lacks entirely.

    ['layer4.5.layer.0.0.weight', ...] against a checkpoint without any 'layer4.5.'
    keys groups under 'layer4.5', which reads as "a sixth block that should not be there".
    """
    other_prefixes = set()
    for key in other_side:
        parts = key.split(".")
        for i in range(1, len(parts)):
            other_prefixes.add(".".join(parts[:i]))
    groups: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split(".")
        group = key
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in other_prefixes:
                group = prefix
                break
        groups.setdefault(group, []).append(key)
    return groups


def search_order(options, rubric, submission=None) -> list:
    """Where an item's checkpoint is looked for, the first found winning: the instructor's
    --checkpoints folders, the submission (when given), then the rubric's checkpoints folder."""
    from pathlib import Path

    return [Path(p) for p in [*options.checkpoint_dirs, *([submission] if submission is not None else []),
                              *rubric.checkpoint_dirs()]]
