"""Helpers for notebook submissions: variants of the reference notebook (a student's
mistake written into one cell), tiny notebooks, and a tiny CIFAR-10 image folder.

A variant is the reference notebook with exact text replacements in its code cells
(each must match exactly once, so a test cannot silently edit nothing), optionally
with cells inserted, written into a fresh submission folder.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from grader.datasets import CIFAR10_CLASSES, SAMPLE_ZIP

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_NOTEBOOK = ROOT / "reference_solutions" / "pytorch_basics" / "PyTorch.ipynb"
RUBRIC = ROOT / "rubrics" / "pytorch_basics.yaml"


def code_cell(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": source.splitlines(keepends=True)}


def markdown_cell(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source.splitlines(keepends=True)}


def write_notebook(path: Path, cells: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1))
    return path


def reference_cells() -> list[dict]:
    return json.loads(REFERENCE_NOTEBOOK.read_text())["cells"]


def variant(folder: Path, replace: list[tuple[str, str]] = (), insert: list[tuple[str, str]] = (),
            checkpoint: bool = False) -> Path:
    """The reference notebook with `replace` [(old, new)] applied and `insert` [(before_text, code)]:
    a code cell inserted before the cell containing before_text.  checkpoint: copy challenge.pt too."""
    cells = reference_cells()
    for old, new in replace:
        hits = [c for c in cells if c["cell_type"] == "code" and old in "".join(c["source"])]
        assert len(hits) == 1, f"{old!r} is in {len(hits)} cells"
        source = "".join(hits[0]["source"])
        assert source.count(old) == 1, f"{old!r} appears {source.count(old)} times in its cell"
        hits[0]["source"] = source.replace(old, new).splitlines(keepends=True)
    for before, code in insert:
        index = next(i for i, c in enumerate(cells) if before in "".join(c["source"]))
        cells.insert(index, code_cell(code))
    folder.mkdir(parents=True, exist_ok=True)
    write_notebook(folder / "PyTorch.ipynb", cells)
    if checkpoint:
        (folder / "challenge.pt").write_bytes((REFERENCE_NOTEBOOK.parent / "challenge.pt").read_bytes())
    return folder


def cell_number(path: Path, text: str) -> int:
    """The number of the code cell holding `text`, as the grader numbers cells: code cells only,
    as Jupyter's In [n] after Run All (markdown cells are not counted)."""
    cells = [c for c in json.loads(Path(path).read_text())["cells"] if c["cell_type"] == "code"]
    return next(i for i, c in enumerate(cells, start=1) if text in "".join(c["source"]))


TINY_IMPORTS = """import torch
import torch.nn as nn
import torch.optim as optim
import torch.nn.functional as F
"""

TINY_TRAIN = """def train_part34(model, optimizer, epochs=1):
    raise RuntimeError('training must not run while grading')
"""


def tiny_challenge_notebook(folder: Path, model_code: str, optimizer_code: str, epochs: int = 1,
                            before: list[str] = ()) -> Path:
    """A notebook with only what a challenge needs: imports, train_part34, and a Part V
    (plus `before`: code cells placed before Part V)."""
    cells = [code_cell(TINY_IMPORTS), code_cell(TINY_TRAIN), *[code_cell(c) for c in before],
             markdown_cell("## Part V. CIFAR-10 challenge"),
             code_cell(f"# Question 7\n{model_code}\n{optimizer_code}\ntrain_part34(model, optimizer, "
                       f"epochs={epochs})\n")]
    return write_notebook(folder / "PyTorch.ipynb", cells).parent


def tiny_rubric(path: Path, train: str, checkpoint: str = "challenge.pt", threshold: float = 0.05,
                extra_items: str = "", cell_timeout_s: float = 20) -> Path:
    """A rubric with the pytorch_basics notebook settings and one challenge item; `train` is
    the YAML of its train: block (indented by the caller's text)."""
    path.write_text(f"""assignment: tiny_challenge
files: [PyTorch.ipynb]
notebook:
  record_calls:
    train_part34: [model, optimizer, epochs]
  sections:
    challenge: ["Question 7", "Part V"]
  cell_timeout_s: {cell_timeout_s}
limits: {{timeout_s: 600, item_timeout_s: 300}}
items:
  - id: challenge.accuracy
    points: 10
    check: accuracy
    target: {{file: PyTorch.ipynb, name: model, section: challenge}}
    checkpoint: {checkpoint}
    threshold: {threshold}
    train:
{train}
{extra_items}""")
    return path


def tiny_cifar(folder: Path, train_per_class: int = 24, test_per_class: int = 8) -> Path:
    """train/<class>/*.jpg and test/<class>/*.jpg from real CIFAR-10 test images (the
    embedded sample): a data folder grader reads like any image-folder CIFAR-10."""
    with zipfile.ZipFile(SAMPLE_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        for cls in CIFAR10_CLASSES:
            mine = [n for n in names if n.split("/")[-2] == cls]
            for split, chosen in (("train", mine[:train_per_class]),
                                  ("test", mine[train_per_class:train_per_class + test_per_class])):
                target = folder / split / cls
                target.mkdir(parents=True, exist_ok=True)
                for name in chosen:
                    (target / name.split("/")[-1]).write_bytes(z.read(name))
    return folder


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def read_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
