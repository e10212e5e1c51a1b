"""Grading a whole class: find the students, decide whom to (re)grade, grade them in
parallel, keep the gradebook current, summarise.

    result = batch.run(BatchConfig(submissions=..., rubric=..., out=...), display)

Grading one student is `grader.batch.job.run_job(job)`: grading.grade() in its own isolated
student process, then that student's files in OUT.  Where jobs run is an executor's business
(grader.batch.executors: a local process pool; grader.batch.slurm: a Slurm cluster).  Each student's record
carries a fingerprint of everything the verdict depends on, so rerunning the same
command grades only what changed, and a run killed at any point loses only the
students being graded at that moment.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from grader import atomic, checkpoints, datasets, fingerprint
from grader.batch import class_report, duplicates, gradebook, intake, records, scoring, submissions
from grader.batch.executors import Executor, LocalPool, StopBatch
from grader.batch.job import Job, hard_limit_s
from grader.batch.unpack import UnpackLimits
from grader.options import Options
from grader.results import ERROR
from grader.reuse import Reuse
from grader.rubric import Rubric, RubricError
from grader.rubric import load as load_rubric

STATE = ".grader"  # the batch's own files inside OUT


@dataclass
class BatchConfig:
    submissions: Path
    rubric: Path
    out: Path
    options: Options = field(default_factory=Options)
    items: list[str] | None = None
    limits: dict = field(default_factory=dict)  # timeout_s, item_timeout_s, memory_mb, output_mb overrides
    workers: int | None = None
    threads: int | None = None
    force: bool = False
    students: list[str] = field(default_factory=list)  # --student: grade only these (always regraded)
    unpack: UnpackLimits = field(default_factory=UnpackLimits)
    reuse: bool = True  # share results across students (grader.reuse); --no-reuse turns it off
    deadline: str | None = None  # --deadline: replaces the rubric's late.deadline


@dataclass
class Plan:
    rubric: Rubric
    items: list[tuple[str, str, float]]  # (id, title, points) graded, in rubric order
    intake: intake.Intake
    jobs: list[Job]
    records: dict[str, dict]  # student -> an up-to-date record (finished earlier)
    stale: list[str]  # students shown with an out-of-date record (not graded in this run)
    workers: int
    threads: int
    duplicates: duplicates.Found
    data_notes: list[str] = field(default_factory=list)
    # --items: student -> (earlier record, fingerprint once merged, None when the earlier one is out of date)
    merges: dict[str, tuple[dict, str | None]] = field(default_factory=dict)


@dataclass
class BatchResult:
    plan: Plan
    records: list[dict]
    summary: gradebook.Summary
    interrupted: bool = False
    stopped: str | None = None  # why the remaining students were refused (no OS sandbox)
    leaderboard: list[str] = field(default_factory=list)  # the challenge's top N, late work, adjustments


class Display:
    """What a batch tells the person watching it (grader.batch.progress has the real ones)."""

    def planned(self, plan: Plan) -> None: ...
    def started(self, job: Job) -> None: ...
    def progress(self, job: Job, text: str) -> None: ...
    def finished(self, record: dict) -> None: ...
    def queue(self, text: str) -> None: ...  # a cluster's queue: "Slurm: 3 queued, 2 running, ..."
    def note(self, text: str) -> None: ...  # what the executor did (staged data, adopted jobs, retries)
    def close(self) -> None: ...


# -- planning ---------------------------------------------------------------------


def plan(config: BatchConfig) -> Plan:
    rubric = load_rubric(config.rubric).with_limits(**config.limits)
    selected = rubric.select(config.items)
    out = Path(config.out)
    state = out / STATE
    state.mkdir(parents=True, exist_ok=True)
    expected = list(rubric.files) + sorted({i.checkpoint for i in rubric.items if getattr(i, "checkpoint", None)})
    found = intake.find(Path(config.submissions), expected, state, config.unpack, skip=[out])
    if config.students:
        known = {s.id for s in found.submissions}
        unknown = [s for s in config.students if s not in known]
        if unknown:
            raise RubricError(f"no student {', '.join(unknown)} in {config.submissions}; students: "
                              f"{', '.join(sorted(known)[:20])}{' ...' if len(known) > 20 else ''}")

    hashes = fingerprint.FileHashes(state / "file-hashes.json")
    data_id, data_notes = _data_identity(rubric, selected, config.options)
    common = {
        "grader": fingerprint.grader_version(),
        "rubric": records.measurement_identity(records.check_keys(rubric, hashes), selected),
        "instructor_checkpoints": {str(p): hashes.of(p) for p in _instructor_checkpoints(rubric, selected,
                                                                                          config.options)},
        "data": data_id,
        "items": [i.id for i in selected],
        "limits": rubric.limits.model_dump(),
        "options": {k: getattr(config.options, k) for k in ("device", "precision", "batch_size")},
    }
    workers, threads = resources(config.workers, config.threads, config.options.device, rubric.limits.memory_mb)
    file_hashes, jobs, done, stale, merges = {}, [], {}, [], {}
    for sub in found.submissions:
        files = _student_files(sub, hashes)
        file_hashes[sub.id] = files
        key = fingerprint.combine({**common, "files": files, "problem": sub.problem})
        previous = gradebook.load_record(out, sub.id)
        up_to_date = previous is not None and previous.get("fingerprint") == key and _final(previous)
        wanted = sub.id in config.students if config.students else (config.force or not up_to_date)
        if wanted:
            jobs.append(_job(config, rubric, sub, key, threads))
            if config.items and previous is not None and previous.get("measured"):
                merges[sub.id] = (previous, _merged_key(rubric, common, previous, selected, files, sub.problem,
                                                        hashes))
        elif up_to_date or (config.students and previous is not None):
            done[sub.id] = previous
            if not up_to_date:
                stale.append(sub.id)
    hashes.save()
    dupes = duplicates.find({s.id: s.folder for s in found.submissions if s.folder is not None},
                            [f for f in rubric.files if f.endswith((".py", ".ipynb"))], file_hashes,
                            handout=rubric.skeleton_dir(), reference=rubric.reference_dir(),
                            instructor_hashes=set(common["instructor_checkpoints"].values()))
    items = [(i.id, i.title or i.id, i.points) for i in selected]
    return Plan(rubric, items, found, jobs, done, stale, workers, threads, dupes, data_notes, merges)


def _merged_key(rubric: Rubric, common: dict, previous: dict, selected, files: dict, problem, hashes) -> str | None:
    """Regrading some items of a student whose other items are up to date: the fingerprint of the
    record once the new items are merged into the earlier ones (None when those are not up to date)."""
    earlier = [r["id"] for r in (previous.get("report") or {}).get("results", [])]
    if not earlier:
        return None
    keys = records.check_keys(rubric, hashes)
    own = {**common, "items": earlier,
           "rubric": records.measurement_identity(keys, [i for i in rubric.items if i.id in earlier])}
    if previous.get("fingerprint") != fingerprint.combine({**own, "files": files, "problem": problem}):
        return None
    ids = {i.id for i in selected} | set(earlier)
    union = [i for i in rubric.items if i.id in ids]
    merged = {**common, "items": [i.id for i in union], "rubric": records.measurement_identity(keys, union)}
    return fingerprint.combine({**merged, "files": files, "problem": problem})


def _student_files(sub: intake.Submission, hashes: fingerprint.FileHashes) -> dict[str, str]:
    """The student's file hashes; a file that cannot be read makes that student unreadable, no one else."""
    if sub.folder is None:
        return {}
    try:
        return fingerprint.tree(sub.folder, hashes)
    except (OSError, ValueError, RecursionError) as e:
        sub.problem = sub.problem or f"the submission could not be read: {type(e).__name__}: {e}"
        sub.folder = None
        return {}


