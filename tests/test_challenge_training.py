"""Training before evaluating: a notebook challenge trained with the student's own model,
optimizer and epochs when there is no checkpoint; `grader train` writing a checkpoint
that `grader check` then uses, stopping at a budget and resuming to the same weights;
and a YAML recipe that fine-tunes an instructor checkpoint (the CNN Architecture
course's main.py), all on a tiny model and a tiny real-image data set."""

from __future__ import annotations

import pytest
import torch

from grader import grading, rubric
from grader.options import Options
from grader.results import PASSED, SKIPPED
from tests.conftest import run_cli
from tests.notebooks import read_checkpoint, state_equal, tiny_challenge_notebook, tiny_cifar, tiny_rubric

MODEL = ("model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
         "                      nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10))")
OPTIMIZER = "optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)"
TRAIN = """      epochs: 3
      batch_size: 32
      optimizer: {type: Adam, lr: 0.001}
      seed: 0"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_cifar(tmp_path_factory.mktemp("tiny-cifar"))


@pytest.fixture
def tiny(tmp_path):
    return rubric.load(tiny_rubric(tmp_path / "tiny.yaml", TRAIN))


def submission(tmp_path, model=MODEL, optimizer=OPTIMIZER, epochs=2):
    return tiny_challenge_notebook(tmp_path / "student", model, optimizer, epochs)


def test_check_trains_the_students_model_with_their_optimizer_and_epochs(tmp_path, tiny, data_dir):
    report = grading.grade(submission(tmp_path), tiny, Options(data_dir=str(data_dir)))
    result = report.results[0]
    assert result.status == PASSED, result.message
    training = result.extra["training"]
    assert training["epochs"] == 2 and training["steps"] == 2 * (240 // 32)  # asked for 2, the rubric allows 3
    notes = " ".join(result.details)
    assert "SGD(lr=0.05, momentum=0.9) from the train_part34 call in cell 3" in notes  # code cells, as Jupyter numbers them
    assert "asks for" not in notes and "batch 32" in notes
    assert result.extra["total"] == 80  # the tiny test set


def test_without_an_optimizer_the_rubrics_is_used_and_the_epochs_are_capped(tmp_path, tiny, data_dir):
    folder = submission(tmp_path, optimizer="optimizer = None", epochs=5)
    result = grading.grade(folder, tiny, Options(data_dir=str(data_dir))).results[0]
    assert result.extra["training"]["epochs"] == 3  # the rubric's budget, not the 5 asked for
    notes = " ".join(result.details)
    assert "the rubric's Adam(lr=0.001" in notes and "3 epochs (the submission asks for 5)" in notes


def test_no_training_data_or_no_train_skips_with_what_to_do(tmp_path, tiny):
    result = grading.grade(submission(tmp_path), tiny).results[0]  # no --data-dir: only the test sample exists
    assert result.status == SKIPPED and "training images" in result.message and "challenge.pt" in result.message
    result = grading.grade(submission(tmp_path), tiny, Options(train_if_missing=False)).results[0]
    assert result.status == SKIPPED and "grader train" in result.message


def test_grader_train_writes_a_checkpoint_that_check_uses(tmp_path, tiny, data_dir):
    folder = submission(tmp_path)
    summary = grading.train(folder, tiny, "challenge.accuracy", Options(data_dir=str(data_dir)))
    saved = read_checkpoint(folder / "challenge.pt")
    assert summary["out"] == str(folder / "challenge.pt")
    assert set(saved) == {"model", "training"}  # finished: the weights, and how they were trained
    assert saved["training"]["epochs_done"] == 2 and not saved["training"]["stopped_by_budget"]

    result = grading.grade(folder, tiny, Options(data_dir=str(data_dir))).results[0]
    assert result.status == PASSED and "training" not in result.extra  # evaluated, not trained again
    assert any("written by grader train: 2 of 2 epochs" in d for d in result.details)


def test_a_budget_stops_training_and_the_next_run_resumes_to_the_same_weights(tmp_path, tiny, data_dir):
    options = Options(data_dir=str(data_dir))
    folder = submission(tmp_path)
    straight = grading.train(folder, tiny, "challenge.accuracy", options, out=tmp_path / "straight.pt")
    assert straight["result"]["steps"] == 14

    stopped = grading.train(folder, tiny, "challenge.accuracy", options, out=tmp_path / "resumed.pt", budget_s=0.01)
    assert stopped["result"]["stopped_by_budget"] and stopped["result"]["steps"] < 14
    partial = read_checkpoint(tmp_path / "resumed.pt")
    assert partial["training"]["stopped_by_budget"] and partial["training"]["steps"] == stopped["result"]["steps"]
    if partial["training"]["steps"]:  # momentum buffers, by parameter index, as torch resumes them
        assert all(isinstance(k, int) for k in partial["optimizer"]["state"])

    resumed = grading.train(folder, tiny, "challenge.accuracy", options, out=tmp_path / "resumed.pt")
    assert not resumed["result"]["stopped_by_budget"] and resumed["result"]["steps"] == 14
    assert state_equal(read_checkpoint(tmp_path / "straight.pt")["model"],
                       read_checkpoint(tmp_path / "resumed.pt")["model"])


def test_grader_train_and_check_from_the_command_line(tmp_path, data_dir):
    rubric_path = tiny_rubric(tmp_path / "tiny.yaml", TRAIN)
    folder = submission(tmp_path)
    common = ["--rubric", str(rubric_path), "--data-dir", str(data_dir)]
    first = run_cli("train", str(folder), "--item", "challenge.accuracy", "--budget", "0.01", *common)
    assert first.returncode == 0, first.stderr
    assert "stopped by the budget" in first.stdout and "run the same command again to resume" in first.stdout
    second = run_cli("train", str(folder), "--item", "challenge.accuracy", *common)
    assert second.returncode == 0, second.stderr
    assert "2 of 2 epochs, done" in second.stdout and "training challenge.accuracy" in second.stderr
    check = run_cli("check", str(folder), *common)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "PASS" in check.stdout

    # A checkpoint that grader train did not write is not overwritten by accident.
    (folder / "challenge.pt").write_bytes(b"not a checkpoint")
    refused = run_cli("train", str(folder), "--item", "challenge.accuracy", *common)
    assert refused.returncode == 1 and "--fresh" in refused.stderr


def test_a_cell_that_never_ends_is_stopped_in_the_sandbox_and_the_rest_is_graded(tmp_path, data_dir):
    slow = rubric.load(tiny_rubric(tmp_path / "slow.yaml", TRAIN, threshold=0.0, cell_timeout_s=2))
    folder = tiny_challenge_notebook(tmp_path / "student", MODEL, OPTIMIZER, before=["while True:\n    pass"])
    namespace: dict = {}
    exec("import torch.nn as nn\n" + MODEL, namespace)
    torch.save(namespace["model"].state_dict(), folder / "challenge.pt")
    report = grading.grade(folder, slow, Options(data_dir=str(data_dir)))
    assert report.results[0].status == PASSED and report.notes == []  # stopped, not failed
    assert report.results[0].extra["total"] == 80


FINE_TUNE_MODEL = '''import torch.nn as nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))
'''

FINE_TUNE_RUBRIC = """assignment: tiny_finetune
files: [tiny.py]
items:
  - id: tiny.accuracy
    points: 10
    check: accuracy
    target: {file: tiny.py, name: TinyNet}
    checkpoint: tiny.ckpt
    threshold: 0.0
    # The course's main.py: one epoch from the instructor's checkpoint before testing.
    train:
      when: always
      epochs: 1
      batch_size: 20
      optimizer: {type: Adam, lr: 0.001}
      augment: {flip: true, translate: 4}    # RandomHorizontalFlip + RandomCrop(32, padding=4)
"""


def test_a_yaml_recipe_fine_tunes_the_checkpoint_before_evaluating(tmp_path, data_dir):
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "tiny.py").write_text(FINE_TUNE_MODEL)
    namespace: dict = {}
    exec(FINE_TUNE_MODEL, namespace)
    torch.manual_seed(0)
    torch.save(namespace["TinyNet"]().state_dict(), folder / "tiny.ckpt")
    (tmp_path / "finetune.yaml").write_text(FINE_TUNE_RUBRIC)
    finetune = rubric.load(tmp_path / "finetune.yaml")
    plain = rubric.parse(FINE_TUNE_RUBRIC.split("    # The course's")[0])

    tuned = grading.grade(folder, finetune, Options(data_dir=str(data_dir))).results[0]
    assert tuned.status == PASSED, tuned.message
    assert tuned.extra["training"]["steps"] == 240 // 20
    assert "the rubric's Adam(lr=0.001)" in " ".join(tuned.details)
    untouched = grading.grade(folder, plain, Options(data_dir=str(data_dir))).results[0]
    assert "training" not in untouched.extra
    assert (folder / "tiny.ckpt").stat().st_size > 0  # the instructor's checkpoint is never rewritten by check
