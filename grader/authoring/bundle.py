"""Handouts: what students get (skeleton, public rubric, a short README) and what a
co-instructor or TA gets (everything, with the rubric's paths pointing inside the zip).

The student zip is checked before it is written: no reference file, no hidden item,
and no line of a solution block may be in it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from grader.authoring import handout_readme, skeleton
from grader.errors import GraderError
from grader.rubric import Rubric, json_schema

# Fixed timestamps: the same sources give byte-identical zips.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
DISTRIBUTION = "cnn-grader"  # our name on the package index ("grader" there is another project)
DEFAULT_INSTALL = f"python -m pip install {DISTRIBUTION}"
ANSWERS_NAME = "answers.json"  # and answers.safetensors beside it
SCHEMA_COMMENT = "# yaml-language-server: $schema="
_BINARY_SUFFIXES = (".safetensors", ".whl")  # numbers and a zip: no line of text to leak
_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".tar")


class BundleError(GraderError):
    """The bundle cannot be made safely; the message says what to fix."""


@dataclass
class Bundle:
    path: Path
    members: list[str]


def student(rubric: Rubric, out: Path, *, with_checkpoints: bool = False,
            install: str = DEFAULT_INSTALL, with_wheel: bool = False) -> Bundle:
    """skeleton files + <assignment>.yaml (public items only) + README.md, under <assignment>/."""
    files = _student_files(rubric)
    public = rubric.public_view()
    answers = _public_answers(rubric, public)
    if answers:
        public = public.model_copy(update={"answers": ANSWERS_NAME})
    checkpoints = _instructor_checkpoints(rubric, public) if with_checkpoints else {}
    wheel = _wheel() if with_wheel else None
    if wheel is not None and install == DEFAULT_INSTALL:
        install = f"python -m pip install ./wheels/{wheel[0]}"
    name = rubric.assignment
    header = (f"# Public rubric of {name} for the students' self-check (grader check .).\n"
              f"# Written by `grader bundle {name} --student`; hidden items are graded by the instructor.\n")
    members = {f"{name}/{rel}": data for rel, data in files.items()}
    members[f"{name}/{name}.yaml"] = public.model_copy(update={"skeleton": None, "checkpoints": None}).to_yaml(
        header).encode()
    members[f"{name}/README.md"] = handout_readme.student(public, sorted(files), sorted(checkpoints),
                                                          install).encode()
    for file_name, path in checkpoints.items():
        members[f"{name}/{file_name}"] = path
    if wheel is not None:
        members[f"{name}/wheels/{wheel[0]}"] = wheel[1]
    for file_name, data in answers.items():
        members[f"{name}/{file_name}"] = data
    _refuse_solutions(rubric, members)
    return write_zip(out, members)


def instructor(rubric: Rubric, out: Path) -> Bundle:
    """Everything: the rubric (comments kept, paths rewritten), reference, skeleton, checkpoints."""
    name = f"{rubric.assignment}-instructor"
    members: dict[str, bytes | Path] = {}
    folders = {"reference": rubric.reference_dir(), "skeleton": rubric.skeleton_dir(),
               "checkpoints": (rubric.checkpoint_dirs() or [None])[0]}
    present = {}
    for key, folder in folders.items():
        if folder is not None and folder.is_dir():
            present[key] = key
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder).as_posix()
                if path.is_file() and "__pycache__" not in rel:
                    members[f"{name}/{key}/{rel}"] = path
    if "reference" not in present:
        raise BundleError(f"the reference solution of {rubric.assignment} is not there "
                          f"({rubric.reference_dir() or 'no reference: in the rubric'})")
    text = rubric.path.read_text() if rubric.path else rubric.to_yaml()
    members[f"{name}/{rubric.assignment}.yaml"] = _with_schema_line(rewrite_paths(text, present)).encode()
    members[f"{name}/rubric.schema.json"] = (json.dumps(json_schema(), indent=2) + "\n").encode()
    members[f"{name}/README.md"] = handout_readme.instructor(rubric, sorted(present)).encode()
    return write_zip(out, members)


def rewrite_paths(text: str, paths: dict[str, str | None]) -> str:
    """Set the top-level `reference:`/`skeleton:`/`checkpoints:` of a rubric's YAML text,
    keeping every comment; keys not in `paths` are removed."""
    root = yaml.compose(text)
    lines = text.splitlines(keepends=True)
    found = {}
    for key, value in root.value:
        if key.value in ("reference", "skeleton", "checkpoints"):
            found[key.value] = (key.start_mark.line, value.end_mark.line)
    for key, (first, last) in sorted(found.items(), key=lambda kv: -kv[1][0]):
        replacement = [f"{key}: {paths[key]}\n"] if paths.get(key) else []
        lines[first:last + 1] = replacement
    missing = [k for k in ("reference", "skeleton", "checkpoints") if paths.get(k) and k not in found]
    if missing:
        at = next(i for i, line in enumerate(lines) if line.startswith("files:")) + 1
        lines[at:at] = [f"{k}: {paths[k]}\n" for k in missing]
    return "".join(lines)


def _with_schema_line(text: str) -> str:
    """Point the editor's schema comment at the schema shipped beside the rubric."""
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith(SCHEMA_COMMENT)]
    return f"{SCHEMA_COMMENT}rubric.schema.json\n" + "".join(lines)


