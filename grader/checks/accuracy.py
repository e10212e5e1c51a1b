"""Test accuracy of the student's model, against a threshold.

Where the weights come from:
  * a checkpoint (`checkpoint:`): the student's trained weights, or the instructor's
    for a fixed architecture, read in the student's process (weights only);
  * training (`train:`, a recipe in the YAML; grader.training): when there is no
    checkpoint, the student's model is trained first, in their process, with their
    own optimizer (a notebook's challenge: the model, optimizer and epochs of its
    recorded train_part34 call) for at most the recipe's epochs, or with the
    recipe's optimizer when they give none; `when: always` fine-tunes from the
    checkpoint before evaluating, as the course's main.py does.  A wall-clock budget
    stops training cleanly, and what was reached is graded.

The test images reach the student's process in a secret order, a batch per call, with
no file, path or index (grader.evaluate); it returns class scores and never sees the
labels (training labels, yes).  The grader maps the answers back and counts the correct
predictions.  A model right on the test images but near chance on the same images
flipped, shifted by a pixel, or moved a few pixels with brightness and noise drawn per
evaluation (which a table of the images and their flips and shifts cannot anticipate) is
flagged for the instructor as a likely lookup of the public test set, with the accuracy
drop (extra["lookup_suspect"]; the points stay what the accuracy gives).  When a
checkpoint does not fit, the verdict lists the missing, unexpected and mis-shaped
weights, grouped by module, and names the rubric item each one points to.  On the
embedded sample of the test set, accuracy comes with a 95% interval, and a verdict
the interval cannot settle is "uncertain".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Literal

import torch
from pydantic import Field, field_validator

from grader import atomic
from grader import checkpoints as ckpt
from grader import evaluate, probe, training
from grader.checks.base import Context, Incomplete, ItemBase, NotGradable, Target, Verdict
from grader.datasets import DataNotFound, DataSpec, wilson_interval

TAKES_SECTIONS = True


class Training(training.Recipe):
    """An accuracy item's `train:` block: a training recipe, and when it applies."""

    when: Literal["no_checkpoint", "always"] = Field("no_checkpoint", description=(
        "no_checkpoint: train when the submission has no checkpoint; always: fine-tune the checkpoint first"))
    optimizer_name: str = Field("optimizer", description="the submission's optimizer: this name in the target's "
                                                         "notebook section (argument of its training call or variable)")
    epochs_name: str = Field("epochs", description="the epochs the submission asks for there (at most `epochs`)")
    budget_s: float | None = Field(None, gt=0, description="wall-clock budget: training stops there and what "
                                                           "was reached is graded")
    data: DataSpec | None = Field(None, description="training images; default: the item's data set, train split")

    def recipe(self) -> training.Recipe:
        return training.Recipe.model_validate(self.model_dump(include=set(training.Recipe.model_fields)))


class Item(ItemBase):
    check: Literal["accuracy"]
    target: Target
    checkpoint: str | None = Field(None, description="checkpoint file name, looked for in --checkpoints, the "
                                                     "submission, then the rubric's checkpoints folder")
    threshold: float = Field(description="minimum test accuracy, as a fraction (0.8) or a percentage (80)")
    data: DataSpec | None = Field(None, description="default: the rubric's data")
    train: Training | None = Field(None, description="train (or fine-tune) before evaluating; see Training")
    recipes: dict[str, Training] = Field(default_factory=dict, description=(
        "other recipes by name, for `grader train --recipe NAME` (e.g. the reference model's fast recipe)"))

    @field_validator("threshold")
    @classmethod
    def _fraction(cls, value: float) -> float:
        fraction = value / 100 if value > 1 else value
        if not 0 <= fraction <= 1:
            raise ValueError(f"{value:g} is neither a fraction between 0 and 1 (0.8) nor a percentage (80)")
        return fraction

    def recipe(self, name: str | None = None) -> Training:
        if name is None:
            if self.train is None:
                raise NotGradable(f"item {self.id} has no training recipe (train:) in the rubric")
            return self.train
        if name not in self.recipes:
            known = ", ".join(self.recipes) or "none"
            raise NotGradable(f"item {self.id} has no recipe {name!r} (recipes: {known})")
        return self.recipes[name]


