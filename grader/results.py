"""What a grading run produces: one result per rubric item and the report around them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASSED, PARTIAL, FAILED, SKIPPED, UNCERTAIN, ERROR = "passed", "partial", "failed", "skipped", "uncertain", "error"
# Whose result was reused (grader.reuse), and a suspected lookup of the public test set
# (grader.checks.accuracy): for the instructor's record only.
PROVENANCE = ("reused_from", "reuse", "lookup_suspect")
# Gradescope's formats for results.json's texts ("simple_format" when unset, which passes some HTML).
PLAIN_TEXT = {"output_format": "text", "test_output_format": "text", "test_name_format": "text"}


@dataclass
class ItemResult:
    id: str
    title: str
    points: float
    max_points: float
    status: str
    message: str
    details: list[str] = field(default_factory=list)
    where: str | None = None
    visibility: str = "visible"
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def graded(self) -> bool:
        return self.status != SKIPPED

    @property
    def ok(self) -> bool:
        return self.status == PASSED or (self.status == UNCERTAIN and self.points >= self.max_points)


@dataclass
class GradeReport:
    assignment: str
    submission: str
    results: list[ItemResult]
    seconds: float = 0.0
    isolation: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output: str = ""
    # Files that did not load (and notebook cells that failed): {file, message, where, code}.
    # Each is a failure of the submission, whatever its items' visibility.
    problems: list[dict] = field(default_factory=list)
    # What is yet to be handed in ("challenge.pt missing (see grader train)"): never a pass.
    incomplete: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(r.points for r in self.results), 4)

    @property
    def max_score(self) -> float:
        return round(sum(r.max_points for r in self.results), 4)

    @property
    def boundary(self) -> str:
        """Which OS boundary the student's code ran in, in a few words, for every report."""
        return boundary_name(self.isolation)

    @property
    def all_passed(self) -> bool:
        return not self.problems and not self.incomplete and all(r.ok for r in self.results if r.graded)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score)
        return data

    def to_gradescope(self) -> dict:
        """Gradescope's results.json: https://gradescope-autograders.readthedocs.io/en/latest/specs/"""
        tests = []
        for r in self.results:
            output = r.message
            if r.where:
                output += f"\n  at {r.where}"
            if r.details:
                output += "\n" + "\n".join(f"  - {d}" for d in r.details)
            measured = {k: v for k, v in r.extra.items() if k not in PROVENANCE}
            tests.append({
                "name": r.title or r.id,
                "score": r.points,
                "max_score": r.max_points,
                "status": "passed" if r.ok else "failed",
                "output": output,
                "visibility": r.visibility,
                "extra_data": {"id": r.id, "status": r.status, **({"measured": measured} if measured else {})},
            })
        problems = [problem_text(p) for p in self.problems] + [f"incomplete: {m}" for m in self.incomplete]
        # Every text here may hold a student's (messages, file names, output): declared plain text,
        # so Gradescope shows it as it is and never renders it as HTML or Markdown.
        return {"score": self.score, "execution_time": round(self.seconds, 3), "tests": tests,
                "output": "\n".join(problems + self.notes), **PLAIN_TEXT, "extra_data": {"boundary": self.boundary}}


def boundary_name(isolation: dict) -> str:
    """'bubblewrap sandbox', 'NONE (...)', or 'no student code ran', from a report's isolation facts
    (what grader.sandbox.guard wrote inside the student's process)."""
    text = str((isolation or {}).get("boundary") or "")
    if not text:
        return "no student code ran"
    if text.startswith("none"):
        return "NONE: this code ran WITHOUT OS isolation"
    return f"{text.split(':')[0]} sandbox"


def problem_text(problem: dict) -> str:
    """'resnet50_skeleton.py: SyntaxError: invalid syntax (resnet50_skeleton.py:69)'."""
    where = problem.get("where")
    text = f"{problem['file']}: {problem['message']}"
    return f"{text} ({where})" if where and where not in text else text
