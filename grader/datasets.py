"""Labelled image sets: where they come from, decoded once, cached as uint8.

Sources, in the order they are looked for:
  1. --data-dir, then $GRADER_DATA_DIR, then <cache>/datasets: the official CIFAR-10
     (torchvision's cifar-10-batches-py) or an image-folder tree (test/<class>/*.png|jpg);
  2. --download: torchvision's CIFAR-10 download, when online;
  3. for CIFAR-10 only, a balanced sample of the real test set shipped in the package,
     so that everything works offline (accuracy then comes with a 95% interval).

Decoded images go to raw (N, C, H, W) uint8 files: training images to
<cache>/arrays/KEY.u8, which student processes map read-only (training labels are
not secret), test images to <cache>/test/KEY.u8, which no student process is given:
the grader sends them in batches in a secret order (grader.evaluate).  Labels go to
<cache>/labels/KEY.npy, a folder student processes cannot read: accuracy is computed
by the grader alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from grader import atomic
from grader.errors import GraderError
from grader.evaluate import ImageArray
from grader.fingerprint import tree_stamp

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2023, 0.1994, 0.2010]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SAMPLE_ZIP = Path(__file__).parent / "data" / "cifar10_test_sample.zip"


class Normalization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: list[float] = Field(default_factory=lambda: list(CIFAR10_MEAN))
    std: list[float] = Field(default_factory=lambda: list(CIFAR10_STD))


class DataSpec(BaseModel):
    """Which labelled images an item is measured on, and how they are normalised."""

    model_config = ConfigDict(extra="forbid")
    dataset: Literal["cifar10", "image_folder"] = "cifar10"
    split: Literal["test", "train"] = "test"
    image_size: int | None = Field(None, description="resize square images to this size (image folders)")
    normalize: Normalization = Field(default_factory=Normalization)


class DataNotFound(GraderError):
    """No data set where we looked; the message says exactly what to put where."""


@dataclass
class LabelledImages:
    images: ImageArray  # training images: the student's process may read them; test images: the grader only
    labels: torch.Tensor  # stays in the grader
    classes: list[str]
    source: str
    is_sample: bool = False

    def __len__(self) -> int:
        return self.images.shape[0]


def cache_root() -> Path:
    env = os.environ.get("GRADER_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("grader"))


def arrays_dir() -> Path:
    """The only cache folder a student's process may read."""
    path = cache_root() / "arrays"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_arrays_dir() -> Path:
    """Decoded test images: read by the grader only (image folders and the embedded sample are
    decoded class by class, so their order alone would give the labels away)."""
    path = cache_root() / "test"
    path.mkdir(parents=True, exist_ok=True)
    return path


def search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir))
    if os.environ.get("GRADER_DATA_DIR"):
        dirs.append(Path(os.environ["GRADER_DATA_DIR"]))
    dirs.append(cache_root() / "datasets")
    return dirs


def load(spec: DataSpec, data_dir=None, *, download: bool = False, allow_sample: bool = True) -> LabelledImages:
    """Find, decode (once) and return the labelled images an item needs."""
    for root in search_dirs(data_dir):
        found = _find_in(root, spec)
        if found is not None:
            return found
    failed_download = None
    if spec.dataset == "cifar10" and download:
        try:
            return _download_cifar10(spec)
        except DataNotFound as e:  # offline: the embedded sample still grades the test set
            failed_download = e
    if spec.dataset == "cifar10" and spec.split == "test" and allow_sample and SAMPLE_ZIP.exists():
        found = _cached(("sample", _file_digest(SAMPLE_ZIP), spec.image_size), lambda: _decode_zip(SAMPLE_ZIP, spec),
                        "a 3,000-image sample of the CIFAR-10 test set shipped with grader", is_sample=True,
                        secret=True)
        if failed_download is not None:
            found.source += " (the download failed: offline?)"
        return found
    if failed_download is not None:
        raise failed_download
    raise DataNotFound(_not_found_message(spec, data_dir))


def _not_found_message(spec: DataSpec, data_dir) -> str:
    where = ", ".join(str(d) for d in search_dirs(data_dir))
    if spec.dataset == "cifar10":
        return (f"CIFAR-10 {spec.split} set not found (looked in {where}). Put the official "
                "'cifar-10-batches-py' folder (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) "
                f"or an image-folder tree '{spec.split}/<class>/*.png' in one of those folders, pass "
                "--data-dir DIR, or use --download when online.")
    return (f"image folder not found (looked in {where}): pass --data-dir DIR where DIR holds "
            f"'{spec.split}/<class name>/<images>', one folder per class.")


def locate(spec: DataSpec, data_dir=None) -> tuple[str, Path] | None:
    """The folder load() reads `spec` from: ("cifar10-py", the batches folder) or ("folder",
    the split's image folder); None when it would download or use the embedded sample."""
    for root in search_dirs(data_dir):
        found = _source_in(root, spec)
        if found is not None:
            return found
    return None


