"""`grader rubric validate|show|schema`: errors an instructor can act on (line, place,
what is expected), a summary of items and visibility, and a JSON Schema for editors
that is regenerated from the models (a stale committed schema fails here)."""

from __future__ import annotations

import io
import json
import textwrap

import pytest
import yaml
from rich.console import Console

from grader import rubric
from grader.authoring import rubric_tools
from grader.checks import KINDS
from tests.conftest import ROOT, RUBRICS, course_copy, run_cli

SCHEMA = ROOT / "grader" / "schema" / "rubric.schema.json"

BAD = textwrap.dedent("""\
    assignment: demo
    files: [model.py]
    items:
      - id: a
        points: ten
        check: param_count
        target: {file: model.py, name: Net}
      - id: b
        points: 5
        check: acuracy
        target: {file: model.py, name: Net}
      - id: c
        points: 5
        check: accuracy
        target: {file: model.py, name: Net}
        treshold: 0.8
      - id: d
        points: 5
        visibility: secret
        check: output_shape
        target: {file: other.py}
        inputs: [[1, 3, 32, 32]]
      - id: e
        points: 1
        points: 2
        check: accuracy
        threshold: 180
        target: {file: model.py, name: Net}
    """)


def test_validate_reports_every_problem_with_its_line_and_what_is_expected(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(BAD)
    done = run_cli("rubric", "validate", str(path))
    assert done.returncode == 1
    out = done.stdout
    expected = [
        f"{path}:5: item 'a', points: expected a number, found 'ten'",
        f"{path}:10: item 'b', check: 'acuracy' is not a check kind (did you mean 'accuracy'?); the kinds are: "
        + ", ".join(KINDS),
        f"{path}:12: item 'c': missing 'threshold': minimum test accuracy, as a fraction (0.8) or a percentage (80)",
        f"{path}:16: item 'c': unknown field 'treshold' (did you mean 'threshold'?); the fields here are: id, title, "
        "points, visibility, timeout_s, limits, check, target, checkpoint, threshold, data, train, recipes",
        f"{path}:19: item 'd', visibility: 'secret' is not allowed; one of: visible, hidden, after_due_date, "
        "after_published",
        f"{path}:21: item 'd', target: missing 'name': class or function in that file, e.g. ResidualBlock or vgg16",
        f"{path}:25: 'points' is given twice in this mapping (first at line 24); the first would be ignored",
        f"{path}:27: item 'e', threshold: 180 is neither a fraction between 0 and 1 (0.8) nor a percentage (80)",
    ]
    for line in expected:
        assert line in out.splitlines(), f"missing:\n{line}\nin:\n{out}"
    assert "Traceback" not in out + done.stderr


def test_rubric_wide_rules_point_at_the_offending_line(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(textwrap.dedent("""\
        assignment: demo
        files: [model.py]
        items:
          - {id: a, points: 1, check: param_count, target: {file: model.py, name: Net}, expected: 3}
          - id: b
            points: 1
            check: param_count
            expected: 3
            target:
              name: Net
              file: helpers.py
        """))
    with pytest.raises(rubric.RubricError) as caught:
        rubric.load(path)
    assert str(caught.value) == f"{path}:11: item 'b', target.file: 'helpers.py' is not one of the rubric's files (model.py)"
    path.write_text(path.read_text().replace("id: b", "id: a").replace("helpers.py", "model.py"))
    with pytest.raises(rubric.RubricError) as caught:
        rubric.load(path)
    assert str(caught.value) == f"{path}:5: item 'a', id: item id 'a' is used twice"


def test_yaml_syntax_errors_have_a_line(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("assignment: demo\nfiles: [model.py\nitems: []\n")
    done = run_cli("rubric", "validate", str(path))
    assert done.returncode == 1
    assert f"{path}:3: not valid YAML" in done.stdout


def test_validate_the_course_rubrics():
    names = [p.stem for p in sorted(RUBRICS.glob("*.yaml"))]
    done = run_cli("rubric", "validate", *names)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cnn_architecture.yaml: valid: 7 items, 125 points (100 public, 25 hidden)" in done.stdout
    assert "warning" not in done.stdout and "error" not in done.stdout


def test_validate_checks_the_rubric_against_reference_skeleton_and_visibility(tmp_path):
    course = course_copy(tmp_path)
    path = course / "rubrics" / "cnn_architecture.yaml"
    text = path.read_text()
    text = text.replace("target: {file: vgg16_full.py, name: vgg16}", "target: {file: vgg16_full.py, name: vgg19}")
    text = text.replace("    visibility: after_published\n", "", 1)  # the blanks become visible
    path.write_text(text)
    ref = course / "reference_solutions" / "cnn_architecture" / "main.py"
    ref.write_text(ref.read_text() + "\n# a new comment\n")
    done = run_cli("rubric", "validate", "cnn_architecture", cwd=course)
    assert done.returncode == 1
    lines = text.splitlines()
    vgg_line = next(i for i, line in enumerate(lines, 1) if "name: vgg19" in line)
    blanks_line = next(i for i, line in enumerate(lines, 1) if "id: resnet50_layer4.blanks" in line)
    skeleton_line = next(i for i, line in enumerate(lines, 1) if line.startswith("skeleton:"))
    out = done.stdout
    assert f"cnn_architecture.yaml:{vgg_line}: error: item 'vgg16.accuracy': the reference vgg16_full.py defines no vgg19" in out
    assert (f"cnn_architecture.yaml:{blanks_line}: warning: item 'resnet50_layer4.blanks' is visible: a blank's "
            "expected value is an answer") in out
    assert (f"cnn_architecture.yaml:{skeleton_line}: warning: the skeleton is out of date (main.py): run "
            "`grader skeleton cnn_architecture`") in out
    assert "invalid: 7 items, 125 points (125 public, 0 hidden)" in out


def test_show_plain_when_piped(tmp_path):
    done = run_cli("rubric", "show", "cnn_architecture")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert rows[0] == "cnn_architecture: CNN Architecture: ResidualBlock, ResNet50_layer4, VGG16"
    assert any(r.split()[:4] == ["resnet50_layer4.blanks", "25", "after_published", "blanks"] for r in rows)
    assert any(r.split()[:4] == ["vgg16.accuracy", "10", "visible", "accuracy"] for r in rows)
    assert rows[-1].split()[:2] == ["TOTAL", "125"]
    assert "100 public (students self-check), 25 hidden" in rows[-1]


def test_show_json():
    done = run_cli("rubric", "show", str(RUBRICS / "cnn_architecture.yaml"), "--json")
    data = json.loads(done.stdout)
    assert data["total_points"] == 125 and data["public_points"] == 100 and data["hidden_points"] == 25
    by_id = {i["id"]: i for i in data["items"]}
    assert by_id["residual_block.plain"] == {"id": "residual_block.plain", "title": "Q1 ResidualBlock, downsample=False",
                                             "check": "equivalence", "points": 20, "visibility": "visible",
                                             "needs_reference": True}
    assert [i["id"] for i in data["items"]][:2] == ["residual_block.downsample", "residual_block.plain"]


def test_show_is_a_table_on_a_terminal():
    out = io.StringIO()
    rubric_tools.show(rubric.load(RUBRICS / "cnn_architecture.yaml"), Console(file=out, force_terminal=True, color_system=None, width=160))
    text = out.getvalue()
    assert "┃ Item" in text and "Visibility" in text and "125" in text
    assert "100 public (students self-check), 25 hidden" in text


# -- the JSON Schema --------------------------------------------------------------------


def test_committed_schema_is_up_to_date():
    generated = json.dumps(rubric.json_schema(), indent=2) + "\n"
    assert SCHEMA.read_text() == generated, "regenerate it: grader rubric schema -o grader/schema/rubric.schema.json"


def test_schema_command_prints_it():
    done = run_cli("rubric", "schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == json.loads(SCHEMA.read_text())


def test_every_rubric_names_the_schema_for_editors():
    for path in RUBRICS.glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../grader/schema/rubric.schema.json", path
        assert (path.parent / "../grader/schema/rubric.schema.json").resolve() == SCHEMA


def _conforms(value, schema: dict, root: dict, where: str) -> list[str]:
    """A small structural check of a YAML value against the schema (types, required, extra keys, enums)."""
    if "$ref" in schema:
        return _conforms(value, root["$defs"][schema["$ref"].split("/")[-1]], root, where)
    if "oneOf" in schema:  # the check kinds: pick by discriminator
        mapping = schema["discriminator"]["mapping"]
        tag = value.get(schema["discriminator"]["propertyName"])
        if tag not in mapping:
            return [f"{where}: unknown check {tag!r}"]
        return _conforms(value, {"$ref": mapping[tag]}, root, where)
    if "anyOf" in schema:
        options = [_conforms(value, option, root, where) for option in schema["anyOf"]]
        return [] if any(not o for o in options) else options[0]
    problems = []
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool,
             "null": type(None)}
    if kind and not isinstance(value, types[kind]):
        return [f"{where}: expected {kind}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: {value!r} is not {schema['const']!r}")
    if kind == "object":
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: missing {key}")
        for key, sub in value.items():
            if key in properties:
                problems += _conforms(sub, properties[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: {key} not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += _conforms(sub, schema["additionalProperties"], root, f"{where}.{key}")
    if kind == "array" and "items" in schema:
        for index, sub in enumerate(value):
            problems += _conforms(sub, schema["items"], root, f"{where}[{index}]")
    return problems


@pytest.mark.parametrize("path", sorted(RUBRICS.glob("*.yaml")), ids=lambda p: p.stem)
def test_course_rubrics_conform_to_the_schema(path):
    schema = json.loads(SCHEMA.read_text())
    assert _conforms(yaml.safe_load(path.read_text()), schema, schema, path.stem) == []


def test_the_schema_rejects_what_the_models_reject():
    schema = json.loads(SCHEMA.read_text())
    data = yaml.safe_load(BAD.replace("points: ten", "points: 1").replace("check: acuracy", "check: accuracy"))
    problems = _conforms(data, schema, schema, "demo")
    assert any("treshold not allowed" in p for p in problems)
    assert any("'secret' not in" in p for p in problems)
    assert any("missing name" in p for p in problems)
