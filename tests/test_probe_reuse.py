"""Probe reuse that no student can poison: a model's first calls are compared with the scores of
the reference model with the same checkpoint, computed by the grader itself, never with a
classmate's; a model that answers one way on the first call and another way afterwards gets
exactly what it gets with --no-reuse, and changes nobody else's grade."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from grader import batch, evaluate, probe
from grader.options import Options
from tests.tiny_accuracy import NET, sample, submission, tiny_course

SWITCHING = NET.replace("import torch.nn as nn\n", "import torch.nn as nn\n\nCALLS = [0]\n") + """
    def honest(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))

    def forward(self, x):  # one forward per evaluation call: the batches here are small
        CALLS[0] += 1
        scores = self.honest(x)
        return scores if (CALLS[0] == 1) == {honest_first} else -scores
"""

CLASS = {
    "a_honest_then_garbage": SWITCHING.format(honest_first=True),
    "b_garbage_then_honest": SWITCHING.format(honest_first=False),
    "c_honest": "# my own work\n" + NET.replace("self.conv(x)", "self.conv(input=x)"),
}


def run(course: dict, download: Path, out: Path, reuse: bool) -> dict[str, dict]:
    batch.run(batch.BatchConfig(submissions=download, rubric=course["rubric"], out=out, reuse=reuse,
                                options=Options(data_dir=str(course["data"]), checkpoint_dirs=[course["checkpoints"]]),
                                workers=1, threads=1))
    with open(out / "grades.csv", newline="") as f:
        grades = {row["student"] if "student" in row else next(iter(row.values())): row for row in csv.DictReader(f)}
    return grades


def record(out: Path, student: str) -> dict:
    return json.loads((out / "students" / student / "record.json").read_text())["report"]["results"][0]


def test_the_probe_attack_gains_nothing_and_poisons_nobody(tmp_path):
    images, _ = sample(20)  # 200 real test images, labelled by the reference model with its checkpoint
    course = tiny_course(tmp_path / "course", images=images, checkpoint=True)
    download = tmp_path / "download"
    for student, source in CLASS.items():
        submission(download, student, source)
    alone = run(course, download, tmp_path / "alone", reuse=False)
    shared = run(course, download, tmp_path / "shared", reuse=True)
    assert shared == alone

    points = {s: record(tmp_path / "shared", s)["points"] for s in CLASS}
    assert points == {"a_honest_then_garbage": 0, "b_garbage_then_honest": 10, "c_honest": 10}
    # The honest model agreed with the reference model on its first calls: the rest was not evaluated.
    honest = record(tmp_path / "shared", "c_honest")["extra"]
    assert honest["reuse"] == "probe" and honest["reused_from"] == probe.SOURCE and honest["accuracy"] == 1.0
    # Neither attacker was reused: the first call's answer alone never decides.
    for student in ("a_honest_then_garbage", "b_garbage_then_honest"):
        assert "reused_from" not in record(tmp_path / "shared", student)["extra"], student
    # What students see is what grading alone gives them.  (An attacker's exact accuracy depends on
    # which random images its first call held, in either run; its points do not.)
    honest_view = {run: ((tmp_path / run / "students" / "c_honest" / "feedback.md").read_text(),
                         json.loads((tmp_path / run / "students" / "c_honest" / "results.json").read_text())["tests"])
                   for run in ("shared", "alone")}
    assert honest_view["shared"] == honest_view["alone"]
    for student in CLASS:
        tests = {run: json.loads((tmp_path / run / "students" / student / "results.json").read_text())["tests"]
                 for run in ("shared", "alone")}
        assert [(t["score"], t["status"]) for t in tests["shared"]] == [(t["score"], t["status"]) for t in tests["alone"]]
        assert "reference solution" not in json.dumps(tests["shared"])


def test_the_probe_is_a_secret_number_of_ordinary_calls():
    counts = {probe.probe_calls(20) for _ in range(200)}
    assert counts == {2, 3, 4, 5}  # at least two, never more than a quarter of the calls
    assert probe.probe_calls(8) == 2


def test_reference_scores_stand_in_only_after_every_probe_call_agrees():
    images = torch.randint(0, 256, (64, 3, 2, 2), dtype=torch.uint8)
    flat = images.flatten(1)
    schedule = evaluate.Schedule.draw(64, 12, "cpu", transformed=0)
    truth = torch.randn(64, 10)

    class Trusted:
        calls = 2

        def agrees(self, indices, scores):
            return torch.allclose(truth[indices], scores)

        def may_skip(self, total_calls):
            return True

        def predictions(self):
            return truth.argmax(1)

    for wrong_call, reused, calls in ((0, True, 2), (1, False, 16), (2, False, 16), (3, True, 2)):
        seen = []

        def ask(batch):  # the reference's own scores, except on one call
            seen.append(1)
            rows = torch.stack([truth[(flat == b).all(1).nonzero()[0, 0]] for b in batch.flatten(1)])
            return {"logits": -rows if len(seen) == wrong_call else rows}

        outcome = evaluate.run_schedule(ask, images, 10, schedule, Trusted())
        assert (outcome.probe_matched, len(seen)) == (reused, calls), wrong_call
        expected = truth.argmax(1).clone()
        if wrong_call and not reused:  # the wrong call's own answers count, the others are its own too
            wrong = schedule.calls()[wrong_call - 1]
            expected[wrong] = (-truth[wrong]).argmax(1)
        assert torch.equal(outcome.predictions, expected), wrong_call
