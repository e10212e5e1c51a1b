"""The shared primitives: atomic writes, notebook code, the code hash, the checkpoint search order."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from grader import atomic, checkpoints
from grader.fingerprint import code_hash
from grader.notebook import code_text


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "grades.csv"
    atomic.write_text(target, "old\n")
    atomic.write_json(tmp_path / "sub" / "record.json", {"a": 1}, indent=1)
    assert target.read_text() == "old\n"
    assert json.loads((tmp_path / "sub" / "record.json").read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic.replacing(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "old\n"  # the reader still sees the whole old file
    assert sorted(p.name for p in target.parent.iterdir()) == ["grades.csv", "record.json"]


def _cell(source, kind="code"):
    return {"cell_type": kind, "source": source}


def test_notebook_code_reads_nbformat_4_and_3_alike():
    v4 = {"nbformat": 4, "cells": [_cell(["x = 1\n", "%matplotlib inline\n"]), _cell("# title", "markdown"),
                                   _cell("!pip install torch\ny = x")]}
    v3 = {"nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code", "input": ["x = 1\n", "%matplotlib inline\n"]},
                                                   {"cell_type": "markdown", "source": "# title"},
                                                   {"cell_type": "code", "input": "!pip install torch\ny = x"}]}]}
    assert code_text(json.dumps(v4)) == code_text(json.dumps(v3)) == "x = 1\n\ny = x\n"
    assert code_text("print('not a notebook')") == "print('not a notebook')"


def test_code_hash_of_a_notebook_is_that_of_its_code(tmp_path):
    (tmp_path / "a.ipynb").write_text(json.dumps({"cells": [_cell("x = 1  # mine")]}))
    (tmp_path / "b.py").write_text("x = 1  # mine\n")
    strip = lambda text: text.split("#")[0].strip()  # noqa: E731
    assert code_hash(tmp_path / "a.ipynb", strip) == code_hash(tmp_path / "b.py", strip)
    assert code_hash(tmp_path / "missing.py", strip) is None


def test_checkpoint_search_order_instructor_then_submission_then_rubric(tmp_path):
    options = SimpleNamespace(checkpoint_dirs=[tmp_path / "flag"])
    rubric = SimpleNamespace(checkpoint_dirs=lambda: [tmp_path / "rubric"])
    assert checkpoints.search_order(options, rubric, tmp_path / "student") == [
        tmp_path / "flag", tmp_path / "student", tmp_path / "rubric"]
    assert checkpoints.search_order(options, rubric) == [tmp_path / "flag", tmp_path / "rubric"]
