"""The grader's own errors: one base, so that the command line turns any of them into a
one-line message and an exit code in one place (grader.cli).

    class RubricError(GraderError): ...
    raise RubricError("rubric.yaml:3: missing 'files'")   # -> "error: rubric.yaml:3: ...", exit 2

exit_code 2 is the CLI's "could not do what was asked" (bad arguments, an unusable rubric,
a cluster refusing the jobs); 1 means a submission failed something.
"""

from __future__ import annotations


class GraderError(Exception):
    """Something the person running grader can act on; `message` says what (usually one line)."""

    exit_code: int = 2

    def __init__(self, message: str = "", *args):
        super().__init__(message, *args)
        self.message = str(message)
