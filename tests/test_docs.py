"""The documentation is run, not only read: every console command in README.md and in
docs/*.md runs in a copy of a course folder (with the exit status the page states, and the
output lines it shows), the files a page shows are written where it says, and the five-step
example is followed from an empty folder to an assignment whose reference earns every point
and whose skeleton none.  Every command and option of `grader` is documented, and the rubric
reference lists exactly the check kinds the grader registers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REFERENCE, ROOT, RUBRICS, SKELETONS, run_cli

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
INSTRUCTORS = DOCS / "instructors.md"
RUBRIC_DOC = DOCS / "rubric.md"
GRADING_DOC = DOCS / "grading.md"
FIVE_STEPS = "## A new assignment in five steps"


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _read(page: Path) -> str:
    return page.read_text()


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


def run_blocks(blocks: list[Block], course: Path, page: str = "docs") -> list[str]:
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
                assert cwd.is_dir(), f"{page} line {block.line}: {command.text}"
                ran.append(command.text)
                continue
            done = subprocess.run(["bash", "-c", command.text], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=900)
            output = done.stdout + done.stderr
            assert done.returncode == command.expected_exit, (
                f"{page} line {block.line}: `{command.text}` exited {done.returncode}, the page says "
                f"{command.expected_exit}:\n{output}")
            for shown in command.output:
                assert _normal(shown) in _normal(output), (
                    f"{page} line {block.line}: `{command.text}` does not print\n{shown}\nit prints:\n{output}")
            ran.append(command.text)
    return ran


def _course_copy(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copytree(RUBRICS, course / "rubrics")
    shutil.copytree(REFERENCE, course / "reference_solutions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SKELETONS, course / "skeletons", ignore=shutil.ignore_patterns("__pycache__"))
    return course


def _commands(page: Path) -> list[str]:
    return [c.text for b in parse(_read(page)) if b.kind == "console" for c in b.commands]


def test_the_pages_parse_into_commands_and_files():
    assert {_page_id(p) for p in PAGES} >= {"README.md", "docs/students.md", "docs/instructors.md",
                                             "docs/notebooks.md", "docs/rubric.md", "docs/grading.md"}
    files = [b.path for b in parse(_read(INSTRUCTORS)) if b.kind == "file"]  # the five-step example's
    assert files == ["reference_solutions/tiny_cnn/tiny_cnn.py", "rubrics/tiny_cnn.yaml"]
    commands = [c for p in PAGES for c in _commands(p)]
    assert len(commands) >= 20
    for needed in ("grader skeleton tiny_cnn", "grader rubric validate tiny_cnn", "grader rubric show cnn_vs_fcn",
                   "grader rubric schema -o rubric.schema.json", "grader batch class", "grader check ."):
        assert any(c.startswith(needed) for c in commands), needed
    for page in PAGES:
        # Every fenced block with commands is a console block: none is left unrun.
        assert not re.search(r"```(bash|sh|shell)\n", _read(page)), _page_id(page)


# What each page's commands leave behind, in the course folder they ran in.
LEFT_BEHIND = {
    "README.md": ["grades/grades.csv", "grades/students/bob/feedback.md"],
    "docs/students.md": ["resnet18_cifar/README.md", "resnet18_cifar-handout.zip"],
    "docs/instructors.md": ["rubric.schema.json", "tiny_cnn-instructor.zip", "skeletons/tiny_cnn/tiny_cnn.py"],
}


# Pages whose commands a test of their own runs (with checks of what they make): not run twice.
RUN_ELSEWHERE = {"docs/gradebook.md": "tests/test_scoring.py", "docs/report.md": "tests/test_docs_pages.py",
                 "docs/gradescope.md": "tests/test_docs_pages.py"}


@pytest.mark.slow  # a minute or two per page with many grader commands
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_command_on_a_page_runs(page, tmp_path):
    if _page_id(page) in RUN_ELSEWHERE:
        pytest.skip(f"{_page_id(page)}: its commands run in {RUN_ELSEWHERE[_page_id(page)]}")
    blocks = parse(_read(page))
    expected = sum(len(b.commands) for b in blocks if b.kind == "console")
    if not expected:
        pytest.skip(f"{_page_id(page)} shows no `$` command")
    course = _course_copy(tmp_path)
    ran = run_blocks(blocks, course, _page_id(page))
    assert len(ran) == expected
    # What the commands left behind is what the page says they make.
    for path in LEFT_BEHIND.get(_page_id(page), []):
        assert (course / path).is_file(), path
    if page == INSTRUCTORS:
        assert json.loads((course / "rubric.schema.json").read_text())["title"] == "grader rubric"
    if page == README:
        grades = (course / "grades" / "grades.csv").read_text().splitlines()
        assert [row.split(",")[0] + "," + row.split(",")[-1] for row in grades[1:]] == ["alice,70", "bob,0"]


def test_a_new_assignment_from_the_five_steps_alone(tmp_path):
    """A new user with an empty folder and this section only."""
    course = tmp_path / "my-course"
    course.mkdir()
    blocks = parse(section(_read(INSTRUCTORS), FIVE_STEPS))
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


# -- every command and option is documented -------------------------------------------------

def _cli_commands():
    """(`grader check`, its click command), ... for every command and subcommand of the CLI."""
    import typer.main

    from grader.cli import app

    def walk(command, path):
        subcommands = getattr(command, "commands", None) or {}
        if path != "grader":
            yield path, command
        for name, sub in subcommands.items():
            yield from walk(sub, f"{path} {name}")

    return list(walk(typer.main.get_command(app), "grader"))


def _mentions(text: str, name: str) -> bool:
    """`name` as a word of its own: `--train` is not found in `--train-budget`."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def undocumented(pages: dict[str, str], commands) -> list[str]:
    """Commands no page names, and options that no page naming their command mentions."""
    missing = []
    for path, command in commands:
        where = [text for text in pages.values() if _mentions(text, path)]
        if not where:
            missing.append(path)
            continue
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            for option in param.opts + param.secondary_opts:
                if option != "--help" and not any(_mentions(text, option) for text in where):
                    missing.append(f"{path} {option}")
    return missing


