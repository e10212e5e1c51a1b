"""The resnet18_cifar assignment (seed 003): its reference solution earns full marks, its
skeleton earns 0 with a message per item, and typical mistakes cost what they should."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from grader import grading, rubric
from grader.options import Options
from tests.assignment_fixtures import confident_labels, reference_module, seeded, spread_classes
from tests.cnn_fixtures import sample_images, write_cifar_batches
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, run_cli

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
CHECKPOINT = "checkpoint/resnet18_cifar10.pth"


@pytest.fixture(scope="module")
def instructor(tmp_path_factory):
    """A checkpoint saved as train.py saves it ({'net': state_dict}) and CIFAR-10-layout test
    sets: one labelled by that model (100% expected), one with a quarter of the labels changed."""
    root = tmp_path_factory.mktemp("resnet18-cifar")
    net = seeded(reference_module("resnet18_cifar", "resnet.py").ResNet18)
    images = sample_images(96)
    spread_classes(net, net.linear, images, MEAN, STD)
    labels, keep = confident_labels(net, images, MEAN, STD)
    images, labels = images[keep][:64], labels[keep][:64]
    assert len(labels) == 64 and len(np.unique(labels)) >= 5  # a meaningful test set
    (root / "checkpoints" / "checkpoint").mkdir(parents=True)
    torch.save({"net": net.state_dict()}, root / "checkpoints" / CHECKPOINT)
    write_cifar_batches(root / "exact", images, labels)
    wrong = labels.copy()
    wrong[::4] = (wrong[::4] + 1) % 10  # 16 of 64 labels changed: the model scores exactly 75%
    write_cifar_batches(root / "three_quarters", images, wrong)
    return root


def _grade(submission: Path, instructor: Path, data: str = "exact", **kw):
    options = Options(checkpoint_dirs=[instructor / "checkpoints"], data_dir=str(instructor / data))
    return grading.grade(submission, rubric.load(RUBRICS / "resnet18_cifar.yaml"), options, **kw)


def test_reference_earns_full_marks(instructor):
    report = _grade(REFERENCE / "resnet18_cifar", instructor)
    assert [(r.id, r.status) for r in report.results if r.status != "passed"] == []
    assert report.score == report.max_score == 100
    accuracy = next(r for r in report.results if r.id == "resnet18.accuracy")
    assert accuracy.message == "test accuracy 100.00% (64/64) >= 85%"
    assert "weights read from the checkpoint's 'net' entry" in accuracy.details
    params = next(r for r in report.results if r.id == "resnet18.params")
    assert params.message == "11,173,962 parameters"


def test_skeleton_earns_zero_with_a_message_per_item(instructor):
    report = _grade(SKELETONS / "resnet18_cifar", instructor)
    assert report.score == 0 and report.max_score == 100
    for r in report.results:
        assert r.status == "failed", (r.id, r.status, r.message)
        assert r.message and "Traceback" not in r.message + "\n".join(r.details)
    by_id = {r.id: r for r in report.results}
    assert by_id["basic_block.shape"].message == "NotImplementedError: Question 1: BasicBlock.forward"
    assert by_id["resnet18.params"].message == "NotImplementedError: Question 2: ResNet._make_layer"
    assert by_id["resnet18.params"].where == "resnet.py:63"
    assert "does not have the reference's layers" in by_id["basic_block.equivalence"].message


def test_accuracy_below_the_threshold(instructor):
    report = _grade(REFERENCE / "resnet18_cifar", instructor, data="three_quarters", items=["resnet18.accuracy"])
    (result,) = report.results
    assert result.status == "failed" and result.points == 0
    assert result.message == "test accuracy 75.00% (48/64) < 85%"


def _student(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "student"
    shutil.copytree(REFERENCE / "resnet18_cifar", folder, ignore=shutil.ignore_patterns("__pycache__"))
    source = (folder / "resnet.py").read_text()
    assert old in source
    (folder / "resnet.py").write_text(source.replace(old, new))
    return folder


def test_a_block_without_its_shortcut_costs_question_1_only(tmp_path, instructor):
    # The shortcut forgotten when the shape changes: always the identity.
    folder = _student(tmp_path, "        if stride == 1:\n", "        if True:\n")
    report = _grade(folder, instructor, items=["basic_block.shape", "basic_block.shape_stride2",
                                               "basic_block.equivalence", "resnet18.layer2", "resnet18.params"])
    by_id = {r.id: r for r in report.results}
    assert by_id["basic_block.shape"].status == "passed"
    assert by_id["basic_block.shape_stride2"].status == "failed"
    assert "RuntimeError: The size of tensor a (16) must match the size of tensor b (32)" in \
        by_id["basic_block.shape_stride2"].message
    assert by_id["basic_block.equivalence"].status == "failed"
    assert "shortcut" in "\n".join(by_id["basic_block.equivalence"].details)
    assert by_id["resnet18.layer2"].status == "passed"  # Question 2 is graded with stand-ins
    assert by_id["resnet18.params"].message.endswith("expected 11,173,962 (-173,824)")


def test_every_block_with_the_layer_stride_costs_half_of_each_layer(tmp_path, instructor):
    folder = _student(tmp_path, "[stride] + [1] * (num_blocks - 1)", "[stride] * num_blocks")
    report = _grade(folder, instructor, items=["resnet18.layer2", "resnet18.layer4", "resnet18.params",
                                               "resnet18.shape"])
    by_id = {r.id: r for r in report.results}
    assert by_id["resnet18.layer2"].points == 5 and by_id["resnet18.layer2"].status == "partial"
    assert "layer2[1] is BasicBlock(in_planes=128, planes=128, stride=2); expected BasicBlock(in_planes=128, " \
           "planes=128, stride=1)" in by_id["resnet18.layer2"].details
    # Each second block now has a 1x1-conv shortcut of its own: 345,856 weights too many.
    assert by_id["resnet18.params"].message.endswith("expected 11,173,962 (+345,856)")
    assert by_id["resnet18.shape"].status == "failed"


def test_self_check_from_the_student_bundle(tmp_path, instructor):
    """What a student sees: every item (Q1 equivalence and Q2 structure from the handout's answers file;
    they were hidden before the handout carried answers), and that the instructor grades again."""
    out = tmp_path / "handout.zip"
    assert run_cli("bundle", "resnet18_cifar", "--student", "-o", str(out)).returncode == 0
    shutil.unpack_archive(out, tmp_path)
    folder = tmp_path / "resnet18_cifar"
    shutil.copy(REFERENCE / "resnet18_cifar" / "resnet.py", folder / "resnet.py")  # the work, done
    (folder / "checkpoint").mkdir()
    shutil.copy(instructor / "checkpoints" / CHECKPOINT, folder / CHECKPOINT)  # "their" trained model
    done = run_cli("check", ".", "--data-dir", str(instructor / "exact"), cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.split() == ["TOTAL", "100/100"] for line in done.stdout.splitlines()), done.stdout
    assert "basic_block.equivalence" in done.stdout and "resnet18.layer2" in done.stdout
    assert ("Self-check: no item is hidden. Your instructor grades every item again after you hand in, with other "
            "inputs and weights, so a PASS here is not yet a grade.") in done.stdout