def run(item: Item, ctx: Context) -> Verdict:
    spec = item.data or ctx.rubric.data
    path = ctx.find_checkpoint(item.checkpoint) if item.checkpoint else None
    recipe = item.train
    trains = recipe is not None and (path is None or recipe.when == "always")
    if item.checkpoint and path is None and recipe is None:
        raise NotGradable(f"checkpoint {item.checkpoint} not found: put it in the submission folder "
                          f"({ctx.submission}) or pass --checkpoints DIR")
    if trains and path is None and not ctx.options.train_if_missing:
        name = item.checkpoint or "checkpoint"
        raise Incomplete(f"no {name} in the submission and training is off: hand in the trained weights, or run "
                         f"`grader train {ctx.submission} --item {item.id}`", f"{name} missing (see grader train)")
    params = None
    if path is not None:  # read here, bounded, before the student's process reads it
        try:
            params = ckpt.parameter_count(str(path), checkpoint_bytes(ctx))
        except ckpt.CheckpointRefused as e:
            return Verdict.zero(f"checkpoint refused: {e}", extra={"failure": "checkpoint"})
    built = build(item, ctx, recipe if trains else None)
    data = ctx.load_data(spec)
    notes: list[str] = []
    if path is not None:
        fit = ctx.student.call("load_state", handle=built["handle"], checkpoint=str(path.resolve()),
                               data=handed_in_bytes(ctx, path), timeout=ctx.timeout(item))
        if fit.get("refused"):
            ctx.release(built)
            return Verdict.zero(f"checkpoint refused: {fit['refused']}", extra={"failure": "checkpoint"})
        if not fit["ok"]:
            verdict = _does_not_fit(ctx, item, built["handle"], path.name, fit)
            ctx.release(built)
            return verdict
        notes = fit.get("notes", [])
    trained = None
    if trains:
        try:
            trained = train(item, ctx, built, recipe, on_progress=lambda p: ctx.progress(progress_text(item.id, p)))
        except NotGradable as e:
            ctx.release(built)
            if path is None and item.checkpoint:  # not trained here, and not handed in: incomplete
                raise Incomplete(str(e), f"{item.checkpoint} missing (see grader train)") from None
            raise
        notes += trained["notes"]
    # A trained model is the student's own: only a checkpoint used as it is can match the reference.
    try:
        outcome = _evaluate(ctx, item, built["handle"], data, spec, None if trains else path)
    except evaluate.BadReply as e:
        ctx.release(built)
        return Verdict.zero(str(e))
    ctx.release(built)
    verdict = judge(item, outcome.predictions, data, notes, ctx.options.precision)
    # For the leaderboard: counted by the grader in the checkpoint it read, never as the student's
    # process reports it (a trained model without a checkpoint has no count the grader can check).
    if params is not None and "accuracy" in verdict.extra:
        verdict.extra["params"] = params
    if outcome.probe_matched:  # the instructor's record says so; a student's results never do
        verdict.extra.update(reused_from=probe.SOURCE, reuse="probe")
    else:
        suspect = lookup_suspect(outcome, data.labels, len(data.classes))
        if suspect:
            verdict.extra["lookup_suspect"] = suspect
    if trained is not None:
        verdict.extra["training"] = {**trained["result"], "epochs_asked": trained["epochs"]}
        if trained["result"]["stopped_by_budget"]:
            verdict.message += budget_note(verdict.extra["training"])
    return verdict


def handed_in_bytes(ctx: Context, path: Path):
    """The bytes of a checkpoint the student handed in, for the student's process to read: its
    copy in the student's folder is the notebook's to overwrite (a challenge cell ending in
    torch.save(..., 'challenge.pt') runs while grading, its training does not).  None for the
    instructor's checkpoints, read where they are (read-only)."""
    if not path.resolve().is_relative_to(Path(ctx.submission).resolve()):
        return None
    data = bytearray(path.read_bytes())
    return torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def budget_note(training: dict) -> str:
    asked = training.get("epochs_asked", training["epochs_done"])
    return f" (training stopped early at its time budget, after {epochs_text(training['epochs_done'])} of {asked:g} epochs)"


