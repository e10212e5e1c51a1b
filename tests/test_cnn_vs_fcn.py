"""The cnn_vs_fcn assignment (seed 001): an image-folder data set, CustomCNN, torchvision's
ResNet18 asking for pretrained weights (graded offline), and the 457M-parameter resfcn18.
The reference earns full marks, the skeleton 0 with a message per item."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from grader import grading, rubric
from grader.options import Options
from grader.sandbox import pretrained
from tests.assignment_fixtures import (confident_labels, fit_head, reference_module, seeded, spread_classes,
                                       upscaled, write_image_folder)
from tests.cnn_fixtures import sample_images
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, run_cli

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BREEDS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog", "n02086079-Pekinese"]
NOT_RESFCN = ["custom_cnn.shape", "custom_cnn.params", "resnet18.shape", "resnet18.params", "fc_block.equivalence",
              "custom_cnn.accuracy", "resnet18.accuracy"]


def _models():
    cnn = reference_module("cnn_vs_fcn", "custom_cnn.py")
    fcn = reference_module("cnn_vs_fcn", "resfcn.py")
    with pretrained.offline():  # the reference asks torchvision for ImageNet weights: never downloaded here
        resnet = seeded(lambda: fcn.ResNet18(num_classes=4))
    return seeded(lambda: cnn.CustomCNN(num_cls=4, img_size=224)), resnet, fcn


def _dogs(root: Path, labels_from_resfcn: bool) -> Path:
    """Checkpoints of models that "learnt" a 32-image test set of 224x224 images, and that set as an
    image folder: every model classifies every image right, so the reference scores exactly 100%."""
    images = upscaled(sample_images(32), 224)
    custom, resnet, fcn = _models()
    (root / "checkpoints").mkdir(parents=True)
    if labels_from_resfcn:  # resfcn18 has only 8 features before its last layer: it sets the labels
        net = seeded(lambda: fcn.resfcn18(num_classes=4, img_size=224))
        spread_classes(net, net.fc2, images, MEAN, STD)
        labels, keep = confident_labels(net, images, MEAN, STD)
        assert keep.all() and len(np.unique(labels)) >= 3
        torch.save(net.state_dict(), root / "checkpoints" / "resfcn18.pth")
        del net
        gc.collect()
    else:
        labels = np.arange(len(images)) % 4
    fit_head(custom, custom.fc2, images, MEAN, STD, labels)
    fit_head(resnet, resnet.resnet18.fc, images, MEAN, STD, labels)
    for model, name in ((custom, "custom_cnn.pth"), (resnet, "resnet18.pth")):
        predicted, keep = confident_labels(model, images, MEAN, STD)
        assert keep.all() and (predicted == labels).all()
        torch.save(model.state_dict(), root / "checkpoints" / name)
    write_image_folder(root / "exact", images, labels, BREEDS)
    wrong = labels.copy()
    wrong[::4] = (wrong[::4] + 1) % 4  # 8 of 32 changed: exactly 75% for the right model
    write_image_folder(root / "three_quarters", images, wrong, BREEDS)
    return root


@pytest.fixture(scope="module")
def dogs(tmp_path_factory):
    return _dogs(tmp_path_factory.mktemp("dogs"), labels_from_resfcn=False)


def _grade(submission: Path, dogs: Path, data: str = "exact", items=None, checkpoints: Path | None = None):
    options = Options(checkpoint_dirs=[checkpoints or dogs / "checkpoints"], data_dir=str(dogs / data))
    return grading.grade(submission, rubric.load(RUBRICS / "cnn_vs_fcn.yaml"), options, items=items)


def test_reference_earns_every_point_of_cnn_and_resnet_items(dogs):
    report = _grade(REFERENCE / "cnn_vs_fcn", dogs, items=NOT_RESFCN)
    assert [(r.id, r.status, r.message) for r in report.results if r.status != "passed"] == []
    by_id = {r.id: r for r in report.results}
    assert by_id["custom_cnn.accuracy"].message == "test accuracy 100.00% (32/32) >= 50%"
    assert by_id["resnet18.accuracy"].message == "test accuracy 100.00% (32/32) >= 80%"
    assert any(f"image folder {dogs / 'exact' / 'test'}" in d for d in by_id["resnet18.accuracy"].details)
    assert ("pretrained weights ResNet18_Weights.IMAGENET1K_V1 are not available offline: the model was built with "
            "random initial weights (the checkpoint supplies the weights that are graded)") in report.notes


def test_student_asking_for_pretrained_true(tmp_path, dogs):
    """The seed's own code: resnet18(pretrained=True), weights not cached, no network."""
    folder = tmp_path / "student"
    shutil.copytree(REFERENCE / "cnn_vs_fcn", folder, ignore=shutil.ignore_patterns("__pycache__"))
    source = (folder / "resfcn.py").read_text()
    old = "torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)"
    assert old in source
    (folder / "resfcn.py").write_text(source.replace(old, "torchvision.models.resnet18(pretrained=True)"))
    report = _grade(folder, dogs, items=["resnet18.shape", "resnet18.params", "resnet18.accuracy"])
    assert [r.status for r in report.results] == ["passed"] * 3
    assert any("ResNet18_Weights.IMAGENET1K_V1 are not available offline" in n for n in report.notes)


