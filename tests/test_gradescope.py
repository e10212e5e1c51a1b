"""`grader bundle ASSIGNMENT --gradescope`: the zip Gradescope takes, installed by its setup.sh from
the wheel it carries (no network), then run_autograder on a simulated /autograder tree
(AUTOGRADER_ROOT) for a reference submission and a broken one; each results.json is checked
against Gradescope's documented format."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from numbers import Number
from pathlib import Path

import pytest
import yaml

from grader.authoring import gradescope
from grader.device import resolve
from tests.conftest import REFERENCE, ROOT, RUBRICS, run_cli

# Gradescope's results.json (https://gradescope-autograders.readthedocs.io/en/latest/specs/).
TOP_LEVEL = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
             "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
               "visibility", "extra_data"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def validate(data: dict) -> None:
    """Fail on anything Gradescope's results.json does not document, or documents otherwise."""
    assert isinstance(data, dict) and set(data) <= TOP_LEVEL, set(data) - TOP_LEVEL
    tests = data.get("tests", [])
    assert "score" in data or all("score" in t for t in tests), "a score: overall or in every test"
    if "score" in data:
        assert isinstance(data["score"], Number)
    for key in ("execution_time",):
        assert key not in data or isinstance(data[key], Number)
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in VISIBILITY, (key, data.get(key))
    for key in ("output_format", "test_output_format", "test_name_format"):
        assert data.get(key, "text") in FORMATS
    assert isinstance(data.get("output", ""), str) and isinstance(tests, list)
    for test in tests:
        assert set(test) <= TEST_FIELDS, set(test) - TEST_FIELDS
        assert isinstance(test.get("name", ""), str) and isinstance(test.get("output", ""), str)
        for key in ("score", "max_score"):
            assert key not in test or isinstance(test[key], Number)
        assert test.get("status", "passed") in {"passed", "failed"}
        assert test.get("visibility", "visible") in VISIBILITY
        assert isinstance(test.get("tags", []), list) and isinstance(test.get("extra_data", {}), dict)
    for entry in data.get("leaderboard", []):
        assert set(entry) <= {"name", "value", "order"} and isinstance(entry["name"], str)
        assert isinstance(entry["value"], (Number, str)) and entry.get("order", "desc") in {"asc", "desc"}


def test_the_validator_refuses_what_gradescope_does_not_take():
    good = {"score": 1.0, "tests": [{"name": "a", "score": 1.0, "max_score": 1.0, "status": "passed",
                                     "visibility": "visible"}], "leaderboard": [{"name": "Accuracy", "value": 91.5}]}
    validate(good)
    for broken in ({**good, "scores": 1}, {**good, "visibility": "students"},
                   {**good, "tests": [{**good["tests"][0], "status": "partial"}]},
                   {**good, "tests": [{**good["tests"][0], "visibility": "after_due"}]},
                   {**good, "leaderboard": [{"name": "Accuracy", "value": 1, "order": "up"}]}):
        with pytest.raises(AssertionError):
            validate(broken)


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory, cnn_checkpoints, labelled_by_resnet) -> Path:
    out = tmp_path_factory.mktemp("gradescope") / "autograder.zip"
    done = run_cli("bundle", "cnn_architecture", "--gradescope", "-o", str(out), "-c", str(cnn_checkpoints),
                   "--data-dir", str(labelled_by_resnet))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "note:" not in done.stderr  # everything the items need is carried
    return out


def test_the_zip_holds_what_gradescope_runs(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        names = z.namelist()
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        text = z.read("cnn_architecture.yaml").decode()
        run_script = z.read("run_autograder").decode()
    for script in ("setup.sh", "run_autograder"):  # at the root of the zip, executable
        assert script in names and modes[script] & stat.S_IXUSR
    assert 'ROOT="${AUTOGRADER_ROOT:-/autograder}"' in run_script
    assert {"reference/resnet50_skeleton.py", "checkpoints/resnet50_epoch285.ckpt", "checkpoints/vgg16_epoch250.ckpt",
            "wheels/cnn_grader-0.1.0-py3-none-any.whl"} <= set(names)
    assert any(n.startswith("data/") for n in names)
    # The full rubric: every item, hidden ones too, its paths pointing inside the zip.
    full, carried = yaml.safe_load((RUBRICS / "cnn_architecture.yaml").read_text()), yaml.safe_load(text)
    assert [i["id"] for i in carried["items"]] == [i["id"] for i in full["items"]]
    assert [i.get("visibility") for i in carried["items"]] == [i.get("visibility") for i in full["items"]]
    assert any(i.get("visibility") == "after_published" for i in carried["items"])  # hidden ones too
    assert carried["reference"] == "reference" and carried["checkpoints"] == "checkpoints"
    assert "skeleton" not in carried


def _tree(tmp_path: Path, autograder_zip: Path) -> Path:
    root = tmp_path / "autograder"
    for folder in ("source", "submission", "results"):
        (root / folder).mkdir(parents=True)
    with zipfile.ZipFile(autograder_zip) as z:
        z.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):  # zipfile does not restore modes; Gradescope's unzip does
        (root / "source" / script).chmod(0o755)
    return root


