"""The training loop (grader/training.py) on a tiny model and tiny data: it trains, its
checkpoint resumes exactly, and the same seed gives the same weights on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from grader import training
from grader.datasets import CIFAR10_MEAN, CIFAR10_STD
from tests.notebooks import state_equal

RECIPE = training.Recipe(epochs=3, batch_size=16, schedule="onecycle", label_smoothing=0.1,
                         augment=training.Augment(flip=True, translate=2), seed=7)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Flatten(), nn.Dropout(0.1), nn.Linear(8 * 8 * 8, 10))


@pytest.fixture(scope="module")
def data() -> training.TrainingData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(96) % 10
    # A learnable signal: each class brightens its own band of rows.
    for c in range(10):
        images[labels == c, :, 3 * c:3 * c + 3, :] = 255
    return training.TrainingData.prepare(images, labels, CIFAR10_MEAN, CIFAR10_STD, "cpu")


def run(data, stop_at=None, start=None, model=None, optimizer=None, epochs=None):
    model = model or tiny_model()
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    kwargs = {}
    if start is not None:
        kwargs = {"start_step": start.steps, "base_lrs": start.base_lrs}
    result = training.main(model, optimizer, data, RECIPE, epochs=epochs,
                           should_stop=(lambda p: p.step >= stop_at) if stop_at else None, **kwargs)
    return model, optimizer, result


def test_a_tiny_model_learns_from_tiny_data(data):
    before = tiny_model()
    accuracy_before = training.evaluate(before, data.images, data.labels, data.mean, data.std)
    model, _, result = run(data, epochs=10)
    assert result.steps == result.total_steps == 10 * (96 // 16)
    assert not result.stopped_by_budget and result.epochs_done == 10
    accuracy_after = training.evaluate(model, data.images, data.labels, data.mean, data.std)
    assert accuracy_after > max(0.5, accuracy_before + 0.3)


def test_same_seed_same_weights_and_another_seed_other_weights(data):
    first, _, _ = run(data)
    second, _, _ = run(data)
    assert state_equal(first.state_dict(), second.state_dict())
    other = tiny_model()
    optimizer = torch.optim.SGD(other.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    training.main(other, optimizer, data, RECIPE.model_copy(update={"seed": 8}))
    assert not state_equal(first.state_dict(), other.state_dict())


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_weights(data, tmp_path):
    straight, _, _ = run(data)

    # Stop in the middle of the second epoch (as a budget would), save, reload into fresh objects.
    model, optimizer, partial = run(data, stop_at=9)
    assert partial.stopped_by_budget and partial.steps == 9 and partial.epochs_done == pytest.approx(1.5)
    torch.save(training.checkpoint(model, optimizer, partial, RECIPE), tmp_path / "part.pt")
    saved = torch.load(tmp_path / "part.pt", weights_only=True)
    assert saved["training"]["steps"] == 9 and saved["training"]["stopped_by_budget"]

    resumed_model = tiny_model(seed=123)  # other initial weights: the checkpoint must replace them
    resumed_model.load_state_dict(saved["model"])
    resumed_optimizer = torch.optim.SGD(resumed_model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    start = training.Result(**{k: v for k, v in saved["training"].items() if k != "recipe"})
    _, _, final = run(data, start=start, model=resumed_model, optimizer=resumed_optimizer)
    assert final.steps == final.total_steps and not final.stopped_by_budget
    assert state_equal(straight.state_dict(), resumed_model.state_dict())


def test_a_wall_clock_budget_stops_cleanly(data):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    result = training.main(model, optimizer, data, RECIPE, epochs=1000, budget_s=0.5)
    assert result.stopped_by_budget and 0 < result.steps < result.total_steps
    assert result.seconds < 5


def test_augmentation_shifts_and_flips_whole_batches_exactly():
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = training.augment(images, training.Augment(flip=True, translate=2), torch.Generator().manual_seed(3))
    assert out.shape == images.shape and out.dtype == torch.uint8

    def is_shift(a, b):
        for flipped in (b, b.flip(2)):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    ys, xs = slice(max(0, dy), 8 + min(0, dy)), slice(max(0, dx), 8 + min(0, dx))
                    yd, xd = slice(max(0, -dy), 8 - max(0, dy)), slice(max(0, -dx), 8 - max(0, dx))
                    if torch.equal(a[:, yd, xd], flipped[:, ys, xs]):
                        return True
        return False

    assert all(is_shift(out[i], images[i]) for i in range(32))
    assert not torch.equal(out, images)


def test_onecycle_rises_then_falls_to_zero():
    recipe = training.Recipe(epochs=1, schedule="onecycle", warmup=0.25)
    factors = [training.lr_factor(recipe, step, 100) for step in range(100)]
    assert factors[24] == pytest.approx(1.0) and factors[0] < 0.1 and factors[-1] < 0.02
    assert factors == sorted(factors[:25]) + sorted(factors[25:], reverse=True)
    assert training.lr_factor(training.Recipe(epochs=1), 50, 100) == 1.0


def test_recipe_optimizers_are_checked_against_torch_optim():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = training.make_optimizer(training.OptimizerSpec(type="SGD", lr=0.1, momentum=0.9, nesterov=True), params)
    assert sgd.param_groups[0]["nesterov"] is True
    with pytest.raises(ValueError, match="no setting"):
        training.make_optimizer(training.OptimizerSpec(type="SGD", lr=0.1, betas=[0.9, 0.99]), params)
    with pytest.raises(ValueError, match="not in torch.optim"):
        training.make_optimizer(training.OptimizerSpec(type="Sgd", lr=0.1), params)
