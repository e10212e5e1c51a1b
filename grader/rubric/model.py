"""The rubric: a YAML file that is the whole description of an assignment.

It names the files a submission holds, where the reference solution and the
instructor's checkpoints are, the data set and its normalisation, the limits a
student's code runs under, and the items: id, title, points, visibility and a
check kind with its parameters.  Errors are reported with the YAML line.
"""

from __future__ import annotations

from pathlib import Path
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from grader.errors import GraderError
from grader.checks import KINDS, AnyItem
from grader.datasets import DataSpec
from grader.rubric import messages as rubric_messages
from grader.rubric.messages import LocatedError

PUBLIC_VISIBILITY = "visible"
from grader.notebook import NotebookOptions


class RubricError(GraderError):
    """A rubric that cannot be used; the message says where and what is expected."""


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(900, gt=0, description="wall-clock limit for one whole submission")
    item_timeout_s: float = Field(120, gt=0, description="limit for one item's work in the student's process")
    memory_mb: int = Field(4096, gt=0, description="memory the student's process may allocate")
    output_mb: float = Field(10, gt=0, description="output the student's code may print")
    disk_mb: float = Field(512, gt=0, description="what the student's code may write: /tmp, /dev/shm and its "
                           "folder together (in memory, never on the disk)")
    processes: int = Field(256, ge=8, le=100000, description="processes and threads the student's code may "
                           "have at once (PyTorch's own threads count)")
    open_files: int = Field(1024, ge=64, le=1 << 20, description="files the student's process may hold open")
    cpu_s: float = Field(3600, gt=0, description="CPU time one student process may use")
    import_s: float = Field(10, gt=0, description=(
        "time importing one .py file may take: a file still running then (training at import) is stopped "
        "there, and the classes and functions it defined before that line are graded"))


class Environment(BaseModel):
    """The Python packages the course provides besides PyTorch (`grader env install` installs them)."""

    model_config = ConfigDict(extra="forbid")
    packages: list[str] = Field(default_factory=list, description=(
        "pip names, optionally with versions (tqdm, torchsummary, seaborn, scikit-learn>=1.3): students' files "
        "may import them; an import of another missing package is an environment problem, not a code error"))


class SlurmResources(BaseModel):
    """What each student's job asks for under `grader batch --executor slurm` (flags override)."""

    model_config = ConfigDict(extra="forbid")
    partition: str | None = Field(None, description="Slurm partition (queue) for the jobs")
    gpus: int = Field(0, ge=0, description="GPUs per job")
    cpus: int = Field(2, gt=0, description="CPU cores per job")
    time_min: int | None = Field(None, gt=0, description="time limit per job, minutes (default: from "
                                 "limits.timeout_s)")
    mem_gb: float | None = Field(None, gt=0, description="memory per job, GB (default: limits.memory_mb + 2 GB)")


class HiddenPart(BaseModel):
    """What a public rubric leaves out, so a student's self-check can say how much is still to come."""

    model_config = ConfigDict(extra="forbid")
    items: int = Field(ge=0, description="number of items graded by the instructor only")
    points: float = Field(ge=0, description="their points")


class LatePolicy(BaseModel):
    """How late work loses points (grader.batch.late applies it to the submission times)."""

    model_config = ConfigDict(extra="forbid")
    deadline: str | None = Field(None, description="due time, ISO 8601 (2026-03-01T23:59:00+01:00); "
                                 "`grader batch --deadline` replaces it")
    percent_per_day: float = Field(ge=0, le=100, description="percent of the earned points lost per day late")
    grace_minutes: float = Field(0, ge=0, description="lateness forgiven: within it a submission is on time")
    whole_days: bool = Field(True, description="true: every started day counts as a whole day (1 h late = 1 day)")
    max_days: float | None = Field(None, gt=0, description="later than this many days: zero points")
    cap_percent: float | None = Field(None, ge=0, le=100, description="the most a late submission loses, percent")


