"""Text that came from a student (file names, ids, names, messages), made safe to show.

A file name may hold newlines and terminal escape codes ("x\\n\\x1b[32mPASS 100/100");
printed as it is, it would draw fake lines in a report.  Everything shown to people
goes through `shown`: control characters (C0, DEL, C1) and the invisible characters
that reorder or hide text (bidirectional overrides, zero-width) are written as
visible escapes, so the text stays recognisable but can draw nothing.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, bidi embeddings/overrides/isolates, zero-width and BOM.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")


def _escape(m: re.Match) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text, keep_newlines: bool = False) -> str:
    """`text` with every control or invisible character written as an escape (\\n, \\x1b, \\u202e).

    keep_newlines: for multi-line text shown as a block (a program's output); tabs are kept too.
    """
    text = str(text)
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(lambda m: "    " if m.group() == "\t" else _escape(m), line)
                         for line in text.replace("\r\n", "\n").split("\n"))
    return _UNSAFE.sub(_escape, text)


def csv_cell(text) -> str:
    """A text cell for a CSV file opened in a spreadsheet: escaped, and never a formula
    ('=cmd|...' becomes "'=cmd|...", as OWASP advises)."""
    text = shown(text)
    return "'" + text if text.startswith(_FORMULA) else text


def md(text) -> str:
    """Escaped for one line of Markdown (a table cell or a list item)."""
    return shown(text).replace("|", "\\|")


def fence(lines: list[str]) -> str:
    """A Markdown code fence longer than any run of backticks in `lines`, so the text cannot close it."""
    longest = max([len(run) for line in lines for run in re.findall(r"`+", line)] + [2])
    return "`" * (longest + 1)
