"""README.md is run, not only read: every console command in it runs in a copy of a
course folder (with the exit status the page states, and the output lines it shows), the
files it shows are written where it says, and its five-step example is followed from an
empty folder to an assignment whose reference earns every point and whose skeleton none."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, ROOT, RUBRICS, SKELETONS, run_cli

DOC = ROOT / "README.md"
FIVE_STEPS = "### A new assignment in five steps"


@dataclass
class Command:
    text: str
    expected_exit: int
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str  # "console" or "file"
    line: int
    commands: list[Command] = field(default_factory=list)
    path: str = ""
    content: str = ""


def parse(text: str) -> list[Block]:
    """Console blocks (```console, `$ ` commands, output lines under them) and file blocks
    (```LANG file=PATH), in the order of the page."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opening = re.match(r"^```(\w+)(.*)$", lines[index])
        if not opening:
            index += 1
            continue
        start, body = index + 1, []
        index += 1
        while not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        language, info = opening[1], opening[2]
        target = re.search(r"file=(\S+)", info)
        if target:
            blocks.append(Block("file", start, path=target[1], content="\n".join(body) + "\n"))
        elif language == "console" and any(line.startswith("$ ") for line in body):
            # Blocks without a `$` prompt are copy-paste commands (setup), shown but not run here.
            block = Block("console", start)
            for line in body:
                if line.startswith("$ "):
                    exits = re.search(r"#\s*exits\s+(\d+)", line)
                    block.commands.append(Command(line[2:], int(exits[1]) if exits else 0))
                elif line.strip():
                    block.commands[-1].output.append(line)
            blocks.append(block)
    return blocks


def section(text: str, heading: str) -> str:
    """From `heading` to the next heading of the same or a higher level (fenced blocks skipped)."""
    level = len(heading.split()[0])
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == heading)
    fenced = False
    for end in range(start + 1, len(lines)):
        if lines[end].startswith("```"):
            fenced = not fenced
        heading_here = re.match(r"^(#+) ", lines[end])
        if not fenced and heading_here and len(heading_here[1]) <= level:
            return "".join(lines[start:end])
    return "".join(lines[start:])


def _environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "200"
    return env


def _normal(text: str) -> str:
    return " ".join(text.split())


def run_blocks(blocks: list[Block], course: Path) -> list[str]:
    """Run the page's blocks in order in `course`; returns the commands that were run."""
    ran, env = [], _environment()
    for block in blocks:
        if block.kind == "file":
            target = course / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.content)
            continue
        cwd = course
        for command in block.commands:
            cd = re.fullmatch(r"cd (\S+)", command.text.strip())
            if cd:
                cwd = (cwd / cd[1]).resolve()
                assert cwd.is_dir(), f"docs line {block.line}: {command.text}"
                ran.append(command.text)
                continue
            done = subprocess.run(["bash", "-c", command.text], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=900)
            output = done.stdout + done.stderr
            assert done.returncode == command.expected_exit, (
                f"docs line {block.line}: `{command.text}` exited {done.returncode}, the page says "
                f"{command.expected_exit}:\n{output}")
            for shown in command.output:
                assert _normal(shown) in _normal(output), (
                    f"docs line {block.line}: `{command.text}` does not print\n{shown}\nit prints:\n{output}")
            ran.append(command.text)
    return ran


