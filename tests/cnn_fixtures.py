"""Fixtures for the CNN Architecture assignment: instructor-style checkpoints and test
sets whose correct accuracy is known exactly.

The checkpoints hold the reference models' seeded initial weights (the real
instructor checkpoints are not redistributable).  A test set "labelled by" a model
carries that model's own predictions as labels, so the right architecture with its
checkpoint scores exactly 100% and anything that computes differently scores less.
The set is written in the official cifar-10-batches-py layout, so the grader reads
it exactly as it reads the real CIFAR-10.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from grader.datasets import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, SAMPLE_ZIP

ROOT = Path(__file__).resolve().parents[1]
CNN_REFERENCE = ROOT / "reference_solutions" / "cnn_architecture"
CHECKPOINT_NAMES = {"resnet": "resnet50_epoch285.ckpt", "vgg": "vgg16_epoch250.ckpt"}


def reference_model(kind: str, seed: int = 1234) -> torch.nn.Module:
    file, builder = {"resnet": ("resnet50_skeleton.py", "ResNet50_layer4"), "vgg": ("vgg16_full.py", "vgg16")}[kind]
    spec = importlib.util.spec_from_file_location(f"_fixture_{kind}", CNN_REFERENCE / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    model = getattr(module, builder)()
    # Give BatchNorm layers non-trivial statistics, as a trained checkpoint has.
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.05)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) * 0.5 + 0.75)
    return model.eval()


def write_checkpoints(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in CHECKPOINT_NAMES.items():
        torch.save(reference_model(kind).state_dict(), folder / name)
    return folder


def sample_images(count: int) -> np.ndarray:
    """The first `count` real CIFAR-10 test images of the embedded sample, as uint8 NCHW."""
    from PIL import Image

    with zipfile.ZipFile(SAMPLE_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        step = max(1, len(names) // count)
        chosen = names[::step][:count]
        return np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")).transpose(2, 0, 1)
                         for n in chosen])


def predictions(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """What the course's evaluation computes: ToTensor + Normalize, argmax."""
    x = torch.from_numpy(images).float() / 255.0
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model.eval()((x - mean) / std).argmax(1).numpy()


def write_cifar_batches(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """An official-layout cifar-10-batches-py folder holding these test images."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True, exist_ok=True)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": images.reshape(len(images), -1), b"labels": [int(v) for v in labels]}, f)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f)
    return folder


def write_labelled_by(folder: Path, kind: str, count: int = 64) -> Path:
    """A test set labelled by the reference `kind` model with its checkpoint weights."""
    images = sample_images(count)
    return write_cifar_batches(folder, images, predictions(reference_model(kind), images))
