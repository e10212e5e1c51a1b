"""docs/report.md and docs/gradescope.md are run, not only read: every `$` command on them runs
in a copy of the course folder, with the exit status and the output lines the page shows."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import ROOT
from tests.test_docs import _course_copy, parse, run_blocks

PAGES = ["report.md", "gradescope.md"]


@pytest.mark.parametrize("page", PAGES)
def test_every_command_on_the_page_runs(page, tmp_path):
    course = _course_copy(tmp_path)
    blocks = parse((ROOT / "docs" / page).read_text())
    expected = sum(len(b.commands) for b in blocks if b.kind == "console")
    assert expected >= 3
    assert len(run_blocks(blocks, course)) == expected
    if page == "report.md":
        html = (course / "out" / "report.html").read_text()
        assert 'data-table="grades"' in html and "<svg" in html
        # The batch recorded what graded it, and the rewritten page shows it.
        recorded = json.loads((course / "out" / ".grader" / "provenance.json").read_text())
        digest = hashlib.sha256((course / "rubrics" / "cnn_architecture.yaml").read_bytes()).hexdigest()
        assert recorded["rubric"]["sha256"] == digest and digest in html
    else:
        assert (course / "autograder" / "results" / "results.json").is_file()
