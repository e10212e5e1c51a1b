"""Handouts: what students get (skeleton, public rubric, a short README) and what a
co-instructor or TA gets (everything, with the rubric's paths pointing inside the zip).

The student zip is checked before it is written: no reference file, no hidden item,
and no line of a solution block may be in it.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grader.authoring import handout_readme, skeleton, wheel
from grader.errors import GraderError
from grader.rubric import Rubric, json_schema

# Fixed timestamps: the same sources give byte-identical zips.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
DISTRIBUTION = wheel.DISTRIBUTION  # our name on the package index ("grader" there is another project)
INDEX_INSTALL = f"python -m pip install {DISTRIBUTION}"  # once it is published there
CARRIED_INSTALL = f"python -m pip install --no-index --find-links wheels {DISTRIBUTION}"  # from the handout's wheels/
ANSWERS_NAME = "answers.json"  # and answers.safetensors beside it
SCHEMA_COMMENT = "# yaml-language-server: $schema="
_BINARY_SUFFIXES = (".safetensors", ".whl")  # numbers and a zip: no line of text to leak
_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".tar")
_STORED_SUFFIXES = _CHECKPOINT_SUFFIXES + (".whl",)  # already compressed: stored as they are


class BundleError(GraderError):
    """The bundle cannot be made safely; the message says what to fix."""


@dataclass
class Bundle:
    path: Path
    members: list[str]
    notes: list[str] = field(default_factory=list)  # for the instructor: what the bundle could not do


def student(rubric: Rubric, out: Path, *, with_checkpoints: bool = False, install: str | None = None,
            install_url: str | None = None, platforms: tuple[str, ...] = wheel.DEFAULT_PLATFORMS) -> Bundle:
    """skeleton files + <assignment>.yaml (public items only) + README.md, under <assignment>/.

    How students install the grader: by default from wheels/ in the handout (this grader and its
    dependencies, for `platforms`), offline; from `install_url` (a wheel the instructor hosts);
    or with the `install` command given (`python -m pip install cnn-grader` once published)."""
    files = _student_files(rubric)
    public = rubric.public_view()
    answers = _public_answers(rubric, public)
    if answers:
        public = public.model_copy(update={"answers": ANSWERS_NAME})
    checkpoints = _instructor_checkpoints(rubric, public) if with_checkpoints else {}
    wheels, notes = {}, []
    if install is None and install_url is not None:
        install = f"python -m pip install {install_url}"
    elif install is None:
        install, wheels, notes = _carried(platforms)
    name = rubric.assignment
    header = (f"# Public rubric of {name} for the students' self-check (grader check .).\n"
              f"# Written by `grader bundle {name} --student`; hidden items are graded by the instructor.\n")
    members = {f"{name}/{rel}": data for rel, data in files.items()}
    members[f"{name}/{name}.yaml"] = public.model_copy(update={"skeleton": None, "checkpoints": None}).to_yaml(
        header).encode()
    carried_for = platforms if install == CARRIED_INSTALL else None
    members[f"{name}/README.md"] = handout_readme.student(public, sorted(files), sorted(checkpoints),
                                                          install, carried_for).encode()
    for file_name, path in checkpoints.items():
        members[f"{name}/{file_name}"] = path
    for file_name, data in wheels.items():
        members[f"{name}/wheels/{file_name}"] = data
    for file_name, data in answers.items():
        members[f"{name}/{file_name}"] = data
    _refuse_solutions(rubric, members)
    made = write_zip(out, members)
    made.notes = notes
    return made


def _carried(platforms: tuple[str, ...]) -> tuple[str, dict[str, bytes | Path], list[str]]:
    """The install line and wheels/ of a handout that installs from its own files: this grader's
    wheel and its dependencies' (torch excepted).  Offline, the grader's wheel alone, and the line
    takes the dependencies from the package index (a note says so)."""
    unknown = [p for p in platforms if p not in wheel.PLATFORMS]
    if unknown:
        raise BundleError(f"unknown platform {unknown[0]!r}; the platforms are: {', '.join(wheel.PLATFORMS)}")
    name, data = wheel.build()
    carried: dict[str, bytes | Path] = {name: data}
    try:
        carried.update({path.name: path for path in wheel.dependencies(tuple(platforms))})
    except wheel.WheelError as e:
        note = (f"{e}: the handout carries the grader's wheel only, and its README installs the dependencies "
                "from the package index (online); run the bundle again online to carry them")
        return f"python -m pip install --find-links wheels {DISTRIBUTION}", carried, [note]
    return CARRIED_INSTALL, carried, []


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
            info.compress_type = zipfile.ZIP_STORED if name.endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            z.writestr(info, data.read_bytes() if isinstance(data, Path) else data)
    tmp.replace(out)
    return Bundle(out, sorted(members))
