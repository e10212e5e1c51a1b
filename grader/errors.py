"""The grader's own errors: one base, so that the command line turns any of them into a
one-line message and an exit code in one place (grader.cli).

    class RubricError(GraderError): ...
    raise RubricError("rubric.yaml:3: missing 'files'")   # -> "error: rubric.yaml:3: ...", exit 2

exit_code 2 is the CLI's "could not do what was asked" (bad arguments, an unusable rubric,
a cluster refusing the jobs); 1 means a submission failed something.
"""

from __future__ import annotations

import builtins
import difflib


class GraderError(Exception):
    """Something the person running grader can act on; `message` says what (usually one line)."""

    exit_code: int = 2

    def __init__(self, message: str = "", *args):
        super().__init__(message, *args)
        self.message = str(message)


class StudentError(GraderError):
    """An error in the student's code, already turned into a report-ready dict."""

    def __init__(self, info: dict):
        super().__init__(info.get("message", ""))
        self.info = info


# -- a student's exception in one line (in the student's process) --------------------------

def exception_text(e: BaseException) -> str:
    """'AttributeError: ... has no attribute 'flaten'. Did you mean: 'flatten'?': the first line
    of the message, with the hint Python itself prints under a traceback."""
    text = f"{type(e).__name__}: {first_line(e)}"
    hint = suggestion(e)
    return f"{text}. Did you mean: {hint!r}?" if hint and "Did you mean" not in text else text


def suggestion(e: BaseException) -> str | None:
    """The close name Python's traceback would suggest for a misspelt attribute or name
    (Python 3.12 computes it in `traceback`; 3.11 only in its C excepthook)."""
    name = getattr(e, "name", None)
    if not isinstance(name, str) or not isinstance(e, (AttributeError, NameError)):
        return None
    try:
        if isinstance(e, AttributeError):
            obj = getattr(e, "obj", None)
            if obj is None:
                return None
            candidates = set(dir(obj))
            for table in ("_modules", "_parameters", "_buffers"):  # nn.Module keeps these out of dir() in old torch
                candidates.update(getattr(obj, "__dict__", {}).get(table) or {})
        else:
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            frame = tb.tb_frame if tb is not None else None
            candidates = set(dir(builtins)) | (set(frame.f_locals) | set(frame.f_globals) if frame else set())
    except Exception:  # the student's __dir__ may raise anything
        return None
    candidates.discard(name)
    close = difflib.get_close_matches(name, sorted(c for c in candidates if isinstance(c, str)), n=1, cutoff=0.75)
    return close[0] if close else None


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return first[:300]