def test_skeleton_earns_zero_with_a_message_per_item(tmp_path, dogs):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(dogs / "checkpoints", checkpoints)
    (checkpoints / "resfcn18.pth").write_bytes(b"never read: the skeleton cannot build resfcn18's layers")
    report = _grade(SKELETONS / "cnn_vs_fcn", dogs, checkpoints=checkpoints)
    assert report.score == 0 and report.max_score == 100
    for r in report.results:
        assert r.status == "failed", (r.id, r.status, r.message)
        assert "Traceback" not in r.message + "\n".join(r.details)
    by_id = {r.id: r for r in report.results}
    assert by_id["custom_cnn.params"].message == ("CustomCNN(num_cls=4, img_size=224) has 960 parameters; "
                                                  "expected 1,702,916 (-1,701,956)")
    assert by_id["resnet18.shape"].message == "AttributeError: 'ResNet18' object has no attribute 'resnet18'"
    assert by_id["resfcn18.params"].message.startswith("resfcn18(num_classes=4, img_size=224) has 0 parameters")
    assert by_id["custom_cnn.accuracy"].message.startswith("custom_cnn.pth does not fit your CustomCNN")


def test_accuracy_on_a_test_split_with_known_mistakes(dogs):
    report = _grade(REFERENCE / "cnn_vs_fcn", dogs, data="three_quarters",
                    items=["custom_cnn.accuracy", "resnet18.accuracy"])
    custom, resnet = report.results
    assert (custom.status, custom.message) == ("passed", "test accuracy 75.00% (24/32) >= 50%")
    assert (resnet.status, resnet.message) == ("failed", "test accuracy 75.00% (24/32) < 80%")


def test_a_checkpoint_for_another_number_of_breeds(tmp_path, dogs):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    state = torch.load(dogs / "checkpoints" / "resnet18.pth", weights_only=True)
    state["resnet18.fc.weight"] = torch.zeros(120, 512)
    state["resnet18.fc.bias"] = torch.zeros(120)
    torch.save(state, checkpoints / "resnet18.pth")
    report = _grade(REFERENCE / "cnn_vs_fcn", dogs, items=["resnet18.accuracy"], checkpoints=checkpoints)
    (result,) = report.results
    assert result.status == "failed"
    assert result.message == "resnet18.pth does not fit your ResNet18: 0 missing, 0 unexpected, 2 mis-shaped weights"
    assert "resnet18.fc.weight: checkpoint has shape [120, 512], your model [4, 512]" in result.details


def test_without_the_image_folder_accuracy_is_skipped_with_what_to_do(tmp_path, dogs):
    options = Options(checkpoint_dirs=[dogs / "checkpoints"], data_dir=str(tmp_path / "nowhere"))
    report = grading.grade(REFERENCE / "cnn_vs_fcn", rubric.load(RUBRICS / "cnn_vs_fcn.yaml"), options,
                           items=["custom_cnn.accuracy"])
    (result,) = report.results
    assert result.status == "skipped"
    assert "pass --data-dir DIR where DIR holds 'test/<class name>/<images>', one folder per class" in result.message


@pytest.mark.slow
def test_reference_earns_full_marks_and_skeleton_zero_from_the_command_line(tmp_path):
    """All ten items in one run, resfcn18 (457M weights, a 1.8 GB checkpoint) included."""
    dogs = _dogs(tmp_path / "dogs", labels_from_resfcn=True)
    args = ["--rubric", "cnn_vs_fcn", "--checkpoints", str(dogs / "checkpoints"), "--data-dir", str(dogs / "exact"),
            "--json"]
    done = run_cli("check", str(REFERENCE / "cnn_vs_fcn"), *args, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["score"] == 100
    assert {t["extra_data"]["id"]: t["status"] for t in result["tests"]} == {
        item.id: "passed" for item in rubric.load(RUBRICS / "cnn_vs_fcn.yaml").items}
    assert "ResNet18_Weights.IMAGENET1K_V1 are not available offline" in result["output"]

    done = run_cli("check", str(SKELETONS / "cnn_vs_fcn"), *args, timeout=900)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["score"] == 0 and all(t["status"] == "failed" for t in result["tests"])
    assert "Traceback" not in done.stdout
