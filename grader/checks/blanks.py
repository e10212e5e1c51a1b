"""Per-blank credit, graded by what the student's code builds.

Each blank names a module in the built model and one of its settings (for torch.nn
modules: kernel_size, stride, ...; for the course's own classes: a constructor
argument), or the default of a constructor parameter.  The expected value is the
reference's.  An answer earns the point when it equals the reference's (3 and (3, 3)
are the same kernel), is listed in `accept`, or, for a parameter-free module such as
a pooling layer, behaves exactly like the reference's on the input it receives in
the network (AvgPool2d(2, 2) is as good as AvgPool2d(2, 1) on a 2x2 map).

Classes named in target.isolate are replaced by argument-recording stand-ins, so a
wrong ResidualBlock (Question 1) cannot cost the blanks of Question 2.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader import structure_diff
from grader.checks.base import Context, ItemBase, Target, Verdict
from grader.introspect import call_text
from grader.structure_diff import Expected


class Blank(BaseModel):
    model_config = ConfigDict(extra="forbid")
    module: str | None = Field(None, description="module path in the built model, e.g. layer1.0")
    attrs: list[str] = Field(default_factory=list, description="one blank per setting or argument")
    default_of: str | None = Field(None, description="a constructor parameter whose default is the blank")
    accept: dict[str, list[Any]] = Field(default_factory=dict, description="more accepted values per attr")

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.module is None) == (self.default_of is None):
            raise ValueError("a blank has either 'module' (with 'attrs') or 'default_of'")
        if self.module is not None and not self.attrs:
            raise ValueError("'attrs' lists the blanks of this module")
        return self

    def labels(self) -> list[str]:
        if self.default_of:
            return [f"default {self.default_of}"]
        return [f"{self.module}.{a}" for a in self.attrs]


class Item(ItemBase):
    check: Literal["blanks"]
    target: Target
    input: list[int] | None = Field(None, description="input shape, so equivalent pooling answers earn the point")
    blanks: list[Blank] = Field(min_length=1)

    def count(self) -> int:
        return sum(len(b.labels()) for b in self.blanks)

    def needs_reference(self) -> bool:
        return True


def run(item: Item, ctx: Context) -> Verdict:
    reference = ctx.require_reference()
    t = item.target
    if ctx.conceals(item):  # digests only: the messages say which blank is wrong, never its value
        sealed = reference.sealed(t.file, t.name, t.args, t.kwargs, t.isolate)
        ref = {"expected": Expected(sealed["nodes"], sealed["salt"]), "defaults": sealed.get("defaults", {})}
    else:
        described = reference.describe(t.file, t.name, t.args, t.kwargs, t.isolate)
        ref = {"expected": Expected(described["nodes"]), "nodes": described["nodes"]}
        if item.input:  # what each module receives in the real reference network
            ref["input_shapes"] = reference.describe(t.file, t.name, t.args, t.kwargs,
                                                     input_shapes=[item.input])["input_shapes"]
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             isolate=reference.isolation(t.file, t.isolate), timeout=ctx.timeout(item))
    student = ctx.student.call("describe", handle=built["handle"], timeout=ctx.timeout(item))

    per_blank = item.points / item.count()
    right, wrong, notes = 0, [], []
    verdicts: dict[str, bool] = {}  # per blank: what rescoring (grader.batch.scoring) recounts from
    for blank in item.blanks:
        if blank.default_of:
            results = [_grade_default(ctx, reference, ref, t, blank.default_of)]
        else:
            results, note = _grade_module(student, ref, blank)
            if note:
                notes.append(note)
        for label, (ok, why) in zip(blank.labels(), results):
            verdicts[label] = ok
            right, wrong = (right + 1, wrong) if ok else (right, wrong + [why])
    total = item.count()
    message = f"{right}/{total} blanks right"
    if wrong:
        message += ": " + "; ".join(wrong[:2]) + (f"; and {len(wrong) - 2} more" if len(wrong) > 2 else "")
    details = (wrong if len(wrong) > 2 else []) + notes  # the message already names up to two
    return Verdict(round(per_blank * right, 4), message, details=details,
                   extra={"right": right, "total": total, "blanks": verdicts})


def _grade_default(ctx: Context, reference, ref: dict, t: Target, param: str) -> tuple[bool, str]:
    mine = {p["name"]: p for p in ctx.student.call("signature", file=t.file, name=t.name)}
    got = mine.get(param)
    expected: Expected = ref["expected"]
    if expected.sealed:
        if got is None or not got["has_default"]:
            return False, f"{t.name}'s {param} has no default value; the question gives it one"
        if param not in ref["defaults"] or not expected.matches(got["default"], ref["defaults"][param]):
            return False, f"{t.name}'s {param} defaults to {got['default']!r}, not the value the question needs"
        return True, ""
    ref_params = {p["name"]: p for p in reference.signature(t.file, t.name)}
    expected = ref_params[param]["default"]
    if got is None or not got["has_default"]:
        return False, f"{t.name}'s {param} has no default value; expected {expected!r}"
    if not structure_diff.same(got["default"], expected):
        return False, f"{t.name}'s {param} defaults to {got['default']!r}; expected {expected!r}"
    return True, ""


def _grade_module(student: dict, ref: dict, blank: Blank) -> tuple[list[tuple[bool, str]], str | None]:
    path = blank.module
    expected: Expected = ref["expected"]
    s_node = student["nodes"].get(path)
    if s_node is None:
        where = "" if expected.sealed else f" (expected {expected.text(path)})"
        return [(False, f"{path}.{a}: your model has no module at {path}{where}") for a in blank.attrs], None
    if not expected.sealed and _behaves_the_same(s_node, ref["nodes"][path], ref.get("input_shapes", {}).get(path)):
        r_node = ref["nodes"][path]
        note = None
        if not all(structure_diff.same(structure_diff.arguments(s_node, r_node).get(a),
                                       structure_diff.arguments(r_node).get(a)) for a in blank.attrs):
            note = (f"{path}: {call_text(s_node)} differs from {call_text(r_node)} but gives the same result "
                    f"on its {ref['input_shapes'][path]} input, so it earns the points")
        return [(True, "")] * len(blank.attrs), note
    if not expected.same_type(s_node, path):
        need = "another kind of layer" if expected.sealed else f"a {expected.type_name(path)}"
        return [(False, f"{path}.{a}: {path} is {_own(s_node, expected)}; expected {need}")
                for a in blank.attrs], None
    s_args, r_args = expected.student_args(s_node, path), expected.args(path)
    results = []
    for attr in blank.attrs:
        got = s_args.get(attr)
        if expected.matches(got, r_args.get(attr)) or \
                any(structure_diff.same(got, a) for a in blank.accept.get(attr, [])):
            results.append((True, ""))
        elif expected.sealed:
            results.append((False, f"{path}.{attr} is {structure_diff.normalize(got)!r}, "
                                   f"not what the question needs ({s_node['type']})"))
        else:
            results.append((False, f"{path}.{attr} is {structure_diff.normalize(got)!r}; "
                                   f"expected {structure_diff.normalize(r_args.get(attr))!r} "
                                   f"({expected.type_name(path)})"))
    return results, None


def _own(s_node: dict, expected: Expected) -> str:
    """The student's layer: as its call in the instructor's grading; by its type where messages are
    sealed (its arguments could be partly the answer's)."""
    return f"a {s_node['type']}" if expected.sealed else call_text(s_node)


def _behaves_the_same(s_node: dict, r_node: dict, input_shape: list | None) -> bool:
    """Two parameter-free torch.nn modules that give identical outputs on the input they get."""
    if not input_shape or not (s_node["builtin"] and r_node["builtin"]):
        return False
    if s_node["params"] or r_node["params"] or s_node["children"] or r_node["children"]:
        return False
    try:
        a, b = _rebuild(s_node), _rebuild(r_node)
        x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ya, yb = a(x), b(x)
    except Exception:
        return False
    return ya.shape == yb.shape and torch.allclose(ya, yb)


def _rebuild(node: dict) -> torch.nn.Module:
    """Instantiate a torch.nn module from its description (torch's own class, plain values)."""
    cls = getattr(torch.nn, node["type"])
    accepted = inspect.signature(cls).parameters
    settings = {k: v for k, v in node["settings"].items() if k in accepted}
    return cls(**settings)
