"""One student of a class: the job that grades them, and the one way to run it.

A job is everything a worker needs to grade one submission, away from the batch that
planned it: where the files are, the rubric and its limits, the run options, where to
write.  Inside the grader it is a `Job` (pickled through a pipe to a local worker, or to a
Slurm node); only a job file for a scheduler holds it as JSON, `Job.to_dict()`:

    record = run_job(job)                      # in a local worker or on a cluster node
    python -m grader.batch.job JOB.json        # the same, from a scheduler's command line

run_job grades the submission (grader.grading.grade in an isolated student process) and
writes that student's results.json, feedback.md and record.json in OUT/students/<id>/.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from grader import grading
from grader.batch import gradebook
from grader.options import Options
from grader.results import FAILED, GradeReport, ItemResult
from grader.reuse import Reuse
from grader.rubric import Rubric
from grader.rubric import load as load_rubric
from grader.sandbox import fail_closed


@dataclass
class Job:
    """One student's job; `to_dict()` / `from_dict()` are its JSON form, the same keys."""

    student: str
    name: str
    folder: str | None  # the submission's files (absolute); None when it could not be read
    problem: str | None  # why it could not be read: every item then scores zero with this reason
    problem_kind: str | None  # "submission" (unreadable) or "empty"; grouped so in reports
    notes: list[str]
    sources: list[str]
    fingerprint: str  # of everything the verdict depends on (grader.fingerprint)
    rubric: str  # the rubric file (absolute)
    limits: dict  # the instructor's command-line overrides of the rubric's limits
    items: list[str] | None
    options: dict  # Options.to_job()
    threads: int
    out: str  # the class's output folder
    private: list[str]  # what the student's process must not read (the class, OUT)
    hard_limit_s: float
    reuse: str | None = None  # the run's grader.reuse store, when results are shared
    attempt: int = 1
    env: dict = field(default_factory=dict)  # environment for the job (a cluster's staged cache)
    progress_file: str | None = None  # on a cluster: where the current item is written for the batch

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def hard_limit_s(rubric: Rubric) -> float:
    """How long grading one student may take, all told: the submission's limit plus a margin."""
    return rubric.limits.timeout_s + max(60.0, 0.25 * rubric.limits.timeout_s)


_rubrics: dict[tuple, Rubric] = {}


def run_job(job: dict | Job, on_progress: Callable[[str], None] | None = None) -> dict:
    """Grade one student and write their results.json, feedback.md and record.json."""
    job = job if isinstance(job, Job) else Job.from_dict(job)
    started = time.monotonic()
    key = (job.rubric, json.dumps(job.limits, sort_keys=True))
    if key not in _rubrics:
        _rubrics[key] = load_rubric(job.rubric).with_limits(**job.limits)
    rubric = _rubrics[key]
    options = Options.from_job(job.options)
    record = {"student": job.student, "name": job.name, "fingerprint": job.fingerprint,
              "sources": job.sources, "notes": job.notes, "status": gradebook.GRADED, "error": None}
    report = None
    try:
        if job.problem:
            report = unreadable(rubric, job.items, job.problem, job.problem_kind or "submission")
        else:
            _set_threads(job.threads)
            reuse = Reuse.open(job.reuse)
            report = grading.grade(Path(job.folder), rubric, options, items=job.items, threads=job.threads,
                                   on_progress=on_progress, private_paths=[Path(p) for p in job.private],
                                   reuse=reuse, student_id=job.student)
    except (fail_closed.IsolationRefused, fail_closed.BoundaryLost) as e:
        # No OS sandbox for this student: not graded (no zero, no feedback), and the batch stops.
        record.update(status=gradebook.NOT_GRADED, error=f"not graded: {e}", isolation_refused=True)
    except Exception as e:  # the grader's own failure: reported, and retried by the next run
        record.update(status=gradebook.NOT_GRADED, error=f"internal grader error: {type(e).__name__}: {e}")
    record["seconds"] = round(time.monotonic() - started, 3)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["report"] = report.to_dict() if report is not None else None
    record["boundary"] = report.boundary if report is not None else "no student code ran"
    gradebook.write_student(Path(job.out), record, report, rubric.title)
    return record


def unreadable(rubric: Rubric, items: list[str] | None, problem: str, kind: str = "submission") -> GradeReport:
    """Every item at zero, with the reason the submission could not be read."""
    results = [ItemResult(id=i.id, title=i.title or i.id, points=0.0, max_points=i.points, status=FAILED,
                          message=f"not graded: {problem}", visibility=i.visibility, extra={"failure": kind})
               for i in rubric.select(items)]
    return GradeReport(assignment=rubric.assignment, submission="", results=results)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def main(argv: list[str] | None = None, prog: str = "python -m grader.batch.job") -> int:
    """`python -m grader.batch.job JOB.json`: grade one job where a cluster scheduler placed it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: {prog} JOB.json", file=sys.stderr)
        return 2
    record = run_job(json.loads(Path(args[0]).read_text()))
    print(json.dumps({"student": record["student"], "status": record["status"], "error": record["error"]}))
    return 0 if record["status"] == gradebook.GRADED else 1


if __name__ == "__main__":
    sys.exit(main())