def test_every_command_and_option_is_documented():
    pages = {_page_id(p): _read(p) for p in PAGES}
    commands = _cli_commands()
    assert {path for path, _ in commands} >= {"grader check", "grader batch", "grader train", "grader rubric validate"}
    assert undocumented(pages, commands) == [], (
        "document these in README.md or docs/*.md, on a page that names the command")


def test_an_undocumented_option_or_command_is_found():
    """The check above can fail: drop an option, or a command, from the pages and it is reported."""
    pages = {_page_id(p): _read(p) for p in PAGES}
    commands = _cli_commands()
    without = {name: text.replace("--train-budget", "") for name, text in pages.items()}
    assert undocumented(without, commands) == ["grader check --train-budget"]
    without = {name: text.replace("grader skeleton", "grader") for name, text in pages.items()}
    assert "grader skeleton" in undocumented(without, commands)


# -- the rubric reference and the check kinds ------------------------------------------------

def _kinds_tool():
    spec = importlib.util.spec_from_file_location("docs_check_kinds", ROOT / "tools" / "docs_check_kinds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rubric_reference_names_every_field_and_check_kind():
    """A field added to the format without a word in the reference fails here."""
    from grader import rubric
    from grader.checks import KINDS

    reference = _read(RUBRIC_DOC)
    schema = rubric.json_schema()
    names = set(schema["properties"])
    for definition in schema["$defs"].values():
        names |= set(definition.get("properties", {}))
    missing = sorted(n for n in names if not re.search(rf"(`{n}`|\b{n}:)", reference))
    assert missing == [], f"docs/rubric.md does not describe {missing}"
    for kind in KINDS:
        assert f"## `{kind}`" in reference, kind


def test_every_registered_check_kind_has_a_section_and_every_section_is_a_registered_kind():
    from grader.checks import KINDS

    documented = set(_kinds_tool().sections(_read(RUBRIC_DOC)))
    assert sorted(set(KINDS) - documented) == [], "registered kinds without a section in docs/rubric.md"
    assert sorted(documented - set(KINDS)) == [], "sections of docs/rubric.md for kinds that are not registered"


def test_the_list_of_check_kinds_is_generated_from_the_registered_kinds():
    page = _read(RUBRIC_DOC)
    assert page == _kinds_tool().render(page), "regenerate it: python tools/docs_check_kinds.py"


def test_a_new_check_kind_changes_the_generated_list():
    from grader.checks import KINDS

    tool, page = _kinds_tool(), _read(RUBRIC_DOC)
    new_kind = SimpleNamespace(__doc__="Grades something new.\n\nMore words.")
    rendered = tool.render(page, {**KINDS, "new_kind": new_kind})
    assert rendered != page and "| `new_kind` | Grades something new. |" in rendered
    assert "| [`output_shape`](#output_shape-the-shape-of-what-the-model-returns) |" in rendered


def test_how_grading_works_names_every_check_kind():
    from grader.checks import KINDS

    text = section(_read(GRADING_DOC), "# How grading works")
    assert [kind for kind in KINDS if f"`{kind}`" not in text] == []
