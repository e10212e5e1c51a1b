"""Handouts: the student zip holds the skeleton, the public rubric and a README, and no
solution; a student's self-check from it grades the public items only and says what is
hidden; the instructor zip holds everything and its rubric works where it is unpacked."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from grader import rubric
from grader.authoring import gradescope, skeleton
from tests.conftest import REFERENCE, RUBRICS, SKELETONS, course_copy, run_cli

ASSIGNMENTS = sorted(p.stem for p in RUBRICS.glob("*.yaml"))


def _student_zip(tmp_path: Path, assignment: str, *extra: str, cwd: Path | None = None) -> Path:
    out = tmp_path / f"{assignment}-handout.zip"
    done = run_cli("bundle", assignment, "--student", "-o", str(out), *extra, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_zip_holds_no_solution(tmp_path, assignment):
    full = rubric.load(RUBRICS / f"{assignment}.yaml")
    out = _student_zip(tmp_path, assignment)
    with zipfile.ZipFile(out) as z:
        members = {name: z.read(name) for name in z.namelist()}
    # Text members only: answers.safetensors holds numbers and wheels/ zips (the grader's wheel is the
    # grader's code), and any two bytes of them may read as ")".
    text = "\n".join(data.decode(errors="replace") for name, data in members.items()
                     if not name.endswith((".safetensors", ".whl")))
    assert all(name.endswith(("/answers.json", "/answers.safetensors")) or not name.endswith((".json", ".safetensors"))
               for name in members)
    handed_lines = {line.strip() for line in text.splitlines()}

    reference = full.reference_dir()
    student_files = skeleton.student_files(reference)
    secrets = 0
    for path in sorted(reference.rglob("*.py")) + sorted(reference.rglob("*.ipynb")):
        rendered = student_files[path.relative_to(reference).as_posix()]
        given = {line.strip() for line in skeleton.source_text(path, rendered).splitlines()}
        secret = [line for line in skeleton.solution_text(path) if line not in given]
        secrets += len(secret)
        leaked = [line for line in secret if line in handed_lines or (len(line) >= 12 and line in text)]
        assert not leaked, f"solution text of {path.name} in the zip"
        if student_files[path.relative_to(reference).as_posix()] != path.read_bytes():
            assert path.read_bytes() not in members.values(), f"reference file {path.name} in the zip"
    assert secrets > 10, "the reference has (almost) no solution block: nothing was tested"
    assert "BEGIN SOLUTION" not in text and "# skeleton:" not in text

    # The public rubric: visible items only, no reference path, a count of what is hidden.
    public = yaml.safe_load(members[f"{assignment}/{assignment}.yaml"])
    visible = [i for i in full.items if i.visibility == "visible"]
    hidden = [i for i in full.items if i.visibility != "visible"]
    assert public["public"] is True and "reference" not in public and "skeleton" not in public
    assert [i["id"] for i in public["items"]] == [i.id for i in visible]
    assert public["hidden"] == {"items": len(hidden), "points": sum(i.points for i in hidden)}
    described = members[f"{assignment}/{assignment}.yaml"].decode() + members[f"{assignment}/README.md"].decode()
    for item in hidden:  # ids may also be names in the code (three_layer_convnet): look where items are listed
        assert item.id not in described
    # The skeleton files sit at the top of the folder, where the student works.
    for rel, data in skeleton.student_files(reference).items():
        assert members[f"{assignment}/{rel}"] == data
    readme = members[f"{assignment}/README.md"].decode()
    assert "--find-links wheels cnn-grader\n" in readme and "$ grader check ." in readme


def test_student_self_check_runs_the_public_items_and_says_what_is_hidden(tmp_path, cnn_checkpoints,
                                                                         labelled_by_resnet):
    out = _student_zip(tmp_path, "cnn_architecture")
    with zipfile.ZipFile(out) as z:
        z.extractall(tmp_path / "student")
    folder = tmp_path / "student" / "cnn_architecture"

    # As handed out: the rubric is found in the folder; only the public items are graded (Q1 and the
    # layer3/layer4 blocks from the answers file), and the untouched skeleton (blanks do not parse)
    # fails on its own line: nothing here passes yet.  (Q1 and the blocks became public with the
    # answers file; before, only the two accuracy items were.)
    done = run_cli("check", str(folder))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "resnet50_skeleton.py" in done.stdout and "SyntaxError" in done.stdout
    assert "resnet50_layer4.accuracy" in done.stdout and "vgg16.accuracy" in done.stdout
    assert "residual_block.plain" in done.stdout
    assert any(line.split() == ["TOTAL", "0/100"] for line in done.stdout.splitlines()), done.stdout
    assert "resnet50_layer4.blanks" not in done.stdout
    assert ("Self-check: only the public items were graded. The 1 hidden item (25 points), graded by your "
            "instructor, may still fail.") in done.stdout

    # The student completes the work, puts the instructor's checkpoints beside it, checks again.
    for name in ("resnet50_skeleton.py",):
        shutil.copy(REFERENCE / "cnn_architecture" / name, folder / name)
    for ckpt in cnn_checkpoints.iterdir():  # copied: a link in a submission is never followed
        shutil.copy(ckpt, folder / ckpt.name)
    done = run_cli("check", ".", "--items", "resnet50_layer4.accuracy", "--data-dir", str(labelled_by_resnet),
                   cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "test accuracy 100.00% (64/64) >= 80%" in done.stdout


def test_instructor_preview_of_the_self_check(tmp_path):
    done = run_cli("check", str(SKELETONS / "cnn_architecture"), "--rubric", "cnn_architecture", "--public")
    assert "resnet50_layer4.blanks" not in done.stdout and "vgg16.accuracy" in done.stdout
    assert "residual_block.plain" in done.stdout and "The 1 hidden item (25 points)" in done.stdout


def test_bundle_refuses_a_stale_or_leaking_skeleton(tmp_path):
    course = course_copy(tmp_path)
    target = course / "skeletons" / "cnn_architecture" / "resnet50_skeleton.py"
    # A hand-edited skeleton with an answer in it: refused, nothing written.
    target.write_text(target.read_text().replace("nn.MaxPool2d(#blank#, #blank#, #blank#)", "nn.MaxPool2d(3, 2, 1)"))
    out = tmp_path / "handout.zip"
    done = run_cli("bundle", "cnn_architecture", "--student", "-o", str(out), cwd=course)
    assert done.returncode == 2
    assert "is out of date with the reference (resnet50_skeleton.py): run `grader skeleton cnn_architecture` first" \
        in done.stderr
    assert not out.exists()

    # An up-to-date skeleton, but a visible item's title that gives an answer away: refused too.
    target.write_text(target.read_text().replace("nn.MaxPool2d(3, 2, 1)", "nn.MaxPool2d(#blank#, #blank#, #blank#)"))
    path = course / "rubrics" / "cnn_architecture.yaml"
    path.write_text(path.read_text().replace('title: "VGG16 test accuracy with vgg16_epoch250.ckpt"',
                                             'title: "self.fc = nn.Linear(1024, 10)"'))
    done = run_cli("bundle", "cnn_architecture", "--student", "-o", str(out), cwd=course)
    assert done.returncode == 2
    assert "the student bundle would contain solution code from resnet50_skeleton.py: 'self.fc = nn.Linear(1024, 10)'" \
        in done.stderr
    assert not out.exists()


def test_bundle_refuses_visible_items_that_need_an_absent_reference(tmp_path):
    # Visible items that compare with the reference get their answers from it: without it, refused.
    course = course_copy(tmp_path)
    shutil.rmtree(course / "reference_solutions")
    done = run_cli("bundle", "cnn_architecture", "--student", "-o", str(tmp_path / "h.zip"), cwd=course)
    assert done.returncode == 2
    assert ("visible item(s) residual_block.downsample, residual_block.plain, resnet50_layer4.layer3, "
            "resnet50_layer4.layer4 need the reference solution to compute their answers") in done.stderr
    assert not (tmp_path / "h.zip").exists()


def test_student_bundle_with_the_instructors_checkpoints(tmp_path, cnn_checkpoints):
    course = course_copy(tmp_path)
    shutil.copytree(cnn_checkpoints, course / "checkpoints" / "cnn_architecture", symlinks=True)
    out = _student_zip(tmp_path, "cnn_architecture", "--with-checkpoints", cwd=course)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        readme = z.read("cnn_architecture/README.md").decode()
        assert z.getinfo("cnn_architecture/vgg16_epoch250.ckpt").compress_type == zipfile.ZIP_STORED
    assert "cnn_architecture/resnet50_epoch285.ckpt" in names and "cnn_architecture/vgg16_epoch250.ckpt" in names
    assert "Your instructor's checkpoints `resnet50_epoch285.ckpt`, `vgg16_epoch250.ckpt` are in this folder." in readme


def test_instructor_zip_holds_everything_and_works_unpacked(tmp_path):
    out = tmp_path / "instructor.zip"
    done = run_cli("bundle", "cnn_architecture", "--instructor", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as z:
        z.extractall(tmp_path / "unpacked")
        names = z.namelist()
    root = tmp_path / "unpacked" / "cnn_architecture-instructor"
    for rel in ("reference/resnet50_skeleton.py", "skeleton/resnet50_skeleton.py", "cnn_architecture.yaml",
                "rubric.schema.json", "README.md"):
        assert f"cnn_architecture-instructor/{rel}" in names
    text = (root / "cnn_architecture.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=rubric.schema.json\n")
    assert "\nreference: reference\n" in text and "\nskeleton: skeleton\n" in text
    assert "# Visibility: students self-check" in text  # the instructor's comments are kept
    done = run_cli("check", "reference", "--rubric", "cnn_architecture.yaml", cwd=root)
    assert "TOTAL    105/125" in done.stdout  # all but the two accuracy items (no checkpoints here)
    assert run_cli("skeleton", "cnn_architecture.yaml", "--check", cwd=root).returncode == 0


def test_bundles_are_reproducible_and_need_a_kind(tmp_path):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    for out in (first, second):
        assert run_cli("bundle", "cnn_architecture", "--student", "-o", str(out)).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    done = run_cli("bundle", "cnn_architecture", "-o", str(tmp_path / "c.zip"))
    assert done.returncode == 2 and "--student or --instructor" in done.stderr


def test_student_bundle_carries_this_grader_and_its_dependencies_but_torch(tmp_path):
    out = _student_zip(tmp_path, "resnet18_cifar")
    with zipfile.ZipFile(out) as z:
        wheels = [n.split("/")[-1] for n in z.namelist() if n.startswith("resnet18_cifar/wheels/")]
        readme = z.read("resnet18_cifar/README.md").decode()
        z.extractall(tmp_path / "student")
    assert "cnn_grader-0.1.0-py3-none-any.whl" in wheels
    names = {w.split("-")[0].lower() for w in wheels}
    if names == {"cnn_grader"}:  # no package index here: the grader alone, the rest from the index
        pytest.skip("the dependencies could not be downloaded here (offline)")
    assert {"pydantic", "pydantic_core", "typer", "rich", "pyyaml", "safetensors", "platformdirs"} <= names
    assert not names & {"torch", "torchvision", "numpy", "pillow", "matplotlib"}  # the student's own
    # pydantic-core has binaries: one per platform and Python carried
    cores = [w for w in wheels if w.startswith("pydantic_core-")]
    assert any("manylinux" in w and "cp312" in w for w in cores) and any("win_amd64" in w for w in cores)
    assert any("macosx" in w and "arm64" in w for w in cores)
    assert "$ python -m pip install --no-index --find-links wheels cnn-grader\n" in readme
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in readme
    wheel = tmp_path / "student" / "resnet18_cifar" / "wheels" / "cnn_grader-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as w:
        metadata = w.read("cnn_grader-0.1.0.dist-info/METADATA").decode()
        entry_points = w.read("cnn_grader-0.1.0.dist-info/entry_points.txt").decode()
        assert "grader/answers.py" in w.namelist() and "grader/cli.py" in w.namelist()
    assert "Name: cnn-grader" in metadata and "Requires-Python: >=3.10" in metadata
    assert "Requires-Dist: torch>=2.2\n" in metadata  # the student's own torch: no pin, no CUDA build forced
    assert "matplotlib" not in metadata  # only for the class report: an extra
    assert "grader = grader.cli:main" in entry_points
    # One builder for handouts and the Gradescope autograder: the same bytes.
    assert wheel.read_bytes() == gradescope.build_wheel()[1]


@pytest.mark.parametrize("option, line", [
    (["--install-url", "https://example.edu/cnn_grader-0.1.0-py3-none-any.whl"],
     "$ python -m pip install https://example.edu/cnn_grader-0.1.0-py3-none-any.whl\n"),
    (["--install", "python -m pip install cnn-grader"], "$ python -m pip install cnn-grader\n")])
def test_an_install_url_or_command_carries_nothing(tmp_path, option, line):
    out = _student_zip(tmp_path, "resnet18_cifar", *option)
    with zipfile.ZipFile(out) as z:
        assert not [n for n in z.namelist() if "/wheels/" in n]
        readme = z.read("resnet18_cifar/README.md").decode()
    assert line in readme and "--no-index" not in readme


def test_bundle_refuses_an_unknown_platform_and_install_options_elsewhere(tmp_path):
    done = run_cli("bundle", "resnet18_cifar", "--student", "--platform", "solaris", "-o", str(tmp_path / "x.zip"))
    assert done.returncode != 0 and "unknown platform 'solaris'" in done.stderr, done.stderr
    done = run_cli("bundle", "resnet18_cifar", "--instructor", "--install-url", "https://x", "-o",
                   str(tmp_path / "y.zip"))
    assert done.returncode == 2 and "apply to --student" in done.stderr
