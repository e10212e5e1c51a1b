"""Finding the rubric for a submission: by path, by assignment name, from a handout
folder, or by the file names the submission holds."""

from __future__ import annotations

from pathlib import Path

import yaml

from grader.rubric import model as rubric_module
from grader.rubric.model import Rubric, RubricError


def project_root() -> Path | None:
    """The grader checkout (with rubrics/) when grader runs from one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "rubrics").is_dir() else None


def builtin_rubrics() -> dict[str, Path]:
    root = project_root()
    if root is None:
        return {}
    return {p.stem: p for p in sorted((root / "rubrics").glob("*.yaml"))}


def local_rubrics() -> dict[str, Path]:
    """Rubrics of the course folder the command runs in: ./rubrics/NAME.yaml."""
    local = Path.cwd() / "rubrics"
    return {p.stem: p for p in sorted(local.glob("*.yaml"))} if local.is_dir() else {}


def course_rubrics() -> dict[str, Path]:
    """Rubrics by name: the course folder's first, then grader's own."""
    return {**builtin_rubrics(), **local_rubrics()}


def load_named(rubric_arg: str) -> Rubric:
    """A rubric by YAML path or by assignment name (./rubrics/NAME.yaml, then grader's own)."""
    path = Path(rubric_arg)
    if path.is_file():
        return rubric_module.load(path)
    known = course_rubrics()
    if rubric_arg in known:
        return rubric_module.load(known[rubric_arg])
    raise RubricError(f"no rubric {rubric_arg!r}: give a YAML path or one of {', '.join(known) or '(none)'}")


def resolve(rubric_arg: str | None, submission: Path) -> Rubric:
    if rubric_arg:
        return load_named(rubric_arg)
    for folder in (submission, submission.parent):
        for candidate in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            if _looks_like_rubric(candidate):
                return rubric_module.load(candidate)
    return _by_files(submission)


def _looks_like_rubric(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "assignment" in data and "items" in data


def _by_files(submission: Path) -> Rubric:
    present = {p.name for p in submission.iterdir()} if submission.is_dir() else set()
    candidates = []
    for name, path in builtin_rubrics().items():
        try:
            files = yaml.safe_load(path.read_text()).get("files", [])
        except (yaml.YAMLError, OSError, AttributeError):
            continue
        overlap = len(set(files) & present)
        if overlap:
            candidates.append((overlap == len(files), overlap, name, path))
    if not candidates:
        raise RubricError(f"no rubric matches the files in {submission}; pass --rubric (one of: "
                          f"{', '.join(builtin_rubrics()) or 'none found'})")
    candidates.sort(reverse=True)
    return rubric_module.load(candidates[0][3])
