"""Training on CIFAR-10 kept as one uint8 tensor: the loop behind `grader train` and the
accuracy items that train before they evaluate.

It reads top to bottom like fast CIFAR-10 trainers (airbench) and torchvision's
reference scripts: the Recipe (what the rubric YAML asks for), the optimizer and the
learning-rate schedule, batch augmentation, train_one_epoch, evaluate, and main.

The whole training set stays one uint8 tensor (memory-mapped from the grader's cache,
or copied once to the GPU); each batch is gathered, augmented (flips, translations)
and normalised as a whole on the device.  Everything random is derived from
(seed, epoch, step), so a run stopped anywhere (a wall-clock budget) and resumed from
its checkpoint ends with the same weights as one that never stopped, on the same
device and number of threads.

In grading, this runs inside the student's sandboxed process (grader.sandbox.worker,
op "train"): it gets training images and labels, never the test labels.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from grader import evaluate as evaluation

# -- the recipe ---------------------------------------------------------------------


class OptimizerSpec(BaseModel):
    """A torch.optim optimizer by name, with its settings: {type: SGD, lr: 0.01, momentum: 0.9}."""

    model_config = ConfigDict(extra="allow")
    type: str = "SGD"
    lr: float = Field(gt=0)

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Augment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flip: bool = Field(False, description="RandomHorizontalFlip: mirror half the images")
    translate: int = Field(0, ge=0, description=(
        "RandomCrop(size, padding=N): shift each image by up to N pixels, filling with black"))


class Recipe(BaseModel):
    """How a model is trained: the rubric's words, no Python."""

    model_config = ConfigDict(extra="forbid")
    epochs: float = Field(gt=0, description="passes over the training images (a budget when the submission asks "
                                            "for fewer)")
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerSpec = Field(default_factory=lambda: OptimizerSpec(type="Adam", lr=1e-3),
                                     description="used when the submission gives no optimizer")
    use_submission_optimizer: bool = Field(True, description="train with the optimizer the submission builds")
    schedule: Literal["constant", "onecycle"] = Field("constant", description=(
        "constant: the optimizer's own learning rate; onecycle: rise linearly to it over `warmup` of the "
        "steps, then fall linearly to zero"))
    warmup: float = Field(0.2, gt=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: Augment = Field(default_factory=Augment)
    first: int | None = Field(None, gt=0, description="train on the first N images only (the notebook's NUM_TRAIN)")
    seed: int = 0
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast, on GPUs and recent CPUs")
    channels_last: bool = Field(False, description="NHWC memory layout: faster convolutions on CPUs and GPUs")


def make_optimizer(spec: OptimizerSpec, parameters) -> torch.optim.Optimizer:
    cls = getattr(torch.optim, spec.type, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"optimizer type {spec.type!r} is not in torch.optim")
    accepted = inspect.signature(cls).parameters
    unknown = [k for k in spec.settings() if k not in accepted]
    if unknown:
        raise ValueError(f"torch.optim.{spec.type} has no setting {', '.join(unknown)}")
    return cls(parameters, lr=spec.lr, **spec.settings())


def lr_factor(recipe: Recipe, step: int, total_steps: int) -> float:
    """The schedule's multiplier of each group's base learning rate at `step` (0-based)."""
    if recipe.schedule == "constant":
        return 1.0
    rise = max(1, round(recipe.warmup * total_steps))
    if step < rise:
        return (step + 1) / rise
    return max(0.0, (total_steps - step) / max(1, total_steps - rise))


# -- data ---------------------------------------------------------------------------


def _generator(*parts: int) -> torch.Generator:
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**62)
    return torch.Generator().manual_seed(seed)


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(count, generator=_generator(seed, epoch))


def augment(batch: torch.Tensor, settings: Augment, generator: torch.Generator) -> torch.Tensor:
    """Flip and translate a whole uint8 batch (N, C, H, W) at once, image by image at random."""
    n, channels, height, width = batch.shape
    device = batch.device
    if settings.flip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(device).view(n, 1, 1, 1)
        batch = torch.where(flip, batch.flip(3), batch)
    pad = settings.translate
    if pad:
        padded = F.pad(batch, (pad, pad, pad, pad))
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(device)
        rows = (dy.view(n, 1) + torch.arange(height, device=device)).view(n, 1, height, 1)
        cols = (dx.view(n, 1) + torch.arange(width, device=device)).view(n, 1, 1, width)
        batch = padded[torch.arange(n, device=device).view(n, 1, 1, 1),
                       torch.arange(channels, device=device).view(1, channels, 1, 1), rows, cols]
    return batch


@dataclass
class TrainingData:
    images: torch.Tensor  # (N, C, H, W) uint8, on the training device or memory-mapped on the CPU
    labels: torch.Tensor  # (N,) int64, same device
    mean: list[float]
    std: list[float]

    @classmethod
    def prepare(cls, images: torch.Tensor, labels: torch.Tensor, mean, std, device: str, first: int | None = None):
        if first is not None:
            images, labels = images[:first], labels[:first]
        if not device.startswith("cpu"):
            images = images.to(device)  # once: 150 MB for CIFAR-10
        return cls(images, labels.to(device=images.device, dtype=torch.long), list(mean), list(std))

    def __len__(self) -> int:
        return self.images.shape[0]


