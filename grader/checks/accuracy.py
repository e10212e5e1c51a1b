"""Test accuracy of the student's model with a checkpoint, against a threshold.

The student's process loads the checkpoint (weights only) into what their code
builds and returns one predicted class per test image; it never sees the labels.
The grader counts the correct predictions.  When the checkpoint does not fit, the
verdict lists the missing, unexpected and mis-shaped weights, grouped by module,
and names the rubric item (question or blank) each one points to.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from grader import checkpoints as ckpt
from grader.checks.base import Context, ItemBase, NotGradable, Target, Verdict
from grader.datasets import DataSpec, wilson_interval


class Item(ItemBase):
    check: Literal["accuracy"]
    target: Target
    checkpoint: str | None = Field(None, description="checkpoint file name, looked for in --checkpoints, the "
                                                     "submission, then the rubric's checkpoints folder")
    threshold: float = Field(description="minimum test accuracy, as a fraction (0.8) or a percentage (80)")
    data: DataSpec | None = Field(None, description="default: the rubric's data")

    @field_validator("threshold")
    @classmethod
    def _fraction(cls, value: float) -> float:
        fraction = value / 100 if value > 1 else value
        if not 0 <= fraction <= 1:
            raise ValueError(f"{value:g} is neither a fraction between 0 and 1 (0.8) nor a percentage (80)")
        return fraction


def run(item: Item, ctx: Context) -> Verdict:
    t = item.target
    spec = item.data or ctx.rubric.data
    path = ctx.find_checkpoint(item.checkpoint) if item.checkpoint else None
    if item.checkpoint and path is None:
        raise NotGradable(f"checkpoint {item.checkpoint} not found: put it in the submission folder "
                          f"({ctx.submission}) or pass --checkpoints DIR")
    data = ctx.load_data(spec)
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             timeout=ctx.timeout(item))
    notes: list[str] = []
    if path is not None:
        fit = ctx.student.call("load_state", handle=built["handle"], checkpoint=str(path.resolve()),
                               timeout=ctx.timeout(item))
        if fit.get("refused"):
            ctx.release(built)
            return Verdict.zero(f"checkpoint refused: {fit['refused']}", extra={"failure": "checkpoint"})
        if not fit["ok"]:
            verdict = _does_not_fit(ctx, item, built["handle"], path.name, fit)
            ctx.release(built)
            return verdict
        notes = fit.get("notes", [])
    predictions, reused_from = _predictions(ctx, item, built["handle"], data, spec, path)
    ctx.release(built)
    verdict = judge(item, predictions, data, notes, ctx.options.precision)
    if reused_from:
        verdict.details.append(f"same outputs as {reused_from}'s model on a secret probe batch: "
                               "its predictions were reused (--no-reuse evaluates every model)")
        verdict.extra.update(reused_from=reused_from, reuse="probe")
    return verdict


def _predictions(ctx: Context, item: Item, handle: int, data, spec, checkpoint) -> tuple[torch.Tensor, str | None]:
    """Predicted classes for the whole test set, or those of an equivalent model evaluated earlier
    in this run (same probe logits, same checkpoint); returns (predictions, whose)."""
    def predict(**extra):
        return ctx.student.call("predict", handle=handle, images={"path": data.images.path,
                                                                  "shape": list(data.images.shape)},
                                mean=spec.normalize.mean, std=spec.normalize.std, batch_size=ctx.options.batch_size,
                                precision=ctx.options.precision, timeout=_predict_timeout(ctx, item, len(data)),
                                **extra)

    reuse = ctx.reuse if checkpoint is not None else None
    if reuse is not None:
        key = reuse.model_key(item, checkpoint, data.images.path, ctx.options)
        probe = predict(indices=reuse.probe_indices(len(data)), logits=True)["logits"]
        earlier = reuse.match(key, probe)
        if earlier is not None:
            return earlier["predictions"], earlier["student"]
    ctx.progress(f"predicting {len(data):,} images")
    predictions = predict()["predictions"]
    if reuse is not None:
        reuse.remember(key, probe, predictions, ctx.student_id)
    return predictions, None


def judge(item: Item, predictions: torch.Tensor, data, notes: list[str], precision: str = "fp32") -> Verdict:
    """Accuracy from predictions, computed here with labels the student never saw."""
    predictions = predictions.reshape(-1).long()
    if predictions.numel() != len(data.labels):
        return Verdict.zero(f"the model gave {predictions.numel()} predictions for {len(data.labels)} images")
    correct = int((predictions == data.labels).sum())
    total = len(data.labels)
    accuracy = correct / total
    extra = {"accuracy": accuracy, "correct": correct, "total": total, "threshold": item.threshold,
             "data": data.source, "precision": precision}
    text = f"test accuracy {accuracy:.2%} ({correct:,}/{total:,})"
    details = list(notes) + [f"measured on {data.source}"]
    if precision != "fp32":
        details.append(f"evaluated in {precision}, not fp32")
    passed = accuracy >= item.threshold
    if data.is_sample:
        low, high = wilson_interval(correct, total)
        extra["interval95"] = [low, high]
        text += f", 95% interval {low:.1%}-{high:.1%}"
        if low < item.threshold <= high:
            details.append("the sample cannot settle this: grade on the full CIFAR-10 test set "
                           "(--data-dir DIR with cifar-10-batches-py, or --download)")
            return Verdict(item.points if passed else 0.0, f"{text}: uncertain against {item.threshold:.0%}",
                           details=details, status="uncertain", extra=extra)
    if passed:
        return Verdict.full(item, f"{text} >= {item.threshold:.0%}", details=details, extra=extra)
    return Verdict.zero(f"{text} < {item.threshold:.0%}", details=details, extra=extra)


def _predict_timeout(ctx: Context, item: Item, images: int) -> float:
    # Prediction scales with the data set; never less than the item's own limit.
    return max(ctx.timeout(item), images / 20.0)


def _does_not_fit(ctx: Context, item: Item, handle: int, name: str, fit: dict) -> Verdict:
    student_keys = list(ctx.student.call("state_shapes", handle=handle))
    nodes = ctx.student.call("describe", handle=handle)["nodes"]
    checkpoint_keys = [k for k in student_keys if k not in fit["missing"]] + fit["unexpected"]
    lines = []
    for group, keys in ckpt.group_keys(fit["missing"], checkpoint_keys).items():
        lines.append(f"{group}: in your model, not in the checkpoint ({_count(keys)}){_blame(ctx, group, nodes)}")
    for group, keys in ckpt.group_keys(fit["unexpected"], student_keys).items():
        lines.append(f"{group}: in the checkpoint, not in your model ({_count(keys)}){_blame(ctx, group, nodes)}")
    for key, (theirs, mine) in fit["mismatched"].items():
        module = key.rsplit(".", 1)[0]
        lines.append(f"{key}: checkpoint has shape {theirs}, your model {mine}{_blame(ctx, module, nodes)}")
    summary = (f"{name} does not fit your {item.target.name}: {len(fit['missing'])} missing, "
               f"{len(fit['unexpected'])} unexpected, {len(fit['mismatched'])} mis-shaped weights")
    return Verdict.zero(summary, details=lines)


def _count(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{len(keys)} tensors"


def _blame(ctx: Context, module_path: str, nodes: dict) -> str:
    """' -> <item>' for the rubric item whose question builds this module."""
    best, best_len = None, -1
    for other in ctx.rubric.items:
        for scope in _scopes(other, nodes):
            if module_path == scope or module_path.startswith(scope + ".") or scope.startswith(module_path + "."):
                if len(scope) > best_len:
                    best, best_len = other, len(scope)
    if best is None:
        return ""
    return f" -> {best.title or best.id} ({best.id})"


def _scopes(item, nodes: dict) -> list[str]:
    """Module paths an item is responsible for, in the student's built model."""
    if item.check == "blanks":
        return [b.module for b in item.blanks if b.module]
    if item.check == "structure":
        return [item.module]
    if item.check == "equivalence":
        return [path for path, node in nodes.items() if path and node["type"] == item.target.name]
    return []
