"""Student files generated from the reference solution: the reference is the single source.

Markers in the reference:
  * `# BEGIN SOLUTION` ... `# END SOLUTION`: these lines (markers included) are removed,
    leaving the "fill in here (N points)" comment that precedes them;
  * a trailing `# skeleton: TEXT` on a line: the line becomes TEXT at the same indentation,
    which is how `#blank#` placeholders are written.
Notebooks (.ipynb) get the same treatment in every code cell; other files are copied.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from grader.errors import GraderError

BEGIN = re.compile(r"^\s*# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
SKELETON = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*#\s*skeleton:\s?(?P<text>.*)$")


class MarkerError(GraderError):
    pass


def strip_solution(source: str, where: str = "") -> str:
    out, inside, begin_line = [], False, 0
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        newline = "\n" if line.endswith("\n") else ""
        if BEGIN.match(line):
            if inside:
                raise MarkerError(f"{where}:{number}: BEGIN SOLUTION inside another (opened at line {begin_line})")
            inside, begin_line = True, number
            continue
        if END.match(line):
            if not inside:
                raise MarkerError(f"{where}:{number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
            continue
        if inside:
            continue
        match = SKELETON.match(line.rstrip("\n"))
        if match:
            line = match["indent"] + match["text"].rstrip() + newline
        out.append(line)
    if inside:
        raise MarkerError(f"{where}:{begin_line}: BEGIN SOLUTION is never closed")
    return "".join(out)


def solution_lines(source: str) -> list[str]:
    """The lines a skeleton must not contain: solution blocks, and the code of `# skeleton:` lines."""
    found, inside = [], False
    for line in source.splitlines():
        if BEGIN.match(line):
            inside = True
        elif END.match(line):
            inside = False
        elif inside:
            found.append(line.strip())
        else:
            match = SKELETON.match(line)
            if match:
                found.append(match["code"].strip())
    return [line for line in found if line and not line.startswith("#")]


def source_text(path: Path, data: bytes) -> str:
    """A file's text as a person reads it: for a notebook, its cells' sources, not its JSON."""
    text = data.decode(errors="replace")
    if path.suffix == ".ipynb":
        cells = json.loads(text).get("cells", [])
        text = "\n".join("".join(cell.get("source", [])) for cell in cells)
    return text


def solution_text(path: Path) -> list[str]:
    """solution_lines of a reference file (every code cell of a notebook)."""
    if path.suffix == ".py":
        return solution_lines(path.read_text())
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text()).get("cells", [])
        return [line for cell in cells if cell.get("cell_type") == "code"
                for line in solution_lines("".join(cell.get("source", [])))]
    return []


def strip_notebook(text: str, where: str = "") -> str:
    notebook = json.loads(text)
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") == "code":
            source = "".join(cell.get("source", []))
            stripped = strip_solution(source, f"{where} cell {index + 1}")
            cell["source"] = stripped.splitlines(keepends=True)
            cell["outputs"] = []
            cell["execution_count"] = None
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def render(path: Path) -> bytes:
    """The student's version of one reference file."""
    if path.suffix == ".py":
        return strip_solution(path.read_text(), str(path)).encode()
    if path.suffix == ".ipynb":
        return strip_notebook(path.read_text(), str(path)).encode()
    return path.read_bytes()


# Trained weights in a reference folder are the reference's answers (a challenge's model), never handouts.
TRAINED_WEIGHTS = (".pt", ".pth", ".ckpt", ".safetensors")


def student_files(reference: Path, exclude: tuple[str, ...] = ()) -> dict[str, bytes]:
    files = {}
    for path in sorted(reference.rglob("*")):
        rel = path.relative_to(reference).as_posix()
        if path.suffix in TRAINED_WEIGHTS:
            continue
        if path.is_file() and "__pycache__" not in rel and not any(rel == e or rel.startswith(e + "/") for e in exclude):
            files[rel] = render(path)
    return files


def generate(reference: Path, skeleton: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Rewrite `skeleton` from `reference`; returns the files written."""
    files = student_files(reference, exclude)
    if skeleton.exists():
        shutil.rmtree(skeleton)
    for rel, data in files.items():
        target = skeleton / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return sorted(files)


def stale(reference: Path, skeleton: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Files whose skeleton differs from what the reference generates."""
    expected = student_files(reference, exclude)
    actual = {p.relative_to(skeleton).as_posix(): p.read_bytes() for p in skeleton.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts} if skeleton.exists() else {}
    return sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