def _source_in(root: Path, spec: DataSpec) -> tuple[str, Path] | None:
    if not root.is_dir():
        return None
    if spec.dataset == "cifar10":
        for batches in (root / "cifar-10-batches-py", root):
            if (batches / "test_batch").is_file() and (batches / "batches.meta").is_file():
                return "cifar10-py", batches
    for folder in (root / spec.split, root / "cifar10" / spec.split, root / "CIFAR-10-images" / spec.split):
        if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
            return "folder", folder
    return None


def _find_in(root: Path, spec: DataSpec) -> LabelledImages | None:
    found = _source_in(root, spec)
    if found is None:
        return None
    kind, folder = found
    if kind == "cifar10-py":
        return _cached(("cifar10-py", str(folder.resolve()), spec.split, tree_stamp(folder), spec.image_size),
                       lambda: _decode_cifar_batches(folder, spec), f"CIFAR-10 {spec.split} set ({folder})",
                       secret=spec.split == "test")
    return _cached(("folder", str(folder.resolve()), tree_stamp(folder), spec.image_size),
                   lambda: _decode_folder(folder, spec), f"image folder {folder}", secret=spec.split == "test")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _cached(key_parts, decode, source: str, is_sample: bool = False, secret: bool = False) -> LabelledImages:
    key = hashlib.sha256(json.dumps(key_parts, default=str).encode()).hexdigest()[:20]
    folder = test_arrays_dir() if secret else arrays_dir()
    if secret:  # a cache from before test images were kept from students: not left where they can read
        for stale in (arrays_dir() / f"{key}.u8", arrays_dir() / f"{key}.json"):
            stale.unlink(missing_ok=True)
    images_path = folder / f"{key}.u8"
    meta_path = folder / f"{key}.json"
    labels_dir = cache_root() / "labels"
    labels_path = labels_dir / f"{key}.npy"
    if not (images_path.exists() and meta_path.exists() and labels_path.exists()):
        images, labels, classes = decode()
        labels_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(images_path, np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        buf = io.BytesIO()
        np.save(buf, np.asarray(labels, dtype=np.int64))
        atomic.write_bytes(labels_path, buf.getvalue())
        atomic.write_bytes(meta_path, json.dumps({"shape": list(images.shape), "classes": classes,
                                             "source": source}).encode())
    meta = json.loads(meta_path.read_text())
    labels = torch.from_numpy(np.load(labels_path))
    return LabelledImages(ImageArray(str(images_path), tuple(meta["shape"])), labels, meta["classes"],
                          meta.get("source", source), is_sample)


def describe_as(found: LabelledImages, source: str) -> None:
    """Name `source` as where these cached images come from (a staged copy names its original)."""
    meta_path = Path(found.images.path).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if meta.get("source") != source:
        atomic.write_bytes(meta_path, json.dumps({**meta, "source": source}).encode())
    found.source = source


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's python batches are pickles; allow only what numpy arrays need."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch file")


def _read_batch(path: Path) -> dict:
    with open(path, "rb") as f:
        return _ArraysOnly(f, encoding="bytes").load()


def _decode_cifar_batches(folder: Path, spec: DataSpec):
    names = ["test_batch"] if spec.split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        batch = _read_batch(folder / name)
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(int(v) for v in batch[b"labels"])
    meta = _read_batch(folder / "batches.meta")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(b"label_names", CIFAR10_CLASSES)]
    array = np.concatenate(images)
    if spec.image_size and spec.image_size != 32:
        array = _resize_all(array, spec.image_size)
    return array, np.asarray(labels), classes


def _decode_image(data_or_path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(data_or_path) as img:
        img = img.convert("RGB")
        if size and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _resize_all(array: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([
        np.asarray(Image.fromarray(a.transpose(1, 2, 0)).resize((size, size), Image.BILINEAR)).transpose(2, 0, 1)
        for a in array
    ])


def _decode_folder(folder: Path, spec: DataSpec):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for index, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_decode_image(path, spec.image_size))
                labels.append(index)
    if not images:
        raise DataNotFound(f"no images under {folder}/<class>/")
    _check_same_size(images, folder)
    return np.stack(images), np.asarray(labels), classes


def _check_same_size(images: list, where) -> None:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataNotFound(f"images under {where} have different sizes {sorted(shapes)[:3]}; "
                           "set data.image_size in the rubric to resize them")


def _decode_zip(path: Path, spec: DataSpec):
    """The embedded sample: a zip of test/<class>/<name>.jpg."""
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        classes = sorted({n.split("/")[-2] for n in names})
        images = [_decode_image(io.BytesIO(z.read(n)), spec.image_size) for n in names]
        labels = [classes.index(n.split("/")[-2]) for n in names]
    return np.stack(images), np.asarray(labels), classes


def _download_cifar10(spec: DataSpec) -> LabelledImages:
    import urllib.error

    from torchvision.datasets import CIFAR10

    root = cache_root() / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    try:
        CIFAR10(str(root), train=spec.split == "train", download=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise DataNotFound(
            f"could not download CIFAR-10 ({getattr(e, 'reason', e)}); are you offline? "
            f"Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz elsewhere and unpack it into {root}"
        ) from None
    found = _find_in(root, spec)
    if found is None:
        raise DataNotFound(f"the download finished but {root}/cifar-10-batches-py is incomplete")
    return found


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval for an accuracy measured on a sample."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