def _evaluate(ctx: Context, item: Item, handle: int, data, spec, checkpoint) -> evaluate.Outcome:
    """The model's class for every test image.  The images go to the student's process in a
    secret order, a batch per call, as bare uint8 tensors (grader.evaluate); with a checkpoint
    and a reuse store, the reference model may stand in once it has agreed (grader.probe)."""
    images = data.images.open()
    classes = len(data.classes)
    image_bytes = int(images[0].numel()) if len(images) else 1
    schedule = evaluate.Schedule.draw(len(images), image_bytes, ctx.options.device, ctx.options.batch_size)
    # The flipped and shifted copies (the lookup check) are the grader's addition: the student's
    # code gets its full time for the test images themselves, and as much again for the copies.
    budget = _predict_timeout(ctx, item, len(images)) * len(schedule.order) / max(1, len(images))
    deadline = getattr(ctx.student, "deadline", None)
    limits = probe.Limits(min(budget, deadline - time.monotonic()) if deadline is not None else budget,
                          int(ctx.rubric.limits.memory_mb) << 20, lambda: probe.memory_in_use(ctx.student))
    checker = probe.for_item(ctx, item, checkpoint, data, spec, len(schedule.calls()), limits) \
        if checkpoint is not None and ctx.reuse is not None else None
    spent = 0.0

    def ask(batch: torch.Tensor) -> dict:
        nonlocal spent
        started = time.monotonic()
        try:
            return ctx.student.call("predict", handle=handle, images=batch, mean=spec.normalize.mean,
                                    std=spec.normalize.std, batch_size=ctx.options.batch_size,
                                    precision=ctx.options.precision, logits=True, timeout=max(1.0, budget - spent),
                                    stated_timeout=budget,  # the evaluation's limit, not what is left of it
                                    max_reply_bytes=evaluate.reply_bytes(len(batch), classes))
        finally:
            spent += time.monotonic() - started
            if checker is not None:  # what each call costs decides whether the rest may be skipped
                limits.observe(time.monotonic() - started)

    ctx.progress(f"predicting {len(data):,} images")
    return evaluate.run_schedule(ask, images, classes, schedule, checker)


# A model that recognises the public test images instead of what they show: right on the images
# themselves, near chance once they are flipped, moved by a pixel, or jittered.  An honest CNN loses a
# few points on a flip (CIFAR-10 models are trained with flips), a few on a shift of a pixel or three
# and on a small change of brightness; these margins are far beyond that.
LOOKUP_MIN_ABOVE_CHANCE = 0.4  # the originals must be this far above chance on the subset
LOOKUP_KEPT = 1 / 3  # flagged when a transform keeps less than this share of the skill above chance


def lookup_suspect(outcome: evaluate.Outcome, labels: torch.Tensor, classes: int) -> str | None:
    """A note for the instructor when accuracy collapses on flipped, shifted or jittered test images."""
    subset = outcome.subset
    jittered = outcome.jittered if outcome.jittered is not None else outcome.shifted
    if len(subset) < 32 or any((a < 0).any() for a in (outcome.flipped, outcome.shifted, jittered)):
        return None
    truth = labels[subset]
    counts = torch.bincount(labels, minlength=classes).float()
    chance = max(1.0 / max(classes, 1), float(counts.max() / counts.sum()))
    original = float((outcome.predictions[subset] == truth).float().mean())
    kept = {name: float((answers == truth).float().mean())
            for name, answers in (("flipped", outcome.flipped), ("shifted", outcome.shifted), ("jittered", jittered))}
    skill = original - chance
    if skill < LOOKUP_MIN_ABOVE_CHANCE or min(kept.values()) - chance > LOOKUP_KEPT * skill:
        return None
    drop = original - min(kept.values())
    return (f"likely a lookup of the public test set: {original:.1%} on {len(subset)} test images, "
            f"{kept['flipped']:.1%} on the same images flipped, {kept['shifted']:.1%} shifted by 1 px, "
            f"{kept['jittered']:.1%} moved up to {evaluate.JITTER_MOVE} px with brightness and noise drawn "
            f"for this evaluation (a drop of {100 * drop:.1f} points)")


def build(item: Item, ctx: Context, recipe: Training | None = None) -> dict:
    """The model to evaluate; when it is to be trained, with the optimizer that goes with it."""
    t = item.target
    names = [t.name, recipe.optimizer_name, recipe.epochs_name] if recipe is not None and t.section else None
    return ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs, section=t.section,
                            with_optimizer=names, timeout=ctx.timeout(item))


