"""No answer leaks from a handout (issue 19): for every shipped rubric, the handout that
`grader bundle --student` writes, and every message of its self-check (on the untouched
skeleton and on deliberately wrong submissions), hold none of the reference's layer
arguments that the skeleton and the public rubric do not already give.  The messages still
say which of the student's layers is wrong and in what."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from grader import rubric
from grader.introspect import _short, call_text
from grader.reference import Reference
from grader.structure_diff import arguments, same
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, run_cli
from tests.test_handout_answers import HEAVY, SUBMISSIONS, _python_variant

ASSIGNMENTS = sorted(p.stem for p in RUBRICS.glob("*.yaml"))
MODELS = ("equivalence", "structure", "blanks", "model_setup", "output_shape", "param_count")  # checks of layers
# Said of the reference in the instructor's messages, never in a handout's.
QUOTING = ["(reference:", "expected ResidualBlock(", "; the reference has Conv", "; expected Conv2d(",
           "expected BasicBlock("]


def _sloppy_cnn_architecture(folder: Path) -> None:
    """A sloppy student: layer3 left empty, Q1's stride on the 3x3 conv, a wrong first block
    and an extra one in layer4."""
    reference = (REFERENCE / "cnn_architecture" / "resnet50_skeleton.py").read_text()
    start = reference.index("            ResidualBlock(256, 128, 512, False),")
    end = reference.index("            # END SOLUTION", start)
    _python_variant(
        "cnn_architecture", "resnet50_skeleton.py",
        (reference[start:end], ""),
        ("conv1x1(in_channels, middle_channels, 2, 0),\n                conv3x3(middle_channels, middle_channels, 1, 1)",
         "conv1x1(in_channels, middle_channels, 1, 0),\n                conv3x3(middle_channels, middle_channels, 2, 1)"),
        ("            ResidualBlock(512, 256, 1024, False),", "            ResidualBlock(512, 128, 1024, False),"),
        ("            ResidualBlock(1024, 256, 1024, False),\n            # END SOLUTION",
         "            ResidualBlock(1024, 256, 1024, False),\n" * 2 + "            # END SOLUTION"))(folder)


def _secrets(assignment: str) -> set[str]:
    """The reference's layers and their arguments, as an instructor's message writes them
    (`in_channels=256`, `ResidualBlock(in_channels=256, ...)`), that neither the skeleton nor
    the public rubric shows."""
    full = rubric.load(RUBRICS / f"{assignment}.yaml")
    reference = Reference(full.reference_dir(), notebook=full.notebook)
    given = "\n".join(p.read_text(errors="replace") for p in (SKELETONS / assignment).rglob("*") if p.is_file())
    given += full.public_view().to_yaml("")
    found = set()
    for item in full.public_view().items:
        t = getattr(item, "target", None)
        if t is None or item.check not in MODELS or item.id in HEAVY:
            continue
        cases = [(c.args if c.args is not None else t.args, c.kwargs if c.kwargs is not None else t.kwargs)
                 for c in getattr(item, "cases", None) or []] or [(t.args, t.kwargs)]
        for args, kwargs in cases:
            nodes = reference.describe(t.file, t.name, args, kwargs, t.isolate, section=t.section)["nodes"]
            for node in (node for path, node in nodes.items() if path):  # the root's are the item's own arguments
                found.add(call_text(node))
                found |= {f"{k}={_short(v)}" for k, v in arguments(node).items() if not _default(node, k, v)}
    return {s for s in found if s not in given and "=" in s}


def _default(node: dict, name: str, value) -> bool:
    """torch's own default for a torch.nn setting (stride=1, bias=True): not a choice the question made."""
    cls = getattr(torch.nn, node["type"], None) if node.get("builtin") else None
    try:
        default = inspect.signature(cls).parameters[name].default
    except (TypeError, ValueError, KeyError):
        return False
    return default is not inspect.Parameter.empty and same(default, value)


