"""Text that came from a student (file names, ids, names, messages), made safe to show.

A file name may hold newlines and terminal escape codes ("x\\n\\x1b[32mPASS 100/100");
printed as it is, it would draw fake lines in a report.  Everything shown to people
goes through `shown`: control characters (C0, DEL, C1) and the invisible characters
that reorder or hide text (bidirectional overrides, zero-width) are written as
visible escapes, so the text stays recognisable but can draw nothing.

Where the text lands decides the rest: `md` for a line of Markdown (feedback.md and summary.md
are rendered by LMSs and editors that pass HTML through), `code_span` and `fence` for code in
Markdown, `csv_cell` for a spreadsheet cell; HTML pages use html.escape on every string.
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


# In Markdown text: a '<' that could open a tag or an autolink, and a '&' that could open a
# character reference, become entities ("x < 99%" and "a & b" stay as they are); what starts a
# link, emphasis, code or a table cell is backslash-escaped.  '[' needs no escape once every
# ']' has one: no link, image or reference can close.
_MD_ENTITY = {"<": ("&lt;", re.compile(r"\S")), "&": ("&amp;", re.compile(r"[#A-Za-z0-9]"))}
_MD_ESCAPED = set("`*]|")
_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# What starts a block when it opens a line: a heading, list item, quote, fence, rule or reference.
_MD_LINE_START = re.compile(r"^(?:#|>|[-+*](?=\s|$|-)|\d{1,9}[.)](?=\s|$)|=|~|\[)")


def md(text) -> str:
    """One line of Markdown that every renderer shows as the text itself, never as HTML, a link,
    an image or emphasis (a table cell, a list item, a paragraph of a student's message)."""
    line = shown(str(text).replace("\r\n", " ").replace("\n", " "))
    opens = _MD_LINE_START.match(line)
    block = opens.end() - 1 if opens else -1  # the character that would open a block
    return "".join(_md_char(line, i, block) for i in range(len(line)))


def _md_char(line: str, i: int, block: int) -> str:
    ch, before, after = line[i], line[i - 1:i], line[i + 1:i + 2]
    if i == block:  # as a numeric reference it cannot open a block, in any renderer
        return f"&#{ord(ch)};"
    if ch in _MD_ENTITY and _MD_ENTITY[ch][1].match(after):
        return _MD_ENTITY[ch][0]
    if ch == "\\":  # a student's backslash cannot escape the escapes that follow it
        return "\\\\" if after and after in _PUNCTUATION else ch
    if ch in _MD_ESCAPED or (ch == "_" and not (before.isalnum() and after.isalnum())):
        return "\\" + ch  # snake_case stays readable: '_' inside a word is no emphasis
    return ch


def code_span(text) -> str:
    """Inline code in Markdown: its text shown as it is (HTML included) by every renderer.  A
    backtick would end the span, so it shows as a quote instead."""
    return "`" + shown(str(text).replace("\r\n", " ").replace("\n", " ")).replace("`", "'") + "`"


def fence(lines: list[str]) -> str:
    """A Markdown code fence longer than any run of backticks in `lines`, so the text cannot close it."""
    longest = max([len(run) for line in lines for run in re.findall(r"`+", line)] + [2])
    return "`" * (longest + 1)
