"""What every check kind shares: the rubric item's common fields, the target it
builds, the verdict it returns, and the context it runs in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from grader.errors import GraderError
from grader.structure_diff import Expected
from grader.options import Options  # noqa: F401  (its home is grader.options; kept importable here)

if TYPE_CHECKING:
    from grader.datasets import DataSpec, LabelledImages
    from grader.reference import Reference
    from grader.reuse import Reuse
    from grader.rubric import Rubric
    from grader.sandbox.session import StudentProcess


class Target(BaseModel):
    """What an item builds from the submission: `name` from `file`, called with args."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field(description="submission file (a .py file or a notebook)")
    name: str = Field(description="class or function in that file, e.g. ResidualBlock or vgg16")
    args: list[Any] = Field(default_factory=list, description="positional arguments of the call")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the call")
    isolate: list[str] = Field(default_factory=list, description=(
        "classes of the same file replaced by argument-recording stand-ins while this item is graded, "
        "so a mistake in another question cannot cost points here"))
    section: str | None = Field(None, description=(
        "notebooks: the model `name` holds in this section of the rubric's notebook.sections (the one its "
        "recorded training call got, else the variable at the section's end); used as it is, not called"))

    def call_text(self) -> str:
        if self.section is not None and not (self.args or self.kwargs):
            return self.name
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


class ItemLimits(BaseModel):
    """An item's own hard limits, each replacing the rubric's `limits:` value for this item."""

    model_config = ConfigDict(extra="forbid")
    memory_mb: int | None = Field(None, gt=0, description="memory of the student's processes")
    disk_mb: float | None = Field(None, gt=0, description="what its code may write (/tmp, /dev/shm, its folder)")
    processes: int | None = Field(None, ge=8, le=100000, description="processes and threads at once")
    open_files: int | None = Field(None, ge=64, le=1 << 20, description="files held open at once")
    cpu_s: float | None = Field(None, gt=0, description="CPU time of one student process")
    output_mb: float | None = Field(None, gt=0, description="output its code may print")


class ItemBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="unique name: letters, digits, _ . -")
    title: str = Field("", description="shown in reports instead of the id")
    points: float = Field(ge=0, description="what the item is worth")
    visibility: Literal["visible", "hidden", "after_due_date", "after_published"] = Field(
        "visible", description="visible: in the students' self-check; the others are left out of the handout and "
                               "graded by the instructor (on Gradescope they decide when students see the result)")
    timeout_s: float | None = Field(None, gt=0, description="time limit for this item's work in the student's process")
    limits: ItemLimits | None = Field(None, description="this item's own hard limits (default: the rubric's `limits:`)")

    def needs_reference(self) -> bool:
        return False

    def files(self) -> list[str]:
        target = getattr(self, "target", None)
        return [target.file] if target is not None else []


@dataclass
class Verdict:
    """What a check concludes about one item."""

    points: float
    message: str
    details: list[str] = field(default_factory=list)
    status: str | None = None  # derived from points unless set: skipped / uncertain
    where: str | None = None  # file:line in the student's code
    extra: dict = field(default_factory=dict)

    @classmethod
    def full(cls, item: ItemBase, message: str, **kw) -> "Verdict":
        return cls(item.points, message, **kw)

    @classmethod
    def zero(cls, message: str, **kw) -> "Verdict":
        return cls(0.0, message, **kw)

    @classmethod
    def skipped(cls, message: str, **kw) -> "Verdict":
        return cls(0.0, message, status="skipped", **kw)


class NotGradable(GraderError):
    """The item cannot be graded here (missing checkpoint, data, reference): it is skipped."""


class Incomplete(NotGradable):
    """A file the student hands in is missing (challenge.pt): the item is skipped, and the
    submission is incomplete, never a pass.  `missing`: the short line the report shows."""

    def __init__(self, message: str, missing: str):
        super().__init__(message)
        self.missing = missing


@dataclass
class Context:
    rubric: "Rubric"
    submission: Path
    student: "StudentProcess"
    reference: "Reference | None"
    options: Options
    load_data: Callable[["DataSpec"], "LabelledImages"]
    progress: Callable[[str], None] = lambda text: None
    reuse: "Reuse | None" = None  # results shared across a class (grader.reuse)
    student_id: str = ""

    def timeout(self, item: ItemBase) -> float:
        return item.timeout_s or self.rubric.limits.item_timeout_s

    def release(self, built: dict) -> None:
        """Free a model the student's process built: a check done with a large model
        (hundreds of millions of weights) must not keep it for the next items."""
        self.student.call("release", handle=built["handle"])

    def require_reference(self) -> "Reference":
        if self.reference is None:
            raise NotGradable("needs the instructor's reference solution, which is not available here; "
                              "this item is graded by the instructor")
        return self.reference

    def conceals(self, item: ItemBase) -> bool:
        """Whether the messages of `item` must not state the reference's values: always in a handout
        (grader.answers), and for what students read before the deadline (Gradescope's `visible`)."""
        conceals = getattr(self.reference, "conceals", None)
        return bool(conceals(item)) if conceals is not None else False

    def expected_layers(self, item: ItemBase, file: str, name: str, args=(), kwargs=None, isolate=(),
                        module: str | None = None, section: str | None = None) -> Expected:
        """The reference's layers as a check compares with them: sealed (digests only) where the
        messages of `item` must not quote them, plain otherwise."""
        reference = self.require_reference()
        if self.conceals(item):
            sealed = reference.sealed(file, name, args, kwargs, isolate, module=module, section=section)
            return Expected(sealed["nodes"], sealed["salt"])
        if module is not None:
            return Expected(reference.describe_module(file, name, args, kwargs, isolate, module=module)["nodes"])
        return Expected(reference.describe(file, name, args, kwargs, isolate, section=section)["nodes"])

    def find_checkpoint(self, name: str) -> Path | None:
        from grader.checkpoints import search_order

        for folder in search_order(self.options, self.rubric, self.submission):
            candidate = Path(folder) / name
            if folder == self.submission and (candidate.is_symlink() or not candidate.resolve()
                                              .is_relative_to(Path(folder).resolve())):
                continue  # a student's link is never followed (it could name the label cache)
            if candidate.is_file():
                return candidate
        return None
