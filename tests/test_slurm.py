"""`grader batch --executor slurm` on a real Slurm cluster (CI starts a one-node one with
.ci/slurm-cluster.sh): the same gradebook as the local executor, isolation inside the jobs,
a killed batch that adopts its running jobs, Ctrl-C, jobs Slurm ends (retried once, then
recorded with the reason), and the data set and checkpoints staged once in a shared folder.
Tests that need the cluster skip, with the reason, where it cannot be reached."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import batch, rubric
from grader.batch import slurm, staging
from grader.options import Options
from tests.cnn_class import ITEMS, REFERENCE, RESNET_FILE, write_class
from tests.conftest import ROOT, RUBRICS, run_cli

RUBRIC = RUBRICS / "cnn_architecture.yaml"
GRADED_ITEMS = [i for i in ITEMS if i != "vgg16.accuracy"]  # the students ship ResNet checkpoints only
CLASS = ("s01_correct", "s02_copy", "s03_wrong_blanks", "s05_short_layer4", "s06_syntax_error",
         "s08_loop_in_forward", "s10_sys_exit", "s16_read_others", "s21_segfault")


def slurm_problem() -> str | None:
    """Why the cluster cannot be used here, or None."""
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (no sinfo on PATH); CI starts a one-node cluster with .ci/slurm-cluster.sh"
    try:
        done = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s: the Slurm controller is not responding"
    if done.returncode != 0:
        return f"the Slurm controller cannot be reached: {done.stderr.strip()[:300]}"
    if not re.search(r"idle|mixed|allocated", done.stdout):
        return f"no Slurm node is up (sinfo says: {done.stdout.split() or 'no nodes'})"
    return slurm.unavailable()


@pytest.fixture(scope="session")
def cluster():
    problem = slurm_problem()
    if problem:
        pytest.skip(problem)


class Klass:
    """A class of CNN Architecture submissions (tests/cnn_class.py), right, wrong and hostile."""

    def __init__(self, root: Path, data: Path, checkpoints: Path, students=CLASS):
        self.root = root
        self.folder = root / "class"
        self.tmp = root / "tmp"  # the students' folders live here ('../' is this)
        self.tmp.mkdir()
        self.data, self.checkpoints = data, checkpoints
        paths = {"reference": str(REFERENCE / RESNET_FILE), "rubric": str(RUBRIC),
                 "other_student": str(self.folder / "s01_correct" / RESNET_FILE), "out": str(root / "grades.csv")}
        write_class(self.folder, checkpoints, paths, root / "payload-ran")
        for folder in self.folder.iterdir():
            if folder.name not in students:
                shutil.rmtree(folder)

    def args(self, out: Path, *extra: str, items=GRADED_ITEMS, item_timeout: int = 8) -> list[str]:
        return ["batch", str(self.folder), "--rubric", str(RUBRIC), "-o", str(out), "-c", str(self.checkpoints),
                "--data-dir", str(self.data), "--items", ",".join(items), "--item-timeout", str(item_timeout),
                "--memory-mb", "1024", "-j", "2",
                # Which student a result is reused from depends on the order jobs finish in, on
                # any executor; reuse's own equivalence is tests/test_reuse.py's business.
                "--no-reuse", *extra]

    def slurm(self, out: Path, *extra: str, **kw) -> list[str]:
        # One core per job: the CI node has two, and the batch runs two students at once either way.
        return self.args(out, "--executor", "slurm", "--cpus-per-job", "1", "--mem-per-job", "3",
                         "--shared-dir", str(self.root / "shared"), *extra, **kw)

    def env(self) -> dict:
        return {"TMPDIR": str(self.tmp)}

    def popen(self, args: list[str], cwd: Path = ROOT) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "grader", *args], cwd=cwd, env=dict(os.environ, **self.env()),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def processes_inside(self) -> list[int]:
        """Processes working in this class's temporary folder: the students' own.  A sandboxed
        process sees its folder under another name (/submission), so folders are compared by
        device and inode, which stat through /proc/PID/cwd gives from any mount namespace."""
        folders = set()
        for dirpath, _, _ in os.walk(self.tmp):  # folders come and go while jobs run
            try:
                s = os.stat(dirpath)
            except OSError:
                continue
            folders.add((s.st_dev, s.st_ino))
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit():
                    continue
                cwd = os.stat(entry / "cwd")
                if (cwd.st_dev, cwd.st_ino) in folders or os.readlink(entry / "cwd").startswith(str(self.tmp)):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found


def rows(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


def graded_on_slurm(out: Path) -> dict[str, list[str]]:
    """student -> the Slurm jobs that started grading them, from the jobs' own logs."""
    found: dict[str, list[str]] = {}
    for log in (out / ".grader" / "slurm" / "jobs").glob("*_log.out"):
        for m in re.finditer(r"^grader: grading (\S+) \(attempt \d\) on \S+ in Slurm job (\S+)$", log.read_text(),
                             re.M):
            found.setdefault(m[1], []).append(m[2])
    return found


