"""Identical work: code equal up to comments, layout and chosen names; byte-identical checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from grader.batch import duplicates

ORIGINAL = '''
import torch.nn as nn


class Block(nn.Module):
    """A residual block."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)  # same padding

    def forward(self, x):
        out = self.conv(x)
        return out + x
'''

DISGUISED = '''
import torch.nn as torchnn
class MyBlock(torchnn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()

        self.layer = torchnn.Conv2d(c_in, c_out, 3, 1, 1)
    # forward pass
    def forward(self, inp):
        y = self.layer(inp)
        return y + inp
'''


def test_renamed_and_reformatted_code_is_the_same():
    assert duplicates.normalise(ORIGINAL) == duplicates.normalise(DISGUISED)


def test_a_different_layer_or_number_is_not_the_same():
    assert duplicates.normalise(ORIGINAL) != duplicates.normalise(ORIGINAL.replace("3, 1, 1", "3, 2, 1"))
    assert duplicates.normalise(ORIGINAL) != duplicates.normalise(ORIGINAL.replace("nn.Conv2d", "nn.ConvTranspose2d"))
    assert duplicates.normalise(ORIGINAL) != duplicates.normalise(ORIGINAL.replace("out + x", "out * x"))


def test_code_that_does_not_parse_is_compared_without_comments_and_spacing():
    broken = "def f(x)\n    return x  # oops\n"
    assert duplicates.normalise(broken) == duplicates.normalise("def f(x)\n  return x\n\n")
    assert duplicates.normalise(broken) != duplicates.normalise("def f(y)\n    return y\n")


def test_notebooks_compare_by_code_cells(tmp_path):
    def notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
        path.write_text(json.dumps({"cells": [{"cell_type": t, "source": s} for t, s in cells]}))
        return path

    a = notebook(tmp_path / "a.ipynb", [("markdown", "# Mine"), ("code", ORIGINAL), ("code", "%matplotlib inline")])
    b = notebook(tmp_path / "b.ipynb", [("code", DISGUISED.splitlines(keepends=True)), ("markdown", "other words")])
    assert duplicates.code_fingerprint(a) == duplicates.code_fingerprint(b)


def _student(root: Path, name: str, code: str, checkpoint: bytes | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "block.py").write_text(code)
    if checkpoint is not None:
        (folder / "model.ckpt").write_bytes(checkpoint)
    return folder


def test_groups_exclude_the_handout_and_mark_the_reference(tmp_path):
    handout = tmp_path / "handout"
    reference = tmp_path / "reference"
    handout.mkdir()
    reference.mkdir()
    (handout / "block.py").write_text("class Block:\n    pass  # fill in\n")
    (reference / "block.py").write_text(ORIGINAL)
    folders = {
        "ann": _student(tmp_path, "ann", ORIGINAL, b"weights-1"),
        "ben": _student(tmp_path, "ben", DISGUISED, b"weights-1"),
        "cat": _student(tmp_path, "cat", ORIGINAL.replace("3, 1, 1", "5, 1, 2"), b"instructor"),
        "dan": _student(tmp_path, "dan", ORIGINAL.replace("3, 1, 1", "5, 1, 2"), b"instructor"),
        "eve": _student(tmp_path, "eve", "class Block:\n    pass\n"),  # the untouched handout
        "fay": _student(tmp_path, "fay", "class Block:\n    pass\n"),
    }
    from grader.fingerprint import FileHashes, tree

    hashes = FileHashes()
    file_hashes = {s: tree(f, hashes) for s, f in folders.items()}
    instructor = {hashes.of(folders["cat"] / "model.ckpt")}
    found = duplicates.find(folders, ["block.py"], file_hashes, handout=handout, reference=reference,
                            instructor_hashes=instructor)
    groups = {(g.kind, tuple(g.students)): g.note for g in found.groups}
    assert groups == {
        ("checkpoint", ("ann", "ben")): "",
        ("code", ("cat", "dan")): "",
        ("code", ("ann", "ben")): duplicates.SAME_AS_REFERENCE,
    }
    assert found.instructor_copies == 2

    duplicates.write_csv(found, tmp_path / "duplicates.csv", {"ann": "Ann A"})
    rows = list(csv.DictReader(open(tmp_path / "duplicates.csv")))
    assert len(rows) == 6 and rows[0]["kind"] == "checkpoint" and rows[0]["name"] == "Ann A"
    assert {r["group_size"] for r in rows} == {"2"}
