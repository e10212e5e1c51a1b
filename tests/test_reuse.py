"""Work reused across a class: identical inputs are graded once, equivalent models are
evaluated once, and every verdict is the one the student gets when graded alone."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import torch

from grader import batch, evaluate
from grader.checks.base import Options
from grader.reuse import Reuse, code_digest, files_used
from tests.cnn_fixtures import CNN_REFERENCE
from tests.conftest import RUBRICS
from tests.test_cnn_architecture import FC_2048, KEYWORDS, MAXPOOL_NO_PADDING, REFERENCE_SOURCE

ITEMS = ["resnet50_layer4.blanks", "resnet50_layer4.accuracy", "vgg16.accuracy"]

CLASS = {  # student -> resnet50_skeleton.py
    "s1_reference": REFERENCE_SOURCE,
    "s2_recommented": "# my solution, all my own work\n" + REFERENCE_SOURCE.replace("# 1x1 convolution", "# one by one"),
    "s3_keywords": KEYWORDS,
    "s4_fc2048": FC_2048,
    "s5_maxpool_p0": MAXPOOL_NO_PADDING,
    "s6_keywords_again": KEYWORDS.replace("import torch.nn as nn\n", "import torch.nn as nn\n\n\n"),
}


def write_class(root: Path) -> Path:
    for student, source in CLASS.items():
        folder = root / student
        folder.mkdir(parents=True)
        for name in ("main.py", "vgg16_full.py"):
            shutil.copy(CNN_REFERENCE / name, folder / name)
        (folder / "resnet50_skeleton.py").write_text(source)
    return root


def run(download: Path, out: Path, checkpoints: Path, data: Path, reuse: bool):
    config = batch.BatchConfig(submissions=download, rubric=RUBRICS / "cnn_architecture.yaml", out=out,
                               options=Options(checkpoint_dirs=[checkpoints], data_dir=str(data)),
                               items=ITEMS, workers=1, threads=2, reuse=reuse)
    return batch.run(config)


def grades(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


def results(out: Path, student: str) -> dict:
    data = json.loads((out / "students" / student / "results.json").read_text())
    return {t["extra_data"]["id"]: t for t in data["tests"]}


def record(out: Path, student: str) -> dict:
    """The instructor's record of a student: says whose result was reused."""
    data = json.loads((out / "students" / student / "record.json").read_text())
    return {r["id"]: r for r in data["report"]["results"]}


def test_reused_verdicts_equal_verdicts_graded_alone(tmp_path, cnn_checkpoints, labelled_by_resnet):
    download = write_class(tmp_path / "download")
    run(download, tmp_path / "alone", cnn_checkpoints, labelled_by_resnet, reuse=False)
    run(download, tmp_path / "shared", cnn_checkpoints, labelled_by_resnet, reuse=True)
    shared = tmp_path / "shared"
    assert grades(shared) == grades(tmp_path / "alone")

    def extra(student, item):
        return record(shared, student)[item]["extra"]

    # Same code once comments and blank lines are gone: every item reused from s1.
    for item in ITEMS:
        assert extra("s2_recommented", item).get("reused_from") == "s1_reference", item
        assert extra("s2_recommented", item)["reuse"] == "exact"
    # Differently written, same function: once its first calls agree with the reference model's own
    # scores (computed by the grader, never taken from a classmate), the full pass is not repeated.
    assert extra("s3_keywords", "resnet50_layer4.accuracy")["reuse"] == "probe"
    assert extra("s3_keywords", "resnet50_layer4.accuracy")["reused_from"] == "reference solution"
    # A model that loads the checkpoint but computes something else is evaluated in full.
    assert "reused_from" not in extra("s5_maxpool_p0", "resnet50_layer4.accuracy")
    # vgg16_full.py is the same for everyone: evaluated once for the class.
    for student in CLASS:
        if student != "s1_reference":
            assert extra(student, "vgg16.accuracy")["reused_from"] == "s1_reference"
    # What students see is what grading alone gives them, and never names a classmate.
    for student in CLASS:
        student_files = [(shared / "students" / student / name).read_text() for name in ("results.json", "feedback.md")]
        assert not any("s1_reference" in text for text in student_files if student != "s1_reference"), student
        assert results(shared, student) == results(tmp_path / "alone", student), student
    # The instructor's summary says what was reused, grouped.
    summary = (shared / "summary.md").read_text()
    assert "## Reused results" in summary
    assert "| `resnet50_layer4.accuracy` | reference solution | probe |" in summary
    # Nothing is reused without --reuse.
    for student in CLASS:
        for item, result in record(tmp_path / "alone", student).items():
            assert "reused_from" not in result["extra"], (student, item)
    assert "Reused results" not in (tmp_path / "alone" / "summary.md").read_text()


def test_each_evaluation_draws_its_own_secret_order(tmp_path):
    first, second = (evaluate.Schedule.draw(10000, 3072, "cpu") for _ in range(2))
    assert not torch.equal(first.order, second.order)
    assert not torch.equal(first.subset, second.subset)
    assert Reuse(Reuse.for_run(tmp_path).folder).folder.is_dir()  # every worker of the run opens the same store
    assert Reuse.open(str(tmp_path / "gone")) is None  # a job whose store is gone grades without reuse


def test_files_used_follow_local_imports(tmp_path):
    (tmp_path / "main.py").write_text("from model import Net\nimport helpers.thing\n")
    (tmp_path / "model.py").write_text("import torch\nfrom layers import block\n")
    (tmp_path / "layers.py").write_text("block = 1\n")
    (tmp_path / "unrelated.py").write_text("x = 2\n")

    class Item:
        class target:
            file = "main.py"

    assert files_used(Item, tmp_path) == ["layers.py", "main.py", "model.py"]


def test_code_digest_ignores_comments_and_layout_but_not_names(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text("def f(x):\n    return x + 1\n")
    b.write_text("# comment\n\ndef f( x ):   # another\n    return (x + 1)\n")
    c.write_text("def f(y):\n    return y + 1\n")
    assert code_digest(a) == code_digest(b)
    assert code_digest(a) != code_digest(c)  # a renamed attribute can change state_dict keys
