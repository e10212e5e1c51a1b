"""A hold-out of real-looking resnet18_cifar submissions (kuangliu-style resnet.py with the
students' own variations) and the grade an instructor gives each, item by item.

Each variant is the reference resnet.py with the changes students make: other block names,
dropout, a forgotten projection shortcut, plotting and progress-bar imports, training at
import, checkpoints saved as {'net': ...}, {'state_dict': ...}, {'model': ...}, bare or from
DataParallel (`module.` prefixes).  No correct student loses points to the grader's
environment; a wrong answer costs its own question only.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from grader import grading, rubric as rubric_module
from grader.options import Options
from grader.rubric.model import Environment
from tests.assignment_fixtures import confident_labels, reference_module, seeded, spread_classes
from tests.cnn_fixtures import sample_images, write_cifar_batches
from tests.conftest import REFERENCE, RUBRICS, run_cli

pytest.importorskip("matplotlib")
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
CHECKPOINT = "checkpoint/resnet18_cifar10.pth"
ITEMS = ["basic_block.shape", "basic_block.shape_stride2", "basic_block.equivalence", "resnet18.layer2",
         "resnet18.layer4", "resnet18.params", "resnet18.shape", "resnet18.accuracy"]
ABSENT = "grader-test-absent-plots"  # a package the course declares that no grading environment has

PLOTTING = """import matplotlib.pyplot as plt
import seaborn as sns
from torchsummary import summary
from tqdm import tqdm
"""
TRAINING = """
import torch
_net = ResNet(BasicBlock, [1, 1, 1, 1])
_optimizer = torch.optim.SGD(_net.parameters(), lr=0.01)
for epoch in range(200):
    for step in tqdm(range(100)):
        _optimizer.zero_grad()
        _net(torch.randn(2, 3, 32, 32)).sum().backward()
        _optimizer.step()
    plt.plot([epoch])
    plt.savefig("loss.png")
"""

# (the changes to the reference's resnet.py, how the checkpoint is saved) per variant
VARIANTS = {
    "reference": ([], "net"),
    "plots_and_progress_bars": ([("PREPEND", PLOTTING),
                                 ("APPEND", "\nif __name__ == '__main__':\n    summary(ResNet18(), (3, 32, 32))\n")],
                                "net"),
    "summary_at_import": ([("PREPEND", PLOTTING), ("APPEND", "\nsummary(ResNet18(), (3, 32, 32), device='cpu')\n"
                                                             "plt.show()\n")], "net"),
    "state_dict_key": ([], "state_dict"),
    "model_key": ([], "model"),
    "bare_state_dict": ([], "bare"),
    "data_parallel": ([], "data_parallel"),
    "dropout_in_head": ([("        self.linear = nn.Linear(512 * block.expansion, num_classes)\n",
                          "        self.dropout = nn.Dropout(0.5)\n"
                          "        self.linear = nn.Linear(512 * block.expansion, num_classes)\n"),
                         ("        return self.linear(out)", "        return self.linear(self.dropout(out))")], "net"),
    "dropout_in_block": ([("        self.bn2 = nn.BatchNorm2d(planes)\n",
                           "        self.bn2 = nn.BatchNorm2d(planes)\n        self.drop = nn.Dropout(0.2)\n"),
                          ("self.conv2(F.relu(self.bn1(self.conv1(x))))",
                           "self.conv2(self.drop(F.relu(self.bn1(self.conv1(x)))))")], "net"),
    "residual_block_name": ([("BasicBlock", "ResidualBlock")], "net"),
    "own_parameter_names": ([("BasicBlock", "ResBlock"), ("in_planes, planes, stride=1", "cin, cout, stride=1"),
                             ("nn.Conv2d(in_planes, planes, kernel_size=3", "nn.Conv2d(cin, cout, kernel_size=3"),
                             ("nn.Conv2d(planes, planes,", "nn.Conv2d(cout, cout,"),
                             ("self.bn1 = nn.BatchNorm2d(planes)", "self.bn1 = nn.BatchNorm2d(cout)"),
                             ("self.bn2 = nn.BatchNorm2d(planes)", "self.bn2 = nn.BatchNorm2d(cout)"),
                             ("nn.Conv2d(in_planes, planes, kernel_size=1", "nn.Conv2d(cin, cout, kernel_size=1"),
                             ("                nn.BatchNorm2d(planes),", "                nn.BatchNorm2d(cout),")],
                            "data_parallel"),
    "no_projection_shortcut": ([("        if stride == 1:\n", "        if True:\n")], "net"),
    "every_block_strided": ([("[stride] + [1] * (num_blocks - 1)", "[stride] * num_blocks")], "net"),
    "trains_at_import": ([("PREPEND", PLOTTING), ("APPEND", TRAINING)], "net"),
    "trains_before_resnet18": ([("PREPEND", PLOTTING), ("\ndef ResNet18(", TRAINING + "\n\ndef ResNet18(")], "net"),
    "whole_model_pickled": ([], "pickled"),
    "course_package_missing": ([("PREPEND", f"import {ABSENT.replace('-', '_')}\n")], "net"),
}

# points per item, in ITEMS order (5, 5, 20, 10, 10, 10, 10, 30), as an instructor grades them
EXPECTED = {
    "reference": (5, 5, 20, 10, 10, 10, 10, 30),
    "plots_and_progress_bars": (5, 5, 20, 10, 10, 10, 10, 30),
    "summary_at_import": (5, 5, 20, 10, 10, 10, 10, 30),
    "state_dict_key": (5, 5, 20, 10, 10, 10, 10, 30),
    "model_key": (5, 5, 20, 10, 10, 10, 10, 30),
    "bare_state_dict": (5, 5, 20, 10, 10, 10, 10, 30),
    "data_parallel": (5, 5, 20, 10, 10, 10, 10, 30),
    "dropout_in_head": (5, 5, 20, 10, 10, 10, 10, 30),
    # Dropout inside the block: graded in eval mode, where dropout passes its input through, the
    # block computes what the reference computes; its layers and weights are the reference's.
    "dropout_in_block": (5, 5, 20, 10, 10, 10, 10, 30),
    # The skeleton's BasicBlock renamed: Question 1 asks for BasicBlock by name, so it is
    # missing; Question 2 is graded with the student's block standing in by role.
    "residual_block_name": (0, 0, 0, 10, 10, 10, 10, 30),
    "own_parameter_names": (0, 0, 0, 10, 10, 10, 10, 30),
    # A wrong Question 1 costs Question 1 and what needs the whole network, never Question 2.
    "no_projection_shortcut": (5, 0, 0, 10, 10, 0, 0, 0),
    "every_block_strided": (5, 5, 20, 5, 5, 0, 0, 0),
    "trains_at_import": (5, 5, 20, 10, 10, 10, 10, 30),
    "trains_before_resnet18": (5, 5, 20, 0, 0, 0, 0, 0),
    "whole_model_pickled": (5, 5, 20, 10, 10, 10, 10, 0),
    "course_package_missing": (0, 0, 0, 0, 0, 0, 0, 0),
}


@pytest.fixture(scope="module")
def instructor(tmp_path_factory):
    """The reference network (seeded) as every student's 'trained' model, and a test set it labels."""
    root = tmp_path_factory.mktemp("resnet18-variants")
    net = seeded(reference_module("resnet18_cifar", "resnet.py").ResNet18)
    images = sample_images(96)
    spread_classes(net, net.linear, images, MEAN, STD)
    labels, keep = confident_labels(net, images, MEAN, STD)
    images, labels = images[keep][:48], labels[keep][:48]
    assert len(np.unique(labels)) >= 5
    write_cifar_batches(root / "data", images, labels)
    return root, net


