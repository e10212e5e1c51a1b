"""Importing a student's files inside their process, and describing what went wrong.

Each submission has a process of its own, so a file is imported under its own
name (helper files beside it import as the student expects) unless that name
would shadow a module Python or the grader needs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import linecache
import os
import re
import signal
import sys
import threading
import traceback
import types

from grader.errors import StudentError, exception_text, first_line as _first_line, suggestion  # noqa: F401
from grader.sandbox.layers import layer_of
from grader.sandbox.partial_import import partial_source

_CELL_FILENAME = re.compile(r"^<(?P<notebook>.+) cell (?P<cell>\d+)>$")
STOPPED = "__grader_import_stopped__"  # on a module whose import the budget stopped: where, and after how long


class ImportStopped(BaseException):
    """Raised in the student's thread when importing its file takes longer than the rubric's
    limits.import_s: a BaseException, so that the student's `except Exception` lets it through."""


def module_name_for(filename: str) -> str:
    stem = os.path.splitext(os.path.basename(filename))[0]
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    if not clean.isidentifier() or clean in sys.modules or clean in sys.stdlib_module_names or clean in (
        "torch", "torchvision", "numpy", "grader"
    ):
        clean = f"_submission_{clean}"
    return clean


def import_file(workdir: str, filename: str, notebook: dict | None = None, after_cell=None,
                budget_s: float | None = None) -> types.ModuleType:
    """Import a submission file; a notebook (.ipynb) runs as grader.notebook describes,
    with the rubric's `notebook` options, calling `after_cell(outcome)` after each cell.

    A .py file still running after `budget_s` (a script that trains its model when imported)
    is stopped there; the module keeps what it defined so far, and says where it stopped
    (its STOPPED attribute: line, code, seconds)."""
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
        with _time_budget(budget_s, path):
            try:
                spec.loader.exec_module(module)
            except SyntaxError as e:
                if e.filename != path or not _import_partially(module, path, workdir):
                    raise
    except ImportStopped as e:
        line = _module_line(e, path)
        if line is not None:  # else it ended just as the budget ran out: the module is whole
            setattr(module, STOPPED, {"line": line, "code": linecache.getline(path, line).strip(),
                                      "seconds": budget_s})
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


@contextlib.contextmanager
def _time_budget(seconds: float | None, path: str):
    """Raise ImportStopped in this thread after `seconds` (a timer signal: the student's Python
    code is interrupted between two bytecodes, a long native call when it returns).  Never
    inside an `import` the file makes: a slow library (seaborn, pandas) is not the student's
    work at import; the stop waits until that import is done."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        if _importing(frame, path):
            signal.setitimer(signal.ITIMER_REAL, 0.2)  # again shortly, once the library is loaded
            return
        raise ImportStopped()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _importing(frame, path: str) -> bool:
    """Whether the file's top-level code is inside an import statement at `frame`."""
    while frame is not None and not (frame.f_code.co_filename == path and frame.f_code.co_name == "<module>"):
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _module_line(e: BaseException, path: str) -> int | None:
    """The line of the file's top-level code that was running (the training loop, or the call
    that trains), rather than the innermost line inside a function it called."""
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == path and frame.name == "<module>":
            return _statement_start(path, frame.lineno)
    return None


def _statement_start(path: str, line: int) -> int:
    """The first line of the top-level statement holding `line`: the `for epoch ...:` of a loop."""
    import ast

    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return line
    for statement in tree.body:
        if statement.lineno <= line <= (statement.end_lineno or statement.lineno):
            return statement.lineno
    return line


def stopped_text(filename: str, stopped: dict) -> str:
    """'resnet.py trains a model when imported (line 120, ...): put it under if __name__ == ...'."""
    code = f": {stopped['code']}" if stopped.get("code") else ""
    return (f"{filename} trains a model when imported (line {stopped['line']}{code}), still running after "
            f"{stopped['seconds']:g} s: put it under if __name__ == '__main__'")


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
