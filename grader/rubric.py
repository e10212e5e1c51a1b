"""The rubric: a YAML file that is the whole description of an assignment.

It names the files a submission holds, where the reference solution and the
instructor's checkpoints are, the data set and its normalisation, the limits a
student's code runs under, and the items: id, title, points, visibility and a
check kind with its parameters.  Errors are reported with the YAML line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grader.checks import AnyItem
from grader.datasets import DataSpec
from grader.notebook import NotebookOptions


class RubricError(Exception):
    """A rubric that cannot be used; the message says where and what is expected."""


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(900, gt=0, description="wall-clock limit for one whole submission")
    item_timeout_s: float = Field(120, gt=0, description="limit for one item's work in the student's process")
    memory_mb: int = Field(4096, gt=0, description="memory the student's process may allocate")
    output_mb: float = Field(10, gt=0, description="output the student's code may print")


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignment: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    title: str = ""
    files: list[str] = Field(min_length=1, description="files a submission holds, by the course's names")
    reference: str | None = Field(None, description="reference solution folder, relative to this file")
    skeleton: str | None = Field(None, description="student skeleton folder, relative to this file")
    checkpoints: str | None = Field(None, description="instructor checkpoints folder, relative to this file")
    public: bool = Field(False, description="true in the student handout: hidden items are not included")
    data: DataSpec = Field(default_factory=DataSpec)
    limits: Limits = Field(default_factory=Limits)
    notebook: NotebookOptions | None = Field(None, description="how notebook (.ipynb) submissions are run")
    items: list[AnyItem] = Field(min_length=1)

    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self):
        seen = set()
        for item in self.items:
            if item.id in seen:
                raise ValueError(f"item id {item.id!r} is used twice")
            seen.add(item.id)
            for file in item.files():
                if file not in self.files:
                    raise ValueError(f"item {item.id!r} uses {file!r}, which is not in files: {self.files}")
            self._check_section(item)
        return self

    def _check_section(self, item) -> None:
        from grader.checks import KINDS

        section = getattr(getattr(item, "target", None), "section", None) or getattr(item, "section", None)
        if section is None:
            return
        if not getattr(KINDS[item.check], "TAKES_SECTIONS", False):
            raise ValueError(f"item {item.id!r}: a {item.check} check does not take a notebook section")
        known = list(self.notebook.sections) if self.notebook else []
        if section not in known:
            raise ValueError(f"item {item.id!r}: section {section!r} is not in notebook.sections "
                             f"({', '.join(known) or 'none declared'})")

    # -- paths relative to the rubric file ---------------------------------

    def _relative(self, value: str | None) -> Path | None:
        if value is None:
            return None
        base = self.path.parent if self.path else Path.cwd()
        return (base / value).resolve()

    def reference_dir(self) -> Path | None:
        return self._relative(self.reference)

    def skeleton_dir(self) -> Path | None:
        return self._relative(self.skeleton)

    def checkpoint_dirs(self) -> list[Path]:
        folder = self._relative(self.checkpoints)
        return [folder] if folder else []

    @property
    def total_points(self) -> float:
        return sum(item.points for item in self.items)

    def select(self, ids: list[str] | None) -> list:
        if not ids:
            return list(self.items)
        known = {item.id for item in self.items}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise RubricError(f"no item {', '.join(unknown)} in {self.assignment}; items: {', '.join(sorted(known))}")
        return [item for item in self.items if item.id in ids]


def load(path: str | Path) -> Rubric:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise RubricError(f"cannot read rubric {path}: {e.strerror}") from None
    return parse(text, path)


def parse(text: str, path: Path | None = None) -> Rubric:
    where = str(path) if path else "<rubric>"
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RubricError(f"{where}{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise RubricError(f"{where}: a rubric is a mapping with 'assignment', 'files' and 'items'")
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as e:
        raise RubricError("\n".join(_explain(error, root, where) for error in e.errors())) from None
    rubric.path = path.resolve() if path else None
    return rubric


def _explain(error: dict, root, where: str) -> str:
    loc = [part for part in error["loc"] if not (isinstance(part, str) and part in _KIND_TAGS)]
    line = _line_of(root, loc)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    message = error["msg"]
    if error["type"] == "union_tag_invalid":
        message = f"unknown check kind; expected one of: {', '.join(_KIND_TAGS)}"
    elif error["type"] == "extra_forbidden":
        message = "unknown field (a typo?)"
    return f"{where}:{line}: {dotted}: {message}"


def _line_of(node, loc: list[Any]) -> int:
    """The YAML line of the deepest node along `loc` that exists."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _kind_tags() -> list[str]:
    from grader.checks import KINDS

    return list(KINDS)


_KIND_TAGS = _kind_tags()
