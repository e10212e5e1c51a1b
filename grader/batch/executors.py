"""Where the students of a batch are graded.

A job is a grader.batch.job.Job describing one student; running it
means calling grader.batch.job.run_job(job), which grades the submission and writes
that student's outputs.  An executor only decides where and when that happens and
reports events back to the batch:

    ("started", job, None) ("progress", job, text) ("done", job, record) ("failed", job, why)
    ("queue", None, text)   a cluster's queue has changed: "Slurm: 3 queued, 2 running, 5 done, 0 failed"
    ("note", None, text)    something the instructor should know (data staged, jobs adopted, a retry)

on_event may raise StopBatch: the executor then ends its running jobs, submits no more, and
lets it propagate.

LocalPool runs jobs in a pool of worker processes on this machine;
grader.batch.slurm.SlurmExecutor runs each on a Slurm cluster, with the same `run(jobs, on_event)`.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from typing import Callable, Protocol

from grader.errors import GraderError
from grader.batch.job import Job, run_job
from grader.sandbox.children import main_module_hidden as _main_module_hidden

OnEvent = Callable[[str, Job | None, object], None]


class ExecutorError(GraderError):
    """The executor cannot run the batch at all (a cluster refused the jobs); the message says why."""


class StopBatch(GraderError):
    """Raised by a batch's on_event to end the run: the executor stops what is running (those
    students stay ungraded) and starts nothing more.  The batch raises it when a student could
    not be graded inside the OS sandbox (grader.sandbox.fail_closed)."""


class Executor(Protocol):
    def run(self, jobs: list[Job], on_event: OnEvent) -> None: ...


class _Slot:
    """One worker process and the job it is running."""

    def __init__(self, ctx):
        parent, child = ctx.Pipe(duplex=True)
        # Not a daemon: it starts student processes.  It dies with the batch (see _die_with_parent).
        self.process = ctx.Process(target=_serve, args=(child, os.getpid()), name="grader-worker")
        with _main_module_hidden():
            self.process.start()
        child.close()
        self.conn = parent
        self.job: Job | None = None
        self.deadline = 0.0

    def give(self, job: Job) -> None:
        self.job = job
        self.deadline = time.monotonic() + float(job.hard_limit_s or 3600)
        self.conn.send(job)

    def stop(self, kill: bool = False) -> None:
        if self.process.is_alive() and not kill:
            try:
                self.conn.send(None)
                self.process.join(timeout=5)
            except (OSError, ValueError):
                pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class LocalPool:
    """`workers` processes on this machine; each grades one student at a time.

    A worker that dies (the grader's own process running out of memory, say) costs
    only its current student, who is tried once more; a student still running past
    the job's hard limit is stopped and reported.
    """

    def __init__(self, workers: int):
        self.workers = max(1, workers)

    def run(self, jobs: list[Job], on_event: OnEvent) -> None:
        ctx = multiprocessing.get_context("spawn")
        pending = collections.deque(jobs)
        slots: list[_Slot] = []
        try:
            while pending or any(s.job for s in slots):
                self._assign(ctx, slots, pending, on_event)
                busy = [s for s in slots if s.job is not None]
                ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=0.5)
                for slot in busy:
                    self._collect(slot, ready, pending, on_event)
                slots = [s for s in slots if s.process.is_alive() or s.job is not None]
        finally:
            for slot in slots:
                slot.stop(kill=slot.job is not None)

    def _assign(self, ctx, slots: list[_Slot], pending, on_event: OnEvent) -> None:
        while pending:
            idle = next((s for s in slots if s.job is None and s.process.is_alive()), None)
            if idle is None:
                if len(slots) >= self.workers:
                    return
                idle = _Slot(ctx)
                slots.append(idle)
            job = pending.popleft()
            idle.give(job)
            on_event("started", job, None)

    def _collect(self, slot: _Slot, ready, pending, on_event: OnEvent) -> None:
        job = slot.job
        dead = False
        if slot.conn in ready or slot.process.sentinel in ready:
            try:
                while slot.conn.poll():
                    kind, payload = slot.conn.recv()
                    if kind == "progress":
                        on_event("progress", job, payload)
                    elif kind == "done":
                        slot.job = None
                        on_event("done", job, payload)
                        return
                    elif kind == "error":
                        slot.job = None
                        on_event("failed", job, f"internal grader error: {payload}")
                        return
            except (EOFError, OSError):
                dead = True
            if not slot.process.is_alive():
                dead = True
        if dead:
            slot.job = None
            slot.stop(kill=True)
            code = slot.process.exitcode
            if job.attempt < 2:
                pending.appendleft(dataclasses.replace(job, attempt=job.attempt + 1))
                return
            on_event("failed", job, f"the grader's worker process ended unexpectedly (exit code {code}), twice")
        elif time.monotonic() > slot.deadline:
            slot.job = None
            slot.stop(kill=True)
            on_event("failed", job, f"grading took longer than {job.hard_limit_s:g} s and was stopped")


def _serve(conn, parent_pid: int) -> None:
    """A worker process: grade the jobs it is sent until told to stop."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the batch decides what Ctrl-C stops
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        try:
            record = run_job(job, on_progress=lambda text: conn.send(("progress", text)))
            conn.send(("done", record))
        except Exception as e:  # a bug in the grader costs this student only, and is reported
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _die_with_parent(parent_pid: int) -> None:
    """A killed batch must not leave workers behind (they end their students' processes in turn)."""
    if sys.platform == "linux":
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
