"""No answer leaks from a handout (issue 19): for every shipped rubric, the handout that
`grader bundle --student` writes, and every message of its self-check (on the untouched
skeleton and on deliberately wrong submissions), hold none of the reference's layer
arguments that the skeleton and the public rubric do not already give.  The messages still
say which of the student's layers is wrong and in what."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from grader import rubric
from grader.introspect import _short, call_text
from grader.reference import Reference
from grader.structure_diff import arguments
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, run_cli
from tests.test_handout_answers import HEAVY, SUBMISSIONS, _python_variant

ASSIGNMENTS = sorted(p.stem for p in RUBRICS.glob("*.yaml"))
# Said of the reference in the instructor's messages, never in a handout's.
QUOTING = ["(reference:", "expected ResidualBlock(", "; the reference has Conv", "; expected Conv2d(",
           "expected BasicBlock("]


def _sloppy_cnn_architecture(folder: Path) -> None:
    """A sloppy student: layer3 left empty, Q1's stride on the 3x3 conv, a wrong and an extra
    block in layer4."""
    reference = (REFERENCE / "cnn_architecture" / "resnet50_skeleton.py").read_text()
    start = reference.index("            ResidualBlock(256, 128, 512, False),")
    end = reference.index("            # END SOLUTION", start)
    _python_variant(
        "cnn_architecture", "resnet50_skeleton.py",
        (reference[start:end], ""),
        ("conv1x1(in_channels, middle_channels, 2, 0),\n                conv3x3(middle_channels, middle_channels, 1, 1)",
         "conv1x1(in_channels, middle_channels, 1, 0),\n                conv3x3(middle_channels, middle_channels, 2, 1)"),
        ("            ResidualBlock(1024, 256, 1024, False),\n            # END SOLUTION",
         "            ResidualBlock(1024, 128, 1024, False),\n            ResidualBlock(1024, 256, 1024, False),\n"
         "            # END SOLUTION"))(folder)


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
        if t is None or not item.needs_reference() or item.id in HEAVY:
            continue
        cases = [(c.args if c.args is not None else t.args, c.kwargs if c.kwargs is not None else t.kwargs)
                 for c in getattr(item, "cases", None) or []] or [(t.args, t.kwargs)]
        for args, kwargs in cases:
            for node in reference.describe(t.file, t.name, args, kwargs, t.isolate, section=t.section)["nodes"].values():
                found.add(call_text(node))
                found |= {f"{k}={_short(v)}" for k, v in arguments(node).items()}
    return {s for s in found if s not in given and "=" in s}


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
    assert not _leaks(said, _secrets(assignment)), _leaks(said, _secrets(assignment))
    tests = {t["extra_data"]["id"]: t for t in json.loads(done.stdout)["tests"]}
    assert not [i for i, t in tests.items() if t["extra_data"]["status"] in ("skipped", "error")]
    if kind == "sloppy":  # still specific: the student's layer, and what differs in kind
        assert tests["resnet50_layer4.layer3"]["output"].startswith(
            "layer3 has 0 blocks; the question needs more: layer3: a block is missing (it has none)")
        assert "layer.0.0: the stride of this Conv2d is not what the question needs" in \
            tests["residual_block.downsample"]["output"]
        layer4 = tests["resnet50_layer4.layer4"]["output"]
        assert "layer4[5]: its middle_channels is not what the question needs" in layer4
        assert "layer4[6] is one too many" in layer4
