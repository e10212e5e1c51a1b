"""What the checks compare against, without the reference solution: an answers file.

The checks ask a *reference provider* for what they compare with (a model built with
seeded weights and its outputs, its layers (sealed), a function's result, a
notebook variable, an optimizer's settings).  `grader.reference.Reference` answers by
running the instructor's code.  Here are the two other providers:

  Recorder  wraps a Reference while `grader bundle --student` grades the reference
            solution on the public items, and keeps every answer it gave;
  Answers   reads those answers back in a handout, where no reference exists, and
            gives the very same values to the very same questions.

The file is data only: tensors in <name>.safetensors, everything else in a JSON
sidecar <name>.json (never pickle, never code).  Answers are keyed by the question
(method and arguments; tensors by a digest of their values), so they only serve the
public seeds the handout's rubric holds.  The instructor's rubric can add a secret
`grading_seed`: real grading then draws other weights and inputs, and stored outputs
are worth nothing there.

Layers are never described in the file: a handout's checks conceal (`conceals`), so they
ask for the reference's layers sealed (grader.structure_diff.seal: salted digests of every
type, argument and weight shape), which tells which of the student's settings differs and
never what it should be.  The weights themselves are stored (equivalence loads them into
the student's model), so their shapes are readable: a question's layers must take them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import torch

from grader.checks.base import NotGradable
from grader.reference import Reference, ReferenceUnavailable

FORMAT = 2  # 2: layers sealed (digests), never described
_MISSING_TEXT = ("is not in the handout's answers file (it only holds what the public items ask with their "
                 "public seeds); this item is graded by the instructor")


# -- keys: one per question a check asks ------------------------------------------------


def digest(value: Any) -> str:
    """A stable digest of call arguments: tensors by dtype, shape and values."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()[:32]


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{list(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _feed(h, value[k])
        h.update(b"}")
    else:
        h.update(repr(value).encode())


def _key(method: str, args: tuple, kwargs: dict) -> str:
    """The question `Reference.<method>(*args, **kwargs)`, with defaults filled in."""
    bound = inspect.signature(getattr(Reference, method)).bind(None, *args, **kwargs)
    bound.apply_defaults()
    params = dict(list(bound.arguments.items())[1:])
    return json.dumps([method, _plain(params)], sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# -- JSON with tuples and tensors -------------------------------------------------------


class _Encoder:
    """JSON values, keeping tuples as tuples (messages print them) and tensors aside."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def encode(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            name = f"t{len(self.tensors)}"
            self.tensors[name] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": name}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"cannot store a dict with keys {list(value)[:3]}")
            return {"__dict__": {k: self.encode(v) for k, v in value.items()}}
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return {"__float__": repr(value)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store a {type(value).__name__} in the answers file")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]].clone()
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__float__" in value:
            return float(value["__float__"])
        return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
    return value


# -- the instructor's side: record what the reference answers -----------------------------


class Recorder:
    """A Reference that remembers every answer, to be written with `save`."""

    def __init__(self, reference: Reference):
        self.reference = reference
        self.answers: dict[str, Any] = {}
        self._models: dict[str, torch.nn.Module] = {}
        self._outputs: dict[str, dict[str, torch.Tensor]] = {}
        self._functions: dict[str, dict] = {}

    def _ask(self, method: str, *args, **kwargs):
        key = _key(method, args, kwargs)
        value = getattr(self.reference, method)(*args, **kwargs)
        self.answers[key] = value
        return value

    def conceals(self, item) -> bool:
        return True  # what is recorded here is read by students: sealed, never described

    def describe(self, *args, **kwargs):
        return self._ask("describe", *args, **kwargs)

    def sealed(self, *args, **kwargs):
        return self._ask("sealed", *args, **kwargs)

    def describe_module(self, *args, **kwargs):
        return self._ask("describe_module", *args, **kwargs)

    def isolation(self, *args, **kwargs):
        return self._ask("isolation", *args, **kwargs)

    def signature(self, *args, **kwargs):
        return self._ask("signature", *args, **kwargs)

    def optimizer_description(self, *args, **kwargs):
        return self._ask("optimizer_description", *args, **kwargs)

    def section_value(self, *args, **kwargs):
        return self._ask("section_value", *args, **kwargs)

    def build(self, *args, **kwargs):
        key = _key("build", args, kwargs)
        model = self.reference.build(*args, **kwargs)
        # A failing submission's verdict names its layers that differ: keep the reference's, sealed.
        bound = inspect.signature(Reference.build).bind(None, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        self.sealed(a["file"], a["name"], a["args"], a["kwargs"], a["isolate"], section=a["section"])
        outputs = self._outputs.setdefault(key, {})

        def remember(module, inputs, output):
            if isinstance(output, torch.Tensor):
                outputs[digest(list(inputs))] = output.detach().clone()

        model.register_forward_hook(remember)
        self._models[key] = model  # its weights are read at save time: after the check changed them
        return model

    def module(self, file: str):
        return _RecordingModule(self.reference.module(file), self._functions.setdefault(file, {}))

    def save(self, path: Path) -> list[Path]:
        """Write <path> (JSON) and its tensors beside it; returns the files written."""
        from safetensors.torch import save_file

        encoder = _Encoder()
        answers = {key: encoder.encode(value) for key, value in self.answers.items()}
        models = {}
        for key, model in self._models.items():
            state = model.state_dict()
            models[key] = {"type": type(model).__name__,
                           "state": encoder.encode(dict(state)),
                           "parameters": [n for n, _ in model.named_parameters()],
                           "outputs": encoder.encode(self._outputs.get(key, {}))}
        functions = {file: {name: encoder.encode(calls) for name, calls in names.items()}
                     for file, names in self._functions.items()}
        path = Path(path)
        tensor_file = path.with_suffix(".safetensors")
        document = {"format": FORMAT, "tensors": tensor_file.name, "answers": answers, "models": models,
                    "functions": functions}
        save_file(encoder.tensors, str(tensor_file))
        path.write_text(json.dumps(document) + "\n")  # key order kept: messages print dicts in order
        return [path, tensor_file]


class _RecordingModule:
    """The reference's module as a function check sees it: each call's result is kept."""

    def __init__(self, module, calls: dict):
        self._module, self._calls = module, calls

    def __getattr__(self, name: str):
        value = getattr(self._module, name)
        if not callable(value) or isinstance(value, type):
            return value
        calls = self._calls.setdefault(name, {})

        def call(*args, **kwargs):
            result = value(*args, **kwargs)
            calls[digest([list(args), kwargs])] = result
            return result

        return call


# -- the handout's side: answer from the file ------------------------------------------------


class Answers:
    """The reference provider of a handout: the recorded answers, nothing else."""

    def __init__(self, path: Path):
        from safetensors.torch import load_file

        self.path = Path(path)
        try:
            document = json.loads(self.path.read_text())
            tensors = load_file(str(self.path.with_name(document["tensors"])))
        except (OSError, ValueError, KeyError) as e:
            raise ReferenceUnavailable(f"the handout's answers file {self.path.name} cannot be read ({e}); "
                                 "download the handout again") from None
        if document.get("format") != FORMAT:
            raise ReferenceUnavailable(f"{self.path.name} was written by another version of the grader")
        self._tensors = tensors
        self._answers = document["answers"]
        self._models = document["models"]
        self._functions = document["functions"]

    def _answer(self, method: str, *args, **kwargs):
        key = _key(method, args, kwargs)
        if key not in self._answers:
            raise NotGradable(f"the reference's {method} for this question {_MISSING_TEXT}")
        return _decode(self._answers[key], self._tensors)

    def conceals(self, item) -> bool:
        return True  # a handout: no message states the reference's values

    def describe(self, *args, **kwargs):
        return self._answer("describe", *args, **kwargs)

    def sealed(self, *args, **kwargs):
        return self._answer("sealed", *args, **kwargs)

    def describe_module(self, *args, **kwargs):
        return self._answer("describe_module", *args, **kwargs)

    def isolation(self, *args, **kwargs):
        return self._answer("isolation", *args, **kwargs)

    def signature(self, *args, **kwargs):
        return self._answer("signature", *args, **kwargs)

    def optimizer_description(self, *args, **kwargs):
        return self._answer("optimizer_description", *args, **kwargs)

    def section_value(self, *args, **kwargs):
        return self._answer("section_value", *args, **kwargs)

    def build(self, *args, **kwargs):
        key = _key("build", args, kwargs)
        if key not in self._models:
            raise NotGradable(f"the reference model for this question {_MISSING_TEXT}")
        record = self._models[key]
        return _stored_model(record["type"], _decode(record["state"], self._tensors), record["parameters"],
                             _decode(record["outputs"], self._tensors))

    def module(self, file: str):
        return _StoredModule(file, self._functions.get(file, {}), self._tensors)


class _StoredModel(torch.nn.Module):
    """The reference model as far as a check needs it: its weights (state_dict, named
    parameters) and its outputs on the recorded inputs."""

    def __init__(self, state: dict, parameters: list[str], outputs: dict):
        super().__init__()
        self._state, self._parameter_names, self._stored = state, parameters, outputs

    def state_dict(self, *args, **kwargs):
        return dict(self._state)

    def named_parameters(self, *args, **kwargs):
        return iter([(name, torch.nn.Parameter(self._state[name], requires_grad=False))
                     for name in self._parameter_names])

    def parameters(self, *args, **kwargs):
        return iter([p for _, p in self.named_parameters()])

    def forward(self, *inputs):
        output = self._stored.get(digest(list(inputs)))
        if output is None:
            raise NotGradable(f"the reference's output for these inputs {_MISSING_TEXT}")
        return output.clone()


def _stored_model(type_name: str, state: dict, parameters: list[str], outputs: dict) -> torch.nn.Module:
    # Checks compare the model's class name (nn.Sequential or not): keep the reference's.
    cls = type(type_name, (_StoredModel,), {})
    return cls(state, parameters, outputs)


class _StoredModule:
    def __init__(self, file: str, functions: dict, tensors: dict):
        self._file, self._functions, self._tensors = file, functions, tensors

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._functions:
            raise AttributeError(name)
        calls = self._functions[name]

        def call(*args, **kwargs):
            stored = calls.get("__dict__", {}).get(digest([list(args), kwargs]))
            if stored is None:
                raise NotGradable(f"the reference's {name} on these arguments {_MISSING_TEXT}")
            return _decode(stored, self._tensors)

        return call


# -- which provider grades ----------------------------------------------------------------


def provider(rubric) -> "Reference | Answers | None":
    """The reference solution where the rubric names one that is there, else the
    handout's answers file, else nothing (items that need either are skipped)."""
    folder = rubric.reference_dir()
    if folder is not None and folder.is_dir():
        return Reference(folder, notebook=rubric.notebook)
    answers = rubric.answers_file()
    if answers is not None and answers.is_file():
        return Answers(answers)
    return None


__all__ = ["Answers", "Recorder", "digest", "provider"]
