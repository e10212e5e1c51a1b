"""`grader batch` end to end on a small Moodle download: gradebook, resuming, --student,
--force, what changes a fingerprint, the live display, and the executor seam."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from rich.console import Console

from grader import batch
from grader.batch import gradebook, progress
from grader.options import Options
from tests.cnn_class import LOOP, REFERENCE, RESNET_FILE, at_import
from tests.conftest import ROOT, RUBRICS, run_cli
from tests.processes import descendants, wait_gone

ITEMS = "residual_block.plain,resnet50_layer4.accuracy"
RUBRIC = RUBRICS / "cnn_architecture.yaml"


def moodle_download(root: Path) -> Path:
    """Three students as Moodle names them: flat files, a folder, a zip of a parent folder."""
    root.mkdir(parents=True)
    source = (REFERENCE / RESNET_FILE).read_text()
    for name in ("main.py", "vgg16_full.py", RESNET_FILE):
        shutil.copyfile(REFERENCE / name, root / f"Kim Minji_1001_assignsubmission_file_{name}")
    broken = root / "Lee Jun_1002_assignsubmission_file_"
    broken.mkdir()
    (broken / RESNET_FILE).write_text(source.replace("def forward(self, x):", "def forward(self, x)", 1))
    with zipfile.ZipFile(root / "Park Ara_1003_assignsubmission_file_hw1.zip", "w") as z:
        z.writestr(f"hw1/{RESNET_FILE}", source.replace("conv1x1(in_channels, out_channels, 1, 0)",
                                                        "conv1x1(in_channels, out_channels, 1, 0) if False else "
                                                        "conv3x3(in_channels, out_channels, 1, 1)", 1))
    return root


@pytest.fixture()
def download(tmp_path):
    return moodle_download(tmp_path / "download")


def grade(download: Path, out: Path, checkpoints: Path, data: Path, *extra: str):
    return run_cli("batch", str(download), "-r", str(RUBRIC), "-o", str(out), "-c", str(checkpoints),
                   "--data-dir", str(data), "--items", ITEMS, "--item-timeout", "30", "-j", "2", *extra,
                   timeout=600)


def rows(out: Path) -> list[list[str]]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.reader(f))


def test_a_moodle_download_graded_and_resumed(download, tmp_path, cnn_checkpoints, labelled_by_resnet):
    out = tmp_path / "out"
    first = grade(download, out, cnn_checkpoints, labelled_by_resnet)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 students (Moodle download); grading 3, 0 unchanged" in first.stdout
    table = rows(out)
    assert table[0] == ["student", "name", "residual_block.plain", "resnet50_layer4.accuracy", "total"]
    assert table[1] == ["1001", "Kim Minji", "20", "10", "30"]
    assert table[2] == ["1002", "Lee Jun", "0", "0", "0"]
    assert table[3][:3] == ["1003", "Park Ara", "0"]  # a 3x3 where a 1x1 belongs: not equivalent
    assert table[3][3] == "0"  # ...and the instructor's checkpoint does not fit it
    park = json.loads((out / "students" / "1003" / "record.json").read_text())
    assert "graded the files in hw1/" in park["notes"]
    lee = (out / "students" / "1002" / "feedback.md").read_text()
    assert "SyntaxError" in lee and "resnet50_skeleton.py:59" in lee
    assert (out / "summary.md").read_text().count("syntax error: 1 student") == 1

    # Unchanged: nothing is graded again.
    again = grade(download, out, cnn_checkpoints, labelled_by_resnet)
    assert "grading 0, 3 unchanged since the last run" in again.stdout
    assert rows(out) == table

    # Lee fixes the syntax error: only Lee is graded again.
    fixed = download / "Lee Jun_1002_assignsubmission_file_" / RESNET_FILE
    fixed.write_text((REFERENCE / RESNET_FILE).read_text())
    third = grade(download, out, cnn_checkpoints, labelled_by_resnet)
    assert "grading 1, 2 unchanged since the last run" in third.stdout
    assert rows(out)[2] == ["1002", "Lee Jun", "20", "10", "30"]
    assert [r for i, r in enumerate(rows(out)) if i != 2] == [r for i, r in enumerate(table) if i != 2]

    # --student grades that student again, whatever changed; --force everyone.
    one = grade(download, out, cnn_checkpoints, labelled_by_resnet, "--student", "1003")
    assert "grading 1, 2 unchanged" in one.stdout and one.stdout.count("/1] ") == 1
    everyone = grade(download, out, cnn_checkpoints, labelled_by_resnet, "--force")
    assert "grading 3, 0 unchanged" in everyone.stdout

    unknown = grade(download, out, cnn_checkpoints, labelled_by_resnet, "--student", "9999")
    assert unknown.returncode == 2 and "no student 9999" in unknown.stderr


def test_what_changes_a_verdict_regrades_everyone(download, tmp_path, cnn_checkpoints, labelled_by_resnet):
    instructor = tmp_path / "instructor"
    shutil.copytree(cnn_checkpoints, instructor)
    out = tmp_path / "out"
    config = batch.BatchConfig(submissions=download, rubric=RUBRIC, out=out, items=ITEMS.split(","),
                               options=Options(checkpoint_dirs=[instructor], data_dir=str(labelled_by_resnet)))
    fake = _RecordingExecutor()
    batch.run(config, executor=fake)
    assert len(fake.jobs) == 3
    assert [len(batch.plan(config).jobs)] == [0]
    # a different instructor checkpoint, item timeout, item selection or data set: all regraded
    ckpt = instructor / "resnet50_epoch285.ckpt"
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    assert len(batch.plan(config).jobs) == 3
    batch.run(config, executor=fake)
    assert len(batch.plan(config).jobs) == 0
    for change in ({"limits": {"item_timeout_s": 7.0}}, {"items": ["residual_block.plain"]},
                   {"options": Options(checkpoint_dirs=[instructor])}):
        changed = batch.BatchConfig(**{**config.__dict__, **change})
        assert len(batch.plan(changed).jobs) == 3, change


class _RecordingExecutor:
    """Grades nothing: notes that it was asked, and writes a graded record as run_job would."""

    def __init__(self):
        self.jobs = []

    def run(self, jobs, on_event):
        for job in jobs:
            self.jobs.append(job)
            on_event("started", job, None)
            report = batch.unreadable(batch.load_rubric(job.rubric), job.items, "not really graded")
            record = {"student": job.student, "name": job.name, "fingerprint": job.fingerprint,
                      "status": "graded", "error": None, "seconds": 0.1, "report": report.to_dict(),
                      "notes": [], "sources": job.sources}
            gradebook.write_student(Path(job.out), record, report, "")
            on_event("done", job, record)


class _InProcess:
    """An executor that runs each job here, one after the other: the seam a cluster executor uses."""

    def run(self, jobs, on_event):
        for job in jobs:
            on_event("started", job, None)
            on_event("done", job, batch.run_job(job, on_progress=lambda text: on_event("progress", job, text)))


def test_live_display_and_an_in_process_executor(download, tmp_path, cnn_checkpoints, labelled_by_resnet):
    out = tmp_path / "out"
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    config = batch.BatchConfig(submissions=download, rubric=RUBRIC, out=out, items=["residual_block.plain"],
                               students=["1001", "1002"],
                               options=Options(checkpoint_dirs=[cnn_checkpoints], data_dir=str(labelled_by_resnet)))
    display = progress.for_console(console)
    assert isinstance(display, progress.LiveDisplay)
    result = batch.run(config, display, executor=_InProcess())
    shown = screen.getvalue()
    assert "grading" in shown and "2/2" in shown
    assert "1002" in shown and "syntax error" in shown  # the latest failures
    assert [r["student"] for r in result.records] == ["1001", "1002"]
    assert result.summary.graded == 2 and result.summary.regraded == 2
    assert (out / "students" / "1001" / "results.json").is_file()
    assert not (out / "students" / "1003").exists()


def test_ctrl_c_stops_cleanly_and_keeps_what_is_finished(download, tmp_path, cnn_checkpoints, labelled_by_resnet):
    stuck = download / "Choi Yu_1004_assignsubmission_file_"
    stuck.mkdir()
    (stuck / RESNET_FILE).write_text(at_import(LOOP)((REFERENCE / RESNET_FILE).read_text()))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "grader", "batch", str(download), "-r", str(RUBRIC), "-o", str(out),
                             "-c", str(cnn_checkpoints), "--data-dir", str(labelled_by_resnet), "--items", ITEMS,
                             "--item-timeout", "120", "-j", "1"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    while not any("1003:" in line for line in lines):  # 1004 (the endless loop) is next
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    time.sleep(2)
    family = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "interrupted: every finished student is in grades.csv" in rest
    assert "4 students: 3 graded" in (out / "summary.md").read_text()
    assert [r[0] for r in rows(out)[1:]] == ["1001", "1002", "1003"]
    wait_gone(family, seconds=20)


def test_one_job_runs_anywhere_from_its_json(download, tmp_path, cnn_checkpoints, labelled_by_resnet):
    """What a cluster executor would do: the job as a file, graded by `python -m grader.batch JOB.json`."""
    out = tmp_path / "out"
    config = batch.BatchConfig(submissions=download, rubric=RUBRIC, out=out, items=["residual_block.plain"],
                               options=Options(checkpoint_dirs=[cnn_checkpoints], data_dir=str(labelled_by_resnet)))
    job = next(j for j in batch.plan(config).jobs if j.student == "1001")
    (tmp_path / "job.json").write_text(json.dumps(job.to_dict()))
    result = subprocess.run([sys.executable, "-m", "grader.batch", str(tmp_path / "job.json")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"student": "1001", "status": "graded", "error": None}
    record = gradebook.load_record(out, "1001")
    assert record["fingerprint"] == job.fingerprint and gradebook.report_of(record).score == 20
    assert len(batch.plan(config).jobs) == 2  # the batch now counts 1001 as done
