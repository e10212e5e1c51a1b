"""Public checks without the solution: a handout made by `grader bundle --student` checks
the public items from its answers file (no reference anywhere) and gives the verdicts,
messages and details of the instructor's grading with the reference where messages are
concealed (as on Gradescope), the verdicts of the instructor's precise grading; outputs
replayed from that file earn nothing in real grading (grading_seed)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grader import grading, rubric
from grader.answers import Answers, digest
from grader.authoring import bundle
from grader.options import Options
from grader.reference import Reference
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, run_cli
from tests.notebooks import reference_cells, write_notebook

# Items compared per assignment: every public item but the accuracy ones (they read checkpoints and
# data, not the reference, and name the submission's path) and cnn_vs_fcn's resfcn18 (457M weights).
HEAVY = {"resfcn18.shape", "resfcn18.params"}


def _public_ids(assignment: str) -> list[str]:
    full = rubric.load(RUBRICS / f"{assignment}.yaml")
    return [i.id for i in full.public_view().items if i.check != "accuracy" and i.id not in HEAVY]


def _replace(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert text.count(old) >= 1, f"{old!r} not in the reference"
        text = text.replace(old, new, 1)
    return text


def _notebook_variant(folder: Path, *pairs: tuple[str, str]) -> None:
    cells = reference_cells()
    for old, new in pairs:
        hits = [c for c in cells if c["cell_type"] == "code" and old in "".join(c["source"])]
        assert len(hits) == 1, f"{old!r} is in {len(hits)} cells"
        hits[0]["source"] = "".join(hits[0]["source"]).replace(old, new, 1).splitlines(keepends=True)
    write_notebook(folder / "PyTorch.ipynb", cells)


def _python_variant(assignment: str, file: str, *pairs):
    def write(folder: Path) -> None:
        source = (REFERENCE / assignment / file).read_text()
        (folder / file).write_text(_replace(source, *pairs))
    return write


def _reference_files(assignment: str, *files: str):
    def write(folder: Path) -> None:
        for name in files:
            shutil.copy(REFERENCE / assignment / name, folder / name)
    return write


def _as_handed_out(folder: Path) -> None:
    """Broken: the skeleton, untouched (blanks that do not parse, NotImplementedError)."""


SUBMISSIONS = {
    "cnn_architecture": {
        "correct": _reference_files("cnn_architecture", "resnet50_skeleton.py"),
        "partly": _python_variant(
            "cnn_architecture", "resnet50_skeleton.py",
            # Q1 downsample: no shortcut (other numbers); Q1 plain: the last 1x1 conv left out (other layers)
            ("            x = self.downsize(x)\n            return out + x", "            return out"),
            ("                conv3x3(middle_channels, middle_channels, 1, 1),\n"
             "                conv1x1(middle_channels, out_channels, 1, 0),\n"
             "                # END SOLUTION\n            )\n            self.make_equal_channel",
             "                conv3x3(middle_channels, out_channels, 1, 1),\n"
             "                # END SOLUTION\n            )\n            self.make_equal_channel"),
            # Q2: a wrong block in layer3, one block missing in layer4
            ("ResidualBlock(512, 128, 512, True)", "ResidualBlock(512, 64, 512, True)"),
            ("            ResidualBlock(1024, 256, 1024, False),\n            # END SOLUTION",
             "            # END SOLUTION")),
        "broken": _as_handed_out,
    },
    "pytorch_basics": {
        "correct": lambda folder: _notebook_variant(folder),
        "partly": lambda folder: _notebook_variant(
            folder,
            # Q1 and Q4: a ReLU left out (other numbers); Q3: no Kaiming init; Q6: no Nesterov
            ("x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))", "x = F.conv2d(x, conv_w2, conv_b2, padding=1)"),
            ("        x = F.relu(self.conv2(x))\n", "        x = self.conv2(x)\n"),
            ("        for layer in (self.conv1, self.conv2, self.fc):\n            nn.init.kaiming_normal_(layer.weight)\n",
             ""),
            ("fc_w = random_weight((channel_2 * 32 * 32, 10))", "fc_w = random_weight((10, channel_2 * 32 * 32))"),
            ("optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)\n# END",
             "optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)\n# END")),
        "broken": _as_handed_out,
    },
    "cnn_vs_fcn": {
        "correct": _reference_files("cnn_vs_fcn", "custom_cnn.py", "resfcn.py"),
        "partly": lambda folder: (_reference_files("cnn_vs_fcn", "custom_cnn.py")(folder), _python_variant(
            "cnn_vs_fcn", "resfcn.py", ("return self.relu(out + identity)", "return self.relu(out)"))(folder)),
        "broken": _as_handed_out,
    },
    "resnet18_cifar": {
        "correct": _reference_files("resnet18_cifar", "resnet.py"),
        "partly": _python_variant(
            "resnet18_cifar", "resnet.py",
            ("return F.relu(residual + self.shortcut(x))", "return F.relu(residual)"),
            ("for block_stride in [stride] + [1] * (num_blocks - 1):", "for block_stride in [stride] * num_blocks:")),
        "broken": _as_handed_out,
    },
}


class _Handouts(dict):
    """Each shipped assignment's handout, unpacked far from the repository, made when first asked for."""

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def __missing__(self, assignment: str) -> Path:
        root = self.factory.mktemp(f"handout-{assignment}")
        out = bundle.student(rubric.load(RUBRICS / f"{assignment}.yaml"), root / "handout.zip")
        with zipfile.ZipFile(out.path) as z:
            z.extractall(root)
        self[assignment] = root / assignment
        return self[assignment]


