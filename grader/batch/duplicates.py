"""Students whose work is the same: byte-identical checkpoints, and code that is
identical once comments, blank space, docstrings and the names the code chooses
itself are set aside.

Code is compared per file by its syntax tree: every name the file binds (variables,
arguments, functions, classes, attributes it assigns, import aliases) is renamed
by order of first appearance, so renaming `out` to `y` or reformatting changes
nothing, while a different layer, number or call does.  Notebooks are compared by
their code cells.  A file equal to the handout (the skeleton) is never a match, a
checkpoint equal to the instructor's is not listed, and a group equal to the
reference solution is marked: in a fill-in-the-blanks assignment every fully
correct answer looks alike.
"""

from __future__ import annotations

import ast
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader import atomic
from grader.fingerprint import code_hash

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".tar")
SAME_AS_REFERENCE = "identical to the reference solution (expected for correct answers)"
MAX_CODE_BYTES = 20 << 20  # larger "code" is not compared (no assignment's answer is this big)


@dataclass
class Group:
    kind: str  # checkpoint | code
    file: str
    students: list[str]
    note: str = ""
    fingerprint: str = ""


@dataclass
class Found:
    groups: list[Group] = field(default_factory=list)
    instructor_copies: int = 0  # checkpoints identical to the instructor's, not listed


def find(folders: dict[str, Path], files: list[str], file_hashes: dict[str, dict[str, str]], *,
         handout: Path | None = None, reference: Path | None = None, instructor_hashes: set[str] = frozenset()
         ) -> Found:
    """Groups of two or more students.

    folders: student -> the folder graded; files: the code files the assignment names;
    file_hashes: student -> {relative path: sha256} (checkpoints are compared by these).
    """
    found = Found()
    by_checkpoint: dict[str, list[tuple[str, str]]] = {}
    for student, hashes in file_hashes.items():
        for rel, digest in hashes.items():
            if rel.lower().endswith(CHECKPOINT_SUFFIXES):
                if digest in instructor_hashes:
                    found.instructor_copies += 1
                else:
                    by_checkpoint.setdefault(digest, []).append((student, rel))
    for digest, members in by_checkpoint.items():
        students = sorted({s for s, _ in members})
        if len(students) > 1:
            names = sorted({rel for _, rel in members})
            note = "shared by most of the class: a handed-out file?" if len(students) > len(file_hashes) / 2 else ""
            found.groups.append(Group("checkpoint", ", ".join(names), students, note, digest[:16]))

    for name in files:
        handout_print = code_fingerprint(handout / name) if handout and (handout / name).is_file() else None
        reference_print = code_fingerprint(reference / name) if reference and (reference / name).is_file() else None
        by_code: dict[str, list[str]] = {}
        for student, folder in folders.items():
            path = folder / name
            if not path.is_file():
                continue
            fp = code_fingerprint(path)
            if fp is None or fp == handout_print:
                continue
            by_code.setdefault(fp, []).append(student)
        for fp, students in by_code.items():
            if len(students) > 1:
                note = SAME_AS_REFERENCE if fp == reference_print else ""
                found.groups.append(Group("code", name, sorted(students), note, fp[:16]))
    found.groups.sort(key=lambda g: (g.kind != "checkpoint", g.note != "", g.file, -len(g.students), g.students))
    return found


def code_fingerprint(path: Path) -> str | None:
    """A hash of the file's code with comments, spacing and self-chosen names normalised;
    None for a file that cannot be compared (unreadable, too large, too deeply nested).

    The file is a student's: whatever it holds costs that student's comparison only."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_CODE_BYTES:
            return None
        return code_hash(path, normalise)
    except (OSError, ValueError, RecursionError, MemoryError):
        return None


def normalise(code: str) -> str:
    try:
        tree = ast.parse(code)
        bound, attrs = _bound_names(tree)
        tree = _Canonical(bound, attrs).visit(tree)
        return ast.dump(tree, annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Does not parse, or nests deeper than Python's recursion allows (a 600-term sum):
        # compared as text, which needs no recursion.
        return _normalise_text(code)


def _normalise_text(code: str) -> str:
    """For code that does not parse: lines without comments and spacing."""
    out = []
    for line in io.StringIO(code):
        line = re.sub(r"#.*", "", line)
        line = re.sub(r"\s+", "", line)
        if line:
            out.append(line)
    return "\n".join(out)


def _bound_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    names, attrs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            attrs.add(node.attr)
    return names, attrs


class _Canonical(ast.NodeTransformer):
    def __init__(self, bound: set[str], attrs: set[str]):
        self.bound, self.attrs = bound, attrs
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"_{len(self.names)}")

    def _strip_docstring(self, node):
        body = getattr(node, "body", None)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]

    def visit_Module(self, node):
        self._strip_docstring(node)
        return self.generic_visit(node)

    def _visit_def(self, node):
        self._strip_docstring(node)
        node.name = self._name(node.name)
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_def

    def visit_Name(self, node):
        if node.id in self.bound:
            node.id = self._name(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._name(node.arg)
        node.annotation = None
        return node

    def visit_keyword(self, node):
        if node.arg in self.bound:
            node.arg = self._name(node.arg)
        return self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr in self.attrs:
            node.attr = self._name("." + node.attr)
        return self.generic_visit(node)

    def visit_alias(self, node):
        if node.asname:
            node.asname = self._name(node.asname)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self._name(node.name)
        return self.generic_visit(node)


def write_csv(found: Found, path: Path, names: dict[str, str]) -> None:
    """duplicates.csv: one row per student in each group."""
    from grader.safe_text import csv_cell

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "kind", "file", "group_size", "student", "name", "note", "fingerprint"])
    for number, group in enumerate(found.groups, start=1):
        for student in group.students:
            writer.writerow([number, group.kind, csv_cell(group.file), len(group.students), csv_cell(student), csv_cell(names.get(student, "")),
                             group.note, group.fingerprint])
    atomic.write_text(path, buf.getvalue())
