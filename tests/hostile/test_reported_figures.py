"""Issue 17, point 8: figures shown to the instructor are the grader's own.

A student's code can patch the worker it runs in and report anything.  The leaderboard's
parameter count is counted by the grader in the checkpoint it reads, so a model that reports
1 parameter neither ranks first in report.html nor shows 1 anywhere."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from grader import batch
from grader.options import Options
from tests import lms_class
from tests.notebooks import tiny_cifar

LIE = """
import sys

_worker = sys.modules.get("grader.sandbox.worker")
if _worker is not None:  # the grader's worker, patched from inside: every build reports 1 parameter
    _build = _worker.Worker.op_build

    def _lying_build(self, *args, **kwargs):
        return {**_build(self, *args, **kwargs), "param_count": 1}

    _worker.Worker.op_build = _lying_build
"""


def test_a_worker_reporting_one_parameter_does_not_rank_first(tmp_path):
    download = tmp_path / "class"
    for student, code in (("a_honest", lms_class.NET), ("b_liar", lms_class.NET + LIE)):
        (download / student).mkdir(parents=True)
        (download / student / "net.py").write_text(code)
        lms_class.checkpoint(download / student / "net.pt")  # the same weights: the same accuracy
    rubric = lms_class.rubric(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    data = tiny_cifar(tmp_path / "data", train_per_class=0)
    batch.run(batch.BatchConfig(submissions=download, rubric=rubric, out=out, options=Options(data_dir=str(data)),
                                workers=1, threads=1))

    def challenge(student: str) -> dict:
        record = json.loads((out / "students" / student / "record.json").read_text())
        return {r["id"]: r for r in record["report"]["results"]}

    liar, honest = challenge("b_liar"), challenge("a_honest")
    assert liar["params"]["points"] == 0 and "has 1 parameters" in liar["params"]["message"]  # its own item
    assert liar["challenge"]["extra"]["accuracy"] == honest["challenge"]["extra"]["accuracy"]
    # The leaderboard's figure is the count of the checkpoint's weights, for both.
    assert liar["challenge"]["extra"]["params"] == honest["challenge"]["extra"]["params"] == lms_class.PARAMS
    html = (out / "report.html").read_text()
    board = html[html.index('<section class="leaderboard"'):]
    ranked = re.findall(r'<tr data-student="([^"]+)"', board[:board.index("</section>")])
    assert ranked == ["a_honest", "b_liar"]  # a tie on accuracy and size: by name, not by the lie
    assert board.count(f'<td class="num">{lms_class.PARAMS}</td>') == 2  # the Parameters column
    results = json.loads((out / "students" / "b_liar" / "results.json").read_text())
    assert {e["name"]: e["value"] for e in results["leaderboard"]}["Parameters"] == lms_class.PARAMS
    shutil.rmtree(data)


def test_training_time_is_the_graders_clock_not_the_reported_one():
    """A student's process that reports a training run of a millisecond, after 0.3 s."""
    import time
    from types import SimpleNamespace

    import torch

    from grader.checks import accuracy

    class Student:  # what a patched worker answers to "train"
        def call(self, op, **kwargs):
            assert op == "train"
            time.sleep(0.3)
            return {"result": {"seconds": 0.001, "stopped_by_budget": False, "steps": 4, "epochs_done": 1.0,
                               "base_lrs": [0.1]},
                    "optimizer": {"type": "SGD", "groups": [{"lr": 0.1}]}, "submission_optimizer": False}

    item = accuracy.Item(id="challenge", points=10, check="accuracy", target={"file": "net.py", "name": "Net"},
                         threshold=0.5, data={"dataset": "cifar10"}, train={"epochs": 1})
    data = SimpleNamespace(images=SimpleNamespace(path="train.u8", shape=(4, 3, 2, 2)), labels=torch.zeros(4),
                           source="4 training images")
    ctx = SimpleNamespace(student=Student(), load_data=lambda spec: data, timeout=lambda item: 600.0,
                          options=SimpleNamespace(train_budget_s=None, device="cpu"))
    trained = accuracy.train(item, ctx, {"handle": 1}, item.train)
    assert trained["result"]["seconds"] >= 0.3  # the leaderboard's training time (scoring, class_report)
