"""What a student's code prints reaches the report, flushed or not (print() to a pipe is
block-buffered: without the worker flushing, the last lines were lost when it ended)."""

from __future__ import annotations

from grader import grading, rubric
from grader.options import Options
from tests.hostile.tiny_course import ANSWER, write_course


def test_unflushed_prints_reach_the_report(tmp_path):
    rubric_path = write_course(tmp_path)
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "answer.py").write_text('print("hello from alice, never flushed")\n' + ANSWER.replace(
        "    return", '    print("inside double")\n    return'))
    options = Options()
    options.unsafe_no_isolation = True  # the same with or without the sandbox: the worker's own stream
    report = grading.grade(folder, rubric.load(rubric_path), options)
    assert report.score == 5
    assert "hello from alice, never flushed" in report.output
    assert "inside double" in report.output
