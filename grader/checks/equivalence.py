"""Functional equivalence: the reference's weights loaded into the student's module
must give the reference's outputs on the same inputs.

Names may differ (matched by order and shape); layers, strides and shapes may not.
BatchNorm statistics are randomised first, so a misplaced or missing BatchNorm shows.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from grader import structure_diff
from grader.checks.base import Context, ItemBase, Target, Verdict


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    args: list[Any] | None = Field(None, description="constructor arguments (default: the target's)")
    kwargs: dict[str, Any] | None = None
    inputs: list[list[int]] = Field(description="input shapes, one per forward argument")


class Item(ItemBase):
    check: Literal["equivalence"]
    target: Target
    cases: list[Case] = Field(min_length=1, description="constructor arguments and input shapes to compare on")
    atol: float = Field(1e-4, description="absolute tolerance of the output comparison")
    rtol: float = Field(1e-4, description="relative tolerance of the output comparison")
    seed: int = Field(0, description="seed of the reference weights and the random inputs")

    def needs_reference(self) -> bool:
        return True


def run(item: Item, ctx: Context) -> Verdict:
    reference = ctx.require_reference()
    t = item.target
    isolate = reference.isolation(t.file, t.isolate)
    for number, case in enumerate(item.cases, start=1):
        args = case.args if case.args is not None else t.args
        kwargs = case.kwargs if case.kwargs is not None else t.kwargs
        call = Target(file=t.file, name=t.name, args=args, kwargs=kwargs).call_text()
        ref_model = reference.build(t.file, t.name, args, kwargs, t.isolate, seed=item.seed)
        _randomize_norm_statistics(ref_model, item.seed)
        built = ctx.student.call("build", file=t.file, name=t.name, args=args, kwargs=kwargs, isolate=isolate,
                                 timeout=ctx.timeout(item))
        fit = ctx.student.call("load_state", handle=built["handle"], state=ref_model.state_dict(), by_order=True,
                               timeout=ctx.timeout(item))
        if not fit["ok"]:
            details = _explain(ctx, item, built["handle"], args, kwargs)
            return Verdict.zero(f"{call} does not have the reference's layers", details=details)
        generator = torch.Generator().manual_seed(item.seed + number)
        inputs = [torch.randn(*shape, generator=generator) for shape in case.inputs]
        with torch.inference_mode():
            expected = ref_model.eval()(*inputs)
        got = ctx.student.call("forward", handle=built["handle"], inputs=inputs, timeout=ctx.timeout(item))
        got = got.get("tensor")
        if got is None or tuple(got.shape) != tuple(expected.shape):
            shape = list(got.shape) if got is not None else "several tensors"
            return Verdict.zero(f"{call} returns shape {shape} for input {case.inputs[0]}; "
                                f"expected {list(expected.shape)}",
                                details=_explain(ctx, item, built["handle"], args, kwargs))
        if not torch.allclose(got.float(), expected.float(), atol=item.atol, rtol=item.rtol):
            gap = (got.float() - expected.float()).abs().max().item()
            details = _explain(ctx, item, built["handle"], args, kwargs) or [
                "the layers match the reference; the difference is in forward()"]
            return Verdict.zero(f"{call} computes something else than the reference with the same weights "
                                f"(largest difference {gap:.3g})", details=details)
    cases = len(item.cases)
    return Verdict.full(item, f"same outputs as the reference with the same weights ({cases} case{'s' * (cases > 1)})")


def _randomize_norm_statistics(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed + 7)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.track_running_stats:
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.data.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)


def _explain(ctx: Context, item: Item, handle: int, args, kwargs) -> list[str]:
    t = item.target
    student = ctx.student.call("describe", handle=handle, timeout=ctx.timeout(item))["nodes"]
    return structure_diff.differences(student, ctx.expected_layers(item, t.file, t.name, args, kwargs, t.isolate))