def _environment(site: Path) -> dict:
    env = dict(os.environ)
    env["GRADER_PYTHON"] = sys.executable
    # The installed wheel's grader first, never this checkout's; its dependencies from the test environment.
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(site), *kept])
    return env


def test_setup_then_run_autograder_on_a_simulated_tree(tmp_path, autograder_zip):
    root = _tree(tmp_path, autograder_zip)
    site = tmp_path / "site"
    env = _environment(site)
    # setup.sh as Gradescope runs it, its pip pointed at a folder and kept offline: the wheel installs alone.
    setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], capture_output=True, text=True, timeout=300,
                           env={**env, "PIP_TARGET": str(site), "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1"},
                           cwd=tmp_path)
    assert setup.returncode == 0 and "grader installed" in setup.stdout, setup.stdout + setup.stderr
    assert (site / "grader" / "authoring" / "gradescope.py").is_file()
    assert (site / "grader" / "data").is_dir() and list((site / "grader" / "schema").glob("*.json"))

    # The reference solution: every item it can earn, the leaderboard from the challenge's accuracy.
    for path in (REFERENCE / "cnn_architecture").glob("*.py"):
        shutil.copy(path, root / "submission" / path.name)
    data = _run(root, env)
    validate(data)
    by_id = {t["extra_data"]["id"]: t for t in data["tests"]}
    assert len(by_id) == 7 and data["score"] == sum(t["score"] for t in data["tests"])
    for item in ("residual_block.downsample", "residual_block.plain", "resnet50_layer4.blanks",
                 "resnet50_layer4.accuracy"):
        assert by_id[item]["status"] == "passed" and by_id[item]["score"] == by_id[item]["max_score"], by_id[item]
    assert by_id["resnet50_layer4.blanks"]["visibility"] == "after_published"  # hidden items stay hidden
    assert data["leaderboard"][0] == {"name": "Accuracy", "value": 100.0, "order": "desc"}
    assert data["stdout_visibility"] == "hidden" and data["execution_time"] > 0
    provenance = data["extra_data"]["provenance"]
    rubric_text = (root / "source" / "cnn_architecture.yaml").read_bytes()
    assert provenance["rubric"]["sha256"] == hashlib.sha256(rubric_text).hexdigest()
    assert provenance["device"] == resolve("auto") and provenance["torch"] and provenance["python"]

    # A broken upload, in a folder as students zip them: graded, with a message per item, no traceback.
    shutil.rmtree(root / "submission")
    (root / "submission" / "hw1").mkdir(parents=True)
    for path in (REFERENCE / "cnn_architecture").glob("*.py"):
        text = path.read_text()
        if path.name == "resnet50_skeleton.py":
            text = text.replace("def forward(self, x):", "def forward(self, x)", 1)
        (root / "submission" / "hw1" / path.name).write_text(text)
    broken = _run(root, env)
    validate(broken)
    failed = [t for t in broken["tests"] if t["status"] == "failed"]
    assert broken["score"] < data["score"] and failed
    assert any("SyntaxError" in t["output"] and "resnet50_skeleton.py:" in t["output"] for t in failed)
    assert all(t["output"] and "Traceback" not in t["output"] for t in broken["tests"])


def _run(root: Path, env: dict) -> dict:
    done = subprocess.run([str(root / "source" / "run_autograder")], capture_output=True, text=True, timeout=600,
                          env={**env, "AUTOGRADER_ROOT": str(root)}, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_a_grader_failure_still_writes_results(tmp_path):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    assert gradescope.main(["--root", str(root), "--rubric", str(tmp_path / "missing.yaml")]) == 0
    data = json.loads((root / "results" / "results.json").read_text())
    validate(data)
    assert data["score"] == 0 and data["tests"] == []
    assert data["output"].startswith("The autograder could not grade this submission:")


def test_the_wheel_is_this_grader(tmp_path):
    name, wheel = gradescope.build_wheel()
    assert name == "cnn_grader-0.1.0-py3-none-any.whl" and gradescope.build_wheel()[1] == wheel  # reproducible
    path = tmp_path / name
    path.write_bytes(wheel)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        metadata = z.read("cnn_grader-0.1.0.dist-info/METADATA").decode()
        record = z.read("cnn_grader-0.1.0.dist-info/RECORD").decode()
    assert "grader/cli.py" in names and "grader/authoring/gradescope.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "Requires-Dist: torch>=2.2" in metadata and "Requires-Dist: pydantic" in metadata
    assert "matplotlib" not in metadata  # the class report's plots: the `report` extra, not needed to grade
    assert all(line.split(",")[0] in names for line in record.splitlines())


def test_gradescope_options_need_the_gradescope_bundle(tmp_path):
    done = run_cli("bundle", "cnn_architecture", "--student", "-c", str(tmp_path), "-o", str(tmp_path / "x.zip"))
    assert done.returncode == 2 and "--checkpoints and --data-dir apply to --gradescope" in done.stderr
    both = run_cli("bundle", "cnn_architecture", "--student", "--gradescope", "-o", str(tmp_path / "x.zip"))
    assert both.returncode == 2 and "--gradescope" in both.stderr
