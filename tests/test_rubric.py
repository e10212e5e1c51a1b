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
    (("points: 5", "points: -1"), 5, "item 'net.shape', points: -1 is too small: it must be at least 0.0"),
    (("check: output_shape", "check: shapez"), 6, "check: 'shapez' is not a check kind; the kinds are: output_shape"),
    (("expected: [1, 10]", "expected: [1, 10]\n    expect: [1]"), 10, "unknown field 'expect' (did you mean 'expected'?)"),
    (("target: {file: net.py", "target: {file: other.py"), 7, "'other.py' is not one of the rubric's files (net.py)"),
    (("assignment: demo", "assignment: my demo"), 1, "assignment: 'my demo' may contain only letters, digits"),
])
def test_errors_name_the_line_and_what_is_expected(change, line, text):
    with pytest.raises(RubricError) as caught:
        parse(MINIMAL.replace(*change))
    message = str(caught.value)
    assert f"<rubric>:{line}:" in message and text in message, message


def test_duplicate_ids_are_refused():
    doubled = MINIMAL + MINIMAL.split("items:\n")[1]
    with pytest.raises(RubricError, match="<rubric>:10: .*item id 'net.shape' is used twice"):
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