def _final(record: dict) -> bool:
    """Graded, and without an item the grader itself failed on (those are retried)."""
    if record.get("status") != gradebook.GRADED:
        return False
    report = record.get("report") or {}
    return not any(r.get("status") == ERROR for r in report.get("results", []))


def _job(config: BatchConfig, rubric: Rubric, sub: intake.Submission, key: str, threads: int) -> Job:
    out = Path(config.out).resolve()
    return Job(
        student=sub.id, name=sub.name, folder=str(sub.folder.resolve()) if sub.folder else None,
        problem=sub.problem, problem_kind=sub.failure, notes=sub.notes, sources=sub.sources, fingerprint=key,
        rubric=str(Path(config.rubric).resolve()), limits=config.limits, items=config.items,
        options=config.options.to_job(), threads=threads, out=str(out),
        private=[str(Path(config.submissions).resolve()), str(out)],
        hard_limit_s=hard_limit_s(rubric),
    )


def resources(workers: int | None, threads: int | None, device: str, memory_mb: int) -> tuple[int, int]:
    """How many students at once, and CPU threads for each.

    Default: about two threads per student (one on a 2-core machine), no more students
    than memory allows (each may use the rubric's memory limit plus about 1.5 GB for
    the grader's side), and two per GPU.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers is None:
        workers = cpus if cpus <= 3 else cpus // 2
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
            workers = min(workers, max(1, memory // (memory_mb + 1536)))
        except (ValueError, OSError, AttributeError):
            pass
        if device.startswith("cuda"):
            import torch

            workers = min(workers, 2 * max(1, torch.cuda.device_count()))
    workers = max(1, workers)
    return workers, max(1, threads or cpus // workers)


def _instructor_checkpoints(rubric: Rubric, selected, options: Options) -> list[Path]:
    names = sorted({i.checkpoint for i in selected if getattr(i, "checkpoint", None)})
    found = []
    for folder in checkpoints.search_order(options, rubric):
        for name in names:
            if (Path(folder) / name).is_file():
                found.append((Path(folder) / name).resolve())
    return found


def _data_identity(rubric: Rubric, selected, options: Options) -> tuple[list, list[str]]:
    """Decode each test set once, before the workers start; its cache key identifies it."""
    specs = {}
    for item in selected:
        if item.check == "accuracy":
            spec = item.data or rubric.data
            specs[spec.model_dump_json()] = spec
    ident, notes = [], []
    for key, spec in sorted(specs.items()):
        try:
            data = datasets.load(spec, options.data_dir, download=options.download)
            ident.append([key, Path(data.images.path).name, data.source])
            if data.is_sample:
                notes.append(f"accuracy is measured on {data.source}: pass --data-dir with the full test set "
                             "for final grades")
        except datasets.DataNotFound as e:
            ident.append([key, "missing"])
            notes.append(f"accuracy items will be skipped: {e}")
    return ident, notes


# -- grading one student (runs wherever the executor puts it) ----------------------


# Grading one student (wherever the executor runs it) is grader.batch.job.run_job.


# -- the whole run ----------------------------------------------------------------


def run(config: BatchConfig, display: Display | None = None, executor: Executor | None = None) -> BatchResult:
    display = display or Display()
    started = time.monotonic()
    the_plan = plan(config)
    out = Path(config.out)
    names = {s.id: s.name for s in the_plan.intake.submissions}
    order = {s.id: n for n, s in enumerate(the_plan.intake.submissions)}
    layout = the_plan.intake.layout
    infos = {s.id: submissions.describe(s, layout) for s in the_plan.intake.submissions}
    scorer = scoring.Scorer.open(out, the_plan.rubric, deadline=config.deadline, device=config.options.device,
                                 students=set(order))
    scoring.save_settings(out, the_plan.rubric.path, config.deadline, config.options.device)
    # Earlier records are scored again: points, overrides or the late policy may have changed.
    records = {student: scorer.finish(record, fresh=student not in the_plan.stale, info=infos.get(student))
               for student, record in the_plan.records.items()}
    graded_now: set[str] = set()
    stopped: list[str] = []  # the reason a student could not be graded inside the OS sandbox

    def write_gradebook() -> None:
        ordered = sorted(records.values(), key=lambda r: order.get(r["student"], len(order)))
        gradebook.write_grades(out, columns(the_plan, ordered), ordered)

    if config.reuse and the_plan.jobs:  # one store, and one secret probe seed, per run
        store = Reuse.for_run(out / STATE).folder
        for job in the_plan.jobs:
            job.reuse = str(store)
    duplicates.write_csv(the_plan.duplicates, out / "duplicates.csv", names)
    write_gradebook()
    display.planned(the_plan)

    def on_event(kind: str, job: Job | None, payload) -> None:
        if kind == "started":
            display.started(job)
        elif kind == "progress":
            display.progress(job, str(payload))
        elif kind == "queue":
            display.queue(str(payload))
        elif kind == "note":
            display.note(str(payload))
        elif kind in ("done", "failed"):
            record = payload if kind == "done" else _failed_record(job, str(payload))
            record = _merge(the_plan, scorer, record)
            record = scorer.finish(record, fresh=True, info=infos.get(job.student))
            records[job.student] = record
            graded_now.add(job.student)
            write_gradebook()
            display.finished(record)
            if record.get("isolation_refused"):  # fail closed: no one else is graded without the sandbox
                stopped.append(f"{job.student} could not be graded inside the OS sandbox: {record.get('error')}")
                raise StopBatch(stopped[0])

    interrupted = False
    try:
        if the_plan.jobs:
            (executor or LocalPool(the_plan.workers)).run(the_plan.jobs, on_event)
    except KeyboardInterrupt:
        interrupted = True
    except StopBatch:
        pass  # said in summary.md and on the console (summary.stopped)
    finally:
        display.close()
    write_gradebook()  # again: an interrupt may have come between a record and its row
    ordered = sorted(records.values(), key=lambda r: order.get(r["student"], len(order)))
    shown = set(columns(the_plan, ordered))
    summary = gradebook.summarize(the_plan.rubric.assignment, [i for i in _all_items(the_plan.rubric) if i[0] in shown],
                                  ordered, regraded=len(graded_now), seconds=time.monotonic() - started,
                                  students=len(order))
    summary.duplicates = len(the_plan.duplicates.groups)
    summary.instructor_copies = the_plan.duplicates.instructor_copies
    summary.intake = _intake_notes(the_plan)
    summary.stopped = stopped[0] if stopped else None
    atomic.write_text(out / "summary.md", gradebook.summary_markdown(summary) + "\n".join(
        scoring.summary_sections(scorer, ordered)))
    class_report.write(out, rubric=the_plan.rubric, device=config.options.device)
    return BatchResult(the_plan, ordered, summary, interrupted, summary.stopped,
                       leaderboard=scoring.terminal_lines(scorer, ordered))


def _all_items(rubric: Rubric) -> list[tuple[str, str, float]]:
    return [(i.id, i.title or i.id, i.points) for i in rubric.items]


def columns(p: Plan, records_: list[dict]) -> list[str]:
    """grades.csv's item columns: the rubric's items that any record has, else the items graded now."""
    have = {r["id"] for record in records_ for r in (record.get("report") or {}).get("results", [])}
    have |= {i for i, _, _ in p.items}
    return [i.id for i in p.rubric.items if i.id in have]


def _merge(p: Plan, scorer: scoring.Scorer, record: dict) -> dict:
    """--items: the items regraded now, merged into the student's earlier record.  When the earlier
    items are out of date (the files changed), they are kept for the gradebook but the record's
    fingerprint is not a whole one, so the next full `grader batch` regrades the student."""
    earlier = p.merges.get(record["student"])
    if earlier is None or record.get("status") != gradebook.GRADED or not record.get("report"):
        return record
    previous, key = earlier
    record["measured"] = {**previous["measured"], **scorer.measured(record)}
    if key is not None:
        record["fingerprint"] = key
    else:
        record["notes"] = list(record.get("notes") or []) + [
            "items not regraded in this run are shown from an earlier grading of other files"]
    record.setdefault("provenance", {})["graded"] = scorer.provenance
    return record


def _failed_record(job: Job, why: str) -> dict:
    record = {"student": job.student, "name": job.name, "fingerprint": job.fingerprint,
              "sources": job.sources, "notes": job.notes, "status": gradebook.NOT_GRADED, "error": why,
              "seconds": None, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "report": None}
    gradebook.write_student(Path(job.out), record, None, "")
    return record


def _intake_notes(p: Plan) -> list[str]:
    notes = [f"layout: {p.intake.layout}"] + list(p.data_notes)
    for name in p.intake.unassigned:
        notes.append(f"{name}: belongs to no student (not graded)")
    for sub in p.intake.submissions:
        for note in sub.notes:
            notes.append(f"{sub.id}: {note}")
        if sub.problem:
            notes.append(f"{sub.id}: {sub.problem}")
    for student in p.stale:
        notes.append(f"{student}: shown from an earlier run; its files or the rubric changed since "
                     "(rerun without --student to regrade)")
    return notes
