"""Grading a class on a Slurm cluster: one array job, one task per student.

    executor = slurm.SlurmExecutor.for_rubric(rubric, out, partition="gpu", gpus=1)
    batch.run(config, display, executor=executor)

Each task runs grader.batch.job.run_job(job) on a compute node (with this same Python and
grader), exactly as a local worker does, and writes that student's files in OUT; the
data set and checkpoints are staged once in a shared folder first (grader.batch.staging).
Jobs go to Slurm through submitit (sbatch script, array with a concurrency cap, the job
pickled, logs); their state is read from squeue, and from scontrol or sacct once they end.

OUT/.grader/slurm/jobs/      sbatch scripts, pickled jobs and results, Slurm's stdout/stderr logs
OUT/.grader/slurm/progress/  each running student's current item, for the display
OUT/.grader/slurm/ledger.json  which Slurm job grades which student: a rerun after the batch was
                             killed adopts the jobs still queued or running instead of submitting
                             them again, and collects the ones that finished meanwhile

A job that ends without a result (time limit, pre-emption, node failure, out of memory,
cancelled) is submitted once more; a second failure is recorded with the reason.  Ctrl-C
cancels the batch's jobs; a killed batch leaves them running, for the rerun to adopt.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from grader import atomic
from grader.batch import staging
from grader.batch.executors import ExecutorError, OnEvent, StopBatch
from grader.batch.job import Job, hard_limit_s, run_job

RETRIES = 1  # a job that ends without a result is submitted once more
MAX_ARRAY = 1000  # tasks per array (Slurm's default MaxArraySize is 1001)
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "CONFIGURING", "RESIZING"}
_ENDED = {
    "TIMEOUT": "reached its time limit ({TimeLimit}; raise --time-per-job)",
    "PREEMPTED": "was pre-empted by another job",
    "CANCELLED": "was cancelled (scancel, or an administrator)",
    "NODE_FAIL": "lost its node {NodeList}",
    "OUT_OF_MEMORY": "ran out of its memory (raise --mem-per-job)",
    "BOOT_FAIL": "could not start its node",
    "DEADLINE": "passed its deadline",
    "FAILED": "failed (exit code {ExitCode})",
    "COMPLETED": "ended without a result",
}


class SlurmUnavailable(ExecutorError):
    """Slurm cannot be used from here; the message says why and what to do."""


class SubmitError(ExecutorError):
    """sbatch refused the jobs (unknown partition, too much memory, ...)."""


@dataclass
class Resources:
    """What each student's job asks Slurm for."""

    partition: str | None = None
    gpus: int = 0
    cpus: int = 2
    time_min: int = 30
    mem_mb: int = 6144
    max_running: int = 32  # tasks of the array running at once
    extra: dict[str, str] = field(default_factory=dict)  # further sbatch options, e.g. account, qos

    def sbatch(self, name: str, folder: Path) -> dict:
        """submitit's parameters for these resources."""
        params = {"job_name": name, "time": self.time_min, "cpus_per_task": self.cpus, "mem": f"{self.mem_mb}M",
                  "array_parallelism": self.max_running, "nodes": 1, "ntasks_per_node": 1,
                  # The job's working folder is its log folder: never the repository, never the caller's cwd.
                  "additional_parameters": {"chdir": str(folder), **self.extra}}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        return params


def resources(rubric, *, partition: str | None = None, gpus: int | None = None, cpus: int | None = None,
              time_min: int | None = None, mem_gb: float | None = None, max_running: int | None = None,
              extra: list[str] = ()) -> Resources:
    """Flags first, then the rubric's `slurm:` section, then what the rubric's limits need.

    Default time: the submission's time limit plus the grader's own margin and start-up;
    default memory: what the student's process may use plus about 2 GB for the grader."""
    parsed = {}
    for arg in extra:
        key, sep, value = arg.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm-arg takes KEY=VALUE (an sbatch option without its dashes), not {arg!r}")
        parsed[key.strip().lstrip("-")] = value

    def pick(flag, name: str):
        return flag if flag is not None else getattr(rubric.slurm, name, None)

    gb = pick(mem_gb, "mem_gb")
    return Resources(
        partition=pick(partition, "partition"),
        gpus=pick(gpus, "gpus") or 0,
        cpus=pick(cpus, "cpus") or 2,
        # Python, torch and the submission's files take a minute or two to start on a busy node.
        time_min=pick(time_min, "time_min") or math.ceil((hard_limit_s(rubric) + 180) / 60),
        mem_mb=int(gb * 1024) if gb else rubric.limits.memory_mb + 2048,
        max_running=max_running or 32,
        extra=parsed,
    )