def _course_copy(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copytree(RUBRICS, course / "rubrics")
    shutil.copytree(REFERENCE, course / "reference_solutions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SKELETONS, course / "skeletons", ignore=shutil.ignore_patterns("__pycache__"))
    return course


def test_the_page_parses_into_commands_and_files():
    blocks = parse(DOC.read_text())
    commands = [c.text for b in blocks if b.kind == "console" for c in b.commands]
    files = [b.path for b in blocks if b.kind == "file"]
    assert files == ["reference_solutions/tiny_cnn/tiny_cnn.py", "rubrics/tiny_cnn.yaml"]
    assert len(commands) >= 15
    for needed in ("grader skeleton tiny_cnn", "grader rubric validate tiny_cnn", "grader rubric show cnn_vs_fcn",
                   "grader rubric schema -o rubric.schema.json"):
        assert any(c.startswith(needed) for c in commands), needed
    # Every fenced block with commands is a console block: none is left unrun.
    assert not re.search(r"```(bash|sh|shell)\n", DOC.read_text())


@pytest.mark.slow  # some twenty grader commands: a minute or two
def test_every_command_on_the_page_runs(tmp_path):
    course = _course_copy(tmp_path)
    ran = run_blocks(parse(DOC.read_text()), course)
    assert len(ran) == sum(len(b.commands) for b in parse(DOC.read_text()) if b.kind == "console")
    # What the commands left behind is what the page says they make.
    assert (course / "resnet18_cifar" / "README.md").is_file()
    assert json.loads((course / "rubric.schema.json").read_text())["title"] == "grader rubric"
    assert (course / "tiny_cnn-instructor.zip").is_file()


def test_a_new_assignment_from_the_five_steps_alone(tmp_path):
    """A new user with an empty folder and this section only."""
    course = tmp_path / "my-course"
    course.mkdir()
    blocks = parse(section(DOC.read_text(), FIVE_STEPS))
    assert [b.kind for b in blocks][:2] == ["file", "file"]
    run_blocks(blocks, course)
    assert sorted(p.relative_to(course).as_posix() for p in course.rglob("*") if p.is_file()) == [
        "reference_solutions/tiny_cnn/tiny_cnn.py", "rubrics/tiny_cnn.yaml", "skeletons/tiny_cnn/tiny_cnn.py"]

    reference = json.loads(run_cli("check", "reference_solutions/tiny_cnn", "--rubric", "tiny_cnn", "--json",
                                   cwd=course).stdout)
    assert reference["score"] == 9 and all(t["status"] == "passed" for t in reference["tests"])
    done = run_cli("check", "skeletons/tiny_cnn", "--rubric", "tiny_cnn", "--json", cwd=course)
    assert done.returncode == 1
    skeleton = json.loads(done.stdout)
    assert skeleton["score"] == 0 and [t["status"] for t in skeleton["tests"]] == ["failed"] * 4
    assert all(t["output"] and "Traceback" not in t["output"] for t in skeleton["tests"])
    student_file = (course / "skeletons" / "tiny_cnn" / "tiny_cnn.py").read_text()
    assert "self.pool = nn.MaxPool2d(#blank#)  # halves the size" in student_file
    assert "fill in here (4 points)" in student_file and "nn.Conv2d(16, 32" not in student_file


def test_a_wrong_command_on_the_page_would_fail(tmp_path):
    """The runner itself: a wrong exit status or a line that is not printed fails."""
    page = "```console\n$ grader rubric validate nothing_like_this\n```\n"
    with pytest.raises(AssertionError, match="exited 2, the page says 0"):
        run_blocks(parse(page), tmp_path)
    page = "```console\n$ grader rubric schema   # exits 0\nthis line is not printed\n```\n"
    with pytest.raises(AssertionError, match="does not print"):
        run_blocks(parse(page), tmp_path)


def test_the_rubric_reference_names_every_field_and_check_kind():
    """A field added to the format without a word in the reference fails here."""
    from grader import rubric
    from grader.checks import KINDS

    reference = section(DOC.read_text(), "## Rubric reference")
    schema = rubric.json_schema()
    names = set(schema["properties"])
    for definition in schema["$defs"].values():
        names |= set(definition.get("properties", {}))
    missing = sorted(n for n in names if not re.search(rf"(`{n}`|\b{n}:)", reference))
    assert missing == [], f"README.md's rubric reference does not describe {missing}"
    for kind in KINDS:
        assert f"### `{kind}`" in reference, kind
