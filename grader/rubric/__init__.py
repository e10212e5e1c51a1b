"""The rubric: a YAML file that is the whole description of an assignment.

    model     the format (pydantic models), load/parse, the JSON Schema
    messages  rubric errors an instructor can act on, with the YAML line
    find      which rubric a command means: a path, a name, or found from the submission's files

    from grader import rubric
    r = rubric.load("rubrics/cnn_basics.yaml")
"""

from grader.rubric.model import (PUBLIC_VISIBILITY, HiddenPart, Limits, Rubric, RubricError, SlurmResources,
                                 json_schema, load, parse)

__all__ = ["PUBLIC_VISIBILITY", "HiddenPart", "Limits", "Rubric", "RubricError", "SlurmResources", "json_schema",
           "load", "parse"]