def unavailable() -> str | None:
    """Why `--executor slurm` cannot work here, or None."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "--executor slurm needs submitit: pip install 'grader[slurm]'"
    for command in ("sbatch", "squeue", "scancel"):
        if shutil.which(command) is None:
            return f"--executor slurm: {command} is not on PATH; run grader on a login node of the cluster"
    return None


# -- the batch side --------------------------------------------------------------------


@dataclass
class _Task:
    job: Job
    attempt: int
    job_id: str | None = None
    state: str = "queued"  # queued | running | ended
    started: bool = False
    missing_since: float | None = None
    waiting: str = ""  # squeue's reason while queued
    progress: str = ""
    reasons: list[str] = field(default_factory=list)


class SlurmExecutor:
    """`run(jobs, on_event)` like grader.batch.executors.LocalPool, on a Slurm cluster."""

    GRACE_S = 20.0  # a job that completed without a result file yet: shared filesystems lag

    def __init__(self, out: Path, resources: Resources, shared_dir: Path | None = None, poll_s: float = 2.0):
        self.out = Path(out).resolve()
        self.resources = resources
        self.state = self.out / ".grader" / "slurm"
        self.jobs_dir = self.state / "jobs"
        self.progress_dir = self.state / "progress"
        self.shared = Path(shared_dir).resolve() if shared_dir else self.out / ".grader" / "shared"
        self.poll_s = poll_s

    @classmethod
    def for_rubric(cls, rubric, out: Path, *, shared_dir: Path | None = None, **flags) -> "SlurmExecutor":
        wanted = resources(rubric, **flags)
        why = unavailable()
        if why:
            raise SlurmUnavailable(why)
        return cls(out, wanted, shared_dir)

    def device(self, requested: str) -> str:
        """Where models run on the node: what was asked, else a GPU when the jobs get one."""
        if requested and requested != "auto":
            return requested
        return "cuda" if self.resources.gpus else "cpu"

    def run(self, jobs: list[Job], on_event: OnEvent) -> None:
        for folder in (self.jobs_dir, self.progress_dir):
            folder.mkdir(parents=True, exist_ok=True)
        staged = staging.stage(jobs, self.shared)  # before any job starts; once, unless they changed
        for note in staged.notes:
            on_event("note", None, note)
        jobs = [self._for_node(staged.apply(job)) for job in jobs]
        self.ledger = _Ledger(self.state / "ledger.json")
        self.tasks: dict[str, _Task] = {}
        self.done = self.failed = 0
        self.submitting: str | None = None  # the name of an array while sbatch submits it
        fresh = self._adopt(jobs, on_event)
        try:
            self._submit(fresh, 1)
            self._watch(on_event)
        except (KeyboardInterrupt, StopBatch):  # StopBatch: a node could not isolate a student
            self._cancel(on_event)
            raise

    def _for_node(self, job: Job) -> Job:
        return dataclasses.replace(job, threads=self.resources.cpus,
                                   progress_file=str(self.progress_dir / job.student))

    # -- resuming ---------------------------------------------------------------------

    def _adopt(self, jobs: list[Job], on_event: OnEvent) -> list[Job]:
        """Take over this class's jobs still on the cluster from an interrupted run; the rest is new."""
        entries = {job.student: self.ledger.get(job.student) for job in jobs}
        names = sorted({e["name"] for e in entries.values() if e})
        live = _squeue(names) if names else {}
        if live is None:
            raise SubmitError("squeue does not answer: is the Slurm controller up?")
        fresh, adopted = [], 0
        for job in jobs:
            entry = entries[job.student]
            if entry is None:
                fresh.append(job)
                continue
            job_id = entry.get("job_id") or next(iter(_find_by_name(live, entry["name"], entry["index"])), None)
            same = entry.get("fingerprint") == job.fingerprint
            if not same or job_id is None:
                if job_id is not None and job_id in live:
                    _scancel([job_id])  # it grades files that changed since: its result would be stale
                self.ledger.drop(job.student)
                fresh.append(job)
                continue
            task = _Task(dataclasses.replace(job, attempt=entry["attempt"]), entry["attempt"], job_id,
                         reasons=list(entry.get("reasons", [])))
            if job_id not in live:
                task.missing_since = float("-inf")  # ended while no batch watched it: decided at once
            self.tasks[job.student] = task
            self.ledger.put(job.student, {**entry, "job_id": job_id})
            adopted += 1
        self.ledger.save()
        if adopted:
            on_event("note", None, f"adopted {adopted} Slurm job{'s' * (adopted != 1)} of an interrupted run "
                                   "(still queued, running or finished meanwhile); they are not submitted again")
        return fresh

    # -- submitting -------------------------------------------------------------------

    def _submit(self, jobs: list[Job], attempt: int) -> None:
        for start in range(0, len(jobs), MAX_ARRAY):
            self._submit_array(jobs[start:start + MAX_ARRAY], attempt)

    def _submit_array(self, jobs: list[Job], attempt: int) -> None:
        if not jobs:
            return
        import submitit

        name = f"grader-{secrets.token_hex(4)}"
        jobs = [dataclasses.replace(job, attempt=attempt) for job in jobs]
        for index, job in enumerate(jobs):  # written first: a batch killed inside sbatch still finds them
            previous = self.tasks.get(job.student)
            self.ledger.put(job.student, {"name": name, "index": index, "job_id": None, "attempt": attempt,
                                          "fingerprint": job.fingerprint,
                                             "reasons": previous.reasons if previous else []})
        self.ledger.save()
        for job in jobs:
            Path(job.progress_file).unlink(missing_ok=True)  # an earlier run's last item
        executor = submitit.SlurmExecutor(folder=self.jobs_dir, max_num_timeout=0, python=shlex.quote(sys.executable))
        executor.update_parameters(**self.resources.sbatch(name, self.jobs_dir))
        self.submitting = name
        try:
            submitted = executor.map_array(run_on_node, jobs)
        except Exception as e:  # sbatch's own message says what it refused
            for job in jobs:
                self.ledger.drop(job.student)
            self.ledger.save()
            raise SubmitError(f"sbatch refused the jobs: {_first_line(str(e))}") from None
        self.submitting = None
        for job, handle in zip(jobs, submitted):
            previous = self.tasks.get(job.student)
            self.tasks[job.student] = _Task(job, attempt, handle.job_id, reasons=previous.reasons if previous else [])
            self.ledger.put(job.student, {**self.ledger.get(job.student), "job_id": handle.job_id})
        self.ledger.save()

    # -- watching ---------------------------------------------------------------------

    def _watch(self, on_event: OnEvent) -> None:
        started = time.monotonic()
        while self.tasks:
            retry = self._poll(on_event)
            self._submit(retry, RETRIES + 1)
            self._show_queue(on_event)
            if self.tasks:
                # Every 2 s at first, then less often: squeue is shared by everyone on the cluster.
                time.sleep(min(10.0, self.poll_s + (time.monotonic() - started) / 120))

    def _poll(self, on_event: OnEvent) -> list[Job]:
        """One look at the cluster: finished students, started ones, and jobs to submit again."""
        live = _squeue(sorted({self.ledger.get(s)["name"] for s in self.tasks}))
        retry = []
        now = time.monotonic()
        for student, task in list(self.tasks.items()):
            outcome = _result(self.jobs_dir, task.job_id)
            if outcome is not None and outcome[0] == "success":
                self._finish(task, on_event, "done", outcome[1])
                continue
            if outcome is None:
                if live is None:
                    continue  # squeue did not answer this time: ask again
                if task.job_id in live:
                    self._update(task, live[task.job_id], on_event)
                    continue
                ended = _final_state(task.job_id)
                if ended.get("JobState", "COMPLETED") == "COMPLETED":  # its result file may still be on its way
                    if task.missing_since is None:
                        task.missing_since = now
                    if now - task.missing_since < self.GRACE_S:
                        continue
            task.reasons.append(_ended_reason(task.job_id, self.jobs_dir, outcome))
            if task.attempt <= RETRIES:
                on_event("note", None, f"{student}: {task.reasons[-1]}; submitting it once more")
                task.state = "retrying"
                retry.append(task.job)
            else:
                log = os.path.relpath(_paths(self.jobs_dir, task.job_id).stderr, self.out)
                why = f"not graded on the cluster: {'; then '.join(task.reasons)} (log: OUT/{log})"
                self._finish(task, on_event, "failed", why)
        return retry

    def _update(self, task: _Task, info: Live, on_event: OnEvent) -> None:
        task.missing_since = None
        task.waiting = info.reason
        if info.state in QUEUED:
            task.state = "queued"
            return
        task.state = "running"
        if not task.started:
            task.started = True
            on_event("started", task.job, None)
            on_event("progress", task.job, f"running on {info.node or 'a node'} (Slurm job {task.job_id})")
        text = _read(Path(task.job.progress_file))
        if text and text != task.progress:
            task.progress = text
            on_event("progress", task.job, text)

    def _finish(self, task: _Task, on_event: OnEvent, kind: str, payload) -> None:
        student = task.job.student
        del self.tasks[student]
        self.ledger.drop(student)
        self.ledger.save()
        if kind == "done":
            self.done += 1
        else:
            self.failed += 1
        on_event(kind, task.job, payload)

    def _show_queue(self, on_event: OnEvent) -> None:
        queued = [t for t in self.tasks.values() if t.state == "queued"]
        running = sum(t.state == "running" for t in self.tasks.values())
        # Why they wait, as Slurm says it (Priority, Resources, a held job...): the commonest reason.
        reasons = collections.Counter(t.waiting for t in queued if t.waiting and t.waiting != "None")
        why = f" ({reasons.most_common(1)[0][0]})" if reasons else ""
        on_event("queue", None, f"Slurm: {len(queued)} queued{why}, {running} running, {self.done} done, "
                                f"{self.failed} failed")

    def _cancel(self, on_event: OnEvent) -> None:
        """Ctrl-C or StopBatch: the batch's jobs leave the cluster; what finished stays in OUT."""
        ids = [t.job_id for t in self.tasks.values() if t.job_id]
        dropped = list(self.tasks)
        if self.submitting:  # interrupted inside sbatch: the array may exist, under its name
            ids += _find_by_name(_squeue([self.submitting]) or {}, self.submitting)
            dropped += [s for s, e in self.ledger.entries.items() if e["name"] == self.submitting]
        _scancel(ids)
        for student in dropped:
            self.ledger.drop(student)
        self.ledger.save()
        if ids:
            on_event("note", None, f"cancelled {len(ids)} Slurm job{'s' * (len(ids) != 1)}")


