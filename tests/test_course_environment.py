"""The course's environment (rubric environment.packages): an import the grading environment
cannot satisfy is an environment problem, said as such in the report, feedback.md and
summary.md, never a zero for wrong code; and the instructor's commands that install it."""

from __future__ import annotations

import shutil
from pathlib import Path

from grader import grading, packages, rubric as rubric_module
from grader.batch import gradebook
from grader.results import ERROR
from tests.conftest import RUBRICS, run_cli

MISSING = "grader_test_absent_pkg"  # a package no environment has

MODEL = f'''import torch.nn as nn
import {MISSING}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
'''


def _rubric(tmp_path: Path, environment: str = "") -> rubric_module.Rubric:
    path = tmp_path / "rubric.yaml"
    path.write_text("assignment: env_course\nfiles: [net.py]\n" + environment + "items:\n"
                    "  - {id: net.params, points: 5, check: param_count, target: {file: net.py, name: Net}, "
                    "expected: 10}\n")
    return rubric_module.load(path)


def _submission(tmp_path: Path) -> Path:
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "net.py").write_text(MODEL)
    return folder


def test_a_declared_package_missing_here_is_the_instructors_to_install(tmp_path):
    rubric = _rubric(tmp_path, f"environment: {{packages: [{MISSING.replace('_', '-')}>=1.0]}}\n")
    report = grading.grade(_submission(tmp_path), rubric)
    (result,) = report.results
    assert result.status == ERROR and result.points == 0
    assert result.extra["failure"] == "environment"
    assert result.message == (
        f"the grading environment lacks {MISSING.replace('_', '-')}, which this course's environment provides "
        "(rubric environment.packages): not a mistake in the code; the instructor installs it with "
        "`grader env install env_course` and grades again")
    assert report.problems[0]["kind"] == "environment"


def test_an_undeclared_package_is_not_part_of_the_course(tmp_path):
    report = grading.grade(_submission(tmp_path), _rubric(tmp_path))
    (result,) = report.results
    assert result.status == ERROR and result.extra["failure"] == "environment"
    assert result.message.startswith(f"{MISSING} is not part of this course's environment "
                                     "(rubric environment.packages)")
    record = {"student": "ada", "status": gradebook.GRADED}
    text = gradebook.feedback(report, "Env course", record)
    assert "grading environment lacks a package" in text and "not counted as a mistake in your code" in text


def test_a_students_own_missing_module_stays_a_code_error(tmp_path):
    folder = _submission(tmp_path)
    (folder / "net.py").write_text(MODEL.replace(MISSING, "helpers"))  # their own file, not handed in...
    (folder / "helpers").mkdir()  # their own folder of that name (its files left out): theirs to fix
    (result,) = grading.grade(folder, _rubric(tmp_path)).results
    assert result.status == "failed" and result.extra["failure"] != "environment"


def test_summary_lists_environment_problems_under_their_own_heading(tmp_path):
    report = grading.grade(_submission(tmp_path), _rubric(tmp_path))
    summary = gradebook.summarize("env_course", [("net.params", "net.params", 5.0)],
                                  [{"student": "ada", "status": gradebook.GRADED, "report": report.to_dict(),
                                    "total": 0.0}])
    assert summary.failures == {"environment": {"ada": ["net.params"]}}
    text = gradebook.summary_markdown(summary)
    assert "## Environment problems: 1 student" in text
    assert "- ada: net.params" in text.split("## Failures by reason")[0]


def test_names_install_command_and_validate(tmp_path):
    assert packages.import_name("scikit-learn>=1.3") == "sklearn"
    assert packages.distribution("tqdm>=4.60") == "tqdm"
    rubric = _rubric(tmp_path, f"environment:\n  packages: [tqdm, {MISSING}]\n")
    assert packages.missing(rubric) == [MISSING]
    dry = run_cli("env", "install", str(tmp_path / "rubric.yaml"), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.strip().endswith(f"-m pip install tqdm {MISSING}")
    done = run_cli("rubric", "validate", str(tmp_path / "rubric.yaml"))
    assert done.returncode == 0, done.stdout
    assert (f"warning: package '{MISSING}' of environment.packages is not installed here: students' files that "
            "import it cannot be graded; run `grader env install env_course`") in done.stdout
    assert ":4: warning" in done.stdout  # the line of `packages:`


def test_the_gradescope_setup_installs_the_course_packages(tmp_path):
    from grader.authoring import gradescope

    rubric = rubric_module.load(RUBRICS / "resnet18_cifar.yaml")
    assert '"$PYTHON" -m pip install -q tqdm torchsummary seaborn' in gradescope._packages_line(rubric)
    assert gradescope._packages_line(_rubric(tmp_path)) == ""


def test_check_shows_the_environment_problem_as_an_error_not_a_failure(tmp_path):
    _rubric(tmp_path)
    done = run_cli("check", str(_submission(tmp_path)), "--rubric", str(tmp_path / "rubric.yaml"))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    file_line = next(line for line in lines if line.split()[:2] == ["ERROR", "net.py"])
    item_line = next(line for line in lines if "net.params" in line)
    assert f"{MISSING} is not part of this course's environment" in file_line
    assert item_line.split()[:3] == ["ERROR", "0/5", "net.params"]
    assert "FAIL" not in done.stdout