def _resnet_py(changes: list[tuple[str, str]]) -> str:
    source = (REFERENCE / "resnet18_cifar" / "resnet.py").read_text()
    for old, new in changes:
        if old == "PREPEND":
            source = new + source
        elif old == "APPEND":
            source += new
        else:
            assert old in source, old
            source = source.replace(old, new)
    return source


def _save_checkpoint(net: torch.nn.Module, how: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = net.state_dict()
    if how == "data_parallel":
        torch.save({"net": OrderedDict((f"module.{k}", v) for k, v in state.items()), "acc": 91.2, "epoch": 49}, path)
    elif how == "bare":
        torch.save(state, path)
    elif how == "pickled":
        torch.save(net, path)  # the whole model: would need unpickling its class to load
    else:
        torch.save({how: state, "acc": 91.2, "epoch": 49}, path)


def _submission(root: Path, net, name: str) -> Path:
    changes, saved = VARIANTS[name]
    folder = root / name
    shutil.copytree(REFERENCE / "resnet18_cifar", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "resnet.py").write_text(_resnet_py(changes))
    _save_checkpoint(net, saved, folder / CHECKPOINT)
    return folder


def _rubric(declared: list[str]):
    rubric = rubric_module.load(RUBRICS / "resnet18_cifar.yaml")
    path = rubric.path
    rubric = rubric.model_copy(update={"limits": rubric.limits.model_copy(update={"import_s": 3.0}),
                                       "environment": Environment(packages=declared)})
    rubric.path = path
    return rubric


def test_the_table_covers_every_variant():
    assert set(EXPECTED) == set(VARIANTS) and len(VARIANTS) >= 15
    weights = [r.points for r in _rubric([]).items]
    assert [i.id for i in _rubric([]).items] == ITEMS
    assert all(all(0 <= p <= w for p, w in zip(points, weights)) for points in EXPECTED.values())


def _graded(name: str, instructor, tmp_path: Path, items: list[str] | None = None):
    root, net = instructor
    folder = _submission(tmp_path, net, name)
    declared = ["tqdm", "torchsummary", "seaborn"] + ([ABSENT] if name == "course_package_missing" else [])
    report = grading.grade(folder, _rubric(declared), Options(data_dir=str(root / "data")), items=items)
    got = {r.id: r for r in report.results}
    table = {i: p for i, p in zip(ITEMS, EXPECTED[name]) if items is None or i in items}
    assert {i: got[i].points for i in table} == table, "\n".join(
        f"{r.id}: {r.points} {r.status} {r.message}" for r in report.results)
    for r in report.results:
        assert "Traceback" not in r.message + "\n".join(r.details)
    _explained(name, got, report)


# A minute or more per variant on two cores: the whole table runs with the slow tests.
@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_gets_the_instructors_grade(name, instructor, tmp_path):
    _graded(name, instructor, tmp_path)


# The quick cases of the table: each variant's telling items only.
@pytest.mark.parametrize("name, items", [
    ("summary_at_import", ["basic_block.shape", "resnet18.params"]),
    ("trains_at_import", ["basic_block.shape", "resnet18.params"]),
    ("trains_before_resnet18", ["basic_block.shape", "resnet18.params"]),
    ("residual_block_name", ["basic_block.shape", "resnet18.layer2"]),
    ("no_projection_shortcut", ["basic_block.shape_stride2", "resnet18.layer2"]),
    ("course_package_missing", ["basic_block.shape", "resnet18.params"]),
])
def test_variant_key_items(name, items, instructor, tmp_path):
    _graded(name, instructor, tmp_path, items)


def _explained(name: str, got: dict, report) -> None:
    """The messages an instructor reads for the variants that do not simply pass (of the items graded)."""
    if name in ("trains_at_import", "trains_before_resnet18"):
        line = next(n for n, text in enumerate(_resnet_py(VARIANTS[name][0]).splitlines(), 1)
                    if text.startswith("for epoch in range(200):"))
        assert (f"resnet.py trains a model when imported (line {line}: for epoch in range(200):), still running "
                "after 3 s: put it under if __name__ == '__main__'; what it defines before that line is graded"
                ) in report.notes
    if name == "trains_before_resnet18" and "resnet18.params" in got:
        assert got["resnet18.params"].message.startswith(
            f"resnet.py does not define ResNet18 before line")
    if name == "whole_model_pickled" and "resnet18.accuracy" in got:
        message = got["resnet18.accuracy"].message
        assert got["resnet18.accuracy"].status == "failed" and message.startswith("checkpoint refused: ")
        assert "Save the weights alone: torch.save(model.state_dict(), PATH)" in message
    if name == "course_package_missing":
        for r in got.values():
            assert r.status == "error" and r.extra["failure"] == "environment", (r.id, r.status, r.message)
            assert r.message.startswith(f"the grading environment lacks {ABSENT}, which this course's environment "
                                        "provides")
    if name == "residual_block_name" and "basic_block.shape" in got:
        assert got["basic_block.shape"].message == "resnet.py does not define BasicBlock"


@pytest.mark.slow
def test_plotting_imports_get_full_marks_in_check_and_batch(instructor, tmp_path):
    """The issue's done-when, through the commands: `grader check` and `grader batch`."""
    root, net = instructor
    folder = _submission(tmp_path / "class", net, "plots_and_progress_bars")
    done = run_cli("check", str(folder), "--rubric", "resnet18_cifar", "--data-dir", str(root / "data"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.split() == ["TOTAL", "100/100"] for line in done.stdout.splitlines()), done.stdout
    out = tmp_path / "out"
    batch = run_cli("batch", str(tmp_path / "class"), "-r", "resnet18_cifar", "-o", str(out),
                    "--data-dir", str(root / "data"), timeout=900)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    grades = (out / "grades.csv").read_text().splitlines()
    row = next(line.split(",") for line in grades if line.startswith("plots_and_progress_bars,"))
    assert row[2:] == ["5", "5", "20", "10", "10", "10", "10", "30", "100"], grades


@pytest.mark.slow
def test_plotting_imports_get_full_marks_in_the_handout_self_check(instructor, tmp_path):
    root, net = instructor
    bundle = tmp_path / "handout.zip"
    assert run_cli("bundle", "resnet18_cifar", "--student", "-o", str(bundle)).returncode == 0
    shutil.unpack_archive(bundle, tmp_path)
    folder = tmp_path / "resnet18_cifar"
    (folder / "resnet.py").write_text(_resnet_py(VARIANTS["plots_and_progress_bars"][0]))
    _save_checkpoint(net, "net", folder / CHECKPOINT)
    done = run_cli("check", ".", "--data-dir", str(root / "data"), cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.split() == ["TOTAL", "100/100"] for line in done.stdout.splitlines()), done.stdout
