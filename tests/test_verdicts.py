"""Verdicts a student and an instructor can trust: broken work never looks fine, a failed
answer is never graded with an earlier question's objects, errors point at the student's
own line (with Python's hint), and structure credit forgives one block once."""

from __future__ import annotations

import json
import shutil
import types
import zipfile
from pathlib import Path

import pytest

from grader import grading, rubric
from grader.batch import progress
from grader.checkpoints import CheckpointRefused, read_state_dict
from grader.checks import accuracy
from grader.options import Options
from grader.checks.structure import align
from grader.notebook import load_notebook_module
from tests.conftest import REFERENCE, run_cli
from tests.notebooks import RUBRIC as BASICS_RUBRIC
from tests.notebooks import cell_number, code_cell, variant, write_notebook
from tests.test_notebook import OPTIONS, TRAIN

CNN = rubric.load(Path(__file__).resolve().parents[1] / "rubrics" / "cnn_architecture.yaml")
RESNET = (REFERENCE / "cnn_architecture" / "resnet50_skeleton.py").read_text()


def cnn_submission(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir()
    for name in ("main.py", "vgg16_full.py"):
        shutil.copy(REFERENCE / "cnn_architecture" / name, folder / name)
    (folder / "resnet50_skeleton.py").write_text(source)
    return folder


def changed(source: str, old: str, new: str) -> str:
    assert source.count(old) >= 1, old
    return source.replace(old, new, 1)


# -- the self-check is honest ----------------------------------------------------------


def test_the_handouts_untouched_skeleton_fails_its_self_check_with_the_line(tmp_path):
    zip_path = tmp_path / "handout.zip"
    assert run_cli("bundle", "cnn_architecture", "--student", "-o", str(zip_path)).returncode == 0
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(tmp_path / "student")
    done = run_cli("check", ".", cwd=tmp_path / "student" / "cnn_architecture")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    # The file's own line first, then every public item that needs the file (issue 11 made the
    # questions checkable in the handout): those of ResNet50_layer4, whose blank does not parse,
    # with that error; those of ResidualBlock, which parses, with their own reason (issue 19).
    assert failed[0].split()[1] == "resnet50_skeleton.py"
    assert "SyntaxError" in failed[0] and "(resnet50_skeleton.py:69)" in failed[0]
    layer_items = [line for line in failed[1:] if line.split()[2].startswith("resnet50_layer4.")]
    block_items = [line for line in failed[1:] if line.split()[2].startswith("residual_block.")]
    assert layer_items and all("SyntaxError" in line and "(resnet50_skeleton.py:69)" in line for line in layer_items)
    assert len(block_items) == 2 and not any("SyntaxError" in line for line in block_items), block_items
    assert any("69 |" in line for line in lines), "the offending line is shown"
    assert sum(line.startswith("SKIP") for line in lines) == 2  # the public items, still there
    assert "Traceback" not in done.stdout + done.stderr


def test_a_script_the_items_never_import_is_compiled_not_run(tmp_path):
    folder = cnn_submission(tmp_path, RESNET)
    (folder / "main.py").write_text("import sys\nprint('training...')\nfor epoch in range(3)\n    pass\n")
    report = grading.grade(folder, CNN, items=["residual_block.plain"], threads=1)
    assert [(p["file"], p["where"]) for p in report.problems] == [("main.py", "main.py:3")]
    assert "SyntaxError" in report.problems[0]["message"]
    assert report.results[0].points == 20 and not report.all_passed
    assert "training..." not in report.output  # compiled only: main.py trains when run


def test_the_reference_has_no_problems(tmp_path):
    report = grading.grade(cnn_submission(tmp_path, RESNET), CNN, items=["residual_block.plain"], threads=1)
    assert report.problems == [] and report.all_passed


# -- a failed answer cell has no value -------------------------------------------------


def test_a_section_whose_cell_failed_does_not_lend_an_earlier_sections_model(tmp_path):
    path = write_notebook(tmp_path / "PyTorch.ipynb", [
        code_cell("import torch.nn as nn\nimport torch.optim as optim"),
        code_cell(TRAIN),
        code_cell("# Question 6\nmodel = nn.Linear(2, 2)\noptimizer = optim.SGD(model.parameters(), lr=0.1)\n"
                  "train_part34(model, optimizer)"),
        code_cell("# Question 7\nmodel = nn.Sequential(nn.Linear(3, 3)\noptimizer = optim.Adam(model.parameters())"),
    ])
    run = load_notebook_module(path, "nb_failed_q7", OPTIONS).__notebook__
    with pytest.raises(LookupError) as raised:
        run.value("challenge", "model")
    assert "cell 4 of the challenge section failed at line 2 (SyntaxError" in str(raised.value)
    assert run.value("question_6", "model")[0].in_features == 2  # Question 6 keeps its own


def test_model_none_then_a_failing_line_is_the_failure_not_unanswered(tmp_path):
    path = write_notebook(tmp_path / "PyTorch.ipynb", [
        code_cell("import torch.nn as nn\nimport torch.optim as optim"),
        code_cell("# Question 6\nmodel = nn.Linear(2, 2)\noptimizer = optim.SGD(model.parameters(), lr=0.1)"),
        code_cell("# Question 7\nmodel = None\noptimizer = None\nmodel = nn.Linear(3, 3, 7, 8, 9)"),
    ])
    run = load_notebook_module(path, "nb_failed_q7_runtime", OPTIONS).__notebook__
    with pytest.raises(LookupError, match=r"cell 3 of the challenge section failed at line 4 \(TypeError"):
        run.value("challenge", "model")


def test_the_challenge_is_never_trained_with_question_6s_model(tmp_path):
    basics = rubric.load(BASICS_RUBRIC)
    folder = variant(tmp_path / "sub", replace=[("optimizer = optim.Adam(model.parameters(), lr=1e-3)\n",
                                                 "optimizer = optim.Adam(model.parameters(), lr=1e-3\n")])
    q7 = cell_number(folder / "PyTorch.ipynb", "# Question 7")
    report = grading.grade(folder, basics, items=["challenge.accuracy"])
    challenge = report.results[0]
    assert challenge.points == 0 and f"cell {q7} of the challenge section failed" in challenge.message
    assert "SyntaxError" in challenge.message and "SGD" not in challenge.message + " ".join(challenge.details)
    assert [p["file"] for p in report.problems] == ["PyTorch.ipynb"]
    assert f"cell {q7}, line" in report.problems[0]["message"] and not report.all_passed


# -- errors point at the student's own line --------------------------------------------


def test_a_typo_inside_forward_is_located_in_its_own_cell_with_pythons_hint(tmp_path):
    basics = rubric.load(BASICS_RUBRIC)
    folder = variant(tmp_path / "sub", replace=[("scores = self.fc(flatten(x))", "scores = self.fc(flaten(x))")])
    notebook = folder / "PyTorch.ipynb"
    cell = cell_number(notebook, "class ThreeLayerConvNet")
    code_cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    source = "".join(code_cells[cell - 1]["source"])  # cells are numbered as code cells (In [n])
    line = source.splitlines().index("        scores = self.fc(flaten(x))") + 1
    report = grading.grade(folder, basics, items=["ThreeLayerConvNet"])
    item = report.results[0]
    assert "NameError: name 'flaten' is not defined. Did you mean: 'flatten'?" in item.message
    assert item.where == f"PyTorch.ipynb cell {cell}:{line}"
    # The cell that tests the class at the top level fails too: reported where the typo is.
    caller = cell_number(notebook, "def test_ThreeLayerConvNet")
    [problem] = report.problems
    assert problem["message"].startswith(f"cell {cell}, line {line}: NameError: name 'flaten' is not defined")
    assert f"(called from cell {caller}, line" in problem["message"]
    assert problem["code"] == f"{line:>4} | scores = self.fc(flaten(x))"


def test_verbose_shows_the_students_frames_only(tmp_path):
    source = changed(RESNET, "conv3x3(middle_channels, middle_channels, 1, 1),",
                     "conv3x3(middle_channel, middle_channels, 1, 1),")
    folder = cnn_submission(tmp_path, source)
    line = source.splitlines().index("                conv3x3(middle_channel, middle_channels, 1, 1),") + 1
    done = run_cli("check", str(folder), "--rubric", "cnn_architecture", "--items", "residual_block.downsample",
                   "--verbose")
    assert done.returncode == 1
    assert "NameError: name 'middle_channel' is not defined. Did you mean: 'middle_channels'?" in done.stdout
    assert f"(resnet50_skeleton.py:{line})" in done.stdout
    assert "traceback, your code only (innermost last):" in done.stdout
    assert f"resnet50_skeleton.py:{line} in __init__: conv3x3(middle_channel, middle_channels, 1, 1)," in done.stdout
    assert "grader/" not in done.stdout and "site-packages" not in done.stdout
    plain = run_cli("check", str(folder), "--rubric", "cnn_architecture", "--items", "residual_block.downsample")
    assert "traceback, your code only" not in plain.stdout


def test_an_attribute_typo_keeps_pythons_hint(tmp_path):
    source = changed(RESNET, "conv1x1(in_channels, middle_channels, 2, 0),",
                     "conv1x1(in_channels, self.middle_channel, 2, 0),")
    source = changed(source, "        self.downsample = downsample\n",
                     "        self.downsample = downsample\n        self.middle_channels = middle_channels\n")
    report = grading.grade(cnn_submission(tmp_path, source), CNN, items=["residual_block.downsample"], threads=1)
    assert "Did you mean: 'middle_channels'?" in report.results[0].message


# -- small things that read wrong --------------------------------------------------------


def test_a_text_file_named_like_a_checkpoint_is_not_a_checkpoint(tmp_path):
    (tmp_path / "challenge.pt").write_text("see my Google Drive for the weights\n")
    with pytest.raises(CheckpointRefused) as refused:
        read_state_dict(str(tmp_path / "challenge.pt"))
    assert str(refused.value).startswith("challenge.pt is not a checkpoint (it is a text file starting "
                                         "'see my Google Drive for the weights')")
    assert "could run code" not in str(refused.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointRefused, match=r"empty.pt is not a checkpoint \(the file is empty\)"):
        read_state_dict(str(tmp_path / "empty.pt"))


def test_training_stopped_by_its_budget_says_so():
    item = types.SimpleNamespace(target=types.SimpleNamespace(name="model"))
    ctx = types.SimpleNamespace(options=types.SimpleNamespace(device="cpu"))
    recipe = types.SimpleNamespace(schedule="constant", batch_size=64)
    out = {"epochs": 10, "submission_optimizer": False, "optimizer": {"type": "Adam", "groups": [{"lr": 0.001}]},
           "result": {"seconds": 300, "steps": 277, "epochs_done": 0.3621, "stopped_by_budget": True,
                      "base_lrs": [0.001]}}
    notes = accuracy._training_notes(item, ctx, {}, recipe, out, None, 300, "CIFAR-10")
    assert notes[0].startswith("trained model for 0.36 of 10 epochs in 5 min 00 s")
    assert notes[1] == ("training stopped early, after 0.36 of 10 epochs: it reached its time budget of "
                        "5 min 00 s")
    assert "graded as it was then" not in " ".join(notes)  # `grader train` grades nothing


def test_grading_some_students_does_not_call_the_others_unchanged():
    plan = types.SimpleNamespace(intake=types.SimpleNamespace(submissions=[1] * 17, layout="one folder per student",
                                                              unassigned=[]),
                                 jobs=[{}], records={}, stale=[], workers=1, threads=2, data_notes=[],
                                 rubric=types.SimpleNamespace(assignment="cnn_architecture"))
    [line] = progress._plan_lines(plan)
    assert "grading 1, 16 not graded in this run" in line and "unchanged" not in line
    plan.jobs, plan.records = [{}] * 17, {}
    assert "grading 17, 0 unchanged since the last run" in progress._plan_lines(plan)[0]


# -- structure credit: one block, one share ----------------------------------------------


def test_alignment_costs_one_step_per_missing_extra_or_wrong_child():
    def steps(student, ref):
        return [op for op, _, _ in align(len(student), len(ref), lambda i, j: student[i] == ref[j])]

    assert steps("ABD", "ABBD") == ["same", "missing", "same", "same"]
    assert steps("ABBBD", "ABBD").count("extra") == 1 and steps("ABBBD", "ABBD").count("same") == 4
    assert steps("AXBD", "ABBD") == ["same", "wrong", "same", "same"]
    assert steps("", "AB") == ["missing", "missing"] and steps("AB", "") == ["extra", "extra"]


LAYER3_MISSING_ONE = changed(RESNET, "            ResidualBlock(512, 128, 512, False),\n", "")
LAYER3_ONE_EXTRA = changed(RESNET, "            ResidualBlock(512, 128, 512, False),\n",
                           "            ResidualBlock(512, 128, 512, False),\n" * 2)


@pytest.mark.parametrize("source, count, words", [
    (LAYER3_MISSING_ONE, 3, "layer3 has 3 blocks; expected 4: layer3: a block is missing after layer3[0]"),
    (LAYER3_ONE_EXTRA, 5, "layer3 has 5 blocks; expected 4: layer3["),
])
def test_one_block_missing_or_extra_costs_one_block(tmp_path, source, count, words):
    report = grading.grade(cnn_submission(tmp_path, source), CNN, items=["resnet50_layer4.layer3"], threads=1)
    result = report.results[0]
    assert result.points == 15, result.message  # 20 points, 4 blocks: one share lost
    assert result.message.startswith(words) and len(result.details) == 1


def test_a_checkpoint_that_does_not_fit_a_short_layer3_blames_layer3_once(tmp_path, cnn_checkpoints,
                                                                          labelled_by_resnet):
    folder = cnn_submission(tmp_path, LAYER3_MISSING_ONE)
    report = grading.grade(folder, CNN, Options(checkpoint_dirs=[cnn_checkpoints], data_dir=str(labelled_by_resnet)),
                           items=["resnet50_layer4.accuracy"], threads=1)
    details = report.results[0].details
    assert len(details) == 1, details
    assert details[0].startswith("layer3: your model has 3 blocks, the checkpoint 4: ")
    assert details[0].endswith("-> Q2 layer3 (resnet50_layer4.layer3)")


def test_a_left_out_handout_script_costs_nothing_but_a_left_out_answer_file_fails(tmp_path):
    folder = cnn_submission(tmp_path, RESNET)
    (folder / "main.py").unlink()
    report = grading.grade(folder, CNN, items=["residual_block.plain"], threads=1)
    assert report.problems == [] and report.all_passed
    (folder / "resnet50_skeleton.py").unlink()
    report = grading.grade(folder, CNN, items=["vgg16.accuracy"], threads=1)
    assert [p["message"] for p in report.problems] == ["resnet50_skeleton.py is not in the submission"]


def test_a_cell_that_calls_broken_code_of_another_cell_names_that_cell(tmp_path):
    path = write_notebook(tmp_path / "PyTorch.ipynb", [
        code_cell("def flatten(x):\n    return x\n"),
        code_cell("class Net:\n    def forward(self, x):\n        return flaten(x)\n"),
        code_cell("net = Net()\nscores = net.forward(1)\n"),
    ])
    run = load_notebook_module(path, "nb_origin", OPTIONS).__notebook__
    [failed] = run.failures()
    assert (failed.cell, failed.line, failed.origin) == (3, 2, "cell 2, line 3")
    assert failed.message == "NameError: name 'flaten' is not defined. Did you mean: 'flatten'?"
    assert failed.code == "return flaten(x)"
