"""Write the list of check kinds in docs/rubric.md from the registered kinds (grader.checks.KINDS).

    python tools/docs_check_kinds.py

Run it after adding or renaming a kind, as `grader rubric schema -o ...` is run for the JSON
Schema: tests/test_docs.py fails while the page's list differs from what this writes.  Each row
links to the kind's own section of the page and gives the first sentence of its module's
docstring (the description editors show from the JSON Schema).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "rubric.md"
BEGIN = "<!-- check kinds: generated from grader.checks.KINDS by tools/docs_check_kinds.py; do not edit -->"
END = "<!-- end of the generated check kinds -->"
# A kind's own section: "## `output_shape`: the shape of what the model returns".
SECTION = re.compile(r"^## `(\w+)`: .*$", re.MULTILINE)


def sections(page: str) -> dict[str, str]:
    """Each documented kind and the heading of its section."""
    return {match[1]: match[0] for match in SECTION.finditer(page)}


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def summary(module) -> str:
    """The first sentence of the module's docstring, on one line."""
    paragraph = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=\.)\s", paragraph)[0]
    return sentence.rstrip(":.") + "."


def table(page: str, kinds: dict) -> str:
    headings = sections(page)
    rows = ["| `check:` | What it grades |", "|---|---|"]
    for kind, module in kinds.items():
        name = f"[`{kind}`](#{anchor(headings[kind])})" if kind in headings else f"`{kind}`"
        rows.append(f"| {name} | {summary(module)} |")
    return "\n".join(rows)


def render(page: str, kinds: dict | None = None) -> str:
    """The page with its generated block rewritten from `kinds` (default: the registered ones)."""
    if kinds is None:
        from grader.checks import KINDS as kinds
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    return page[:start] + "\n\n" + table(page, kinds) + "\n\n" + page[end:]


def main() -> int:
    page = PAGE.read_text()
    new = render(page)
    if new != page:
        PAGE.write_text(new)
        print(f"wrote the check kinds of {PAGE}")
    else:
        print(f"{PAGE}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