# -- what students get -------------------------------------------------------------


def _student_files(rubric: Rubric) -> dict[str, bytes]:
    reference, folder = rubric.reference_dir(), rubric.skeleton_dir()
    if folder is not None and folder.is_dir():
        if reference is not None and reference.is_dir():
            stale = skeleton.stale(reference, folder)
            if stale:
                raise BundleError(f"{folder} is out of date with the reference ({', '.join(stale)}): run "
                                  f"`grader skeleton {rubric.assignment}` first")
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts}
    if reference is not None and reference.is_dir():
        return skeleton.student_files(reference)
    raise BundleError(f"{rubric.assignment} has neither a skeleton folder nor a reference to make one from")


def _public_answers(rubric: Rubric, public: Rubric) -> dict[str, bytes]:
    """What the visible items compare against, computed here with the reference and the public
    seeds (grader.answers): data for the handout, in place of the solution."""
    needing = [item.id for item in public.items if item.needs_reference()]
    if not needing:
        return {}
    reference = rubric.reference_dir()
    if reference is None or not reference.is_dir():
        raise BundleError(f"visible item(s) {', '.join(needing)} need the reference solution to compute their "
                          "answers, and it is not there: make them `visibility: hidden` or give their expected "
                          "values in the rubric")
    from grader import grading
    from grader.answers import Recorder
    from grader.options import Options
    from grader.reference import Reference

    recorder = Recorder(Reference(reference, notebook=rubric.notebook))
    own = Options(self_check=True)  # the instructor's own reference: may run where bubblewrap is missing
    report = grading.grade(reference, public, own, items=needing, reference=recorder)
    failed = [r for r in report.results if r.points < r.max_points]
    if failed:
        r = failed[0]
        raise BundleError(f"the reference solution does not pass visible item {r.id} ({r.message}): its answers "
                          "would be wrong; fix the rubric or the reference")
    with tempfile.TemporaryDirectory() as tmp:
        written = recorder.save(Path(tmp) / ANSWERS_NAME)
        return {path.name: path.read_bytes() for path in written}


def _wheel() -> tuple[str, bytes]:
    """This grader as a wheel, built from its source tree without the network."""
    import grader

    root = Path(grader.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise BundleError("--with-wheel builds the wheel from the grader's source tree, and this grader was installed "
                          "from a package: run it from a clone, or give `--install` the line students should run")
    with tempfile.TemporaryDirectory() as tmp:
        # Built from a clean copy: a build/ folder left in the tree could bring back deleted modules.
        source = Path(tmp) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy(root / name, source / name)
        shutil.copytree(root / "grader", source / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--no-index", "-q", "-w", str(Path(tmp) / "out"), str(source)],
                              capture_output=True, text=True)
        wheels = sorted((Path(tmp) / "out").glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise BundleError(f"cannot build the grader's wheel: {(done.stderr or done.stdout).strip()[-300:]}")
        return wheels[0].name, wheels[0].read_bytes()


def _instructor_checkpoints(rubric: Rubric, public: Rubric) -> dict[str, Path]:
    found = {}
    for item in public.items:
        name = getattr(item, "checkpoint", None)
        for folder in rubric.checkpoint_dirs():
            if name and (folder / name).is_file():
                found[name] = folder / name
    return found


def _refuse_solutions(rubric: Rubric, members: dict[str, bytes | Path]) -> None:
    """Last line of defence: the zip holds no solution line and no reference file."""
    reference = rubric.reference_dir()
    if reference is None or not reference.is_dir():
        return
    texts = {name: data.decode(errors="replace") for name, data in members.items()
             if isinstance(data, bytes) and not name.endswith(_BINARY_SUFFIXES)}
    handed_out = {line.strip() for text in texts.values() for line in text.splitlines()}
    for path in sorted(reference.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        student_version = skeleton.render(path)
        allowed = {line.strip() for line in skeleton.source_text(path, student_version).splitlines()}
        secret = {line for line in skeleton.solution_text(path) if line not in allowed}
        # Whole lines, and longer solution lines anywhere (in a title, a comment, the README).
        leaked = sorted(line for line in secret
                        if line in handed_out or (len(line) >= 12 and any(line in t for t in texts.values())))
        if leaked:
            raise BundleError(f"the student bundle would contain solution code from {path.name}: {leaked[0]!r}")
        original = path.read_bytes()
        if student_version != original and any(data == original for data in members.values()
                                               if isinstance(data, bytes)):
            raise BundleError(f"the student bundle would contain the reference file {path.name}")


def write_zip(out: Path, members: dict[str, bytes | Path], executable: tuple[str, ...] = ()) -> Bundle:
    """A reproducible zip (fixed dates, sorted names); `executable` members get mode 755."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(members):
            data = members[name]
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            # Weights do not compress: store them as they are, and quickly.
            info.compress_type = zipfile.ZIP_STORED if name.endswith(_CHECKPOINT_SUFFIXES) else zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            z.writestr(info, data.read_bytes() if isinstance(data, Path) else data)
    tmp.replace(out)
    return Bundle(out, sorted(members))
