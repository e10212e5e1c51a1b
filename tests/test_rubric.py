"""Rubric files: validated on load, with the YAML line of every problem."""

from __future__ import annotations

import pytest

from grader.rubric import RubricError, parse
from tests.conftest import RUBRICS

MINIMAL = """\
assignment: demo
files: [net.py]
items:
  - id: net.shape
    points: 5
    check: output_shape
    target: {file: net.py, name: Net}
    inputs: [[1, 3, 32, 32]]
    expected: [1, 10]
"""


def test_every_shipped_rubric_loads():
    for path in RUBRICS.glob("*.yaml"):
        rubric = parse(path.read_text(), path)
        assert rubric.items and rubric.total_points > 0


def test_minimal_rubric():
    rubric = parse(MINIMAL)
    assert rubric.assignment == "demo" and rubric.total_points == 5
    assert rubric.items[0].expected == [1, 10]


@pytest.mark.parametrize("change, line, text", [
    (("points: 5", "points: -1"), 5, "items.0.points: Input should be greater than or equal to 0"),
    (("check: output_shape", "check: shapez"), 6, "items.0.check: unknown check kind; expected one of: output_shape"),
    (("expected: [1, 10]", "expected: [1, 10]\n    expect: [1]"), 10, "items.0.expect: unknown field (a typo?)"),
    (("target: {file: net.py", "target: {file: other.py"), 1, "uses 'other.py', which is not in files"),
    (("assignment: demo", "assignment: my demo"), 1, "assignment: String should match pattern"),
])
def test_errors_name_the_line_and_what_is_expected(change, line, text):
    with pytest.raises(RubricError) as caught:
        parse(MINIMAL.replace(*change))
    message = str(caught.value)
    assert f"<rubric>:{line}:" in message and text in message, message


def test_duplicate_ids_are_refused():
    doubled = MINIMAL + MINIMAL.split("items:\n")[1]
    with pytest.raises(RubricError, match="item id 'net.shape' is used twice"):
        parse(doubled)


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(RubricError, match=r"<rubric>:3: not valid YAML"):
        parse("assignment: demo\nfiles: [a.py\nitems: []\n")


def test_threshold_accepts_percentages():
    text = MINIMAL.replace("""    check: output_shape
    target: {file: net.py, name: Net}
    inputs: [[1, 3, 32, 32]]
    expected: [1, 10]""", """    check: accuracy
    target: {file: net.py, name: Net}
    threshold: 70""")
    assert parse(text).items[0].threshold == pytest.approx(0.70)
