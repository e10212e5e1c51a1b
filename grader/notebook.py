"""Notebook submissions, run as students hand them in, minus what grading must not run.

A Jupyter or Colab notebook is run cell by cell into one namespace, as "Run all"
would, except that
  * calls the rubric names in `notebook.record_calls` (train_part2, train_part34,
    check_accuracy_*: training and evaluation) are recorded, not run: the grader
    gets their arguments (the challenge's model, optimizer and epochs) per section;
  * data sets (torchvision.datasets.CIFAR10(..., download=True) and the like) are
    stand-ins of the right length that never download or load an image: code
    that iterates over them stops there, and the notebook goes on;
  * plotting and notebook-display libraries are no-ops, IPython magics (%..., !...)
    are removed, and each cell has a time limit;
  * a cell that fails is recorded (cell number, line, message) and the next cell
    runs, so the questions that work still earn their points.

Sections: the rubric lists markers per question ("Question 6"); a cell whose
comment (code) or heading (markdown) holds a marker starts that section, which runs
until the next section starts.  A section's value of a name is the argument of
that name in its last recorded call (train_part34(model, optimizer, epochs=10)),
else the variable at the end of the section.

The same runner loads the reference notebook in the grader's process and the
student's notebook in the student's sandboxed process.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib.abc
import importlib.machinery
import json
import linecache
import re
import signal
import sys
import threading
import time
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from grader.errors import GraderError, StudentError, exception_text


class NotebookOptions(BaseModel):
    """The rubric's `notebook:` block: how the course's notebook is run for grading."""

    model_config = ConfigDict(extra="forbid")
    record_calls: dict[str, list[str]] = Field(default_factory=dict, description=(
        "functions whose calls are recorded instead of run (training, evaluation), with the names of "
        "their parameters in order, e.g. train_part34: [model, optimizer, epochs]"))
    sections: dict[str, list[str]] = Field(default_factory=dict, description=(
        "section id -> markers; a code comment or markdown heading holding a marker starts the section"))
    cell_timeout_s: float = Field(60, gt=0, description="a cell running longer is stopped (training at top level)")
    seed: int = Field(0, description="random seed set before the first cell: the same notebook builds the same "
                                     "initial weights every time it is graded")


class NotebookError(GraderError):
    """The file is not a notebook that can be read."""


class DataNotLoaded(BaseException):
    """Raised when notebook code touches the images of a data set stand-in.

    A BaseException, so that `except Exception` in the student's code does not hide it.
    """


class CellTimeout(BaseException):
    pass


# -- reading -------------------------------------------------------------------


@dataclass
class Cell:
    index: int  # 1-based position among all cells, markdown included
    kind: str  # code | markdown | raw
    source: str
    number: int | None = None  # code cells: 1-based among code cells, as Jupyter's In [n] after Run All


def read_cells(path: Path) -> list[Cell]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotebookError(f"{Path(path).name} is not a readable notebook: {e}") from None
    except RecursionError:  # JSON nested thousands deep: no notebook is
        raise NotebookError(f"{Path(path).name} is not a readable notebook: its JSON is nested too deeply") from None
    return _cells(data, Path(path).name)


def code_text(text: str) -> str:
    """A notebook's code cells (nbformat 3 or 4) as one program, without IPython magics and shell
    lines; `text` itself when it is not a notebook.  What duplicates and reuse compare."""
    try:
        cells = _cells(json.loads(text), "notebook")
    except (ValueError, NotebookError, RecursionError):  # RecursionError: JSON nested thousands deep
        return text
    lines = []
    for cell in cells:
        if cell.kind == "code":
            lines.extend(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            lines.append("")
    return "\n".join(lines)


def _cells(data, name: str) -> list[Cell]:
    if not isinstance(data, dict):
        raise NotebookError(f"{name} is not a Jupyter notebook (no cells)")
    raw_cells = data.get("cells")
    if raw_cells is None and isinstance(data.get("worksheets"), list):  # nbformat 3
        raw_cells = [c for ws in data["worksheets"] for c in ws.get("cells", [])]
    if not isinstance(raw_cells, list):
        raise NotebookError(f"{name} is not a Jupyter notebook (no cells)")
    cells = []
    code_cells = 0
    for index, cell in enumerate(raw_cells, start=1):
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list):
            source = "".join(str(s) for s in source)
        kind = str(cell.get("cell_type", "code"))
        code_cells += kind == "code"
        cells.append(Cell(index, kind, str(source), code_cells if kind == "code" else None))
    return cells


# -- sections ------------------------------------------------------------------


def _marker_pattern(marker: str) -> re.Pattern:
    words = [re.escape(w) for w in marker.split()]
    return re.compile(r"(?<![\w])" + r"\s*".join(words) + r"(?![\w])", re.IGNORECASE)


def cell_sections(cells: list[Cell], sections: dict[str, list[str]]) -> dict[int, str | None]:
    """The section each cell belongs to: the last one started at or before it."""
    patterns = [(sid, [_marker_pattern(m) for m in markers]) for sid, markers in sections.items()]
    current: str | None = None
    out = {}
    for cell in cells:
        for sid, pats in patterns:
            if sid != current and any(p.search(line) for p in pats for line in _marker_lines(cell)):
                current = sid
                break
        out[cell.index] = current
    return out


def _marker_lines(cell: Cell) -> list[str]:
    lines = cell.source.splitlines()
    if cell.kind == "markdown":
        return [line for line in lines if line.lstrip().startswith("#")]
    if cell.kind == "code":
        return [line.split("#", 1)[1] for line in lines if "#" in line]
    return []


# -- IPython syntax --------------------------------------------------------------

_PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")
_MAGIC_LINE = re.compile(r"^(\s*)[%!]")
_MAGIC_ASSIGN = re.compile(r"^(\s*[\w.\[\], ]+?=\s*)[%!].*$")


def python_source(source: str) -> tuple[str | None, str | None]:
    """(Python code, None) for a code cell, or (None, why) for a cell that is not Python.

    Line magics and shell lines become `pass` (line numbers are kept), `x = !cmd`
    becomes `x = None`, and a cell magic such as %%time runs its body.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].split()[0]
        if magic not in _PYTHON_CELL_MAGICS:
            return None, f"a {magic} cell, not Python"
        lines = [""] + lines[1:]
    try:
        ast.parse("\n".join(lines))
        return "\n".join(lines), None
    except SyntaxError:
        pass
    out = []
    for line in lines:
        assign = _MAGIC_ASSIGN.match(line)
        if assign:
            out.append(assign.group(1) + "None")
        elif _MAGIC_LINE.match(line):
            out.append(_MAGIC_LINE.match(line).group(1) + "pass")
        else:
            out.append(line)
    return "\n".join(out), None


