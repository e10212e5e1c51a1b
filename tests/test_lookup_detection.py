"""A model that recognises the public test images (a hash table of CIFAR-10's test set) is
flagged for the instructor; an honest model is not; the points stay what the accuracy gives."""

from __future__ import annotations

import json

import numpy as np

from grader import batch
from grader.options import Options
from tests.tiny_accuracy import colour_labels, colour_model, lookup_model, sample, submission, tiny_course


def test_a_hash_table_of_the_test_images_is_flagged_and_an_honest_model_is_not(tmp_path):
    images, _ = sample(30)  # 300 real CIFAR-10 test images
    labels, cuts = colour_labels(images)
    assert np.bincount(labels).max() <= 0.11 * len(labels)  # balanced: chance is 10%
    course = tiny_course(tmp_path / "course", images=images, labels=labels)
    download = tmp_path / "download"
    submission(download, "alice", colour_model(cuts))  # honest
    submission(download, "bob", lookup_model(images, labels))
    out = tmp_path / "out"
    batch.run(batch.BatchConfig(submissions=download, rubric=course["rubric"], out=out,
                                options=Options(data_dir=str(course["data"])), workers=1, threads=1))

    def result(student: str, name: str) -> dict:
        data = json.loads((out / "students" / student / name).read_text())
        return data["report"]["results"][0] if name == "record.json" else data["tests"][0]

    lookup, honest = result("bob", "record.json"), result("alice", "record.json")
    # Both are right on every test image, and keep their points.
    assert lookup["points"] == honest["points"] == 10
    assert lookup["extra"]["accuracy"] == 1.0 and honest["extra"]["accuracy"] > 0.97
    # Only the lookup collapses on the same images flipped or moved by one pixel.
    flag = lookup["extra"]["lookup_suspect"]
    assert flag.startswith("likely a lookup of the public test set: 100.0% on 256 test images, ")
    assert "flipped" in flag and "shifted by 1 px" in flag
    assert "lookup_suspect" not in honest["extra"]
    # The instructor's summary lists it; the student's results and feedback do not.
    summary = (out / "summary.md").read_text()
    assert "## Possible lookups of the public test set" in summary
    assert "- bob, `net.accuracy`: likely a lookup" in summary and "- alice," not in summary
    for name in ("results.json", "feedback.md"):
        text = (out / "students" / "bob" / name).read_text()
        assert "lookup" not in text and "flipped" not in text, name
    print(flag)
