"""Issue 17, point 9: a lookup table that anticipates the flip and the one-pixel shift is flagged.

The table holds every public test image, its mirror image, and both shifted by a pixel the way
the grader shifts them: it is right on all of those.  The jittered copies (moved up to a few
pixels, brightness and noise drawn for each evaluation) are what no table can hold; an honest
model hardly notices them."""

from __future__ import annotations

import hashlib
import json
import textwrap

import numpy as np
import torch

from grader import batch, evaluate
from grader.options import Options
from tests.tiny_accuracy import colour_labels, colour_model, sample, submission, tiny_course, unnormalise_source


def invariant_lookup_model(images: np.ndarray, labels: np.ndarray) -> str:
    """A table of the test images under every transform the grader is known to use."""
    table = {}
    for image, label in zip(torch.from_numpy(images), labels):
        for variant in (image, evaluate.flip(image), evaluate.shift(image), evaluate.shift(evaluate.flip(image))):
            table[hashlib.sha1(variant.contiguous().numpy().tobytes()).hexdigest()] = int(label)
    return "import hashlib\nimport torch\n" + unnormalise_source() + textwrap.dedent(f"""
        TABLE = {table!r}


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.unused = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                u = pixels(x).contiguous()
                return one_hot([TABLE.get(hashlib.sha1(im.numpy().tobytes()).hexdigest(), 0) for im in u])
    """)


def test_a_table_of_flips_and_shifts_is_flagged_and_an_honest_model_is_not(tmp_path):
    images, _ = sample(30)
    labels, cuts = colour_labels(images)
    course = tiny_course(tmp_path / "course", images=images, labels=labels)
    download = tmp_path / "download"
    submission(download, "alice", colour_model(cuts))
    submission(download, "mallory", invariant_lookup_model(images, labels))
    out = tmp_path / "out"
    batch.run(batch.BatchConfig(submissions=download, rubric=course["rubric"], out=out,
                                options=Options(data_dir=str(course["data"])), workers=1, threads=1))

    def result(student: str) -> dict:
        return json.loads((out / "students" / student / "record.json").read_text())["report"]["results"][0]

    lookup, honest = result("mallory"), result("alice")
    assert lookup["points"] == honest["points"] == 10 and lookup["extra"]["accuracy"] == 1.0
    flag = lookup["extra"]["lookup_suspect"]
    # Right on the flipped and shifted copies it anticipated; near chance on the jittered ones.
    assert flag.startswith("likely a lookup of the public test set: 100.0% on 256 test images, "
                           "100.0% on the same images flipped, 100.0% shifted by 1 px, "), flag
    jittered = float(flag.split("shifted by 1 px, ")[1].split("%")[0])
    drop = float(flag.split("(a drop of ")[1].split(" points")[0])
    assert jittered < 30 and abs(drop - (100 - jittered)) < 0.2, flag
    assert "lookup_suspect" not in honest["extra"]
    assert "- mallory, `net.accuracy`: likely a lookup" in (out / "summary.md").read_text()


def test_the_jitter_is_drawn_afresh_for_every_evaluation():
    a, b = (evaluate.Schedule.draw(300, 3072, "cpu") for _ in range(2))
    assert a.jitters.shape == (256, 4) and not torch.equal(a.jitters, b.jitters)
    assert a.jitters[:, :2].abs().max() <= evaluate.JITTER_MOVE
    assert a.jitters[:, 2].abs().max() <= evaluate.JITTER_BRIGHTNESS
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    moved = evaluate.jitter(image, 2, -1, 10, 1234)
    # Cropped 2 px to the right and 1 px higher (pixel (r, c) shows (r - 1, c + 2)), 10 levels
    # brighter, each pixel within the noise of that.
    inner = moved[:, 1:32, 0:30].int() - image[:, 0:31, 2:32].int() - 10
    clipped = (image[:, 0:31, 2:32].int() + 10 > 255 - evaluate.JITTER_NOISE)
    assert (inner.abs() <= evaluate.JITTER_NOISE)[~clipped].all()