class Leaderboard(BaseModel):
    """The challenge's leaderboard: in each results.json (Gradescope's `leaderboard`) and the class summary."""

    model_config = ConfigDict(extra="forbid")
    item: str = Field(description="the accuracy item whose model is ranked, e.g. challenge.accuracy")
    top: int = Field(10, ge=1, description="how many students the class summary shows")


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", title="grader rubric")
    assignment: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", description="short name: letters, digits, _ and -")
    title: str = Field("", description="shown in reports")
    files: list[str] = Field(min_length=1, description="files a submission holds, by the course's names")
    reference: str | None = Field(None, description="reference solution folder, relative to this file")
    skeleton: str | None = Field(None, description="student skeleton folder, relative to this file")
    checkpoints: str | None = Field(None, description="instructor checkpoints folder, relative to this file")
    public: bool = Field(False, description="true in the student handout: hidden items are not included")
    answers: str | None = Field(None, description=(
        "in a handout: the answers file (JSON, tensors beside it in .safetensors) that public items are checked "
        "against instead of the reference solution; written by `grader bundle --student`"))
    grading_seed: int | None = Field(None, description=(
        "instructor's secret: moves the seeds of weights and inputs in real grading, so the outputs a handout's "
        "answers file holds (computed with the public seeds) serve nothing there; never handed out"))
    hidden: HiddenPart | None = Field(None, description="in a public rubric: what the instructor grades besides")
    data: DataSpec = Field(default_factory=DataSpec, description="the data set accuracy items measure on")
    limits: Limits = Field(default_factory=Limits, description="time, memory and other hard limits for the student's code")
    slurm: SlurmResources | None = Field(None, description="resources per job when a class is graded on Slurm")
    environment: Environment | None = Field(None, description="packages the course's environment provides")
    notebook: NotebookOptions | None = Field(None, description="how notebook (.ipynb) submissions are run")
    items: list[AnyItem] = Field(min_length=1, description="what is graded, in report order")
    late: LatePolicy | None = Field(None, description="penalty for late submissions (grader batch and rescore)")
    leaderboard: Leaderboard | None = Field(None, description="rank the challenge: an accuracy item's accuracy, "
                                            "model size and training time")

    path: SkipJsonSchema[Path | None] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self):
        seen = set()
        for index, item in enumerate(self.items):
            if item.id in seen:
                raise LocatedError(("items", index, "id"), f"item id {item.id!r} is used twice")
            seen.add(item.id)
            for file in item.files():
                if file not in self.files:
                    raise LocatedError(("items", index, "target", "file"),
                                       f"{file!r} is not one of the rubric's files ({', '.join(self.files)})")
            self._check_section(item)
        if self.leaderboard is not None:
            ranked = next((i for i in self.items if i.id == self.leaderboard.item), None)
            if ranked is None or ranked.check != "accuracy":
                raise LocatedError(("leaderboard", "item"), f"{self.leaderboard.item!r} is not an accuracy item of "
                                   "this rubric")
        if self.late is not None and self.late.deadline is not None:
            from datetime import datetime

            try:
                datetime.fromisoformat(self.late.deadline)
            except ValueError:
                raise LocatedError(("late", "deadline"), f"{self.late.deadline!r} is not an ISO time such as "
                                   "2026-03-01T23:59:00+01:00") from None
        return self

    def _check_section(self, item) -> None:
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

    def answers_file(self) -> Path | None:
        return self._relative(self.answers)

    def skeleton_dir(self) -> Path | None:
        return self._relative(self.skeleton)

    def checkpoint_dirs(self) -> list[Path]:
        folder = self._relative(self.checkpoints)
        return [folder] if folder else []

    def with_limits(self, *, timeout_s: float | None = None, item_timeout_s: float | None = None,
                    memory_mb: int | None = None, output_mb: float | None = None) -> "Rubric":
        """A copy under the instructor's command-line limits.

        An item timeout given here replaces the items' own timeout_s too: it is an override."""
        changes = {k: v for k, v in dict(timeout_s=timeout_s, item_timeout_s=item_timeout_s, memory_mb=memory_mb,
                                         output_mb=output_mb).items() if v is not None}
        if not changes:
            return self
        update = {"limits": self.limits.model_copy(update=changes)}
        if item_timeout_s is not None:
            update["items"] = [item.model_copy(update={"timeout_s": None}) for item in self.items]
        return self.model_copy(update=update)

    @property
    def total_points(self) -> float:
        return sum(item.points for item in self.items)

    def public_view(self) -> "Rubric":
        """The student's self-check: visible items only, no reference, and a count of what is hidden."""
        public = [item for item in self.items if item.visibility == PUBLIC_VISIBILITY]
        hidden = [item for item in self.items if item.visibility != PUBLIC_VISIBILITY]
        if not public:
            raise RubricError(f"{self.assignment} has no visible item: a student's self-check would be empty")
        view = self.model_copy(update={
            "items": public, "public": True, "reference": None, "grading_seed": None,
            "hidden": HiddenPart(items=len(hidden) + (self.hidden.items if self.hidden else 0),
                                 points=sum(i.points for i in hidden) + (self.hidden.points if self.hidden else 0)),
        })
        view.path = self.path
        return view

    def to_yaml(self, header: str = "") -> str:
        """The rubric as YAML (defaults left out), as `grader bundle` writes it."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data = {"assignment": data.pop("assignment"), **data}  # the name first, as people write it
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
        return header + text

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
    problems = rubric_messages.duplicate_keys(root, where)
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as e:
        problems += [_explain(error, root, where, data) for error in e.errors()]
    if problems:
        raise RubricError("\n".join(problems)) from None
    rubric.path = path.resolve() if path else None
    return rubric


def _explain(error: dict, root, where: str, data=None) -> str:
    return rubric_messages.explain(error, root, data, where, KINDS, Rubric)


def json_schema() -> dict:
    """The JSON Schema of the rubric format, for editors (yaml-language-server) and other tools."""
    import json

    text = json.dumps(Rubric.model_json_schema(mode="validation"))
    for kind, module in KINDS.items():  # readable names for the item kinds: accuracy_item, ...
        qualified = module.Item.__module__.replace(".", "__") + "__Item"
        text = text.replace(f'"{qualified}"', f'"{kind}_item"').replace(f"/{qualified}\"", f'/{kind}_item"')
    schema = json.loads(text)
    for kind, module in KINDS.items():
        definition = schema["$defs"].get(f"{kind}_item")
        if definition is not None:
            definition["title"] = f"{kind} item"
            definition["description"] = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = ("A grader rubric: the files a submission holds, where the reference solution and "
                             "checkpoints are, the data set, the limits, and the graded items.")
    return schema