def train(item: Item, ctx: Context, built: dict, recipe: Training, *, epochs: float | None = None,
          budget_s: float | None = None, resume: str | None = None, return_state: bool = False,
          on_progress: Callable[[dict], None] | None = None) -> dict:
    """Train the built model in the student's process; returns the run's summary and notes."""
    spec = recipe.data or (item.data or ctx.rubric.data).model_copy(update={"split": "train"})
    try:
        data = ctx.load_data(spec)
    except DataNotFound as e:
        raise NotGradable(f"training needs the {spec.dataset} training images, which are not here ({e}); "
                          "or hand in the trained weights" + (f" as {item.checkpoint}" if item.checkpoint else ""))
    asked = built.get("epochs")
    if epochs is None:
        epochs = min(asked, recipe.epochs) if asked else recipe.epochs
    limit = ctx.timeout(item)
    margin = max(60.0, 0.05 * limit)  # the last step, and sending the weights back
    budgets = [b for b in (budget_s, ctx.options.train_budget_s, recipe.budget_s, limit - margin) if b]
    budget = max(0.0, min(budgets))
    started = time.monotonic()
    out = ctx.student.call("train", handle=built["handle"], images={"path": data.images.path,
                                                                    "shape": list(data.images.shape)},
                           labels=data.labels, mean=spec.normalize.mean, std=spec.normalize.std,
                           recipe=recipe.recipe().model_dump(), epochs=epochs, budget_s=budget, resume=resume,
                           return_state=return_state, timeout=budget + margin, on_progress=on_progress)
    out["result"]["seconds"] = round(time.monotonic() - started, 2)  # the grader's clock, not the student's report
    out["epochs"] = epochs
    out["notes"] = out.get("notes", []) + _training_notes(item, ctx, built, recipe, out, asked, budget, data.source)
    return out


def _training_notes(item, ctx, built, recipe, out, asked, budget, source) -> list[str]:
    result = out["result"]
    t = item.target
    base_lr = result["base_lrs"][0] if result.get("base_lrs") else None  # the schedule moves the optimizer's
    if out.get("submission_optimizer"):
        origin = built.get("optimizer_origin", "the submission")
        optimizer = f"{optimizer_text(out['optimizer'], base_lr)} from {origin}"
    else:
        optimizer = f"the rubric's {optimizer_text(out['optimizer'], base_lr)}"
    if recipe.schedule != "constant":
        optimizer += f" ({recipe.schedule} schedule)"
    epochs = f"{out['epochs']:g} epoch{'s' * (out['epochs'] != 1)}" + (
        f" (the submission asks for {asked:g})" if asked and asked != out["epochs"] else "")
    if result["stopped_by_budget"]:  # say what happened: not the epochs it was meant to run
        ran = f"{epochs_text(result['epochs_done'])} of {epochs}"
    else:
        ran = epochs
    notes = [f"trained {t.name} for {ran} in {duration(result['seconds'])} on {ctx.options.device}: "
             f"{optimizer}, batch {recipe.batch_size}, {result['steps']:,} steps on {source}"]
    if result["stopped_by_budget"]:
        notes.append(f"training stopped early, after {epochs_text(result['epochs_done'])} of {out['epochs']:g} "
                     f"epochs: it reached its time budget of {duration(budget)}")
    return notes


def epochs_text(done: float) -> str:
    """0.3621 -> '0.36': a fraction of an epoch, as a person reads it."""
    return f"{done:.2f}".rstrip("0").rstrip(".") if done < 10 else f"{done:.1f}".rstrip("0").rstrip(".")


def optimizer_text(description: dict, lr: float | None = None) -> str:
    """SGD(lr=0.01, momentum=0.9, nesterov=True): the settings that differ from off."""
    group = dict(description["groups"][0]) if description.get("groups") else {}
    if lr is not None:
        group["lr"] = lr
    shown = [k for k in ("lr", "momentum", "nesterov", "weight_decay")
             if k in group and (k == "lr" or group[k] not in (0, 0.0, False, None))]
    return f"{description.get('type', '?')}({', '.join(f'{k}={group[k]!r}' for k in shown)})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_text(item_id: str, p: dict, width: int = 20) -> str:
    """One line for a status bar: a bar, the epoch, the loss and the time left."""
    fraction = p["step"] / max(1, p["steps"])
    filled = int(fraction * width)
    bar = "\u2588" * filled + "\u2591" * (width - filled)  # no brackets: status lines are rich markup
    left = f", {duration(p['eta_s'])} left" if p.get("eta_s") is not None else ""
    return (f"{item_id}: training {bar} {fraction:4.0%} epoch {p['epoch']:.1f}/{p['epochs']:g}, "
            f"loss {p['loss']:.3f}{left}")


