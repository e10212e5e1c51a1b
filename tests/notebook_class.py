"""A generated class of PyTorch basics notebooks, as a course's download holds them:
right, renamed, broken, untouched, and each with one of the mistakes students make.

Some are byte-for-byte copies of others (a renamed copy of the reference, the skeleton
twice under two names), so exact reuse has something to reuse; the others differ from
a classmate in one question only, so a wrongly shared result shows as a wrong grade.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.notebooks import REFERENCE_NOTEBOOK, variant

SKELETON_NOTEBOOK = REFERENCE_NOTEBOOK.parents[2] / "skeletons" / "pytorch_basics" / "PyTorch.ipynb"
CHALLENGE = REFERENCE_NOTEBOOK.parent / "challenge.pt"

QUESTIONS_1_TO_6 = ["three_layer_convnet", "three_layer_convnet.init", "ThreeLayerConvNet", "sequential_convnet"]

WRONG_PADDING = [("F.conv2d(x, conv_w1, conv_b1, padding=2)", "F.conv2d(x, conv_w1, conv_b1, padding=1)")]
TRANSPOSED_FC = [("scores = flatten(x).mm(fc_w) + fc_b", "scores = flatten(x).mm(fc_w.t()) + fc_b"),
                 ("fc_w = random_weight((channel_2 * 32 * 32, 10))", "fc_w = random_weight((10, channel_2 * 32 * 32))")]
MISSING_RELU = [("x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))", "x = F.conv2d(x, conv_w2, conv_b2, padding=1)"),
                ("        x = F.relu(self.conv2(x))\n", "        x = self.conv2(x)\n")]
NO_KAIMING = [("        for layer in (self.conv1, self.conv2, self.fc):\n            nn.init.kaiming_normal_(layer.weight)\n",
               "")]
PLAIN_SGD = [("optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)\n# END",
              "optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)\n# END")]
Q2_SHAPE = [("conv_w2 = random_weight((channel_2, channel_1, 3, 3))", "conv_w2 = random_weight((channel_1, channel_2, 5, 5))")]
FAILING_CELLS = dict(
    insert=[("NUM_TRAIN = 49000", "from google.colab import drive\ndrive.mount('/content/drive')\n"),
            ("def flatten(x):", "import seaborn as sns\nsns.set()\nwarmup = undefined_helper(3)\n")],
    replace=[("def flatten(x):\n    N = x.shape[0]", "def flatten(x):\n    N = x.shape[0]\n    M = N +")])


def _notebook(folder: Path, name: str, *, replace=(), insert=(), source: Path | None = None,
              text: str | None = None, checkpoint: bool = False) -> None:
    folder.mkdir(parents=True)
    if text is not None:
        (folder / name).write_text(text)
    elif source is not None:
        shutil.copyfile(source, folder / name)
    else:
        variant(folder, replace=list(replace), insert=list(insert))
        if name != "PyTorch.ipynb":
            (folder / "PyTorch.ipynb").rename(folder / name)
    if checkpoint:
        shutil.copyfile(CHALLENGE, folder / "challenge.pt")


def write_class(root: Path, only: list[str] | None = None) -> list[str]:
    """One folder per student under `root` (all, or those in `only`); returns the student ids,
    in the order a batch takes them."""
    students = {
        # The skeleton first: under the old key its zeros were handed to everyone after it.
        "n01_skeleton": dict(name="PyTorch.ipynb", source=SKELETON_NOTEBOOK),
        "n02_q2_shape": dict(name="PyTorch.ipynb", replace=Q2_SHAPE),
        "n03_reference": dict(name="PyTorch.ipynb", source=REFERENCE_NOTEBOOK, checkpoint=True),
        "n04_renamed_reference": dict(name="HW3_PyTorch.ipynb", source=REFERENCE_NOTEBOOK, checkpoint=True),
        "n05_download_name": dict(name="PyTorch (1).ipynb", replace=MISSING_RELU),
        "n06_not_json": dict(name="PyTorch.ipynb", text="this is not a notebook {\n"),
        "n07_skeleton_renamed": dict(name="PyTorch (2).ipynb", source=SKELETON_NOTEBOOK),
        "n08_wrong_padding": dict(name="PyTorch.ipynb", replace=WRONG_PADDING),
        "n09_transposed_fc": dict(name="PyTorch.ipynb", replace=TRANSPOSED_FC),
        "n10_no_kaiming": dict(name="PyTorch.ipynb", replace=NO_KAIMING),
        "n11_plain_sgd": dict(name="PyTorch.ipynb", replace=PLAIN_SGD),
        "n12_failing_cells": dict(name="PyTorch.ipynb", **FAILING_CELLS),
        "n13_reference_again": dict(name="PyTorch.ipynb", source=REFERENCE_NOTEBOOK, checkpoint=True),
        "n14_reference_reformatted": dict(name="PyTorch.ipynb", replace=[("def flatten(x):", "def flatten( x ):")]),
    }
    chosen = [s for s in students if only is None or s in only]
    for student in chosen:
        _notebook(root / student, **students[student])
    return chosen