class _Ledger:
    """student -> the Slurm job grading them now (name, array index, id, attempt, fingerprint)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, dict] = json.loads(path.read_text())["students"]
        except (OSError, ValueError, KeyError, TypeError):
            self.entries = {}

    def get(self, student: str) -> dict | None:
        return self.entries.get(student)

    def put(self, student: str, entry: dict) -> None:
        self.entries[student] = entry

    def drop(self, student: str) -> None:
        self.entries.pop(student, None)

    def save(self) -> None:
        atomic.write_text(self.path, json.dumps({"students": self.entries}, indent=1) + "\n")


# -- Slurm's commands ------------------------------------------------------------------


def _run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


class Live(NamedTuple):
    state: str  # PENDING, RUNNING, ...
    name: str  # the job's name: grader-<id>, one per array
    node: str
    reason: str  # why it is pending: Priority, Resources, JobArrayTaskLimit, ...


def _squeue(names: list[str]) -> dict[str, Live] | None:
    """job id -> what squeue says of these jobs still queued or running; None if squeue fails."""
    if not names:
        return {}
    done = _run(["squeue", "--noheader", "--array", "--format=%i|%T|%j|%N|%r", f"--name={','.join(names)}"])
    if done is None or done.returncode != 0:
        return None
    live = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            live[parts[0]] = Live(*parts[1:])
    return live


def _find_by_name(live: dict[str, Live], name: str, index: int | None = None) -> list[str]:
    """Job ids of the array called `name` (task `index` only, if given): a batch killed inside sbatch."""
    return [job_id for job_id, info in live.items()
            if info.name == name and (index is None or (job_id.split("_", 1)[1:] or ["0"])[0] == str(index))]


def _scancel(ids: list[str]) -> None:
    if ids:
        _run(["scancel", *ids])


def _final_state(job_id: str) -> dict:
    """How a job ended: from scontrol while the controller remembers it, else from accounting."""
    done = _run(["scontrol", "--oneliner", "show", "job", job_id])
    if done is not None and done.returncode == 0 and "JobState=" in done.stdout:
        fields = dict(token.split("=", 1) for token in done.stdout.split() if "=" in token)
        return {k: fields.get(k, "") for k in ("JobState", "ExitCode", "TimeLimit", "NodeList", "Reason")}
    done = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", job_id,
                 "--format=State,ExitCode,Timelimit,NodeList"])
    if done is not None and done.returncode == 0 and done.stdout.strip():
        state, exit_code, limit, nodes = (done.stdout.splitlines()[0].split("|") + [""] * 4)[:4]
        return {"JobState": state.split()[0], "ExitCode": exit_code, "TimeLimit": limit, "NodeList": nodes}
    return {}


def _ended_reason(job_id: str, folder: Path, outcome) -> str:
    if outcome is not None:  # the job ran but the grader failed on the node (an import error, ...)
        return f"Slurm job {job_id} failed: {_last_error(str(outcome[1]))}"
    state = _final_state(job_id)
    name = state.get("JobState", "").upper()
    text = _ENDED.get(name, f"ended ({name.lower() or 'state unknown'})")
    reason = f"Slurm job {job_id} " + text.format(**{k: v or "?" for k, v in state.items()})
    if name in ("FAILED", "COMPLETED", ""):
        tail = _last_error(_read(_paths(folder, job_id).stderr))
        if tail:
            reason += f": {tail}"
    return reason


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(("submitit ", "grader: "))]
    return lines[-1][:300] if lines else ""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no message"])[-1][:400]


def _paths(folder: Path, job_id: str):
    from submitit.core.utils import JobPaths

    return JobPaths(folder, job_id=job_id, task_id=0)


def _result(folder: Path, job_id: str | None):
    """("success", record) or ("error", traceback) once the job has written its result, else None."""
    if job_id is None:
        return None
    path = _paths(folder, job_id).result_pickle
    if not path.exists():
        return None
    from submitit.core.utils import pickle_load

    try:
        return pickle_load(path)
    except (OSError, EOFError, ValueError):
        return None  # being written: read it at the next poll


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


# -- the node side -----------------------------------------------------------------------


def run_on_node(job: Job | dict) -> dict:
    """One student, in a Slurm job: what a local worker does, with this job's own environment.

    submitit pickles the Job; a job file written for a scheduler (`Job.to_dict()`) reads back as a dict."""
    job = job if isinstance(job, Job) else Job.from_dict(job)
    finished = False

    def ended_by_slurm(signum, frame):
        # Slurm ends a job (time limit, pre-emption, scancel) with SIGTERM to every process in it,
        # the students' too.  Stop at once, writing nothing: a student killed by Slurm must not be
        # graded as crashed.  The batch sees the job end without a result and submits it again.
        if not finished:
            os.write(2, f"grader: Slurm ended the job (signal {signum}) before {job.student} was graded\n".encode())
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, ended_by_slurm)
    # submitit asks Slurm for SIGUSR2 shortly before the time limit; it would reach (and end) the
    # students' processes too.  Ignored here, and so in every process this one starts.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    os.environ.update(job.env)
    os.environ.pop("GRADER_DATA_DIR", None)  # the data set comes from the job's options only
    task = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "?"))
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        task += f"_{os.environ['SLURM_ARRAY_TASK_ID']}"
    print(f"grader: grading {job.student} (attempt {job.attempt}) on {socket.gethostname()} "
          f"in Slurm job {task}", flush=True)
    progress = Path(job.progress_file)
    record = run_job(job, on_progress=lambda text: atomic.write_text(progress, text))
    finished = True
    print(f"grader: {job.student}: {record['status']}", flush=True)
    return record
