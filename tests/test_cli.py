"""The `grader` command as a user runs it: output, exit codes, JSON."""

from __future__ import annotations

import json

from tests.conftest import REFERENCE, ROOT, SKELETONS, run_cli

STRUCTURAL = "residual_block.downsample,residual_block.plain,resnet50_layer4.blanks"


def test_check_reference_exits_0_with_a_plain_table_when_piped():
    result = run_cli("check", str(REFERENCE / "cnn_architecture"), "--items", STRUCTURAL)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cnn_architecture: {REFERENCE / 'cnn_architecture'}"
    assert any(line.startswith("PASS") and "resnet50_layer4.blanks" in line and "25/25" in line for line in lines)
    assert any(line.startswith("TOTAL") and "65/65" in line for line in lines)
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe
    assert "Traceback" not in result.stdout + result.stderr


def test_check_skeleton_exits_1_and_says_why():
    result = run_cli("check", str(SKELETONS / "cnn_architecture"), "--items", STRUCTURAL)
    assert result.returncode == 1
    assert "SyntaxError" in result.stdout and "resnet50_skeleton.py:69" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_json_is_gradescope_results(tmp_path):
    result = run_cli("check", str(SKELETONS / "cnn_architecture"), "--rubric", "cnn_architecture", "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["score"] == 0 and isinstance(data["execution_time"], float)
    ids = [t["extra_data"]["id"] for t in data["tests"]]
    assert ids == ["residual_block.downsample", "residual_block.plain", "resnet50_layer4.blanks",
                   "resnet50_layer4.layer3", "resnet50_layer4.layer4", "resnet50_layer4.accuracy", "vgg16.accuracy"]
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "output", "visibility", "extra_data"}
        assert test["status"] in ("passed", "failed")
    # The skeleton's blanks do not parse: that is the file's failure (the report's output); Question 1
    # stays checkable and says what the untouched block lacks (blanks cost only the items needing them).
    assert "SyntaxError" in data["output"]
    assert "does not have the reference's layers" in data["tests"][0]["output"]


def test_missing_folder_is_a_usage_error():
    result = run_cli("check", "no/such/folder")
    assert result.returncode == 2
    assert "no/such/folder is not a folder" in result.stderr


def test_unknown_item_is_a_usage_error():
    result = run_cli("check", str(REFERENCE / "cnn_architecture"), "--items", "nope")
    assert result.returncode == 2
    assert "no item nope in cnn_architecture" in result.stderr


def test_broken_rubric_is_a_usage_error_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "rubrics" / "cnn_architecture.yaml").read_text().replace("points: 25", "points: many"))
    result = run_cli("check", str(REFERENCE / "cnn_architecture"), "--rubric", str(bad))
    assert result.returncode == 2
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "points: many" in text)
    assert f"bad.yaml:{line}: item 'resnet50_layer4.blanks', points: expected a number, found 'many'" in result.stderr


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("Run the tests:")[1].split("```console\n")[1].split("\n")[0]
    test_part = command.split("&&")[-1].strip()
    assert test_part in (ROOT / ".ci" / "run").read_text()


def _one_line_usage_error(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_mistyped_checkpoint_or_data_folder_is_a_usage_error_in_check_and_batch(tmp_path):
    folder = str(REFERENCE / "cnn_architecture")
    _one_line_usage_error(run_cli("check", folder, "--checkpoints", "/nonexistent"),
                          "--checkpoints /nonexistent: no such folder")
    _one_line_usage_error(run_cli("check", folder, "--data-dir", "/nonexistent"),
                          "--data-dir /nonexistent: no such folder")
    out = tmp_path / "out"
    _one_line_usage_error(run_cli("batch", str(tmp_path), "-r", "cnn_architecture", "-o", str(out),
                                  "--checkpoints", str(tmp_path / "nope")), "no such folder")
    _one_line_usage_error(run_cli("batch", str(tmp_path), "-r", "cnn_architecture", "-o", str(out),
                                  "--data-dir", str(tmp_path / "nope")), "--data-dir")
    assert not (out / "grades.csv").exists()  # nobody was graded 0 for the typo


def test_output_folder_that_is_a_file_is_a_usage_error(tmp_path):
    taken = tmp_path / "grades.txt"
    taken.write_text("mine")
    _one_line_usage_error(run_cli("batch", str(tmp_path), "-r", "cnn_architecture", "-o", str(taken)),
                          f"-o {taken} is a file")
    assert taken.read_text() == "mine"


def test_a_mistyped_item_gets_did_you_mean():
    result = run_cli("check", str(REFERENCE / "cnn_architecture"), "--items", "residual_block.downsampl")
    _one_line_usage_error(result, "no item residual_block.downsampl in cnn_architecture; "
                                  "did you mean residual_block.downsample")


def test_version_and_help_without_bool_types():
    import platform

    import torch

    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("grader ")
    assert f"torch {torch.__version__}" in version.stdout and f"Python {platform.python_version()}" in version.stdout
    for command in ([], ["check"], ["batch"], ["train"]):
        shown = run_cli(*command, "--help").stdout
        assert "<bool>" not in shown and "--help" in shown, command
