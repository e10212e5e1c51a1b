"""Skeletons are generated from the reference solutions: `grader skeleton`, its --check
mode, a guard that fails when any committed skeleton is out of date, and the CNN
Architecture skeleton compared with the course's handout layout."""

from __future__ import annotations

import ast
import re

import pytest

from grader import rubric
from grader.authoring import skeleton
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, course_copy, run_cli

ALL_RUBRICS = sorted(RUBRICS.glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_RUBRICS, ids=[p.stem for p in ALL_RUBRICS])
def test_committed_skeletons_are_up_to_date(path):
    loaded = rubric.load(path)
    if loaded.reference is None or loaded.skeleton is None:
        pytest.skip(f"{path.name} has no reference/skeleton pair")
    stale = skeleton.stale(loaded.reference_dir(), loaded.skeleton_dir())
    assert stale == [], f"skeletons/{loaded.assignment} is stale ({stale}): run `grader skeleton {loaded.assignment}`"


def test_every_assignment_has_a_skeleton():
    assert {p.stem for p in ALL_RUBRICS} <= {p.name for p in SKELETONS.iterdir()}


# -- the CNN Architecture handout -------------------------------------------------------

CNN_SKELETON = SKELETONS / "cnn_architecture" / "resnet50_skeleton.py"


def test_cnn_skeleton_has_the_handout_layout():
    text = CNN_SKELETON.read_text()
    question2 = text[text.index("# Question 2"):]
    header, body = question2.split("class ResNet50_layer4", 1)
    assert header.count("#blank#") == 1 and "(blank : #blank#, 1 points per blank )" in header
    assert body.count("#blank#") == 25
    assert "fill in the blanks below. (25 points)" in header
    assert text.count("fill in here (20 points)") == 4  # Q1 twice, layer3, layer4
    assert text.count("####### you can refer to the 'layer2' above") == 2
    for line in [
        "    def __init__(self, num_classes= #blank# ): # Hint : How many classes in Cifar-10 dataset?",
        "            nn.Conv2d(#blank#, #blank#, #blank#, #blank#, #blank# ),",
        "                # Hint : Through this conv-layer, the input image size is halved.",
        "            nn.MaxPool2d(#blank#, #blank#, #blank#)",
        "            ResidualBlock(#blank#, #blank#, #blank#, #blank#),",
        "        self.fc = nn.Linear(#blank#, #blank#) # Hint : Think about the reason why fc layer is needed",
        "        self.avgpool = nn.AvgPool2d(#blank#, #blank#)",
        "                # Hint : use these functions (conv1x1, conv3x3)",
    ]:
        assert line in text.splitlines(), line
    # The fill-in bodies are empty: the comment banner is followed directly by the closing paren.
    assert re.search(r"#########################################\n\s*\)\n\s*self\.downsize", text)
    for solution in skeleton.solution_text(REFERENCE / "cnn_architecture" / "resnet50_skeleton.py"):
        assert solution not in text
    assert "BEGIN SOLUTION" not in text and "skeleton:" not in text
    with pytest.raises(SyntaxError):  # as handed out, the file does not parse until the blanks are filled
        ast.parse(text)


def test_files_without_markers_are_handed_out_unchanged():
    for name in ("main.py", "vgg16_full.py"):
        assert (SKELETONS / "cnn_architecture" / name).read_bytes() == (REFERENCE / "cnn_architecture" / name).read_bytes()


# -- the command ------------------------------------------------------------------------


def test_skeleton_check_and_regenerate(tmp_path):
    course = course_copy(tmp_path)
    done = run_cli("skeleton", "cnn_architecture", "--check", cwd=course)
    assert done.returncode == 0, done.stderr
    assert "cnn_architecture: up to date" in done.stdout

    # An edit inside a solution block does not change what students get ...
    ref = course / "reference_solutions" / "cnn_architecture" / "resnet50_skeleton.py"
    ref.write_text(ref.read_text().replace("ResidualBlock(512, 128, 512, True),",
                                           "ResidualBlock(512, 128, 512, downsample=True),"))
    assert run_cli("skeleton", "--check", cwd=course).returncode == 0
    # ... an edit of the handed-out code does, and --check says which file and what to run.
    ref.write_text(ref.read_text().replace("# Hint : Think about", "# Hint : Think carefully about"))
    done = run_cli("skeleton", "--check", cwd=course)
    assert done.returncode == 1
    assert "out of date: resnet50_skeleton.py (run: grader skeleton cnn_architecture)" in done.stdout

    done = run_cli("skeleton", "cnn_architecture", cwd=course)
    assert done.returncode == 0, done.stderr
    assert "wrote 3 file(s) to skeletons/cnn_architecture" in done.stdout
    generated = (course / "skeletons" / "cnn_architecture" / "resnet50_skeleton.py").read_text()
    assert "# Hint : Think carefully about" in generated and "downsample=True" not in generated
    assert run_cli("skeleton", "--check", cwd=course).returncode == 0


def test_unbalanced_markers_are_a_usage_error_with_the_line(tmp_path):
    course = course_copy(tmp_path)
    ref = course / "reference_solutions" / "cnn_architecture" / "resnet50_skeleton.py"
    lines = ref.read_text().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if "# END SOLUTION" in line)
    del lines[end]
    ref.write_text("".join(lines))
    done = run_cli("skeleton", "cnn_architecture", cwd=course)
    assert done.returncode == 2
    first, second = [i for i, line in enumerate(lines, 1) if "# BEGIN SOLUTION" in line][:2]
    assert f"resnet50_skeleton.py:{second}: BEGIN SOLUTION inside another (opened at line {first})" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_rubric_without_skeleton_folder_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("assignment: x\nfiles: [a.py]\nitems:\n"
                    "  - {id: a, points: 1, check: param_count, target: {file: a.py, name: A}, expected: 1}\n")
    done = run_cli("skeleton", str(path))
    assert done.returncode == 2
    assert "the rubric needs both 'reference:' and 'skeleton:' folders" in done.stderr
