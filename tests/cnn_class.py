"""A generated class of CNN Architecture submissions: right, wrong, broken and hostile.

Every student starts from the reference solution (reference_solutions/cnn_architecture)
and changes one thing in resnet50_skeleton.py (or ships one odd file).  `EXPECTED`
says what each student must get: the points per item and, for zeros, the words the
reason must contain.  Students ship the checkpoint they "trained"
(resnet50_epoch285.ckpt: the instructor-style one, or a hostile one); the VGG16
checkpoint comes from the instructor's --checkpoints folder.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference_solutions" / "cnn_architecture"
FILES = ("main.py", "vgg16_full.py", "resnet50_skeleton.py")
RESNET_FILE = "resnet50_skeleton.py"
RESNET_CKPT = "resnet50_epoch285.ckpt"

ITEMS = ("residual_block.downsample", "residual_block.plain", "resnet50_layer4.blanks",
         "resnet50_layer4.layer3", "resnet50_layer4.layer4", "resnet50_layer4.accuracy", "vgg16.accuracy")
FULL = {"residual_block.downsample": 20, "residual_block.plain": 20, "resnet50_layer4.blanks": 25,
        "resnet50_layer4.layer3": 20, "resnet50_layer4.layer4": 20, "resnet50_layer4.accuracy": 10,
        "vgg16.accuracy": 10}
RESNET_ITEMS = ITEMS[:6]

_TOP = "import torch.nn as nn\n"
_BLOCK_FORWARD = "    def forward(self, x):\n        if self.downsample:\n"
_NET_INIT = "        super(ResNet50_layer4, self).__init__()\n"
_NET_FORWARD = "    def forward(self, x):\n\n        out = self.layer1(x)\n"


def at_import(code: str):
    return lambda src: src.replace(_TOP, _TOP + code + "\n", 1)


def in_block_forward(code: str):
    body = "".join(f"        {line}\n" for line in code.splitlines())
    return lambda src: src.replace(_BLOCK_FORWARD, "    def forward(self, x):\n" + body
                                   + "        if self.downsample:\n", 1)


def in_net_init(code: str):
    body = "".join(f"        {line}\n" for line in code.splitlines())
    return lambda src: src.replace(_NET_INIT, _NET_INIT + body, 1)


def in_net_forward(code: str):
    body = "".join(f"        {line}\n" for line in code.splitlines())
    return lambda src: src.replace(_NET_FORWARD, "    def forward(self, x):\n" + body
                                   + "        out = self.layer1(x)\n", 1)


def replace(old: str, new: str, count: int = 1):
    def edit(src: str) -> str:
        assert old in src, old
        return src.replace(old, new, count)
    return edit


def renamed_copy(src: str) -> str:
    """The right answer with other local names, comments and spacing: a copy in disguise.

    Attribute names stay (they are the checkpoint's keys)."""
    out = []
    for line in src.splitlines():
        code = line.split("#", 1)[0].rstrip() if "#" in line else line
        out.append(code.replace(", ", ","))
        if code.strip().startswith("def "):
            out.append("")
    text = "\n".join(out) + "\n# my own work, honestly\n"
    for old, new in (("middle_channels", "mid_ch"), ("out_channels", "oc"), ("in_channels", "ic"),
                     ("out", "y"), ("x", "inp")):
        text = re.sub(rf"\b{old}\b", new, text)
    return text


class Payload:
    """Unpickling this runs code: a checkpoint that must be refused, never executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        code = f"print('PAYLOAD-RAN'); open({self.marker!r}, 'w').write('ran')"
        return (exec, (code,))


@dataclass
class Student:
    id: str
    edit: object = None  # a function changing resnet50_skeleton.py
    checkpoint: str = "instructor"  # instructor | payload | other | none
    well_behaved: bool = False
    # item -> points (default: full) ; item -> words the reason contains
    points: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    failure: str | None = None  # the failure kind recorded on the zeroed items


def zero(items, words: str) -> tuple[dict, dict]:
    return {i: 0 for i in items}, {i: words for i in items}


def _student(id, edit=None, *, items=RESNET_ITEMS, words="", failure=None, later_words="", **kw) -> Student:
    """later_words: the reason of every item after the first (a hang fails them at once, saying where)."""
    points, reasons = zero(items, words) if words else ({}, {})
    if later_words:
        reasons.update({item: later_words for item in items[1:]})
    return Student(id, edit, points=points, reasons=reasons, failure=failure, **kw)


LOOP = "while True: pass"
BLOCK_ITEMS = ("residual_block.downsample", "residual_block.plain", "resnet50_layer4.accuracy")
NET_ITEMS = ("resnet50_layer4.blanks", "resnet50_layer4.layer3", "resnet50_layer4.layer4",
             "resnet50_layer4.accuracy")


def students(paths: dict[str, str]) -> list[Student]:
    """The class.  `paths`: absolute paths hostile students try to reach."""
    reads = "\n".join(
        f"try:\n    print('READ', open({p!r}).read()[:40])\nexcept Exception as e:\n    pass"
        for p in (paths["reference"], paths["rubric"], paths["other_student"], paths["out"])
    )
    return [
        Student("s01_correct", well_behaved=True),
        Student("s02_copy", renamed_copy, well_behaved=True),
        Student("s03_wrong_blanks", replace("nn.Conv2d(3, 64, 7, 2, 3)", "nn.Conv2d(3, 64, 3, 2, 1)"),
                checkpoint="other", well_behaved=True,
                points={"resnet50_layer4.blanks": 23, "resnet50_layer4.accuracy": 0},
                reasons={"resnet50_layer4.accuracy": "does not fit"}),
        Student("s04_wrong_residual", replace("conv1x1(in_channels, middle_channels, 2, 0),\n"
                                              "                conv3x3(middle_channels, middle_channels, 1, 1),",
                                              "conv1x1(in_channels, middle_channels, 1, 0),\n"
                                              "                conv3x3(middle_channels, middle_channels, 2, 1),"),
                checkpoint="other", well_behaved=True,
                points={"residual_block.downsample": 0, "resnet50_layer4.accuracy": 0},
                reasons={"residual_block.downsample": "computes something else",
                         "resnet50_layer4.accuracy": "test accuracy"}),
        Student("s05_short_layer4", replace("            ResidualBlock(1024, 256, 1024, False),\n            # END",
                                            "            # END"),
                well_behaved=True, points={"resnet50_layer4.layer4": 16.6667, "resnet50_layer4.accuracy": 0},
                reasons={"resnet50_layer4.layer4": "5 blocks", "resnet50_layer4.accuracy": "does not fit"}),
        # ResidualBlock's class statement does not parse: the items that need the student's block fail
        # with the SyntaxError; ResNet50_layer4's own statement still loads, so its blanks and its layers
        # (built with the reference's block standing in for Question 1) keep their points.
        _student("s06_syntax_error", replace("def forward(self, x):", "def forward(self, x)"),
                 items=BLOCK_ITEMS, words="SyntaxError", failure="syntax"),
        _student("s07_loop_at_import", at_import(LOOP), words="did not finish", failure="timeout"),
        _student("s08_loop_in_forward", in_block_forward(LOOP), items=BLOCK_ITEMS, words="did not finish",
                 later_words="timed out in forward, resnet50_skeleton.py:", failure="timeout"),
        _student("s09_20gb", in_block_forward("import torch\n_ = torch.ones(5 * 1024 ** 3)"), items=BLOCK_ITEMS,
                 words="memory", failure="memory"),
        _student("s10_sys_exit", at_import("import sys\nsys.exit(0)"), words="sys.exit(0)", failure="exit"),
        _student("s11_os_exit", in_net_init("import os\nos._exit(3)"), items=NET_ITEMS, words="os._exit(3)",
                 failure="exit"),
        _student("s12_kill_self", in_block_forward("import os\nos.kill(os.getpid(), 9)"), items=BLOCK_ITEMS,
                 words="kill its own process", failure="exit"),
        _student("s13_fork_loop", at_import("import os\nwhile True:\n    os.fork()"), words="new process",
                 failure="violation"),
        _student("s14_flood", at_import("for _ in range(100):\n    print('x' * (1 << 20))"), words="printed more",
                 failure="output"),
        _student("s15_write_parent", at_import("open('../escaped.txt', 'w').write('escaped')"),
                 words="outside its own folder", failure="violation"),
        _student("s16_read_others", at_import(reads), words="outside the submission", failure="violation"),
        _student("s17_patch_argmax", at_import("import torch\ntorch.Tensor.argmax = lambda self, *a, **k: "
                                               "torch.zeros(self.shape[0], dtype=torch.long)"),
                 words="PyTorch", failure="tamper"),
        _student("s18_patch_eq", at_import("import torch\ntorch.eq = lambda a, b: torch.ones_like(a, "
                                           "dtype=torch.bool)"), words="PyTorch", failure="tamper"),
        _student("s19_patch_dunder_eq", in_net_forward("import torch\ntorch.Tensor.__eq__ = lambda a, b: "
                                                       "torch.ones(a.shape, dtype=torch.bool)"),
                 items=("resnet50_layer4.accuracy",), words="PyTorch", failure="tamper"),
        _student("s20_pickle_payload", checkpoint="payload", items=("resnet50_layer4.accuracy",),
                 words="refused"),
        _student("s21_segfault", in_block_forward("import ctypes\nctypes.string_at(0)"), items=BLOCK_ITEMS,
                 words="SIGSEGV", failure="crash"),
        _student("s22_exception", in_net_forward("raise RuntimeError('shapes do not match')"),
                 items=("resnet50_layer4.accuracy",), words="RuntimeError: shapes do not match",
                 failure="exception"),
    ]


def expected_points(student: Student) -> dict[str, float]:
    return {item: student.points.get(item, FULL[item]) for item in ITEMS}


def write_class(root: Path, instructor_checkpoints: Path, paths: dict[str, str], marker: Path) -> list[Student]:
    """One folder per student under `root`."""
    source = (REFERENCE / RESNET_FILE).read_text()
    other = root.parent / "other-ckpt" / RESNET_CKPT
    other.parent.mkdir(parents=True, exist_ok=True)
    if not other.exists():  # a checkpoint two wrong students share byte for byte
        state = torch.load(instructor_checkpoints / RESNET_CKPT, weights_only=True)
        state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in state.items()}
        torch.save(state, other)
    class_ = students(paths)
    for s in class_:
        folder = root / s.id
        folder.mkdir(parents=True)
        for name in FILES:
            shutil.copyfile(REFERENCE / name, folder / name)
        if s.edit is not None:
            (folder / RESNET_FILE).write_text(s.edit(source))
        target = folder / RESNET_CKPT
        if s.checkpoint == "instructor":
            os.link(instructor_checkpoints / RESNET_CKPT, target)
        elif s.checkpoint == "other":
            os.link(other, target)
        elif s.checkpoint == "payload":
            torch.save({"state_dict": Payload(str(marker))}, target)
    return class_


# -- a well-behaved class for the reuse invariant (tests/test_reuse_invariance.py) --------

SKELETON = ROOT / "skeletons" / "cnn_architecture"
COOKIE = "# -*- coding: raw_unicode_escape -*-\n"


def cookie_attack(src: str) -> str:
    """The right answer plus a line Python decodes as code (the cookie turns \\u000a into a
    newline) and a comment-stripping normaliser as a comment."""
    return COOKIE + src + "# \\u000araise RuntimeError('hidden in a comment')\n"


def invariance_students() -> dict[str, object]:
    """student -> resnet50_skeleton.py's text (an edit of the reference), or SKELETON."""
    return {
        "c01_cookie_attack": cookie_attack,  # first: its failures must reach nobody
        "c02_skeleton": SKELETON,  # does not parse
        "c03_correct": None,
        "c04_wrong_shapes": replace("nn.Linear(1024, 10)", "nn.Linear(2048, 10)"),
        "c05_missing_class": replace("class ResidualBlock(nn.Module):", "class ResBlock(nn.Module):"),
        "c06_partly_right": replace("nn.Conv2d(3, 64, 7, 2, 3)", "nn.Conv2d(3, 64, 3, 2, 1)"),
        "c07_short_layer4": replace("            ResidualBlock(1024, 256, 1024, False),\n            # END",
                                    "            # END"),
        "c08_wrong_residual": replace("conv1x1(in_channels, middle_channels, 2, 0),\n"
                                      "                conv3x3(middle_channels, middle_channels, 1, 1),",
                                      "conv1x1(in_channels, middle_channels, 1, 0),\n"
                                      "                conv3x3(middle_channels, middle_channels, 2, 1),"),
        "c09_correct_copy": None,  # byte for byte c03's
        "c10_skeleton_copy": SKELETON,
        "c11_renamed_locals": renamed_copy,
        "c12_maxpool_p0": replace("nn.MaxPool2d(3, 2, 1)", "nn.MaxPool2d(3, 2, 0)"),
    }


def write_invariance_class(root: Path, only: list[str] | None = None) -> list[str]:
    """One folder per student (all, or those in `only`); returns the ids in the order a batch takes them."""
    source = (REFERENCE / RESNET_FILE).read_text()
    chosen = [s for s in invariance_students().items() if only is None or s[0] in only]
    for student, edit in chosen:
        folder = root / student
        folder.mkdir(parents=True)
        origin = SKELETON if edit is SKELETON else REFERENCE
        for name in FILES:
            shutil.copyfile(origin / name, folder / name)
        if callable(edit):
            (folder / RESNET_FILE).write_text(edit(source))
    return [s for s, _ in chosen]