@pytest.fixture(scope="module")
def handouts(tmp_path_factory) -> dict[str, Path]:
    return _Handouts(tmp_path_factory)


def _tests(report: dict) -> list[tuple]:
    return [(t["extra_data"]["id"], t["extra_data"]["status"], t["score"], t["output"]) for t in report["tests"]]


def _instructor(folder: Path, assignment: str, ids: list[str], *, public_seeds: bool, conceal: bool) -> list[tuple]:
    full = rubric.load(RUBRICS / f"{assignment}.yaml")
    if public_seeds:  # what the handout's answers were computed with
        full = full.model_copy(update={"grading_seed": None})
    options = Options(train_if_missing=False)
    reference = Reference(full.reference_dir(), notebook=full.notebook, conceal_visible=conceal)
    return _tests(grading.grade(folder, full, options, items=ids, reference=reference).to_gradescope())


@pytest.mark.parametrize("assignment, kind", [(a, k) for a in SUBMISSIONS for k in SUBMISSIONS[a]])
def test_the_handout_gives_the_instructors_verdicts_and_messages(tmp_path, handouts, assignment, kind):
    handout = handouts[assignment]
    public = rubric.load(handout / f"{assignment}.yaml")
    assert public.reference is None and public.reference_dir() is None and public.grading_seed is None
    assert not any(handout.rglob("*.py")) or all(
        (handout / p.name).read_bytes() == (SKELETONS / assignment / p.name).read_bytes()
        for p in (SKELETONS / assignment).glob("*.py"))  # the handout holds the skeleton, no solution
    folder = tmp_path / "work" / assignment
    shutil.copytree(handout, folder)
    SUBMISSIONS[assignment][kind](folder)
    ids = _public_ids(assignment)

    done = run_cli("check", ".", "--json", "--no-train", "--items", ",".join(ids), cwd=folder)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    student = _tests(json.loads(done.stdout))
    assert [t[0] for t in student] == ids
    assert not [t for t in student if t[1] in ("skipped", "error")], student  # every item was checked

    # Exactly what the instructor's grading says with the reference and the same (public) seeds,
    # with the messages students read before the deadline (concealed, as on Gradescope).
    assert student == _instructor(folder, assignment, ids, public_seeds=True, conceal=True)
    # With the secret grading seed and precise messages, the messages differ, never the verdict.
    if assignment in ("cnn_architecture", "pytorch_basics"):
        secret = _instructor(folder, assignment, ids, public_seeds=False, conceal=False)
        assert [t[:3] for t in student] == [t[:3] for t in secret]
    statuses = {t[1] for t in student}
    if kind == "correct":
        assert statuses == {"passed"}, student
    else:
        assert statuses != {"passed"}, student


def test_questions_1_to_6_and_q1_q2_structure_are_in_the_self_check(handouts):
    checked = {a: [i.id for i in rubric.load(handouts[a] / f"{a}.yaml").items]
               for a in ("pytorch_basics", "cnn_architecture")}
    assert {"three_layer_convnet", "three_layer_convnet.init", "ThreeLayerConvNet",
            "sequential_convnet"} <= set(checked["pytorch_basics"])
    assert {"residual_block.downsample", "residual_block.plain", "resnet50_layer4.layer3",
            "resnet50_layer4.layer4"} <= set(checked["cnn_architecture"])
    assert "resnet50_layer4.blanks" not in checked["cnn_architecture"]  # a blank's expected value is an answer


