"""Importing a student's files inside their process, and describing what went wrong.

Each submission has a process of its own, so a file is imported under its own
name (helper files beside it import as the student expects) unless that name
would shadow a module Python or the grader needs.
"""

from __future__ import annotations

import importlib.util
import linecache
import os
import re
import sys
import traceback
import types

from grader.errors import StudentError, exception_text, first_line as _first_line, suggestion  # noqa: F401
from grader.sandbox.layers import layer_of
from grader.sandbox.partial_import import partial_source

_CELL_FILENAME = re.compile(r"^<(?P<notebook>.+) cell (?P<cell>\d+)>$")


def module_name_for(filename: str) -> str:
    stem = os.path.splitext(os.path.basename(filename))[0]
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    if not clean.isidentifier() or clean in sys.modules or clean in sys.stdlib_module_names or clean in (
        "torch", "torchvision", "numpy", "grader"
    ):
        clean = f"_submission_{clean}"
    return clean


def import_file(workdir: str, filename: str, notebook: dict | None = None, after_cell=None) -> types.ModuleType:
    """Import a submission file; a notebook (.ipynb) runs as grader.notebook describes,
    with the rubric's `notebook` options, calling `after_cell(outcome)` after each cell."""
    path = os.path.join(workdir, filename)
    if not os.path.isfile(path):
        raise StudentError({"kind": "missing", "message": f"{filename} is not in the submission", "file": filename})
    name = module_name_for(filename)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
        return sys.modules[name]
    if filename.endswith(".ipynb"):
        return _import_notebook(path, filename, name, notebook, after_cell)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            if e.filename != path or not _import_partially(module, path, workdir):
                raise
    except BaseException as e:  # the student's code may raise anything, SystemExit included
        sys.modules.pop(name, None)
        raise StudentError(describe_exception(e, workdir, while_doing=f"importing {filename}")) from None
    return module


def _import_partially(module: types.ModuleType, path: str, workdir: str) -> bool:
    """Run the file without its top-level statements that do not parse (grader.sandbox.partial_import);
    False when that leaves nothing to run."""
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError):
        return False
    partial = partial_source(source, path)
    if partial is None:
        return False
    text, broken = partial
    rel = _relative(path, workdir)
    module.__grader_broken__ = [{"names": b["names"], "kind": "syntax", "message": b["message"], "file": rel,
                                 "line": b["line"], "code": "\n".join(_lines_before(path, b["line"])) or b["code"]}
                                for b in broken]
    exec(compile(text, path, "exec", dont_inherit=True), module.__dict__)
    return True


def broken_name(module: types.ModuleType, name: str) -> dict | None:
    """The SyntaxError of the statement that would have defined `name`, if it was left out."""
    for info in getattr(module, "__grader_broken__", None) or []:
        if name in info["names"]:
            return {k: v for k, v in info.items() if k != "names"}
    return None


def _import_notebook(path: str, filename: str, name: str, options: dict | None, after_cell) -> types.ModuleType:
    from grader.notebook import NotebookError, load_notebook_module

    try:
        return load_notebook_module(path, name, options, after_cell)
    except NotebookError as e:
        raise StudentError({"kind": "syntax", "message": str(e), "file": filename}) from None


def describe_exception(e: BaseException, workdir: str, while_doing: str = "") -> dict:
    """A report-ready description of an exception: kind, message, and the student's file and line."""
    if isinstance(e, StudentError):
        return e.info
    info: dict = {"kind": "exception", "type": type(e).__name__}
    if isinstance(e, SystemExit):
        info.update(kind="exit", message=f"called sys.exit({e.code!r})")
    elif isinstance(e, SyntaxError):
        info.update(kind="syntax", message=f"SyntaxError: {e.msg}")
        if e.filename:
            info["file"] = _relative(e.filename, workdir)
        info["line"] = e.lineno
        context = _lines_before(e.filename, e.lineno) if e.filename and e.lineno else []
        if context:
            info["code"] = "\n".join(context)  # the line and the two before it: errors often start earlier
        elif e.text:
            info["code"] = e.text.strip()
        return info
    elif isinstance(e, MemoryError) or "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
        info.update(kind="memory", message=f"ran out of memory: {_memory_detail(e)}")
    elif isinstance(e, PermissionError) and "grader sandbox" in str(e):
        info.update(kind="violation", message=str(e).replace("grader sandbox: ", ""))
    else:
        info["message"] = exception_text(e)
    layer = layer_of(e)
    if layer:  # which of the student's layers was running (grader.sandbox.layers)
        info["message"] += f" ({layer})"
        info["layer"] = layer
    if "file" not in info:
        frame = _student_frame(e, workdir)
        if frame is not None:
            info["file"], info["line"], code = frame
            info["code"] = f"{info['line']:>4} | {code}"
    trace = student_trace(e, workdir)
    if trace:
        info["trace"] = trace
    if while_doing:
        info["while"] = while_doing
    return info


def student_trace(e: BaseException, workdir: str, limit: int = 12) -> list[str]:
    """The traceback's frames in the student's own files and cells, outermost first:
    'resnet50_skeleton.py:31 in forward: out = self.flaten(out)'.  Grader and library
    frames are left out: they are not the student's to fix."""
    lines = []
    for frame in traceback.extract_tb(e.__traceback__):
        where = _student_filename(frame.filename, workdir)
        if where is not None:
            code = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
            lines.append(f"{where}:{frame.lineno} in {frame.name}: {code}" if code else
                         f"{where}:{frame.lineno} in {frame.name}")
    return lines[-limit:]


def _student_filename(filename: str, workdir: str) -> str | None:
    if filename.startswith(workdir + os.sep):
        return _relative(filename, workdir)
    if _CELL_FILENAME.match(filename):
        return filename.strip("<>")
    return None


def _lines_before(filename: str, lineno: int, count: int = 3) -> list[str]:
    lines = []
    for number in range(max(1, lineno - count + 1), lineno + 1):
        text = linecache.getline(filename, number).rstrip()
        if text.strip():
            lines.append(f"{number:>4} | {text}")
    return lines


def _memory_detail(e: BaseException) -> str:
    """PyTorch's allocator message is long and technical; the size is what matters."""
    match = re.search(r"tried to allocate (\d+) bytes", str(e))
    if match:
        return f"tried to allocate {int(match.group(1)) / (1 << 30):.1f} GB, more than a submission may use"
    return _first_line(e)


def _relative(path: str, workdir: str) -> str:
    try:
        rel = os.path.relpath(path, workdir)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _student_frame(e: BaseException, workdir: str):
    """The innermost traceback frame in the student's files (or notebook cells, named
    "NOTEBOOK cell N" with the line inside the cell)."""
    found = None
    for frame in traceback.extract_tb(e.__traceback__):
        where = _student_filename(frame.filename, workdir)
        if where is not None:
            code = frame.line or linecache.getline(frame.filename, frame.lineno).strip()
            found = (where, frame.lineno, code)
    return found