def live_jobs(out: Path) -> dict[str, str]:
    """Slurm job id -> state of this batch's jobs still queued or running."""
    ledger = json.loads((out / ".grader" / "slurm" / "ledger.json").read_text())["students"]
    names = sorted({e["name"] for e in ledger.values()})
    if not names:
        return {}
    done = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T", f"--name={','.join(names)}"],
                          capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def results(out: Path, student: str) -> list[dict]:
    return json.loads((out / "students" / student / "results.json").read_text())["tests"]


@pytest.fixture(scope="module")
def klass(tmp_path_factory, cnn_checkpoints, labelled_by_resnet) -> Klass:
    return Klass(tmp_path_factory.mktemp("slurm-class"), labelled_by_resnet, cnn_checkpoints)


@pytest.fixture(scope="module")
def local(klass) -> Path:
    out = klass.root / "out-local"
    started = time.monotonic()
    done = run_cli(*klass.args(out), env=klass.env(), timeout=900)
    print(f"\nthe class of {len(CLASS)} graded locally in {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def on_slurm(klass, cluster) -> tuple[Path, subprocess.CompletedProcess]:
    out = klass.root / "out-slurm"
    started = time.monotonic()
    done = run_cli(*klass.slurm(out), env=klass.env(), timeout=900)
    print(f"\nthe class of {len(CLASS)} graded on Slurm in {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done


@pytest.mark.slow
def test_a_class_graded_on_slurm_gets_what_the_local_executor_gives(klass, local, on_slurm):
    out, done = on_slurm
    assert (out / "grades.csv").read_text() == (local / "grades.csv").read_text()
    assert len(rows(out)) == len(CLASS) >= 8
    for student in CLASS:
        assert results(out, student) == results(local, student), student
        feedback = (out / "students" / student / "feedback.md").read_text()
        assert feedback == (local / "students" / student / "feedback.md").read_text(), student
    # The sandbox holds inside a Slurm job as it does here: the summary reports the same isolation.
    isolation = [line for line in (out / "summary.md").read_text().splitlines() if line.startswith("Isolation:")]
    assert isolation == [line for line in (local / "summary.md").read_text().splitlines()
                         if line.startswith("Isolation:")]
    assert "network: namespace" in isolation[0] and "landlock" in isolation[0]
    assert "blocked" in results(out, "s16_read_others")[0]["output"]
    assert "READ" not in json.loads((out / "students" / "s16_read_others" / "record.json").read_text())["report"]["output"]

    # What the instructor saw: the queue, then one line per student.
    assert re.search(r"Slurm: \d+ queued, \d+ running, 0 done, 0 failed", done.stdout)
    assert done.stdout.count(f"/{len(CLASS)}] ") == len(CLASS)
    # One Slurm job per student, each graded once; the jobs' files are in OUT, not in the repository.
    assert sorted(graded_on_slurm(out)) == sorted(CLASS)
    assert all(len(jobs) == 1 for jobs in graded_on_slurm(out).values())
    script = next((out / ".grader" / "slurm" / "jobs").glob("*_submission.sh")).read_text()
    for line in ("--cpus-per-task=1", "--mem=3072M", f"--array=0-{len(CLASS) - 1}%2",
                 f"--chdir={out / '.grader' / 'slurm' / 'jobs'}", sys.executable):
        assert line in script, line
    assert not list(ROOT.glob("*_log.*")) and not list(ROOT.glob("slurm-*.out"))
    # The data set and the checkpoint were staged once, in the shared folder.
    shared = klass.root / "shared"
    assert len(list((shared / "cache" / "test").glob("*.u8"))) == 1  # test images: the private folder
    assert [p.name for p in (shared / "checkpoints").glob("*/*")] == ["resnet50_epoch285.ckpt"]


@pytest.mark.slow
def test_a_killed_batch_adopts_its_running_jobs_and_grades_no_one_twice(klass, local, cluster):
    out = klass.root / "out-killed"
    proc = klass.popen(klass.slurm(out))
    lines = []
    while sum(line.startswith("[") for line in lines) < 2:
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    proc.kill()  # SIGKILL: no chance to cancel anything
    proc.wait(timeout=30)
    left = live_jobs(out)
    assert left, "the batch's jobs keep running on the cluster after it is killed"

    done = run_cli(*klass.slurm(out), env=klass.env(), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"adopted \d+ Slurm jobs? of an interrupted run", done.stdout), done.stdout
    assert (out / "grades.csv").read_text() == (local / "grades.csv").read_text()
    graded = graded_on_slurm(out)
    assert sorted(graded) == sorted(CLASS)
    assert {s: jobs for s, jobs in graded.items() if len(jobs) > 1} == {}, "a student was graded twice"
    assert live_jobs(out) == {}


def test_ctrl_c_cancels_the_batchs_jobs_and_keeps_what_finished(tmp_path, cnn_checkpoints, labelled_by_resnet,
                                                                 cluster):
    small = Klass(tmp_path, labelled_by_resnet, cnn_checkpoints, students=("s01_correct", "s08_loop_in_forward"))
    out = tmp_path / "out"
    # Started from the class's own folder with relative paths: the jobs must not depend on it.
    args = small.slurm(out, items=["residual_block.plain", "residual_block.downsample"], item_timeout=120)
    args = [os.path.relpath(a, tmp_path) if a.startswith(str(tmp_path)) else a for a in args]
    assert "class" in args and "out" in args
    proc = small.popen(args, cwd=tmp_path)
    lines = []
    while not any(line.startswith("[1/2] s01_correct") for line in lines):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    deadline = time.monotonic() + 60
    while "s08_loop_in_forward" not in graded_on_slurm(out) or not small.processes_inside():
        # the endless loop is being graded, in a student's process inside the job
        assert time.monotonic() < deadline, live_jobs(out)
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "cancelled 1 Slurm job" in rest and "interrupted: every finished student is in grades.csv" in rest
    assert [(r["student"], r["total"]) for r in rows(out)] == [("s01_correct", "40")]
    assert "2 students: 1 graded" in (out / "summary.md").read_text()
    assert live_jobs(out) == {}
    deadline = time.monotonic() + 20  # the student's endless loop ended with its job
    while small.processes_inside():
        assert time.monotonic() < deadline, small.processes_inside()
        time.sleep(0.5)
    # The job ended with Slurm's SIGTERM: it wrote nothing for the student (no "crash" verdict).
    assert not (out / "students" / "s08_loop_in_forward").exists()
    assert "before s08_loop_in_forward was graded" in "".join(
        p.read_text() for p in (out / ".grader" / "slurm" / "jobs").glob("*_log.err"))


def test_a_job_slurm_ends_is_submitted_once_more_then_recorded_with_the_reason(tmp_path, cnn_checkpoints,
                                                                               labelled_by_resnet, cluster):
    small = Klass(tmp_path, labelled_by_resnet, cnn_checkpoints, students=("s08_loop_in_forward",))
    out = tmp_path / "out"
    proc = small.popen(small.slurm(out, items=["residual_block.downsample"], item_timeout=120))
    cancelled: list[str] = []
    deadline = time.monotonic() + 120
    while len(cancelled) < 2 and proc.poll() is None:  # an administrator (or pre-emption) ends it, twice
        assert time.monotonic() < deadline
        for job_id, state in live_jobs(out).items() if (out / ".grader/slurm/ledger.json").exists() else []:
            log = out / ".grader" / "slurm" / "jobs" / f"{job_id}_0_log.out"
            if job_id not in cancelled and log.exists() and "grader: grading" in log.read_text():
                subprocess.run(["scancel", job_id], check=True)
                cancelled.append(job_id)
        time.sleep(0.5)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    assert f"Slurm job {cancelled[0]} was cancelled" in output and "submitting it once more" in output
    record = json.loads((out / "students" / "s08_loop_in_forward" / "record.json").read_text())
    assert record["status"] == "error" and record["report"] is None
    assert record["error"].startswith(f"not graded on the cluster: Slurm job {cancelled[0]} was cancelled")
    assert f"then Slurm job {cancelled[1]} was cancelled" in record["error"]
    assert "(log: OUT/.grader/slurm/jobs/" in record["error"]
    assert rows(out)[0]["total"] == ""
    assert len(graded_on_slurm(out)["s08_loop_in_forward"]) == 2
    # The next run grades that student again, from scratch.
    assert json.loads((out / ".grader" / "slurm" / "ledger.json").read_text())["students"] == {}


def test_sbatch_refusing_the_jobs_is_a_usage_error(tmp_path, cnn_checkpoints, labelled_by_resnet, cluster):
    small = Klass(tmp_path, labelled_by_resnet, cnn_checkpoints, students=("s01_correct",))
    done = run_cli(*small.slurm(tmp_path / "out", "--partition", "no_such_partition"), env=small.env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sbatch refused the jobs" in done.stderr and "partition" in done.stderr


# -- without a cluster ----------------------------------------------------------------------


def test_the_data_set_and_checkpoints_are_staged_once_and_jobs_read_only_those(tmp_path, cnn_checkpoints,
                                                                               labelled_by_resnet):
    """A job graded from staged copies alone, in an environment that points elsewhere."""
    data, checkpoints = tmp_path / "data", tmp_path / "checkpoints"
    shutil.copytree(labelled_by_resnet, data)
    shutil.copytree(cnn_checkpoints, checkpoints)
    students = tmp_path / "class"
    shutil.copytree(REFERENCE, students / "alice", ignore=shutil.ignore_patterns("__pycache__", "*.ckpt"))
    out = tmp_path / "out"
    config = batch.BatchConfig(submissions=students, rubric=RUBRIC, out=out,
                               items=["residual_block.plain", "resnet50_layer4.accuracy"],
                               options=Options(checkpoint_dirs=[checkpoints], data_dir=str(data)))
    jobs = batch.plan(config).jobs
    shared = tmp_path / "shared"
    staged = staging.stage(jobs, shared)
    assert len(staged.notes) == 2  # the data set and one checkpoint
    copied = shared / "checkpoints" / Path(staged.checkpoint_dirs[0]).name / "resnet50_epoch285.ckpt"
    before = copied.stat().st_ino
    again = staging.stage(jobs, shared)
    assert again.notes == [] and copied.stat().st_ino == before  # nothing copied the second time

    job = dataclasses.replace(again.apply(jobs[0]), progress_file=str(tmp_path / "progress"))
    assert str(shared.resolve()) in job.private  # the staged data (labels included) is kept from students
    shutil.rmtree(data)  # the originals are gone: the job must read the staged copies
    shutil.rmtree(checkpoints)
    (tmp_path / "job.json").write_text(json.dumps(job.to_dict()))
    code = "import json, sys; from grader.batch import slurm; print(json.dumps(slurm.run_on_node(json.load(open(sys.argv[1])))))"
    env = dict(os.environ, GRADER_CACHE_DIR=str(tmp_path / "elsewhere"), GRADER_DATA_DIR=str(tmp_path / "nothing"))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "job.json")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])
    tests = {r["id"]: r for r in record["report"]["results"]}
    assert tests["residual_block.plain"]["points"] == 20
    accuracy = tests["resnet50_layer4.accuracy"]
    assert accuracy["points"] == 10, accuracy["message"]
    assert "100.00% (64/64)" in accuracy["message"]
    assert accuracy["details"] == [f"measured on CIFAR-10 test set ({data}/cifar-10-batches-py)"]  # the original
    assert not (tmp_path / "elsewhere").exists()  # the job's cache is the one it was given


