"""A file with a blank that does not parse, imported without the statements that do not.

A skeleton has many blanks (`nn.Conv2d(#blank#, ...)`); one left unparsable must cost the
items that need its class, not every item of the file: ResidualBlock (Question 1) stays
checkable while a blank of ResNet50_layer4 does not parse.  The top-level statement that
holds the SyntaxError is left out (its lines become blank, so every other line keeps its
number), again until the rest parses; the names it would have defined are remembered with
the error, which is what an item asking for them fails with.
"""

from __future__ import annotations

import re

_MAX_BROKEN = 50  # statements left out, at most, before the file counts as not Python
_DEFINES = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)|^(\w+)\s*(?::[^=]*)?=(?!=)")


def partial_source(source: str, filename: str) -> tuple[str, list[dict]] | None:
    """(the source without its unparsable top-level statements, what each left out would define
    and why it failed), or None when nothing is left out that way (the first error stands)."""
    lines = source.splitlines()
    broken: list[dict] = []
    for _ in range(_MAX_BROKEN):
        text = "\n".join(lines) + "\n"
        try:
            compile(text, filename, "exec", dont_inherit=True)
            return (text, broken) if broken else None
        except SyntaxError as e:
            span = _statement_at(lines, e.lineno) if e.lineno else None  # no line: not a blank to leave out
            if span is None:
                return None
            start, end = span
            names = _defined(lines[start:end])
            broken.append({"names": names, "line": e.lineno, "message": f"SyntaxError: {e.msg}",
                           "code": (e.text or "").rstrip() or None, "start": start + 1})
            lines[start:end] = [""] * (end - start)
        except (ValueError, RecursionError, MemoryError):  # null bytes, nesting too deep: not for us to mend
            return None
    return None


def _statement_at(lines: list[str], lineno: int) -> tuple[int, int] | None:
    """[start, end) of the top-level statement holding 1-based line `lineno`: from the last line
    at column 0 at or before it (with its decorators) to the next one after it."""
    index = min(max(lineno, 1), len(lines)) - 1
    starts = [i for i, line in enumerate(lines) if _starts_statement(line)]
    before = [i for i in starts if i <= index]
    if not before:
        return None
    start = before[-1]
    while start > 0 and lines[start - 1].startswith("@"):  # a decorated def: its decorators too
        start -= 1
    after = [i for i in starts if i > index and not lines[i].startswith("@")] + [len(lines)]
    end = after[0]
    if all(not line.strip() for line in lines[start:end]):
        return None
    return start, end


def _starts_statement(line: str) -> bool:
    return bool(line) and not line[0].isspace() and line[0] not in "#)]}"


def _defined(lines: list[str]) -> list[str]:
    names = []
    for line in lines:
        match = _DEFINES.match(line)
        if match:
            names.append(match.group(1) or match.group(2))
    return list(dict.fromkeys(names))
