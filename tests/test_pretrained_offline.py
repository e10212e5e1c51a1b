"""Student code that asks for pretrained weights is graded without the network.

torchvision's `pretrained=True` / `weights=...` builds the model with random initial
weights plus a note (the student's checkpoint supplies the graded weights); weights in
the grading machine's torch hub cache are used when present; a direct download of a
file that is not cached fails with a message that says what to do.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

MODEL = textwrap.dedent("""
    import torch
    import torch.nn as nn
    import torchvision


    class Legacy(nn.Module):
        def __init__(self, num_classes=4):
            super().__init__()
            self.net = torchvision.models.resnet18(pretrained=True)
            self.net.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            return self.net(x)


    class Modern(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torchvision.models.mobilenet_v3_small(
                weights=torchvision.models.MobileNet_V3_Small_Weights.DEFAULT, width_mult=1.0)

        def forward(self, x):
            return self.net(x)


    class Direct(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)
            self.fc.load_state_dict(torch.hub.load_state_dict_from_url(
                "https://example.org/weights/tiny-fc-0123abcd.pth"))

        def forward(self, x):
            return self.fc(x)
""")

RUBRIC = textwrap.dedent("""
    assignment: pretrained_offline
    files: [model.py]
    items:
      - {id: legacy.params, points: 1, check: param_count, target: {file: model.py, name: Legacy}, expected: 11178564}
      - {id: legacy.shape, points: 1, check: output_shape, target: {file: model.py, name: Legacy},
         inputs: [[2, 3, 64, 64]], expected: [2, 4]}
      - {id: modern.shape, points: 1, check: output_shape, target: {file: model.py, name: Modern},
         inputs: [[1, 3, 64, 64]], expected: [1, 1000]}
      - {id: direct.params, points: 1, check: param_count, target: {file: model.py, name: Direct}, expected: 9}
""")


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "model.py").write_text(MODEL)
    path = tmp_path / "pretrained.yaml"
    path.write_text(RUBRIC)
    return submission, path


def test_pretrained_weights_fall_back_to_random_init_with_a_note(tmp_path):
    submission, path = _setup(tmp_path)
    # An empty hub cache: what a grading machine without those weights has.
    done = run_cli("check", str(submission), "--rubric", str(path), "--json",
                   env={"TORCH_HOME": str(tmp_path / "empty-torch-home")})
    assert done.returncode == 1, done.stdout + done.stderr  # direct.params fails, the others pass
    result = json.loads(done.stdout)
    by_id = {t["extra_data"]["id"]: t for t in result["tests"]}
    for item in ("legacy.params", "legacy.shape", "modern.shape"):
        assert by_id[item]["status"] == "passed", by_id[item]["output"]
    notes = result["output"]
    assert "pretrained weights ResNet18_Weights.IMAGENET1K_V1 are not available offline" in notes
    assert "random initial weights" in notes
    assert "MobileNet_V3_Small_Weights.IMAGENET1K_V1" in notes
    assert notes.count("ResNet18_Weights") == 1  # once per run, not once per item
    # A direct download has no model to fall back on: a clear failure for that item only.
    direct = by_id["direct.params"]["output"]
    assert "cannot download tiny-fc-0123abcd.pth while grading (no network" in direct
    line = next(n for n, text in enumerate(MODEL.splitlines(), 1) if "load_state_dict_from_url(" in text)
    assert f"at model.py:{line}" in direct and "Traceback" not in direct


def test_weights_in_the_hub_cache_are_used(tmp_path):
    submission, path = _setup(tmp_path)
    torch_home = tmp_path / "torch-home"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({"weight": torch.ones(3, 2), "bias": torch.zeros(3)},
               torch_home / "hub" / "checkpoints" / "tiny-fc-0123abcd.pth")
    done = run_cli("check", str(submission), "--rubric", str(path), "--items", "direct.params",
                   env={"TORCH_HOME": str(torch_home)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "9 parameters" in done.stdout
    assert "not available offline" not in done.stdout


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # torchvision on pretrained=True
def test_reference_building_pretrained_models_stays_offline(tmp_path, monkeypatch):
    """The grader builds the reference in its own process: the same rules apply there."""
    from grader.reference import Reference

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))

    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "model.py").write_text(MODEL)
    notes: list[str] = []
    model = Reference(reference, on_note=notes.append).build("model.py", "Legacy", [], {"num_classes": 7})
    assert model.net.fc.out_features == 7
    assert any("ResNet18_Weights.IMAGENET1K_V1" in n for n in notes)
