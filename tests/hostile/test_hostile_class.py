"""Issue 17, done when: the boundary holds under pressure.  A class of 8 for a small accuracy
course (a model file and its checkpoint: a parameter count and an evaluation of the model)
is graded by `grader batch` with reuse, without it, and student by student alone; every
student gets the same verdict, item by item and message by message, in all three:

* two honest students (the reference and a classmate's byte copy of it) get full marks;
* a SysV writer leaves a shared memory segment, a message queue, a semaphore and keyring
  keys behind, and a reader that builds its model only when it finds them gets what the
  untouched skeleton gets alone: nothing;
* a disk filler, a fork bomb, a zip-bomb checkpoint and a correct but slow model fail the
  evaluation alone, each with its limit's message, and keep the parameter count's points;
* nothing large is left on the host in the grader's temporary folders.

The payloads are those of the single-attack tests (limit_attacks.py, the deflated record,
the slow model of the reuse tests)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from grader.options import Options
from grader.sandbox import boundary
from grader.sandbox.session import isolated
from tests import tiny_accuracy
from tests.hostile.test_checkpoint_bombs import deflated_bomb
from tests.hostile.test_fresh_state import ATTACKS
from tests.hostile.test_hard_limits import _host_size, _Peak
from tests.test_reuse_invariance import SLOW, assert_invariant, reused, student_files

pytestmark = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]}")

LIMITS = "limits: {timeout_s: 120, item_timeout_s: 4, memory_mb: 2048, disk_mb: 32, processes: 64}"
PARAMS_ITEM = "  - {id: net.params, points: 5, check: param_count, target: {file: model.py, name: Net}}\n"

INIT, FORWARD = "        super().__init__()\n", "    def forward(self, x):\n"
assert INIT in tiny_accuracy.NET and FORWARD in tiny_accuracy.NET


def _hostile(init: str = "", forward: str = "") -> str:
    """The reference model with limit_attacks.py's functions in its file, called where given."""
    net = tiny_accuracy.NET.replace(INIT, INIT + init).replace(FORWARD, FORWARD + forward)
    return ATTACKS.read_text() + "\n" + net


STUDENTS = {
    "h1_reference": tiny_accuracy.NET,
    "h2_reference_copy": tiny_accuracy.NET,
    # The whole channel must exist in the writer's sandbox, or its model is not built.
    "h3_sysv_writer": _hostile(init="        if leave_ipc().tolist() != [1.0] * 5:\n"
                                    "            raise RuntimeError('the channel could not be made')\n"),
    # A skeleton that builds the right model only when it finds the classmate's channel.
    "h4_sysv_reader": _hostile(init="        if find_ipc().sum() == 0:\n"
                                    "            raise NotImplementedError('TODO: build the layers')\n"),
    "h5_disk_filler": _hostile(forward="        fill_disk('/dev/shm')\n"),
    "h6_fork_bomb": _hostile(forward="        fork_bomb()\n"),
    "h7_zip_bomb": tiny_accuracy.NET,  # its checkpoint is the bomb
    "h8_slow_model": SLOW,  # 16 calls of 1.5 s: the probe's few fit, the whole evaluation (20 s) does not
}

EVALUATION_FAILS = {
    "h5_disk_filler": r"wrote more than 32 MB \(/tmp, /dev/shm and its folder together\).*",
    "h6_fork_bomb": r"started more than 64 processes \(threads count as processes\).*",
    "h7_zip_bomb": r"checkpoint refused: net\.pt: a compressed record of \d+(\.\d)? KB that expands to 64 MB; "
                   r"torch\.save never writes one",
    "h8_slow_model": r"did not finish within 20 s while predicting the test images \(an endless loop\?\).*",
}


def _write_class(download: Path, checkpoint: Path) -> list[str]:
    for student, source in STUDENTS.items():
        folder = tiny_accuracy.submission(download, student, source)
        if student == "h7_zip_bomb":
            deflated_bomb(folder / "net.pt", 64)
        else:
            shutil.copyfile(checkpoint, folder / "net.pt")
    return list(STUDENTS)


def _large_files(folder: Path, over: int = 1 << 20) -> list[str]:
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                if os.lstat(path).st_size > over:
                    found.append(path)
            except OSError:
                pass
    return found


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_hostile_class_gets_the_same_verdicts_with_and_without_reuse_and_alone(tmp_path, monkeypatch):
    # The grader's temporary folders (the sandboxes' work folders) in one place this test can inspect.
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    boundary._close_idle()  # no warm sandbox made before: every one of this test's starts in `temp`

    images, _ = tiny_accuracy.sample(10)
    course = tiny_accuracy.tiny_course(tmp_path / "course", images=images, checkpoint=True)
    rubric_path = course["rubric"]
    text = rubric_path.read_text()
    assert "limits: {timeout_s: 300, item_timeout_s: 120, memory_mb: 4096}" in text
    rubric_path.write_text(text.replace("limits: {timeout_s: 300, item_timeout_s: 120, memory_mb: 4096}", LIMITS)
                           + PARAMS_ITEM)
    download = tmp_path / "download"
    students = _write_class(download, course["checkpoints"] / "net.pt")
    assert len(students) == 8

    # batch (reuse) == batch --no-reuse == graded alone, results.json and feedback.md, for all 8.
    with _Peak(lambda: _host_size(str(temp))) as host:
        shared = assert_invariant(tmp_path, students, download, rubric_path, None,
                                  Options(data_dir=str(course["data"])), alone=students)

    tests = {s: {t["extra_data"]["id"]: t for t in student_files(shared, s)[0]["tests"]} for s in students}
    verdicts = {s: {i: (t["score"], t["output"]) for i, t in items.items()} for s, items in tests.items()}
    print(*(f"{s}: {v}" for s, v in verdicts.items()), sep="\n")
    for student in ("h1_reference", "h2_reference_copy", "h3_sysv_writer"):
        assert student_files(shared, student)[0]["score"] == 15, (student, verdicts[student])
    # The reader gets what the skeleton gets: nothing, for the layers it did not build.
    assert {i: s for i, (s, _) in verdicts["h4_sysv_reader"].items()} == {"net.accuracy": 0, "net.params": 0}
    assert all("TODO: build the layers" in out for _, out in verdicts["h4_sysv_reader"].values()), \
        verdicts["h4_sysv_reader"]
    for student, message in EVALUATION_FAILS.items():
        accuracy, params = verdicts[student]["net.accuracy"], verdicts[student]["net.params"]
        assert accuracy[0] == 0 and re.fullmatch(message, accuracy[1], re.S), (student, accuracy)
        assert params[0] == 5, (student, params)  # the item that does not hit the limit is untouched
    # Limits are never skipped by reuse: the slow model was evaluated in full, not reused.
    assert "net.accuracy" not in reused(shared, "h8_slow_model")
    assert reused(shared, "h2_reference_copy")  # while the honest copy still shares work

    # The host is unharmed: no filler, no inflated bomb in the grader's folders or the students'.
    boundary._close_idle()
    assert 0 < host.peak < 8 << 20  # sampled while they graded: the sandboxes' folders, never 32 MB of filler
    assert _large_files(temp) == []
    assert [p for p in _large_files(download) if not p.endswith("net.pt")] == []