def test_the_answers_file_is_data_and_holds_no_hidden_answer(handouts):
    folder = handouts["cnn_architecture"]
    text = (folder / "answers.json").read_text()
    document = json.loads(text)
    assert document["tensors"] == "answers.safetensors"
    load_file(str(folder / "answers.safetensors"))  # plain tensors
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pt", ".pth")]
    # layer3's check ships layer3 only: not layer1's conv, the pooling or fc, whose settings are blanks
    for blank_module in ('"layer1.0"', '"layer1.3"', '"avgpool"', '"fc"', '"layer2.0"'):
        assert blank_module not in text
    assert "20260611" not in text and "grading_seed" not in (folder / "cnn_architecture.yaml").read_text()


def test_without_the_answers_file_the_items_are_skipped_not_failed(tmp_path, handouts):
    folder = tmp_path / "cnn_architecture"
    shutil.copytree(handouts["cnn_architecture"], folder)
    (folder / "answers.json").unlink()
    shutil.copy(REFERENCE / "cnn_architecture" / "resnet50_skeleton.py", folder)
    done = run_cli("check", ".", "--json", "--items", "residual_block.plain", cwd=folder)
    [test] = json.loads(done.stdout)["tests"]
    assert test["extra_data"]["status"] == "skipped"
    assert "needs the instructor's reference solution" in test["output"]


# -- replaying the answers earns nothing in real grading -------------------------------------------

TINY_REFERENCE = '''import torch
from torch import nn


def affine(x, w):
    return torch.tanh(x @ w) + 1


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x)) * 2
'''

TINY_RUBRIC = '''assignment: tiny
files: [tiny.py]
reference: reference
grading_seed: 987654
items:
  - id: affine
    points: 5
    check: function
    target: {file: tiny.py, name: affine}
    cases:
      - args: [{randn: [2, 4]}, {randn: [4, 3]}]
  - id: tiny
    points: 5
    check: equivalence
    target: {file: tiny.py, name: Tiny}
    cases:
      - inputs: [[2, 4]]
'''


def _replaying_submission(folder: Path, answers: Answers) -> None:
    """A student who returns the outputs stored in the handout instead of computing them."""
    document = json.loads(answers.path.read_text())
    tensors = load_file(str(answers.path.with_name(document["tensors"])))
    calls = document["functions"]["tiny.py"]["affine"]["__dict__"]
    stored_calls = {key: tensors[value["__tensor__"]].tolist() for key, value in calls.items()}
    stored_forward = {key: tensors[value["__tensor__"]].tolist()
                      for model in document["models"].values()
                      for key, value in model["outputs"]["__dict__"].items()}
    (folder / "tiny.py").write_text(f'''import torch
from torch import nn
from grader.answers import digest

CALLS = {stored_calls!r}
FORWARD = {stored_forward!r}


def affine(x, w):
    return torch.tensor(CALLS[digest([[x, w], {{}}])])


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)  # the reference's shapes (they are in the answers file)

    def forward(self, x):
        return torch.tensor(FORWARD[digest([x])])
''')


def test_replayed_answers_pass_the_self_check_and_fail_real_grading(tmp_path):
    course = tmp_path / "course"
    (course / "reference").mkdir(parents=True)
    (course / "reference" / "tiny.py").write_text(TINY_REFERENCE)
    (course / "tiny.yaml").write_text(TINY_RUBRIC)
    instructor = rubric.load(course / "tiny.yaml")
    made = bundle.student(instructor, tmp_path / "tiny.zip")
    with zipfile.ZipFile(made.path) as z:
        z.extractall(tmp_path / "student")
    handout = tmp_path / "student" / "tiny"
    assert rubric.load(handout / "tiny.yaml").grading_seed is None

    honest = tmp_path / "honest"
    shutil.copytree(handout, honest)
    (honest / "tiny.py").write_text(TINY_REFERENCE)
    cheat = tmp_path / "cheat"
    shutil.copytree(handout, cheat)
    _replaying_submission(cheat, Answers(handout / "answers.json"))

    for folder in (honest, cheat):  # the self-check, in the handout: both pass
        done = run_cli("check", ".", "--json", cwd=folder)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [t["extra_data"]["status"] for t in json.loads(done.stdout)["tests"]] == ["passed", "passed"]

    # Real grading, with the instructor's rubric: the honest submission passes, the replay gets nothing.
    honest_report = grading.grade(honest, instructor)
    assert [r.status for r in honest_report.results] == ["passed", "passed"]
    cheat_report = grading.grade(cheat, instructor)
    assert [r.points for r in cheat_report.results] == [0, 0]
    assert "KeyError" in cheat_report.results[0].message and "KeyError" in cheat_report.results[1].message


def test_answer_keys_are_the_questions_values():
    a, b = torch.ones(2, 2), torch.ones(2, 2)
    assert digest([a]) == digest([b]) != digest([a * 2]) != digest([a.double()])