def train_to_file(item: Item, ctx: Context, out: Path, *, recipe_name: str | None = None,
                  epochs: float | None = None, budget_s: float | None = None, fresh: bool = False,
                  on_progress: Callable[[dict], None] | None = None) -> dict:
    """`grader train`: train the item's model and write a checkpoint `check` can use,
    resuming from `out` when an earlier `grader train` stopped part-way."""
    recipe = item.recipe(recipe_name)
    built = build(item, ctx, recipe)
    resume = str(out.resolve()) if out.exists() and not fresh else None
    trained = train(item, ctx, built, recipe, epochs=epochs, budget_s=budget_s, resume=resume, return_state=True,
                    on_progress=on_progress)
    state = trained.pop("state")
    saved = {"model": state["model"],
             "training": {**trained["result"], "item": item.id, "recipe": recipe.recipe().model_dump(mode="json")}}
    if trained["result"]["stopped_by_budget"]:  # what resuming needs; a finished run keeps the weights only
        optimizer_state = state["optimizer"]  # JSON carried its integer keys as text
        optimizer_state["state"] = {int(k): v for k, v in optimizer_state.get("state", {}).items()}
        saved["optimizer"] = optimizer_state
    with atomic.replacing(out) as partial:
        torch.save(saved, partial)
    return trained


def judge(item: Item, predictions: torch.Tensor, data, notes: list[str], precision: str = "fp32") -> Verdict:
    """Accuracy from predictions, computed here with labels the student never saw."""
    predictions = predictions.reshape(-1).long()
    if predictions.numel() != len(data.labels):
        return Verdict.zero(f"the model gave {predictions.numel()} predictions for {len(data.labels)} images")
    correct = int((predictions == data.labels).sum())
    total = len(data.labels)
    accuracy = correct / total
    extra = {"accuracy": accuracy, "correct": correct, "total": total, "threshold": item.threshold,
             "data": data.source, "precision": precision, "notes": list(notes)}
    if data.is_sample:
        extra["interval95"] = list(wilson_interval(correct, total))
        extra["sample"] = True
    return decide(item, extra)


def decide(item: Item, extra: dict) -> Verdict:
    """The verdict on a measured accuracy (judge's `extra`) under the item's threshold and points:
    the one place both grading and rescoring (grader.batch.scoring) decide it."""
    accuracy, correct, total = extra["accuracy"], extra["correct"], extra["total"]
    extra = {**extra, "threshold": item.threshold}
    text = f"test accuracy {accuracy:.2%} ({correct:,}/{total:,})"
    details = list(extra.get("notes", [])) + [f"measured on {extra['data']}"]
    if extra.get("precision", "fp32") != "fp32":
        details.append(f"evaluated in {extra['precision']}, not fp32")
    passed = accuracy >= item.threshold
    if extra.get("sample"):
        low, high = extra["interval95"]
        text = (f"test accuracy {accuracy:.2%} on the embedded sample ({correct:,}/{total:,}; "
                f"95% interval {low:.1%}-{high:.1%})")
        details.append("for the full test set: --data-dir DIR (cifar-10-batches-py or test/<class>/ images), "
                       "$GRADER_DATA_DIR, or --download")
        if low < item.threshold <= high:
            details.insert(0, f"the sample cannot settle this: the true accuracy may be on either side of "
                              f"{item.threshold:.0%}; grade on the full CIFAR-10 test set")
            return Verdict(item.points if passed else 0.0, f"{text}: uncertain against {item.threshold:.0%}",
                           details=details, status="uncertain", extra=extra)
    if passed:
        return Verdict.full(item, f"{text} >= {item.threshold:.0%}", details=details, extra=extra)
    return Verdict.zero(f"{text} < {item.threshold:.0%}", details=details, extra=extra)


def checkpoint_bytes(ctx: Context) -> int:
    """The most a checkpoint may declare when the grader reads it: what the student's process may hold."""
    return int(ctx.rubric.limits.memory_mb) << 20


