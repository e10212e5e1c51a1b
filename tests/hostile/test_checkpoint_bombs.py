"""Issue 17, point 3: nothing a student hands in is inflated in the grader's own process.

The grader reads students' checkpoints itself (probe reuse, the parameter count shown to the
instructor).  A checkpoint that would expand beyond what its file holds or the rubric allows
is refused, before anything is allocated, with a message that says what it is; the item that
reads it gets zero and nothing else changes."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from grader import checkpoints
from grader.checkpoint_scan import CheckpointRefused
from tests.conftest import ROOT

NET = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 10))
PARAMS = 3 * 4 * 9 + 4 + 8 + 4 * 10 + 10  # BatchNorm's running statistics are not parameters


def deflated_bomb(path: Path, megabytes: int) -> Path:
    """A real torch.save zip whose tensor record is stored deflated: kilobytes that expand to megabytes."""
    plain = io.BytesIO()
    torch.save({"w": torch.zeros(megabytes << 18)}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return path


def test_honest_checkpoints_of_every_format_are_read_and_counted(tmp_path):
    from safetensors.torch import save_file

    torch.save(NET.state_dict(), tmp_path / "zip.pt")
    torch.save(NET.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"model_state_dict": NET.state_dict(), "epoch": 3}, tmp_path / "wrapped.ckpt")
    save_file(NET.state_dict(), tmp_path / "weights.safetensors")
    for name in ("zip.pt", "legacy.pt", "wrapped.ckpt", "weights.safetensors"):
        state, _ = checkpoints.read_state_dict(str(tmp_path / name), 1 << 20)
        assert set(state) == set(NET.state_dict()), name
        assert checkpoints.parameter_count(str(tmp_path / name), 1 << 20) == PARAMS, name


def test_a_deflated_record_is_refused_with_what_it_would_expand_to(tmp_path):
    bomb = deflated_bomb(tmp_path / "challenge.pt", 64)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointRefused) as refused:
        checkpoints.read_state_dict(str(bomb), 4096 << 20)
    assert re.fullmatch(r"challenge.pt: a compressed record of \d+(\.\d)? KB that expands to 64 MB; "
                        r"torch.save never writes one", str(refused.value))


def test_a_storage_declared_larger_than_its_record_or_the_rubric_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1000)}, tmp_path / "small.pt")
    # The same zip, with the pickle's declared element count raised to a billion: torch would
    # make a 4 GB storage over a 4 KB record.
    with zipfile.ZipFile(tmp_path / "small.pt") as z:
        records = {i.filename: z.read(i) for i in z.infolist()}
    pkl = next(n for n in records if n.endswith("data.pkl"))
    records[pkl] = records[pkl].replace(b"M\xe8\x03", b"J" + struct.pack("<i", 1_000_000_000))
    with zipfile.ZipFile(tmp_path / "lying.pt", "w", zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr(name, data)
    with pytest.raises(CheckpointRefused, match=r"lying.pt: a tensor declares 3.7 GB over a record of 3.9 KB"):
        checkpoints.read_state_dict(str(tmp_path / "lying.pt"), 1 << 40)
    torch.save({"w": torch.zeros(1 << 20)}, tmp_path / "four_mb.pt")
    with pytest.raises(CheckpointRefused, match=r"declares 4 MB of tensors, more than the 1 MB the rubric allows"):
        checkpoints.read_state_dict(str(tmp_path / "four_mb.pt"), 1 << 20)


def test_a_legacy_pickle_declaring_more_than_its_file_holds_is_refused(tmp_path):
    # a view of 10 elements of a storage of 1234: the storage's size is written once, in its persistent id
    torch.save({"w": torch.zeros(1234)[:10]}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "legacy.pt").read_bytes()
    assert data.count(b"M\xd2\x04") == 1  # 1234 as BININT2, made 2**33 (LONG1)
    (tmp_path / "huge.pt").write_bytes(data.replace(b"M\xd2\x04", b"\x8a\x05" + (1 << 33).to_bytes(5, "little")))
    with pytest.raises(CheckpointRefused, match=r"huge.pt: declares 32 GB of tensors"):
        checkpoints.read_state_dict(str(tmp_path / "huge.pt"), 1 << 40)


def test_a_safetensors_header_larger_than_the_file_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + json.dumps({"w": {}}).encode())
    with pytest.raises(CheckpointRefused, match="w.safetensors: a header of 1 TB in a file of"):
        checkpoints.read_state_dict(str(path), 1 << 30)


def test_reading_a_bomb_never_allocates_it(tmp_path):
    """In a process held to 32 MB of data beyond what it has, a bomb of 64 MB is refused with
    its message: no MemoryError, no death (torch.load would inflate it)."""
    bomb = deflated_bomb(tmp_path / "bomb.pt", 64)
    code = (
        "import resource, sys, torch\n"
        "from grader import checkpoints\n"
        "soft = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + (32 << 20)\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (soft, soft))\n"
        "try:\n"
        "    checkpoints.read_state_dict(sys.argv[1], 1 << 30)\n"
        "except checkpoints.CheckpointRefused as e:\n"
        "    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(bomb)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: bomb.pt: a compressed record of") and "MemoryError" not in done.stderr


def test_a_zip_bomb_checkpoint_fails_its_accuracy_item_only(tmp_path):
    from grader import grading
    from grader import rubric as rubrics
    from grader.options import Options
    from tests.tiny_accuracy import NET as TINY
    from tests.tiny_accuracy import sample, submission, tiny_course

    images, _ = sample(4)
    course = tiny_course(tmp_path / "course", images=images, checkpoint=True)
    rubric_path = course["rubric"]
    rubric_path.write_text(rubric_path.read_text() + "  - {id: net.params, points: 5, check: param_count, "
                                                     "target: {file: model.py, name: Net}}\n")
    folder = submission(tmp_path, "mallory", TINY)
    deflated_bomb(folder / "net.pt", 64)
    report = grading.grade(folder, rubrics.load(rubric_path), Options(data_dir=str(course["data"])), threads=1)
    by_id = {r.id: r for r in report.results}
    assert by_id["net.accuracy"].points == 0
    assert re.fullmatch(r"checkpoint refused: net.pt: a compressed record of \d+(\.\d)? KB that expands to "
                        r"64 MB; torch.save never writes one", by_id["net.accuracy"].message)
    assert by_id["net.params"].points == 5  # the item that does not read the checkpoint is untouched
