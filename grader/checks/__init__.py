"""Check kinds: one module each, with its rubric item model (`Item`) and `run(item, ctx)`.

A new kind is a new module here plus one line in KINDS; rubrics name it in `check:`.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from grader.checks import (accuracy, blanks, equivalence, function, model_setup, output_shape, param_count, structure,
                           variables)

KINDS = {
    "output_shape": output_shape,
    "param_count": param_count,
    "equivalence": equivalence,
    "blanks": blanks,
    "structure": structure,
    "accuracy": accuracy,
    "function": function,
    "variables": variables,
    "model_setup": model_setup,
}

AnyItem = Annotated[Union[tuple(module.Item for module in KINDS.values())], Field(discriminator="check")]