# -- training ------------------------------------------------------------------------


@dataclass
class Position:
    """Where a run is: `step` optimizer steps done out of `total_steps`."""

    step: int
    total_steps: int
    steps_per_epoch: int

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps


@dataclass
class Clock:
    """Wall-clock budget, plus an optional caller's own stop rule (tests, a user's request)."""

    started: float
    budget_s: float | None = None
    should_stop: Callable[[Position], bool] | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self, position: Position) -> bool:
        if self.should_stop is not None and self.should_stop(position):
            return True
        return self.budget_s is not None and self.elapsed >= self.budget_s


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def train_one_epoch(model, optimizer, data: TrainingData, recipe: Recipe, position: Position, base_lrs: list[float],
                    clock: Clock, report: Callable[[Position, float], None]) -> bool:
    """Steps from `position` to the end of its epoch (or of the run); False when the budget ran out."""
    device = str(data.images.device)
    epoch, first = divmod(position.step, position.steps_per_epoch)
    order = epoch_order(len(data), recipe.seed, epoch).to(data.images.device)
    normalize = evaluation.normalizer(data.mean, data.std, device)
    model.train()
    for step in range(first, position.steps_per_epoch):
        if position.done:
            break
        if clock.out_of_time(position):
            return False
        generator = _generator(recipe.seed, epoch, step)
        torch.manual_seed(generator.initial_seed())  # dropout and the like
        index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
        x = normalize(augment(data.images[index], recipe.augment, generator))
        if recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        factor = lr_factor(recipe, position.step, position.total_steps)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        with autocast(device, recipe.precision):
            loss = F.cross_entropy(model(x), data.labels[index], label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        position.step += 1
        report(position, loss.item())
    return True


def evaluate(model, images: torch.Tensor, labels: torch.Tensor, mean, std, device: str = "cpu",
             batch_size: int = 1000, precision: str = "fp32") -> float:
    """Accuracy on labelled images (trusted code only: the grader never gives test labels to students)."""
    predictions = evaluation.predict(model, images, mean, std, device=device, batch_size=batch_size,
                                     precision="bf16" if precision == "bf16" else "fp32")
    return (predictions == labels.cpu()).float().mean().item()


@dataclass
class Result:
    steps: int
    total_steps: int
    steps_per_epoch: int
    epochs_done: float
    epochs: float
    seconds: float
    loss: float | None
    stopped_by_budget: bool
    base_lrs: list[float]
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def main(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: TrainingData, recipe: Recipe, *,
         epochs: float | None = None, start_step: int = 0, base_lrs: list[float] | None = None,
         budget_s: float | None = None, on_progress: Callable[[dict], None] | None = None,
         progress_every_s: float = 1.0, should_stop: Callable[[Position], bool] | None = None) -> Result:
    """Train `model` with `optimizer` as `recipe` says, from `start_step` (a resumed run), for
    `epochs` (default: the recipe's), or until `budget_s` seconds have passed."""
    epochs = epochs if epochs is not None else recipe.epochs
    device = str(data.images.device)
    steps_per_epoch = len(data) // recipe.batch_size  # full batches only: BatchNorm needs more than one image
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data)} training images make no batch of {recipe.batch_size}")
    position = Position(start_step, max(1, round(epochs * steps_per_epoch)), steps_per_epoch)
    base_lrs = list(base_lrs) if base_lrs else [group["lr"] for group in optimizer.param_groups]
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    clock = Clock(time.monotonic(), budget_s, should_stop)
    last = {"reported": -math.inf, "loss": None, "first_step": start_step}

    def report(position: Position, loss: float) -> None:
        last["loss"] = loss if last["loss"] is None else 0.9 * last["loss"] + 0.1 * loss
        now = clock.elapsed
        if on_progress is None or (now - last["reported"] < progress_every_s and not position.done):
            return
        last["reported"] = now
        done = position.step - last["first_step"]
        rate = done / now if now > 0 else 0.0
        on_progress({"step": position.step, "steps": position.total_steps, "epoch": round(position.epoch, 3),
                     "epochs": epochs, "loss": round(last["loss"], 4), "elapsed_s": round(now, 1),
                     "eta_s": round((position.total_steps - position.step) / rate, 1) if rate else None,
                     "images_per_s": round(rate * recipe.batch_size, 1)})

    finished = True
    while not position.done and finished:
        finished = train_one_epoch(model, optimizer, data, recipe, position, base_lrs, clock, report)
    if recipe.channels_last:
        model.to(memory_format=torch.contiguous_format)
    return Result(steps=position.step, total_steps=position.total_steps, steps_per_epoch=steps_per_epoch,
                  epochs_done=round(position.epoch, 4), epochs=epochs, seconds=round(clock.elapsed, 2),
                  loss=last["loss"], stopped_by_budget=not position.done, base_lrs=base_lrs, seed=recipe.seed)


# -- checkpoints ----------------------------------------------------------------------


def checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, result: Result, recipe: Recipe) -> dict:
    """What `grader train` writes: weights under 'model' (so any checkpoint reader finds them),
    the optimizer's state and where training stands, to resume from."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "training": {**result.to_dict(), "recipe": recipe.model_dump(mode="json")}}
