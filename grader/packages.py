"""The course's environment: the packages a rubric declares (`environment.packages`), whether
this grading environment has them, the command that installs them, and what an import of a
missing package means for a student's item.

A submission that imports a package the grading environment lacks is not wrong code: its
items are not graded (status error, failure kind "environment") with a message that says
whether the course provides the package (the instructor installs it: `grader env install`) or
not (it is not part of the course's environment).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

# pip names whose import name differs, for packages courses commonly allow
_IMPORT_NAMES = {"scikit-learn": "sklearn", "pillow": "PIL", "opencv-python": "cv2", "opencv-python-headless": "cv2",
                 "pyyaml": "yaml", "beautifulsoup4": "bs4", "torch-summary": "torchsummary",
                 "scikit-image": "skimage", "tensorboardx": "tensorboardX"}
_MISSING_MODULE = re.compile(r"^ModuleNotFoundError: No module named '([A-Za-z_][\w.]*)'")


def distribution(spec: str) -> str:
    """'tqdm>=4.60' -> 'tqdm': the name pip knows, without versions or extras."""
    return re.split(r"[<>=!~\[;@ ]", spec.strip(), maxsplit=1)[0]


def import_name(spec: str) -> str:
    """The top-level module a declared package is imported as: 'scikit-learn' -> 'sklearn'."""
    name = distribution(spec)
    key = name.lower().replace("_", "-")
    if key in _IMPORT_NAMES:
        return _IMPORT_NAMES[key]
    try:
        for module, dists in importlib.metadata.packages_distributions().items():
            if any(d.lower().replace("_", "-") == key for d in dists) and module.isidentifier():
                return module
    except Exception:  # broken metadata of an unrelated package: fall back to the name itself
        pass
    return name.replace("-", "_")


def declared(rubric) -> list[str]:
    environment = getattr(rubric, "environment", None)
    return list(environment.packages) if environment is not None else []


def installed(spec: str) -> bool:
    try:
        return importlib.util.find_spec(import_name(spec)) is not None
    except (ImportError, ValueError):
        return False


def missing(rubric) -> list[str]:
    """Declared packages this grading environment cannot import."""
    return [spec for spec in declared(rubric) if not installed(spec)]


def install_command(rubric) -> list[str]:
    """pip, for this Python, with every declared package (versions as the rubric gives them)."""
    return [sys.executable, "-m", "pip", "install", *declared(rubric)]


def missing_import(message: str, rubric, submission: Path | None) -> str | None:
    """The environment message for a failure 'ModuleNotFoundError: No module named X', or None
    when the missing module is the student's (a file of theirs, the standard library, or a
    module this environment has)."""
    match = _MISSING_MODULE.match(message or "")
    if match is None:
        return None
    top = match.group(1).split(".")[0]
    if top in sys.stdlib_module_names or _own_module(top, submission):
        return None
    try:
        if importlib.util.find_spec(top) is not None:
            return None
    except (ImportError, ValueError):
        pass
    by_module = {import_name(spec): distribution(spec) for spec in declared(rubric)}
    if top in by_module:
        return (f"the grading environment lacks {by_module[top]}, which this course's environment provides "
                f"(rubric environment.packages): not a mistake in the code; the instructor installs it with "
                f"`grader env install {rubric.assignment}` and grades again")
    return (f"{top} is not part of this course's environment (rubric environment.packages), and the grading "
            "environment does not have it: the code cannot be graded here; the instructor may add it to "
            "environment.packages")


def _own_module(name: str, submission: Path | None) -> bool:
    if submission is None:
        return False
    folder = Path(submission)
    return (folder / f"{name}.py").is_file() or (folder / name).is_dir()
