"""A model a question builds, from a class (the Module API) or a notebook cell (an
nn.Sequential with its optimizer), graded on up to three facets, each with its own
share of the item's points:

  outputs    the reference's weights, loaded into the student's model (matched by
             order and shape), give the reference's outputs on the same inputs; a
             model of another kind (a custom class where nn.Sequential is asked)
             does not count;
  init       the weights the model is built with are initialised as asked (for
             Kaiming: judged on the distribution of the values);
  optimizer  the optimizer that trains it (the one the section's recorded training
             call got) is the reference's kind with the listed settings, and it
             updates exactly this model's weights.

A failure in one facet (an exception in forward, say) costs only that facet.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader import structure_diff
from grader.checks.base import Context, ItemBase, Target, Verdict
from grader.checks.equivalence import _randomize_norm_statistics
from grader.initialization import Expectation, judge
from grader.sandbox.session import StudentFailure

TAKES_SECTIONS = True


class Outputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    inputs: list[list[int]] = Field(description="input shapes, one per forward argument")
    rtol: float = Field(1e-4, description="allowed difference, relative to the largest expected value")
    atol: float = 1e-5
    same_type: bool = Field(True, description="the model must be of the reference's type (nn.Sequential, ...)")


class Init(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    params: dict[str, Expectation] = Field(min_length=1, description="reference parameter name -> expectation")
    args: list | None = Field(None, description="constructor arguments for this facet (bigger layers give firmer "
                                                "statistics); default: the target's")
    kwargs: dict | None = None
    tolerance: float = Field(0.1, gt=0, description="relative tolerance on a standard deviation")


class OptimizerFacet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    name: str = Field("optimizer", description="the optimizer's name in the section (argument or variable)")
    epochs_name: str = "epochs"
    settings: list[str] = Field(default_factory=list, description=(
        "settings of the first parameter group that must equal the reference's, e.g. [momentum, nesterov]"))


class Item(ItemBase):
    check: Literal["model_setup"]
    target: Target
    outputs: Outputs | None = None
    init: Init | None = None
    optimizer: OptimizerFacet | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _facets(self):
        facets = [f for f in (self.outputs, self.init, self.optimizer) if f is not None]
        if not facets:
            raise ValueError("model_setup needs at least one of outputs, init, optimizer")
        if abs(sum(f.points for f in facets) - self.points) > 1e-9:
            raise ValueError(f"the facets' points ({sum(f.points for f in facets):g}) must add up to the item's "
                             f"points ({self.points:g})")
        if self.optimizer is not None and self.target.section is None:
            raise ValueError("the optimizer facet needs target.section (the notebook cell that builds both)")
        return self

    def needs_reference(self) -> bool:
        return True


def run(item: Item, ctx: Context) -> Verdict:
    ctx.require_reference()
    facets = [(name, facet, grade) for name, facet, grade in
              (("outputs", item.outputs, _outputs), ("init", item.init, _init),
               ("optimizer", item.optimizer, _optimizer)) if facet is not None]
    several = len(facets) > 1
    points, good, bad, details, where, verdicts = 0.0, [], [], [], None, {}
    for name, facet, grade in facets:
        try:
            ok, text, more = grade(item, ctx, facet)
        except StudentFailure as failure:
            ok, text, more = False, failure.message, failure.code.splitlines() if failure.code else []
            where = where or failure.where() or None
        label = f"{name}: {text}" if several else text
        verdicts[name] = bool(ok)  # per facet: rescoring (grader.batch.scoring) adds up their points again
        if ok:
            points += facet.points
            good.append(label)
        else:
            bad.append(label)
            details += [f"{name}: {line}" if several else line for line in more]
    if not bad:
        return Verdict.full(item, "; ".join(good), extra={"facets": verdicts})
    return Verdict(round(points, 4), "; ".join(bad), details=details + [f"right: {g}" for g in good], where=where,
                   extra={"facets": verdicts})


# -- outputs --------------------------------------------------------------------


def _outputs(item: Item, ctx: Context, facet: Outputs) -> tuple[bool, str, list[str]]:
    reference = ctx.require_reference()
    t = item.target
    ref_model = reference.build(t.file, t.name, t.args, t.kwargs, t.isolate, seed=item.seed, section=t.section)
    _randomize_norm_statistics(ref_model, item.seed)
    built = ctx.student.call("build", file=t.file, name=t.name, args=t.args, kwargs=t.kwargs,
                             isolate=reference.isolation(t.file, t.isolate), seed=item.seed, section=t.section,
                             timeout=ctx.timeout(item))
    what = t.call_text()
    expected_type = type(ref_model).__name__
    if facet.same_type and built["type"] != expected_type:
        return False, f"{what} is a {built['type']}; the question asks for a {expected_type}", []
    fit = ctx.student.call("load_state", handle=built["handle"], state=ref_model.state_dict(), by_order=True,
                           timeout=ctx.timeout(item))
    if not fit["ok"]:
        return False, f"{what} does not have the reference's layers", _explain(ctx, item, built["handle"])
    generator = torch.Generator().manual_seed(item.seed + 1)
    inputs = [torch.randn(*shape, generator=generator) for shape in facet.inputs]
    with torch.inference_mode():
        expected = ref_model.eval()(*inputs)
    got = ctx.student.call("forward", handle=built["handle"], inputs=inputs, timeout=ctx.timeout(item)).get("tensor")
    if got is None or tuple(got.shape) != tuple(expected.shape):
        shape = list(got.shape) if got is not None else "several tensors"
        return False, f"{what} gives shape {shape} for input {facet.inputs[0]}; expected {list(expected.shape)}", []
    gap = (got.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    if not gap <= facet.atol + facet.rtol * scale:
        details = _explain(ctx, item, built["handle"]) or [
            "the layers match the reference's; the difference is in forward() (order, activations, flatten)"]
        return False, (f"{what} computes other values than the reference with the same weights "
                       f"(largest difference {gap:.3g})"), details
    return True, "same outputs as the reference with the same weights", []


def _explain(ctx: Context, item: Item, handle: int) -> list[str]:
    t = item.target
    student = ctx.student.call("describe", handle=handle, timeout=ctx.timeout(item))["nodes"]
    expected = ctx.expected_layers(item, t.file, t.name, t.args, t.kwargs, t.isolate, section=t.section)
    return structure_diff.differences(student, expected)


# -- init -----------------------------------------------------------------------


def _init(item: Item, ctx: Context, facet: Init) -> tuple[bool, str, list[str]]:
    reference = ctx.require_reference()
    t = item.target
    args = facet.args if facet.args is not None else t.args
    kwargs = facet.kwargs if facet.kwargs is not None else t.kwargs
    ref_model = reference.build(t.file, t.name, args, kwargs, t.isolate, seed=item.seed, section=t.section)
    ref_names = [name for name, _ in ref_model.named_parameters()]
    built = ctx.student.call("build", file=t.file, name=t.name, args=args, kwargs=kwargs,
                             isolate=reference.isolation(t.file, t.isolate), seed=item.seed, section=t.section,
                             timeout=ctx.timeout(item))
    mine = ctx.student.call("parameters", handle=built["handle"], timeout=ctx.timeout(item))
    my_names = list(mine)
    if not my_names:
        return False, f"{t.call_text() if facet.args is None else t.name} has no weights to initialise", []
    problems, good = [], []
    for ref_name, expected in facet.params.items():
        index = ref_names.index(ref_name) if ref_name in ref_names else None
        reference_value = dict(ref_model.named_parameters()).get(ref_name)
        if index is None or reference_value is None:
            raise ValueError(f"the reference {t.name} has no parameter {ref_name}")
        if index >= len(my_names) or list(mine[my_names[index]].shape) != list(reference_value.shape):
            problems.append(f"no weight like the reference's {ref_name} {list(reference_value.shape)} "
                            f"(parameter {index + 1} of your model)")
            continue
        label = ref_name if my_names[index] == ref_name else f"{my_names[index]} (the reference's {ref_name})"
        ok, looks = judge(mine[my_names[index]], expected, reference_value.detach(), facet.tolerance)
        (good if ok else problems).append(f"{label} {looks}" if not ok else label)
    if problems:
        return False, problems[0] + (f"; and {len(problems) - 1} more" if len(problems) > 1 else ""), problems[1:]
    kinds = sorted({e.init for e in facet.params.values()})
    return True, f"{', '.join(kinds)} initialisation of {', '.join(good)}", []


# -- optimizer --------------------------------------------------------------------


def _optimizer(item: Item, ctx: Context, facet: OptimizerFacet) -> tuple[bool, str, list[str]]:
    reference = ctx.require_reference()
    t = item.target
    names = (t.name, facet.name, facet.epochs_name)
    expected = reference.optimizer_description(t.file, t.section, t.name, names)
    built = ctx.student.call("build", file=t.file, name=t.name, section=t.section, with_optimizer=list(names),
                             timeout=ctx.timeout(item))
    got = built.get("optimizer")
    if got is None:
        return False, f"no optimizer for {t.name} in this question ({facet.name} is missing or None)", []
    if not got["is_optimizer"]:
        return False, f"{facet.name} is a {got['type']}, not a torch.optim optimizer", []
    wanted = [expected["type"]] + [f"{k}={expected['groups'][0].get(k)!r}" for k in facet.settings]
    text = optimizer_text(got, facet.settings)
    if expected["type"] not in got["bases"]:
        return False, f"{text}; expected {expected['type']}({', '.join(wanted[1:])})", []
    wrong = [f"{k}={got['groups'][0].get(k)!r} (expected {expected['groups'][0].get(k)!r})" for k in facet.settings
             if not structure_diff.same(got["groups"][0].get(k), expected["groups"][0].get(k))]
    if wrong:
        return False, f"{text}: {', '.join(wrong)}", []
    if got["not_optimized"] or got["foreign"]:
        return False, (f"{text} does not update this model's weights: {got['not_optimized']} of its weight "
                       f"tensors are not in the optimizer, {got['foreign']} tensors of another model are "
                       "(build the optimizer from model.parameters() after building the model)"), []
    return True, f"{text}, updating all of the model's weights", []


def optimizer_text(description: dict, settings: list[str] = ()) -> str:
    group = description["groups"][0] if description.get("groups") else {}
    shown = ["lr"] + [k for k in settings if k != "lr"]
    parts = [f"{k}={group[k]!r}" for k in shown if k in group]
    return f"{description['type']}({', '.join(parts)})"
