"""The instructor's reference solution, loaded in the grader's own process.

Reference code is trusted and never enters a student's process: the grader builds
the reference here, describes it, and sends students only weights and inputs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import io
import sys
import threading
from pathlib import Path

import torch

from grader.errors import GraderError
from grader import introspect, structure_diff
from grader.sandbox import pretrained


class ReferenceUnavailable(GraderError):
    """The reference solution itself is broken: a rubric/authoring problem, not the student's."""


class Reference:
    def __init__(self, folder: Path, on_note=None, notebook=None, conceal_visible: bool = False):
        self.folder = Path(folder)
        # Messages of items students read before the deadline (Gradescope's `visible`) do not quote
        # the reference (grader.structure_diff); the instructor's own runs and batch feedback do.
        self.conceal_visible = conceal_visible
        self.on_note = on_note  # e.g. pretrained weights that were not available offline
        self.notebook = notebook  # the rubric's notebook options (grader.notebook.NotebookOptions)
        self._modules: dict[str, object] = {}
        self._descriptions: dict[tuple, dict] = {}
        self._lock = threading.Lock()
        introspect.install_init_recorder()

    def module(self, file: str):
        with self._lock:
            if file not in self._modules:
                self._modules[file] = self._import(file)
            return self._modules[file]

    def _import(self, file: str):
        path = self.folder / file
        if path.suffix == ".ipynb":
            return self._import_notebook(path)
        if not path.is_file():
            raise ReferenceUnavailable(f"reference solution file {path} does not exist")
        name = f"_reference_{abs(hash(str(self.folder)))}_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(self.folder))  # the reference's own helper imports
        try:
            with pretrained.offline(self.on_note):  # grading never downloads weights
                spec.loader.exec_module(module)
        except Exception as e:
            raise ReferenceUnavailable(f"the reference solution {path} fails to import: {e}") from e
        finally:
            sys.path.remove(str(self.folder))
        return module

    def _import_notebook(self, path: Path):
        """The reference notebook, run as students' notebooks are (no training, no data), quietly."""
        from grader.notebook import NotebookError, load_notebook_module

        if not path.is_file():
            raise ReferenceUnavailable(f"reference solution file {path} does not exist")
        name = f"_reference_{abs(hash(str(self.folder)))}_{path.stem}"
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                module = load_notebook_module(path, name, self.notebook)
        except NotebookError as e:
            raise ReferenceUnavailable(str(e)) from e
        failed = module.__notebook__.failures()
        if failed:
            raise ReferenceUnavailable(f"the reference notebook {path.name} fails: "
                                 + "; ".join(o.text() for o in failed[:3]))
        return module

    def section_value(self, file: str, section: str, name: str):
        try:
            value, _ = self.module(file).__notebook__.value(section, name)
        except (AttributeError, LookupError) as e:
            raise ReferenceUnavailable(f"the reference {file} has no {name} in section {section}: {e}") from None
        return value

    def training_setup(self, file: str, section: str, name: str, names: tuple[str, str, str]):
        """The reference model of a section and the optimizer that trains it (copies)."""
        model = self.section_value(file, section, name)
        setup = self.module(file).__notebook__.training_setup(section, model, names)
        return copy.deepcopy((model, setup["optimizer"]))

    def optimizer_description(self, file: str, section: str, name: str, names: tuple[str, str, str]) -> dict:
        """Type and settings of the optimizer the reference trains a section's model with."""
        model, optimizer = self.training_setup(file, section, name, names)
        return introspect.describe_optimizer(optimizer, model)

    def signature(self, file: str, name: str) -> list[dict]:
        return introspect.signature_params(getattr(self.module(file), name))

    def isolation(self, file: str, names: list[str]) -> dict[str, list[dict]]:
        """Stand-in specs for `names`: the reference's constructor parameters of each."""
        return {n: introspect.signature_params(getattr(self.module(file), n).__init__)[1:] for n in names}

    def build(self, file: str, name: str, args=(), kwargs=None, isolate: list[str] = (), seed: int | None = None,
              section: str | None = None):
        if section is not None:  # a notebook section's model: a copy of it
            value = self.section_value(file, section, name)
            if isinstance(value, torch.nn.Module):
                return copy.deepcopy(value)
        module = self.module(file)
        spec = self.isolation(file, list(isolate))
        try:
            with pretrained.offline(self.on_note):
                return introspect.build(module, name, list(args), dict(kwargs or {}), spec, seed)
        except Exception as e:
            raise ReferenceUnavailable(f"the reference {name} cannot be built: {e}") from e

    def describe_module(self, file: str, name: str, args=(), kwargs=None, isolate: list[str] = (),
                        module: str = "") -> dict:
        """The nodes of one module of the model and of everything under it: what a check of that
        module needs, and nothing of the rest (a handout ships it: it must not hold other answers)."""
        nodes = self.describe(file, name, args, kwargs, isolate)["nodes"]
        return {"nodes": {path: node for path, node in nodes.items()
                          if path == module or path.startswith(f"{module}.")}}

    def conceals(self, item) -> bool:
        """Whether the messages of `item` must not state the reference's values."""
        return self.conceal_visible and item.visibility == "visible"

    @functools.cached_property
    def salt(self) -> str:
        """The salt of sealed descriptions: from the reference's files, so the same reference
        gives the same handout (byte for byte) and another reference other digests."""
        h = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(path.relative_to(self.folder).as_posix().encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:16]

    def sealed(self, file: str, name: str, args=(), kwargs=None, isolate: list[str] = (), module: str | None = None,
               section: str | None = None) -> dict:
        """The model's description with every value a salted digest (structure_diff.seal): what a
        check compares with where its messages must not state the answer.  With `module`, that
        module's subtree only (a handout ships it: it must not hold other answers)."""
        described = self.describe(file, name, args, kwargs, isolate, section=section)
        nodes = described["nodes"]
        out = {"salt": self.salt}
        if module is not None:
            nodes = {path: node for path, node in nodes.items() if path == module or path.startswith(f"{module}.")}
        else:
            out["param_count"] = structure_diff.fingerprint(self.salt, described["param_count"])
        if module is None and section is None:  # the defaults of its constructor (blanks: default_of)
            out["defaults"] = {p["name"]: structure_diff.fingerprint(self.salt, p["default"])
                               for p in self.signature(file, name) if p["has_default"]}
        out["nodes"] = structure_diff.seal(nodes, self.salt)
        return out

    def describe(self, file: str, name: str, args=(), kwargs=None, isolate: list[str] = (),
                 input_shapes: list | None = None, section: str | None = None) -> dict:
        key = (file, name, repr(args), repr(sorted((kwargs or {}).items())), tuple(isolate),
               repr(input_shapes), section)
        if key not in self._descriptions:
            model = self.build(file, name, args, kwargs, isolate, seed=0, section=section)
            out = {"nodes": introspect.describe(model),
                   "param_count": sum(p.numel() for p in model.parameters())}
            if input_shapes:
                out["input_shapes"] = introspect.record_input_shapes(
                    model, [torch.randn(*s) for s in input_shapes])
            self._descriptions[key] = out
        return self._descriptions[key]
