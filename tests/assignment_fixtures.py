"""Fixtures for the seed assignments (resnet18_cifar, cnn_vs_fcn): instructor-style
checkpoints from the reference models' seeded weights, and test sets labelled by those
models, so that the right code with its checkpoint scores exactly 100% and the
accuracy of anything else is known exactly.

Labels are computed with grader.evaluate.predict, the code the student's process runs,
and images whose two best scores are nearly tied are left out, so no rounding
difference can flip a label.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from grader import evaluate

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference_solutions"


def reference_module(assignment: str, file: str):
    folder = REFERENCE / assignment
    name = f"_fixture_{assignment}_{Path(file).stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, folder / file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    sys.modules[name] = module
    return module


def seeded(build, seed: int = 1234) -> torch.nn.Module:
    """A model as a trained checkpoint would give it: seeded weights, non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build()
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.05)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) * 0.5 + 0.75)
    return model.eval()


def confident_labels(model: torch.nn.Module, images: np.ndarray, mean, std, margin: float = 1e-3):
    """The model's predictions for uint8 NCHW images, and which images are safe to keep."""
    logits = evaluate.predict(model, torch.from_numpy(images), mean, std, return_logits=True)
    top2 = logits.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > margin
    return logits.argmax(1).numpy(), keep.numpy()


def spread_classes(model: torch.nn.Module, head: torch.nn.Linear, images: np.ndarray, mean, std) -> None:
    """Rescale and re-centre the classifier so that predictions on `images` vary across classes.

    A freshly initialised network predicts one class for almost every image; a trained one
    does not.  The weights stay those of the same architecture: only the last layer changes."""
    captured = []
    hook = head.register_forward_hook(lambda module, args, out: captured.append(args[0].detach()))
    try:
        evaluate.predict(model, torch.from_numpy(images), mean, std, return_logits=True)
    finally:
        hook.remove()
    features = torch.cat(captured).flatten(1)
    with torch.no_grad():
        logits = features @ head.weight.T
        head.weight.mul_(1.0 / logits.std(0).clamp_min(1e-6).unsqueeze(1))
        head.bias.copy_(-(features @ head.weight.T).mean(0))


def _head_inputs(model: torch.nn.Module, head: torch.nn.Linear, images: np.ndarray, mean, std) -> torch.Tensor:
    captured = []
    hook = head.register_forward_hook(lambda module, args, out: captured.append(args[0].detach()))
    try:
        evaluate.predict(model, torch.from_numpy(images), mean, std, return_logits=True)
    finally:
        hook.remove()
    return torch.cat(captured).flatten(1).double()


def fit_head(model: torch.nn.Module, head: torch.nn.Linear, images: np.ndarray, mean, std, labels,
             margin: float = 8.0) -> None:
    """Set the last layer so that the model predicts `labels` on `images`, each with a clear margin.

    With more features than images, least squares reproduces the one-hot targets exactly:
    the checkpoint of "a model that learnt this test set"."""
    features = _head_inputs(model, head, images, mean, std)
    design = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    targets = torch.full((len(labels), head.out_features), -margin / 2, dtype=torch.float64)
    targets[torch.arange(len(labels)), torch.as_tensor(labels)] = margin / 2
    solution = torch.linalg.lstsq(design, targets, driver="gelsd").solution
    with torch.no_grad():
        head.weight.copy_(solution[:-1].T.float())
        head.bias.copy_(solution[-1].float())


def write_image_folder(root: Path, images: np.ndarray, labels, classes: list[str], split: str = "test") -> Path:
    """root/split/<class>/<n>.png, lossless, so the grader reads exactly these pixels."""
    from PIL import Image

    for name in classes:
        (root / split / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image.transpose(1, 2, 0)).save(root / split / classes[int(label)] / f"{index:04d}.png")
    return root


def upscaled(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(a.transpose(1, 2, 0)).resize((size, size), Image.BILINEAR))
                     .transpose(2, 0, 1) for a in images])