def test_resources_come_from_flags_then_the_rubric_then_its_limits():
    base = rubric.load(RUBRIC)
    derived = slurm.resources(base)
    assert derived.gpus == 0 and derived.cpus == 2 and derived.partition is None
    assert derived.mem_mb == base.limits.memory_mb + 2048
    assert derived.time_min * 60 >= base.limits.timeout_s + 60
    course = base.model_copy(update={"slurm": rubric.SlurmResources(partition="gpu", gpus=1, time_min=90, mem_gb=16)})
    from_rubric = slurm.resources(course)
    assert (from_rubric.partition, from_rubric.gpus, from_rubric.time_min, from_rubric.mem_mb) == ("gpu", 1, 90, 16384)
    flags = slurm.resources(course, partition="a100", gpus=2, cpus=8, time_min=20, mem_gb=1.5, max_running=4,
                            extra=["account=cs231", "--qos=course"])
    params = flags.sbatch("grader-x", Path("/o/jobs"))
    assert params["partition"] == "a100" and params["gpus_per_node"] == 2 and params["cpus_per_task"] == 8
    assert params["time"] == 20 and params["mem"] == "1536M" and params["array_parallelism"] == 4
    assert params["additional_parameters"] == {"chdir": "/o/jobs", "account": "cs231", "qos": "course"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        slurm.resources(course, extra=["account"])
    parsed = rubric.parse(RUBRIC.read_text() + "slurm: {partition: gpu, gpus: 1, time_min: 30, mem_gb: 8}\n", RUBRIC)
    assert parsed.slurm.gpus == 1


def test_slurm_flags_without_the_slurm_executor_are_usage_errors(tmp_path):
    (tmp_path / "class" / "alice").mkdir(parents=True)
    common = ["batch", str(tmp_path / "class"), "-r", str(RUBRIC), "-o", str(tmp_path / "out")]
    done = run_cli(*common, "--partition", "gpu", "--gpus-per-job", "1")
    assert done.returncode == 2 and "--partition, --gpus-per-job apply to --executor slurm" in done.stderr
    done = run_cli(*common, "--executor", "cloud")
    assert done.returncode == 2 and "--executor is local or slurm" in done.stderr
    no_slurm = {"PATH": os.path.dirname(sys.executable)}
    done = run_cli(*common, "--executor", "slurm", env=no_slurm)
    assert done.returncode == 2 and "sbatch is not on PATH" in done.stderr
    done = run_cli(*common, "--executor", "slurm", "--slurm-arg", "account", env=no_slurm)
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr
    done = run_cli(*common, "--executor", "slurm", "--cpus-per-job", "0", env=no_slurm)
    assert done.returncode == 2 and "--cpus-per-job must be positive" in done.stderr
