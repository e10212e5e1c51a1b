"""A tiny accuracy assignment for attacks on the evaluation: one model file, one accuracy
item, real CIFAR-10 test images from the embedded sample, labels the test chooses.

    course = tiny_course(tmp_path, labels="colour")   # rubric, reference, checkpoint, data

Models are small enough that a whole evaluation takes a second or two."""

from __future__ import annotations

import io
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import torch

from grader.datasets import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, SAMPLE_ZIP
from tests.cnn_fixtures import write_cifar_batches

NET = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(4)
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
""")

RUBRIC = textwrap.dedent("""
    assignment: tiny_accuracy
    files: [model.py]
    reference: reference
    data: {{dataset: {dataset}}}
    limits: {{timeout_s: 300, item_timeout_s: 120, memory_mb: 4096}}
    items:
      - {{id: net.accuracy, points: 10, check: accuracy, target: {{file: model.py, name: Net}},
         threshold: 0.5{checkpoint}}}
""")


def sample(count_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Real CIFAR-10 test images (uint8 NCHW) and their true labels, class by class."""
    from PIL import Image

    images, labels = [], []
    with zipfile.ZipFile(SAMPLE_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        for index, cls in enumerate(CIFAR10_CLASSES):
            for name in [n for n in names if n.split("/")[-2] == cls][:count_per_class]:
                images.append(np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGB")).transpose(2, 0, 1))
                labels.append(index)
    return np.stack(images), np.asarray(labels)


def colour_score(images: np.ndarray) -> np.ndarray:
    """Mean red minus mean blue: what the honest colour model below measures."""
    return images[:, 0].reshape(len(images), -1).mean(1) - images[:, 2].reshape(len(images), -1).mean(1)


def colour_labels(images: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Labels 0-9: the decile of colour_score (balanced: chance is 10%), and the cut points."""
    score = colour_score(images)
    cuts = [float(c) for c in np.quantile(score, np.linspace(0.1, 0.9, 9))]
    return np.searchsorted(cuts, score, side="right"), cuts


def unnormalise_source() -> str:
    """Student code that gets the uint8 pixels back from the normalised batch."""
    return textwrap.dedent(f"""
        MEAN = torch.tensor({CIFAR10_MEAN}).view(1, 3, 1, 1)
        STD = torch.tensor({CIFAR10_STD}).view(1, 3, 1, 1)


        def pixels(x):
            return ((x.float() * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8)


        def one_hot(classes):
            return torch.nn.functional.one_hot(torch.as_tensor(classes).long(), 10).float()
    """)


def colour_model(cuts: list[float]) -> str:
    """An honest model: it measures what the label is about, flipped or shifted alike."""
    return "import torch\n" + unnormalise_source() + textwrap.dedent(f"""

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.unused = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                u = pixels(x).float()
                score = u[:, 0].flatten(1).mean(1) - u[:, 2].flatten(1).mean(1)
                return one_hot(torch.bucketize(score, torch.tensor({cuts}), right=True))
    """)


def lookup_model(images: np.ndarray, labels: np.ndarray) -> str:
    """A model that recognises the public test images by a hash of their pixels."""
    import hashlib

    table = {hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest(): int(label)
             for im, label in zip(images, labels)}
    return "import hashlib\nimport torch\n" + unnormalise_source() + textwrap.dedent(f"""
        TABLE = {table!r}


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.unused = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                u = pixels(x).contiguous()
                return one_hot([TABLE.get(hashlib.sha1(im.numpy().tobytes()).hexdigest(), 0) for im in u])
    """)


def position_model(per_class: int) -> str:
    """A model that answers by position: right whenever images come class by class, in index order."""
    return textwrap.dedent(f"""
        import torch

        SEEN = [0]


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.unused = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                start = SEEN[0]
                SEEN[0] += len(x)
                classes = (torch.arange(start, start + len(x)) // {per_class}) % 10
                return torch.nn.functional.one_hot(classes, 10).float()
    """)


def net_predictions(images: np.ndarray, checkpoint: Path) -> np.ndarray:
    namespace: dict = {}
    exec(NET, namespace)
    model = namespace["Net"]()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    x = torch.from_numpy(images).float() / 255.0
    x = (x - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model.eval()(x).argmax(1).numpy()


def tiny_course(root: Path, *, images: np.ndarray, labels: np.ndarray | None = None, checkpoint: bool = False,
                image_folder: bool = False) -> dict[str, Path]:
    """rubric.yaml, reference/model.py (NET), checkpoints/net.pt (seeded) and data/ (cifar batches, or
    test/<class>/ images); labels: given, or (None) the reference Net's own predictions with its checkpoint."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "reference").mkdir(exist_ok=True)
    (root / "reference" / "model.py").write_text(NET)
    (root / "checkpoints").mkdir(exist_ok=True)
    namespace: dict = {}
    exec(NET, namespace)
    torch.manual_seed(7)
    torch.save(namespace["Net"]().state_dict(), root / "checkpoints" / "net.pt")
    if labels is None:
        labels = net_predictions(images, root / "checkpoints" / "net.pt")
    data = root / "data"
    if image_folder:
        from PIL import Image

        for i, (im, label) in enumerate(zip(images, labels)):
            folder = data / "test" / CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
    else:
        write_cifar_batches(data, images, labels)
    (root / "rubric.yaml").write_text(RUBRIC.format(dataset="image_folder" if image_folder else "cifar10",
                                                    checkpoint=", checkpoint: net.pt" if checkpoint else ""))
    return {"rubric": root / "rubric.yaml", "data": data, "checkpoints": root / "checkpoints", "root": root}


def submission(root: Path, name: str, source: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(source)
    return folder