def _predict_timeout(ctx: Context, item: Item, images: int) -> float:
    # Prediction scales with the data set; never less than the item's own limit.
    return max(ctx.timeout(item), images / 20.0)


def _does_not_fit(ctx: Context, item: Item, handle: int, name: str, fit: dict) -> Verdict:
    student_keys = list(ctx.student.call("state_shapes", handle=handle))
    nodes = ctx.student.call("describe", handle=handle)["nodes"]
    checkpoint_keys = [k for k in student_keys if k not in fit["missing"]] + fit["unexpected"]
    # A container with more or fewer blocks than the checkpoint's (a block left out of layer3):
    # what does not fit under it follows from that one mistake, of the item that grades the container.
    recounted = _recounted(ctx, nodes, checkpoint_keys)

    def blame(module: str) -> str:
        owner = next((m for m in recounted if module == m or module.startswith(m + ".")), None)
        return _named(recounted[owner][2]) if owner else _blame(ctx, module, nodes)

    lines: list[tuple[str, str]] = []  # (module, line)
    for group, keys in ckpt.group_keys(fit["missing"], checkpoint_keys).items():
        lines.append((group, f"{group}: in your model, not in the checkpoint{_count(group, keys)}{blame(group)}"))
    for group, keys in ckpt.group_keys(fit["unexpected"], student_keys).items():
        lines.append((group, f"{group}: in the checkpoint, not in your model{_count(group, keys)}{blame(group)}"))
    for key, (theirs, mine) in fit["mismatched"].items():
        module = key.rsplit(".", 1)[0]
        lines.append((module, f"{key}: checkpoint has shape {theirs}, your model {mine}{blame(module)}"))
    for module, (mine, theirs, owner) in recounted.items():
        under = [line for path, line in lines if path == module or path.startswith(module + ".")]
        if len(under) > 1:  # one line for the one mistake, where the first of them was
            first = next(i for i, (_, line) in enumerate(lines) if line in under)
            lines = [entry for entry in lines if entry[1] not in under]
            lines.insert(first, (module, f"{module}: your model has {mine} blocks, the checkpoint {theirs}: "
                                         f"{len(under)} differences follow from that{_named(owner)}"))
    summary = (f"{name} does not fit your {item.target.name}: {len(fit['missing'])} missing, "
               f"{len(fit['unexpected'])} unexpected, {len(fit['mismatched'])} mis-shaped weights")
    return Verdict.zero(summary, details=[line for _, line in lines])


def _recounted(ctx: Context, nodes: dict, checkpoint_keys: list[str]) -> dict[str, tuple[int, int, object]]:
    """Modules graded by a structure item whose number of children differs from the checkpoint's."""
    out = {}
    for other in ctx.rubric.items:
        module = getattr(other, "module", None) if other.check == "structure" else None
        if not module or module not in nodes:
            continue
        depth = len(module.split("."))
        theirs = {k.split(".")[depth] for k in checkpoint_keys if k.startswith(module + ".")}
        mine = len(nodes[module]["children"])
        if theirs and len(theirs) != mine:
            out[module] = (mine, len(theirs), other)
    return out


def _count(group: str, keys: list[str]) -> str:
    """' (12 tensors)', or nothing when the line already names its one tensor."""
    if len(keys) == 1:
        return "" if keys[0] == group else f" ({keys[0]})"
    return f" ({len(keys)} tensors)"


def _blame(ctx: Context, module_path: str, nodes: dict) -> str:
    """' -> <item>' for the rubric item whose question builds this module."""
    best, best_len = None, -1
    for other in ctx.rubric.items:
        for scope in _scopes(other, nodes):
            if module_path == scope or module_path.startswith(scope + ".") or scope.startswith(module_path + "."):
                if len(scope) > best_len:
                    best, best_len = other, len(scope)
    return _named(best) if best is not None else ""


def _named(item) -> str:
    return f" -> {item.title or item.id} ({item.id})"


def _scopes(item, nodes: dict) -> list[str]:
    """Module paths an item is responsible for, in the student's built model."""
    if item.check == "blanks":
        return [b.module for b in item.blanks if b.module]
    if item.check == "structure":
        return [item.module]
    if item.check == "equivalence":
        return [path for path, node in nodes.items() if path and node["type"] == item.target.name]
    return []
