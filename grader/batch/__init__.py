"""Grading a whole class: intake -> plan -> jobs -> executor -> gradebook.

    from grader import batch
    result = batch.run(batch.BatchConfig(submissions=..., rubric=..., out=...), display)

The modules, in the order a run uses them:
  intake, unpack  find each student's submission in a class folder or an LMS download
  duplicates      identical or near-identical submissions, and copies of the instructor's files
  pipeline        plan the run (whom to regrade), hand the jobs to an executor, write the summary
  job             one student's job, and run_job: the one way a job is graded, wherever it runs
  executors       a local pool of worker processes; slurm: a Slurm cluster (staging: its shared data)
  records         what each item measured, apart from its points, and what produced it
  scoring         points from records under the current rubric, overrides, late policy, leaderboard
  overrides, late OUT/overrides.yaml; the rubric's late policy; submissions: times and ids from the download
  rescore         `grader rescore`: the whole gradebook again from the records
  exports         `grader export`: Canvas, Moodle, Gradescope and generic CSV files
  gradebook       grades.csv, each student's record and feedback, summary.md
  progress        what the person watching sees

The names below are loaded on first use, so that a worker or a cluster node that only runs
`grader.batch.job` does not import the planning side.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BatchConfig": "pipeline", "BatchResult": "pipeline", "Display": "pipeline", "Plan": "pipeline",
    "STATE": "pipeline", "plan": "pipeline", "resources": "pipeline", "run": "pipeline",
    "Job": "job", "hard_limit_s": "job", "run_job": "job", "unreadable": "job", "load_rubric": "job",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'grader.batch' has no attribute {name!r}")
    return getattr(importlib.import_module(f"grader.batch.{module}"), name)


def __dir__():
    return sorted({*globals(), *_EXPORTS})