@pytest.fixture(scope="module")
def handouts(tmp_path_factory) -> dict[str, Path]:
    """Each shipped rubric's handout, made by the command an instructor types."""
    made = {}
    for assignment in ASSIGNMENTS:
        root = tmp_path_factory.mktemp(f"leaks-{assignment}")
        done = run_cli("bundle", str(RUBRICS / f"{assignment}.yaml"), "--student", "-o", str(root / "h.zip"))
        assert done.returncode == 0, done.stdout + done.stderr
        with zipfile.ZipFile(root / "h.zip") as z:
            z.extractall(root)
        made[assignment] = root / assignment
    return made


def _leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(s for s in secrets | set(QUOTING) if s in text)


def test_the_secrets_are_what_a_leak_would_show():
    """The grep looks for the strings the issue found in a handout."""
    secrets = _secrets("cnn_architecture")
    assert {"in_channels=256", "middle_channels=128", "ResidualBlock(in_channels=256, middle_channels=128, "
            "out_channels=512, downsample=False)"} <= secrets
    assert "downsample=False" not in secrets  # the skeleton's own signature gives it


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_file_of_the_handout_holds_a_reference_argument(handouts, assignment):
    secrets = _secrets(assignment)
    folder = handouts[assignment]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("latin-1")
        assert not _leaks(text, secrets), f"{path.name}: {_leaks(text, secrets)}"
    answers = folder / "answers.json"
    if answers.is_file():  # layers only as digests: no description of any module
        text = answers.read_text()
        for word in ('"settings"', '"init"', '"builtin"', "Conv2d", "BatchNorm2d", "Linear"):
            assert word not in text, word


CASES = [(a, "skeleton") for a in ASSIGNMENTS] + [(a, "partly") for a in ASSIGNMENTS] + \
    [("cnn_architecture", "sloppy")]


@pytest.mark.parametrize("assignment, kind", CASES)
def test_no_self_check_message_holds_a_reference_argument(tmp_path, handouts, assignment, kind):
    folder = tmp_path / assignment
    shutil.copytree(handouts[assignment], folder)
    if kind == "partly":
        SUBMISSIONS[assignment]["partly"](folder)
    elif kind == "sloppy":
        _sloppy_cnn_architecture(folder)
    full = rubric.load(RUBRICS / f"{assignment}.yaml")
    ids = [i.id for i in full.public_view().items if i.check != "accuracy" and i.id not in HEAVY]
    done = run_cli("check", ".", "--json", "--verbose", "--no-train", "--items", ",".join(ids), cwd=folder)
    assert done.returncode == 1, done.stdout + done.stderr  # every one of them fails something
    said = done.stdout + done.stderr
    # A message may quote the student's own code (the line that failed): what they wrote is no leak.
    own = "\n".join(p.read_text(errors="replace") for p in folder.iterdir() if p.suffix in (".py", ".ipynb"))
    leaks = [s for s in _leaks(said, _secrets(assignment)) if s in QUOTING or s not in own]
    assert not leaks, leaks
    tests = {t["extra_data"]["id"]: t for t in json.loads(done.stdout)["tests"]}
    assert not [i for i, t in tests.items() if t["extra_data"]["status"] in ("skipped", "error")]
    if kind == "sloppy":  # still specific: the student's layer, and what differs in kind
        assert tests["resnet50_layer4.layer3"]["output"].startswith(
            "layer3 has 0 blocks; the question needs more: layer3: a block is missing (it has none)")
        assert "layer.0.0: the stride of this Conv2d is not what the question needs" in \
            tests["residual_block.downsample"]["output"]
        layer4 = tests["resnet50_layer4.layer4"]["output"]
        assert layer4.startswith("layer4 has 7 blocks; the question needs fewer: "), layer4
        # aligned as a diff aligns lines: one block too many, one with an argument the question does not need
        assert re.search(r"layer4\[\d\]: its (in|middle)_channels is not what the question needs", layer4), layer4
        assert re.search(r"layer4\[\d\] is one too many", layer4), layer4
