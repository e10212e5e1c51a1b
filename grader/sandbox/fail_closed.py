"""When students' code may run without the OS boundary: never, unless the run says so.

    boundary = fail_closed.require(allow_unisolated=options.may_run_unisolated())

`require` is asked at the start of every run that executes a submission (grading.grade and
grading.train, hence `grader check`, batch workers, Slurm tasks, the Gradescope autograder).
It probes bubblewrap afresh each time, so a boundary lost in the middle of a batch is found
at the next student rather than trusted from the first probe.  Without the boundary it
raises `IsolationRefused`, unless the run allowed it: `--unsafe-no-isolation` given for this
run (Options.unsafe_no_isolation, carried by each job), or a self-check of one's own code
(Options.self_check: a student's `grader check` with the public rubric on a laptop without
bubblewrap), which then runs with a loud note.

A sandbox that cannot be started once grading has begun is `BoundaryLost`: the student is
not graded (an error record, never a zero), and a batch refuses the students after them.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from grader.errors import GraderError
from grader.sandbox import boundary

BUBBLEWRAP = "bubblewrap"
NONE = "none"


class IsolationRefused(GraderError):
    """Students' code would run without the OS boundary and this run did not allow it."""

    exit_code = 2

    def __init__(self, why: str):
        super().__init__(f"students' code cannot run inside the OS sandbox here ({why}); nothing was run. "
                         "Install bubblewrap (apt-get install bubblewrap), or pass --unsafe-no-isolation to run "
                         "it unisolated on purpose")
        self.why = why


class BoundaryLost(GraderError):
    """The sandbox could not be started for a student after grading began (bubblewrap broke)."""

    exit_code = 2

    def __init__(self, why: str):
        super().__init__(f"the OS sandbox could not be started for this student ({why}); not graded rather "
                         "than graded without isolation")
        self.why = why


def require(allow_unisolated: bool) -> str:
    """The boundary this run's student code will run in: "bubblewrap", or "none" when allowed."""
    works, why = _probe_twice()
    if works:
        return BUBBLEWRAP
    if allow_unisolated:
        return NONE
    raise IsolationRefused(why)


def check_still_works(error: Exception) -> None:
    """After a sandbox failed to start: raise BoundaryLost when bubblewrap itself no longer starts
    (the machine's fault); return when it does (the sandbox died of what ran inside it)."""
    works, why = _probe_twice()
    if not works:
        raise BoundaryLost(f"{why}; {str(error)[:300]}")


def _probe_twice() -> tuple[bool, str]:
    """bubblewrap tried now, and once more a moment later when it fails: a passing shortage (no
    free process slot, say) must not stop a class; a broken bubblewrap fails both."""
    works, why = boundary.probe_again()
    if not works and _might_start():
        time.sleep(0.5)
        works, why = boundary.probe_again()
    return works, why


def _might_start() -> bool:
    """bubblewrap is there and not switched off: a failure to start may be a passing one."""
    return sys.platform == "linux" and shutil.which("bwrap") is not None \
        and os.environ.get("GRADER_NO_ISOLATION") != "1"
