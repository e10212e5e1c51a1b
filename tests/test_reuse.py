"""Work reused across a class: identical inputs are graded once, equivalent models are
evaluated once, and every verdict is the one the student gets when graded alone."""
# Exact reuse now needs identical bytes (a re-commented file is graded again), as asked for
# reuse that no coding cookie or comment can poison; see tests/test_reuse_invariance.py.

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import torch

from grader import batch, evaluate, grading, rubric
from grader.options import Options
from grader.reuse import Reuse
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
    "s7_copy": REFERENCE_SOURCE,
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

    # The same bytes: every item reused from s1.  Other comments are other bytes: graded again.
    for item in ITEMS:
        assert extra("s7_copy", item).get("reused_from") == "s1_reference", item
        assert extra("s7_copy", item)["reuse"] == "exact"
        assert extra("s2_recommented", item).get("reuse") != "exact", item
    # Differently written, same function: once its first calls agree with the reference model's own
    # scores (computed by the grader, never taken from a classmate), the full pass is not repeated.
    assert extra("s3_keywords", "resnet50_layer4.accuracy")["reuse"] == "probe"
    assert extra("s3_keywords", "resnet50_layer4.accuracy")["reused_from"] == "reference solution"
    # A model that loads the checkpoint but computes something else is evaluated in full.
    assert "reused_from" not in extra("s5_maxpool_p0", "resnet50_layer4.accuracy")
    # vgg16_full.py is the same for everyone: its 10,000 images are not evaluated again.
    for student in CLASS:
        if student != "s1_reference":
            assert extra(student, "vgg16.accuracy").get("reuse") in ("exact", "probe"), student
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


def test_the_exact_key_is_the_raw_bytes_of_every_file(tmp_path):
    cnn = rubric.load(RUBRICS / "cnn_architecture.yaml")
    store = Reuse.for_run(tmp_path / "state")
    folders = write_class(tmp_path / "class")

    def key(student):
        return grading.reuse_keys(store, cnn, cnn.select(ITEMS), folders / student, Options())

    assert key("s1_reference") == key("s7_copy")
    assert key("s1_reference") != key("s2_recommented")  # comments are bytes too
    assert key("s3_keywords") != key("s6_keywords_again")  # and so are blank lines
    (folders / "s7_copy" / "notes.txt").write_text("a file no item names can still be read by the code\n")
    assert key("s1_reference") != key("s7_copy")
