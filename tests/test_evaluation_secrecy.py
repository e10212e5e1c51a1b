"""Evaluation that reveals nothing: test images reach the student's process in a secret order,
a batch per call, with no file, path or index; every reply is checked before it is counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grader import datasets, evaluate, grading, rubric
from grader.options import Options
from tests.tiny_accuracy import position_model, sample, submission, tiny_course

PER_CLASS = 12


def grade_one(course: dict, folder: Path):
    report = grading.grade(folder, rubric.load(course["rubric"]), Options(data_dir=str(course["data"])), threads=1)
    [result] = report.results
    return result


def test_a_model_that_answers_by_position_scores_chance(tmp_path):
    images, labels = sample(PER_CLASS)
    course = tiny_course(tmp_path / "course", images=images, labels=labels, image_folder=True)
    spec = datasets.DataSpec(dataset="image_folder")
    data = datasets.load(spec, course["data"])
    # The folder is decoded class by class: in index order, position alone would give every label.
    assert torch.equal((torch.arange(len(data)) // PER_CLASS) % 10, data.labels)
    # The decoded test images are nowhere a student's process may read.
    arrays = datasets.arrays_dir().resolve()
    assert arrays not in Path(data.images.path).resolve().parents
    assert not (arrays / Path(data.images.path).name).exists()  # (training arrays may be there)

    result = grade_one(course, submission(tmp_path, "by_position", position_model(PER_CLASS)))
    assert result.points == 0
    assert result.extra["total"] == len(data) and result.extra["accuracy"] < 0.4  # chance is 10%


def test_every_evaluation_is_a_fresh_secret_order_of_plain_image_batches():
    images = torch.arange(40 * 3 * 2 * 2, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(40, 3, 2, 2)
    schedule = evaluate.Schedule.draw(40, 12, "cpu")
    sent = []

    def ask(batch):
        sent.append(batch)
        return {"logits": torch.zeros(len(batch), 10)}

    outcome = evaluate.run_schedule(ask, images, 10, schedule)
    assert all(b.dtype == torch.uint8 and b.dim() == 4 for b in sent) and len(sent) >= evaluate.MIN_CALLS
    shown = torch.cat(sent)
    assert len(shown) == 40 + 3 * len(schedule.subset)  # every image, plus flipped, shifted and jittered copies
    assert not torch.equal(shown[:40], images)  # not in index order
    assert (outcome.predictions == 0).all() and len(outcome.predictions) == 40
    assert not torch.equal(schedule.order, evaluate.Schedule.draw(40, 12, "cpu").order)


@pytest.mark.parametrize("reply, message", [
    ({"predictions": torch.zeros(3, dtype=torch.long)}, "returned 3 class ids for 8 images"),
    ({"predictions": torch.full((8,), 10)}, "class ids from 10 to 10; there are 10 classes"),
    ({"predictions": torch.full((8,), -1)}, "class ids from -1 to -1"),
    ({"logits": torch.zeros(8, 0)}, "class scores of shape [8, 0] for 8 images"),
    ({"logits": torch.zeros(9, 10)}, "shape [9, 10] for 8 images"),
    ({"logits": torch.full((8, 10), float("nan"))}, "NaN or infinite for 8 of 8 images"),
    ({"logits": torch.zeros(8, 10, dtype=torch.bool)}, "a bool tensor, not class scores"),
    ({"logits": "ten"}, "returned str, not a tensor"),
    ([1, 2], "returned NoneType"),
])
def test_a_reply_that_is_not_one_answer_per_image_is_refused(reply, message):
    with pytest.raises(evaluate.BadReply, match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluate.check_reply(reply, 8, 10)


BAD_REPLY = """
import torch
import grader.evaluate


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))
        # What the student's process sends back for a whole call, whatever the grader asked.
        grader.evaluate.predict = lambda model, images, *args, **kwargs: {value}

    def forward(self, x):
        return torch.zeros(len(x), 10)
"""


@pytest.mark.parametrize("value, message", [
    ("torch.tensor([0, 0, 1])", "the evaluation returned 3 class ids for "),
    ("torch.full((len(images),), 99)", "the evaluation returned class ids from 99 to 99; there are 10 classes"),
    ("torch.full((len(images), 10), float('inf'))", "the model's class scores are NaN or infinite for "),
])
def test_a_reply_of_the_wrong_length_fails_the_item_with_a_message(tmp_path, value, message):
    images, labels = sample(4)
    course = tiny_course(tmp_path / "course", images=images, labels=labels)
    result = grade_one(course, submission(tmp_path, "short", BAD_REPLY.format(value=value)))
    assert result.points == 0
    assert message in result.message, result.message