# -- recording calls -------------------------------------------------------------


@dataclass
class RecordedCall:
    function: str
    cell: int
    section: str | None
    arguments: dict[str, Any]


def _with_recorders(tree: ast.Module, names: set[str]) -> ast.Module:
    """After each top-level `def NAME` of a recorded function, rebind NAME to its recorder,
    so a call in the same cell or any later one is recorded, never run."""
    body = []
    for node in tree.body:
        body.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
            rebind = ast.parse(f"{node.name} = __grader_record__({node.name!r}, {node.name})").body[0]
            body.append(ast.copy_location(rebind, node))
    tree.body = body
    return ast.fix_missing_locations(tree)


def _bind(parameters: list[str], args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = {}
    for i, value in enumerate(args):
        bound[parameters[i] if i < len(parameters) else f"arg{i}"] = value
    bound.update(kwargs)
    return bound


# -- stand-ins for data, plotting and display ------------------------------------


class _Nothing:
    """Any plotting or display call: every attribute, call and item is this again.

    Iterating gives two of them, so `fig, ax = plt.subplots()` works.
    """

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __getitem__(self, key):
        return self

    def __setitem__(self, key, value):
        pass

    def __iter__(self):
        return iter((self, self))

    def __len__(self):
        return 2

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return "<not shown while grading>"


_NOTHING = _Nothing()


def _identity_progress(iterable=None, *args, **kwargs):
    return iterable if iterable is not None else _NOTHING


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if self.__name__.split(".")[0] == "tqdm" and name in ("tqdm", "trange", "tqdm_notebook"):
            return _identity_progress if name != "trange" else (lambda *a, **k: range(*a))
        return _NOTHING


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of plotting/display packages get do-nothing modules while a notebook loads."""

    PACKAGES = ("matplotlib", "seaborn", "plotly", "google.colab", "IPython", "ipywidgets", "tqdm", "wandb",
                "tensorboard", "torch.utils.tensorboard")

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == p or fullname.startswith(p + ".") for p in self.PACKAGES):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname == "google" and importlib.machinery.PathFinder.find_spec("google") is None:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)  # for google.colab only
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dataset_stand_in(name: str, real):
    """A data set class whose instances have the real length but no images."""
    lengths = {"CIFAR10": (50000, 10000), "CIFAR100": (50000, 10000), "MNIST": (60000, 10000),
               "FashionMNIST": (60000, 10000), "SVHN": (73257, 26032)}

    class NotLoaded:
        classes = list(CIFAR10_CLASSES) if name == "CIFAR10" else list(getattr(real, "classes", []) or [])

        def __init__(self, *args, train: bool = True, split: str | None = None, **kwargs):
            train_len, test_len = lengths.get(name, (0, 0))
            self._length = train_len if (train and split in (None, "train")) else test_len
            self.transform = kwargs.get("transform")

        def __len__(self):
            return self._length

        def __getitem__(self, index):
            raise DataNotLoaded(f"{name} images are not loaded while grading")

        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            raise DataNotLoaded(f"{name}.{attr} is not loaded while grading")

    NotLoaded.__name__ = NotLoaded.__qualname__ = name
    return NotLoaded


@contextlib.contextmanager
def _grading_environment():
    """Data sets without data, single-process data loaders, do-nothing plotting."""
    finder = _StubFinder()
    stubbed = {n: m for n, m in sys.modules.items() if any(n == p or n.startswith(p + ".")
                                                              for p in _StubFinder.PACKAGES)}
    for name in stubbed:
        del sys.modules[name]
    sys.meta_path.insert(0, finder)
    patched: list[tuple[object, str, object]] = []

    def patch(owner, attr, value):
        if hasattr(owner, attr):
            patched.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, value)

    try:
        import torch.utils.data as tud
        import torchvision.datasets as tvd

        for name in ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "SVHN", "ImageFolder", "STL10"):
            if hasattr(tvd, name):
                patch(tvd, name, _dataset_stand_in(name, getattr(tvd, name)))

        class DataLoader(tud.DataLoader):
            """num_workers=0: the grader never starts worker processes."""

            def __init__(self, *args, **kwargs):
                kwargs["num_workers"] = 0
                kwargs.pop("persistent_workers", None)
                kwargs.pop("prefetch_factor", None)
                super().__init__(*args, **kwargs)

        patch(tud, "DataLoader", DataLoader)
        yield
    finally:
        for owner, attr, value in reversed(patched):
            setattr(owner, attr, value)
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for name in [n for n, m in sys.modules.items() if isinstance(m, _StubModule)]:
            del sys.modules[name]
        sys.modules.update(stubbed)


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop a cell that runs longer than `seconds` (only possible on the main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum, frame):
        raise CellTimeout()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- running ---------------------------------------------------------------------


@dataclass
class CellOutcome:
    cell: int
    status: str  # ok | failed | stopped | skipped
    message: str = ""
    line: int | None = None
    code: str | None = None
    first_line: str = ""
    origin: str | None = None  # "cell 28, line 16": where it failed, when inside another cell's code

    def text(self) -> str:
        where = f"cell {self.cell}" + (f", line {self.line}" if self.line else "")
        return f"{where} ({self.first_line}): {self.message}" if self.first_line else f"{where}: {self.message}"


@dataclass
class Section:
    id: str
    cells: list[int] = field(default_factory=list)
    names: dict[str, Any] = field(default_factory=dict)  # the namespace at the end of the section
    calls: list[RecordedCall] = field(default_factory=list)
    bound: set[str] = field(default_factory=set)  # names this section's own cells (re)bound
    bound_in: dict[str, int] = field(default_factory=dict)  # name -> the last of its cells that bound it
    failed: list[CellOutcome] = field(default_factory=list)  # its cells that failed
    before: dict[str, Any] = field(default_factory=dict)  # the namespace before its first cell

    def inherited(self, value) -> bool:
        """Whether `value` was there before the section began (an earlier question's model)."""
        return value is not None and any(value is v for v in self.before.values())


class NotebookRun:
    """What running a notebook left: namespace, per-section values and calls, cell outcomes."""

    def __init__(self, path: Path, options: NotebookOptions):
        self.path = Path(path)
        self.options = options
        self.outcomes: list[CellOutcome] = []
        self.sections: dict[str, Section] = {}
        self.definitions: dict[str, list[int]] = {}  # top-level name -> cells that bind it
        self.calls: list[RecordedCall] = []  # every recorded call, in order

    @property
    def name(self) -> str:
        return self.path.name

    def failures(self, before_cell: int | None = None) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed" and (before_cell is None or o.cell < before_cell)]

    def section(self, section_id: str) -> Section:
        if section_id not in self.options.sections:
            raise LookupError(f"the rubric has no notebook section {section_id!r}")
        found = self.sections.get(section_id)
        if found is None or not found.cells:
            markers = " or ".join(repr(m) for m in self.options.sections[section_id])
            raise LookupError(f"{self.name} has no cell marked {markers} (the {section_id} section): "
                              "keep the question's marker comment in your answer's cell")
        return found

    def value(self, section_id: str, name: str) -> tuple[Any, str]:
        """`name` in a section: an argument of its last recorded call, else its variable."""
        section = self.section(section_id)
        for call in reversed(section.calls):
            if name in call.arguments:
                if section.failed and section.inherited(call.arguments[name]):
                    self._no_answer(section, name)  # best_model = model after a broken challenge cell
                return call.arguments[name], f"the {name} given to {call.function} in cell {call.cell}"
        self._answered(section, name)
        if name in section.names:
            cell = section.bound_in.get(name, section.cells[-1])  # the cell that holds the answer
            return section.names[name], f"{name} at the end of cell {cell}"
        raise LookupError(self.missing(name, section_id))

    def _answered(self, section: Section, name: str) -> None:
        """A section whose answer cell failed has no value of its own: what the namespace still
        holds under `name` was left by an earlier question, and grading it would grade that."""
        if not section.failed or (name in section.bound and section.names.get(name) is not None):
            return  # (model = None, then a line that fails: the cell's error, not "not answered")
        self._no_answer(section, name)

    def _no_answer(self, section: Section, name: str) -> None:
        o = section.failed[0]
        at = f" at line {o.line}" if o.line else ""
        raise LookupError(f"{self.name}: cell {o.cell} of the {section.id} section failed{at} ({o.message}), "
                          f"so that section has no {name} of its own")

    def training_setup(self, section_id: str, model, names: tuple[str, str, str]) -> dict:
        """The optimizer and epochs that go with `model` in a section: from the call that
        trains it, else the section's variables (when that optimizer holds the model's weights)."""
        model_name, optimizer_name, epochs_name = names
        section = self.section(section_id)
        for call in reversed(section.calls):
            if call.arguments.get(model_name) is model and optimizer_name in call.arguments:
                return {"optimizer": call.arguments[optimizer_name], "epochs": call.arguments.get(epochs_name),
                        "origin": f"the {call.function} call in cell {call.cell}"}
        try:
            self._answered(section, optimizer_name)
        except LookupError as e:  # not the optimizer of an earlier question
            raise StudentError({"kind": "missing", "message": str(e)}) from None
        optimizer = section.names.get(optimizer_name)
        cell = section.bound_in.get(optimizer_name, section.cells[-1])
        return {"optimizer": optimizer, "epochs": None, "origin": f"{optimizer_name} at the end of cell {cell}"}

    def missing(self, name: str, section_id: str | None = None) -> str:
        """Why `name` is not there: the cell that should define it failed, or nothing defines it."""
        where = f" in the {section_id} section" if section_id else ""
        why = self.why_missing(name)
        return f"{self.name} does not define {name}{where}" + (f": {why}" if why else "")

    def why_missing(self, name: str) -> str | None:
        """'cell 9, which defines flatten, failed at line 3: ...' when a cell meant to define it did not finish."""
        unfinished = {o.cell: o for o in self.outcomes if o.status in ("failed", "skipped", "stopped")}
        for cell in self.definitions.get(name, []):
            if cell in unfinished:
                o = unfinished[cell]
                verb = "failed" if o.status == "failed" else "did not finish"
                at = f" at line {o.line}" if o.line else ""
                return f"cell {cell}, which defines {name}, {verb}{at}: {o.message}"
        return None

    def report(self) -> dict:
        return {"cells": [asdict(o) for o in self.outcomes if o.status != "ok"],
                "sections": {sid: s.cells for sid, s in self.sections.items()}}


def run_notebook(path: Path, module: types.ModuleType, options: NotebookOptions | None = None,
                 after_cell: Callable[[CellOutcome], None] | None = None) -> NotebookRun:
    """Run the notebook's code cells into `module`'s namespace; see the module docstring."""
    options = options or NotebookOptions()
    run = NotebookRun(path, options)
    cells = read_cells(path)
    section_of = cell_sections(cells, options.sections)
    namespace = module.__dict__
    current = {"cell": 0, "section": None}

    def record(function: str, original):
        parameters = options.record_calls.get(function, [])

        def recorded(*args, **kwargs):
            call = RecordedCall(function, current["cell"], current["section"], _bind(parameters, args, kwargs))
            run.calls.append(call)
            if call.section is not None:
                run.sections[call.section].calls.append(call)
            return None

        recorded.__wrapped__ = original
        recorded.__name__ = function
        return recorded

    namespace.update({"__grader_record__": record, "get_ipython": lambda: _NOTHING, "display": lambda *a, **k: None})
    _seed_everything(options.seed)
    with _grading_environment():
        for cell in cells:
            section = section_of.get(cell.index)
            if section is not None and section not in run.sections:
                run.sections[section] = Section(section, before=dict(namespace))
            current.update(cell=cell.number, section=section)
            if cell.kind != "code" or not cell.source.strip():
                continue
            before = dict(namespace)
            outcome = _run_cell(cell, run, namespace, options)
            run.outcomes.append(outcome)
            if after_cell is not None:
                after_cell(outcome)
            if section is not None:
                own = run.sections[section]
                own.cells.append(cell.number)
                own.names = dict(namespace)
                rebound = [k for k, v in namespace.items() if k not in before or before[k] is not v]
                own.bound.update(rebound)
                own.bound_in.update(dict.fromkeys(rebound, cell.number))
                if outcome.status == "failed":
                    own.failed.append(outcome)
    namespace.pop("__grader_record__", None)
    return run


def _seed_everything(seed: int) -> None:
    import random

    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def _run_cell(cell: Cell, run: NotebookRun, namespace: dict, options: NotebookOptions) -> CellOutcome:
    first_line = next((line.strip() for line in cell.source.splitlines()
                       if line.strip() and not line.strip().startswith("#")), "")[:60]
    outcome = CellOutcome(cell.number, "ok", first_line=first_line)
    source, not_python = python_source(cell.source)
    if source is None:
        outcome.status, outcome.message = "skipped", not_python
        return outcome
    filename = f"<{run.name} cell {cell.number}>"
    linecache.cache[filename] = (len(source), None, [line + "\n" for line in source.splitlines()], filename)
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        outcome.status, outcome.line = "failed", e.lineno
        outcome.message = f"SyntaxError: {e.msg}"
        outcome.code = (e.text or "").rstrip() or None
        for match in _TOP_LEVEL_NAME.finditer(source):  # what this cell was meant to define
            run.definitions.setdefault(match.group(1) or match.group(2), []).append(cell.number)
        return outcome
    for name in _bound_names(tree):
        run.definitions.setdefault(name, []).append(cell.number)
    code = compile(_with_recorders(tree, set(options.record_calls)), filename, "exec")
    started = time.monotonic()
    try:
        with _time_limit(options.cell_timeout_s):
            exec(code, namespace)
    except DataNotLoaded:
        outcome.status = "stopped"
        outcome.message = "stopped where it uses the data set's images, which grading does not load"
        _locate(outcome, sys.exc_info()[1], filename)
    except CellTimeout:
        outcome.status = "stopped"
        outcome.message = (f"stopped after {time.monotonic() - started:.0f} s: long computations at the top "
                           "level (training, evaluation) are not run while grading")
        _locate(outcome, sys.exc_info()[1], filename)
    except BaseException as e:  # the student's code may raise anything, SystemExit included
        outcome.status = "failed"
        outcome.message = _exception_text(e)
        _locate(outcome, e, filename)
    return outcome


def _exception_text(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    if isinstance(e, PermissionError) and "the submission tried to " in str(e):  # refused by the sandbox
        return "blocked while grading: " + str(e).split("the submission tried to ", 1)[1]
    return exception_text(e)[:400]


def _locate(outcome: CellOutcome, e: BaseException, filename: str) -> None:
    """The line in this cell where it stopped, and, when the error is deeper in code another
    cell defined (a typo in a forward() that this cell called), that cell and line: the
    student's mistake is there, not in the call."""
    innermost = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == filename:
            outcome.line = frame.lineno
            outcome.code = (frame.line or "").strip() or None
        if _CELL_NAME.match(frame.filename):
            innermost = frame
    if innermost is not None and innermost.filename != filename:
        cell = _CELL_NAME.match(innermost.filename).group(1)
        outcome.origin = f"cell {cell}, line {innermost.lineno}"
        outcome.code = (innermost.line or "").strip() or outcome.code


_CELL_NAME = re.compile(r"^<.+ cell (\d+)>$")


_TOP_LEVEL_NAME = re.compile(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=(?!=)", re.MULTILINE)


def _bound_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def load_notebook_module(path: Path, module_name: str, options: NotebookOptions | dict | None = None,
                         after_cell: Callable[[CellOutcome], None] | None = None) -> types.ModuleType:
    """A module whose namespace is what the notebook defines; `module.__notebook__` is the run."""
    if isinstance(options, dict):
        options = NotebookOptions.model_validate(options)
    path = Path(path)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    module.__dict__["__builtins__"] = builtins
    sys.modules[module_name] = module
    try:
        module.__notebook__ = run_notebook(path, module, options, after_cell)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def notebook_run(module) -> NotebookRun | None:
    return getattr(module, "__notebook__", None)
