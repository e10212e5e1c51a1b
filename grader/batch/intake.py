"""Finding each student's submission in what an instructor downloads.

Layouts understood (see docs/instructors.md):
  * one folder or one .zip per student, named by the student;
  * Moodle's "Download all submissions": `Jane Doe_123456_assignsubmission_file_<file>`
    (flat) or folders `Jane Doe_123456_assignsubmission_file_/`;
  * Canvas: `doejane_123456_7891011_<file>`, with `_LATE_` for late work and `-1`, `-2`
    appended to the names of resubmitted files;
  * Blackboard: `<Assignment>_<username>_attempt_<YYYY-MM-DD-hh-mm-ss>_<file>` (the latest
    attempt of each student is graded), with the attempt's .txt giving the name;
  * Gradescope's export: `submission_<n>/` folders and submission_metadata.yml;
  * any flat folder where each file is `<student><separator><file the rubric names>`;
  * the download itself as one .zip.
Students' zips are unpacked safely (grader.batch.unpack) into the output folder; the
instructor's download is never modified.

Student work is hostile here too: whose a file is comes only from the prefix the LMS
writes (one LMS per download, parsed from the left), and so does when it was handed in
(each Submission names its LMS and Blackboard's attempt, for grader.batch.submissions);
symbolic links are never followed
(a student's folder that holds one is copied without it, and a note says so), and
anything an upload breaks while it is read is that student's problem only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grader import links, safe_text
from grader.errors import GraderError
from grader.batch import unpack
from grader.batch.unpack import JUNK, UnpackLimits, UnpackRefused

# Each LMS writes a prefix before the student's own file name.  Names are parsed from the
# left, up to the end of that prefix, and no further: whatever the student called the file
# (even "x_alice_attempt_2099-12-31-23-59-59_main.py") is never read for whose it is.
_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<rest>.*)$")
_CANVAS = re.compile(r"^(?P<name>[a-z0-9\-]+?)(?P<late>_late)?_(?P<id>\d+)_(?P<sub>\d+)_(?P<rest>.+)$", re.I)
_BLACKBOARD = re.compile(r"^(?P<head>.+?)_attempt_(?P<stamp>\d{4}(?:-\d{2}){5})(?:_(?P<rest>.+)|\.txt)$")
# 'main-1.py' (Canvas, a resubmission) and 'main (1).py' (a browser's second download).
_RESUBMITTED = re.compile(r"^(?P<stem>.+?)(?:-\d+| ?\(\d+\))(?P<ext>\.[A-Za-z0-9]+)$")
_IGNORED = {"submission_metadata.yml", "index.html"}
_MAX_DEPTH = 5


class IntakeError(GraderError):
    """The download as a whole cannot be used (not one student's problem); the message says why."""


@dataclass
class Submission:
    id: str
    name: str = ""
    folder: Path | None = None  # what is graded
    sources: list[str] = field(default_factory=list)  # what it was made from, in the download
    notes: list[str] = field(default_factory=list)  # what intake did, for the instructor and the student
    problem: str | None = None  # why it cannot be graded at all
    failure: str = "submission"  # the kind of problem: submission (unreadable) | empty
    lms: str | None = None  # the LMS whose names these are: canvas | moodle | blackboard | gradescope
    attempt: str = ""  # Blackboard: the graded attempt's time, from Blackboard's part of the names


@dataclass
class Intake:
    submissions: list[Submission]
    layout: str
    unassigned: list[str] = field(default_factory=list)  # files that belong to no student


@dataclass
class _Part:
    path: Path
    rest: str | None = None  # for a flat LMS file: the student's own file name
    attempt: str = ""


@dataclass
class _Student:
    id: str
    name: str = ""
    parts: list[_Part] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lms: str | None = None

    def submission(self) -> "Submission":
        attempt = max((p.attempt for p in self.parts), default="")
        return Submission(self.id, safe_text.shown(self.name), sources=[str(p.path) for p in self.parts],
                          notes=list(self.notes), lms=self.lms, attempt=attempt)


def find(root: Path, expected: list[str], staging: Path, limits: UnpackLimits = UnpackLimits(),
         skip: list[Path] = ()) -> Intake:
    """Every student's submission under `root` (a folder or a zip).

    expected: file names the assignment asks for (the rubric's files and checkpoints).
    staging: a folder of the grader's own where zips are unpacked and flat files gathered.
    skip: folders that are not students (the output folder, when it lies inside the download).
    """
    root = given = Path(root)
    if root.is_file() and root.suffix.lower() == ".zip":
        try:
            root = _unpack_download(root, staging / "download", limits)
        except UnpackRefused as e:
            raise IntakeError(f"the class download cannot be used: {e}; download it again") from None
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder or a .zip")
    students, layout, unassigned = _group(root, expected, {Path(p).resolve() for p in skip})
    if not students:
        raise IntakeError(_no_students(given, unassigned, expected))
    submissions = [_prepare_guarded(s, expected, staging / "unpacked", limits) for s in students.values()]
    submissions.sort(key=lambda s: natural_key(s.id))
    return Intake(submissions, layout, unassigned)


def _no_students(root: Path, unassigned: list[str], expected: list[str]) -> str:
    if not unassigned:
        return f"{root} holds no submissions (it is empty): give the folder or .zip with the students' work"
    shown = ", ".join(safe_text.shown(n) for n in unassigned[:3]) + (" ..." if len(unassigned) > 3 else "")
    return (f"{root} holds no submissions: none of its {len(unassigned)} files ({shown}) is a student's folder, "
            f"zip or a file named like {expected[0] if expected else 'the assignment asks'}")


def natural_key(text: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


# -- grouping the download into students -------------------------------------------


def _group(root: Path, expected: list[str], skip: set[Path]) -> tuple[dict[str, _Student], str, list[str]]:
    entries, unassigned = [], []
    for p in sorted(root.iterdir()):
        if _junk(p.name) or p.name in _IGNORED or p.absolute() in skip or p.resolve() in skip:
            continue
        if p.is_symlink():  # never followed: it could point at anything on the instructor's disk
            unassigned.append(f"{p.name} (a symbolic link; links are not followed)")
            continue
        entries.append(p)
    gradescope = _gradescope_names(root)
    lms = _choose_lms(entries)
    students: dict[str, _Student] = {}
    layouts: set[str] = set()

    def student(key: str, name: str = "", lms: str | None = None) -> _Student:
        s = students.setdefault(key, _Student(key))
        s.name = s.name or name
        s.lms = s.lms or lms
        return s

    for path in entries:
        parsed = lms.parse(path) if lms is not None else None
        if parsed is not None:
            key, name, rest, attempt = parsed
            layouts.add(lms.layout)
            if rest is None and path.is_file():  # Blackboard's attempt description
                student(key, name or _blackboard_name(path), lms.key)
                continue
            student(key, name, lms.key).parts.append(_Part(path, rest if path.is_file() else None, attempt))
        elif path.is_dir():
            layouts.add("Gradescope export" if path.name in gradescope else "one folder per student")
            sid, name = gradescope.get(path.name, (path.name, ""))
            student(sid, name, "gradescope" if path.name in gradescope else None).parts.append(_Part(path))
        elif path.suffix.lower() == ".zip":
            layouts.add("one zip per student")
            student(path.stem).parts.append(_Part(path))
        else:
            split = _split_prefix(path.name, expected)
            if split is None:
                unassigned.append(path.name)
                continue
            layouts.add("files prefixed with the student")
            key, rest = split
            student(key).parts.append(_Part(path, rest))
    for s in students.values():
        _keep_latest_attempt(s)
    return _safe_ids(students), " + ".join(sorted(layouts)) or "empty", unassigned


class _Lms:
    """One LMS's naming: parse(path) -> (student key, name, the student's file name or None, attempt);
    prefix(path): how many characters of the name are the LMS's own (None: not its name)."""

    layout = ""
    key = ""

    def parse(self, path: Path):
        raise NotImplementedError

    def prefix(self, path: Path) -> int | None:
        raise NotImplementedError


class _Moodle(_Lms):
    layout = "Moodle download"
    key = "moodle"

    def prefix(self, path: Path) -> int | None:
        m = _MOODLE.match(path.name)
        return m.start("rest") if m else None

    def parse(self, path: Path):
        m = _MOODLE.match(path.name)  # non-greedy: the first '_<id>_assignsubmission_' is Moodle's
        if not m:
            return None
        rest = m["rest"] if path.is_file() else None
        if path.is_file() and m["plugin"] != "file":
            rest = f"{m['plugin']}_{rest}"  # online text and the like: kept, never graded
        return m["id"], m["name"], rest, ""


class _Blackboard(_Lms):
    """`<Assignment>_<username>_attempt_<stamp>_<file>`: the first '_attempt_<stamp>' is Blackboard's;
    the assignment is the part every student's names share, the username what follows it."""

    layout = "Blackboard download"
    key = "blackboard"

    def __init__(self, entries: list[Path]):
        heads = {m["head"] for m in (_BLACKBOARD.match(p.name) for p in entries) if m}
        common = os.path.commonprefix(sorted(heads)) if len(heads) > 1 else ""
        self.assignment = common[:common.rfind("_") + 1]

    def parse(self, path: Path):
        m = _BLACKBOARD.match(path.name)
        if not m:
            return None
        head = m["head"]
        user = head[len(self.assignment):] if self.assignment and head.startswith(self.assignment) else ""
        if not user:
            user = head.rsplit("_", 1)[-1]
        return user, "", m["rest"], m["stamp"]

    def prefix(self, path: Path) -> int | None:
        m = _BLACKBOARD.match(path.name)
        return None if not m else m.start("rest") if m["rest"] is not None else len(path.name)


class _Canvas(_Lms):
    layout = "Canvas download"
    key = "canvas"

    def prefix(self, path: Path) -> int | None:
        m = _CANVAS.match(path.name) if path.is_file() else None
        return m.start("rest") if m else None

    def parse(self, path: Path):
        m = _CANVAS.match(path.name) if path.is_file() else None
        if not m:
            return None
        return m["id"], m["name"] + (" (late)" if m["late"] else ""), m["rest"], ""


def _choose_lms(entries: list[Path]) -> _Lms | None:
    """The LMS whose names most entries have (one download comes from one LMS).

    A student's own file name can look like another LMS's prefix, but only inside the real
    LMS's name, which the real LMS's pattern also matches: it never outnumbers the real one.
    It can tie (every file of the download named so), and then the real LMS is the one whose
    part of the names ends first: the look-alike lies in the student's part, after it.
    Equal still: the more specific pattern (Moodle, then Blackboard, then Canvas).
    An LMS must name more than half of the entries: a class of folders made by hand, one of them
    named like an LMS's file, is a class of folders (with no LMS, no submission time)."""
    best, best_rank = None, None
    for order, lms in enumerate((_Moodle(), _Blackboard(entries), _Canvas())):
        prefixes = [n for n in (lms.prefix(p) for p in entries) if n is not None]
        rank = (len(prefixes), -sum(prefixes), -order)
        if 2 * len(prefixes) > len(entries) and (best_rank is None or rank > best_rank):
            best, best_rank = lms, rank
    return best


def _split_prefix(filename: str, expected: list[str]) -> tuple[str, str] | None:
    """'alice_resnet50_skeleton.py' -> ('alice', 'resnet50_skeleton.py')."""
    for known in sorted(expected, key=len, reverse=True):
        stem, ext = os.path.splitext(known)
        copy = r"(?:-\d+| ?\(\d+\))?"  # a Canvas resubmission or a browser's second download
        m = re.match(rf"^(?P<who>.+?)[ _\-.]+(?P<rest>{re.escape(stem)}{copy}{re.escape(ext)})$", filename)
        if m:
            return m["who"], m["rest"]
    return None


def _gradescope_names(root: Path) -> dict[str, tuple[str, str]]:
    meta = root / "submission_metadata.yml"
    if not meta.is_file():
        return {}
    try:
        data = yaml.safe_load(meta.read_text()) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):
        return {}
    out = {}
    for folder, info in data.items() if isinstance(data, dict) else []:
        submitters = (info or {}).get(":submitters") or (info or {}).get("submitters") or []
        if submitters:
            first = submitters[0]
            sid = str(first.get(":sid") or first.get("sid") or first.get(":email") or folder)
            names = ", ".join(str(s.get(":name") or s.get("name") or "") for s in submitters)
            out[str(folder)] = (sid, names)
    return out


def _blackboard_name(path: Path) -> str:
    try:
        first = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    m = re.match(r"^Name:\s*(.+?)\s*(\(.*\))?\s*$", first)
    return m.group(1) if m else ""


def _keep_latest_attempt(s: _Student) -> None:
    attempts = sorted({p.attempt for p in s.parts if p.attempt})
    if len(attempts) > 1:
        latest = attempts[-1]
        s.parts = [p for p in s.parts if p.attempt in ("", latest)]
        s.notes.append(f"graded the latest of {len(attempts)} attempts ({latest})")


def _safe_ids(students: dict[str, _Student]) -> dict[str, _Student]:
    out: dict[str, _Student] = {}
    for key, s in students.items():
        clean = safe_id(key)
        candidate, n = clean, 2
        while candidate in out:
            candidate, n = f"{clean}-{n}", n + 1
        s.id = candidate
        out[candidate] = s
    return out


def safe_id(text: str) -> str:
    """A student key usable as a folder name: no separators, control characters or leading dots."""
    clean = re.sub(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff/\\:*?\"<>|]+", "_",
                   text).strip(" .")
    return clean or "student"


def _junk(name: str) -> bool:
    return name.startswith(".") or name in JUNK or name.startswith("~$")


# -- preparing each student's folder -------------------------------------------------


def _prepare_guarded(s: _Student, expected: list[str], staging: Path, limits: UnpackLimits) -> Submission:
    """_prepare, where anything a student's upload breaks is that student's problem only."""
    try:
        return _prepare(s, expected, staging, limits)
    except (OSError, ValueError, RecursionError, MemoryError) as e:
        sub = s.submission()
        sub.problem = f"the submission could not be read: {type(e).__name__}: {safe_text.shown(e)}"
        return sub


def _prepare(s: _Student, expected: list[str], staging: Path, limits: UnpackLimits) -> Submission:
    sub = s.submission()
    found_links = [link for p in s.parts if p.path.is_dir() for link in links.symlinks(p.path, ignore=_junk)]
    sub.notes += links.notes(found_links)
    in_place = (len(s.parts) == 1 and s.parts[0].path.is_dir() and not found_links
                and not _needs_staging(s.parts[0].path, expected))
    if in_place:
        folder = s.parts[0].path
    else:
        folder = staging / s.id
        try:
            _stage(s, folder, expected, limits, sub.notes)
        except UnpackRefused as e:
            sub.problem = f"the submission could not be unpacked: {e}"
            return sub
    sub.folder = _code_root(folder, expected, sub.notes)
    if next(_walk(sub.folder), None) is None:
        sub.problem, sub.failure = "the submission is empty (no files)", "empty"
    return sub


def _needs_staging(folder: Path, expected: list[str]) -> bool:
    for path in _walk(folder):
        if path.suffix.lower() == ".zip" or _resubmitted_name(path.name, expected):
            return True
    return False


def _walk(folder: Path, depth: int = 0):
    if depth > _MAX_DEPTH:
        return
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    for child in children:
        if _junk(child.name) or child.is_symlink():
            continue
        if child.is_dir():
            yield from _walk(child, depth + 1)
        elif child.is_file():
            yield child


def _stage(s: _Student, folder: Path, expected: list[str], limits: UnpackLimits, notes: list[str]) -> None:
    """Gather the student's parts into `folder`, unless it already holds exactly these parts."""
    marker = folder.with_name(folder.name + ".json")
    signature = _signature(s.parts, limits)
    if folder.is_dir() and marker.is_file():
        try:
            saved = json.loads(marker.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("signature") == signature:
            notes.extend(saved.get("notes", []))
            return
    unpack.clear(folder)
    marker.unlink(missing_ok=True)
    budget = unpack.Unpacked()
    staged_notes: list[str] = []
    for part in s.parts:
        if part.path.is_dir():
            _copy_tree(part.path, folder)
        else:
            _link_or_copy(part.path, folder / safe_id(part.rest or part.path.name))
    for archive in [p for p in _walk(folder) if p.suffix.lower() == ".zip"]:
        unpack.unpack(archive, archive.parent, limits, budget=budget)
        archive.unlink()
        staged_notes.append(f"unpacked {archive.relative_to(folder).as_posix()}")
    staged_notes.extend(budget.notes)
    staged_notes.extend(_undo_resubmission_names(folder, expected))
    notes.extend(staged_notes)
    marker.write_text(json.dumps({"signature": signature, "notes": staged_notes}))


def _signature(parts: list[_Part], limits: UnpackLimits) -> str:
    h = hashlib.sha256(repr((limits.max_bytes, limits.max_files)).encode())
    for part in parts:
        paths = [part.path] if part.path.is_file() else list(_walk(part.path))
        for p in paths:
            st = p.stat()
            h.update(f"{p}|{part.rest}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _copy_tree(source: Path, target: Path) -> None:
    for path in _walk(source):
        _link_or_copy(path, target / path.relative_to(source))


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)  # no copy of large checkpoints when on the same disk
    except OSError:
        shutil.copyfile(source, target)


def _resubmitted_name(name: str, expected: list[str]) -> str | None:
    """'resnet50_skeleton-1.py' -> 'resnet50_skeleton.py' when that is a name the rubric expects.
    Notebooks are left as they are: grading gives a submission's only notebook the course's name
    itself, with the same note whether it runs in a batch or alone (grading.notebook_by_course_name)."""
    if name.lower().endswith(".ipynb"):
        return None
    m = _RESUBMITTED.match(name)
    if m and f"{m['stem']}{m['ext']}" in expected:
        return f"{m['stem']}{m['ext']}"
    return None


def _undo_resubmission_names(folder: Path, expected: list[str]) -> list[str]:
    notes = []
    for path in list(_walk(folder)):
        original = _resubmitted_name(path.name, expected)
        if original and not (path.parent / original).exists():
            path.rename(path.parent / original)
            notes.append(f"renamed {path.name} to {original} (the LMS renames resubmitted files)")
    return notes


def _code_root(folder: Path, expected: list[str], notes: list[str]) -> Path:
    """The folder holding most of the expected files: students often zip a parent folder."""
    best, best_count, best_depth = folder, sum((folder / n).is_file() for n in expected), 0
    if best_count == len(expected):
        return folder
    counts: dict[Path, int] = {}
    for path in _walk(folder):
        if path.name in expected:
            counts[path.parent] = counts.get(path.parent, 0) + 1
    for parent, count in counts.items():
        depth = len(parent.relative_to(folder).parts)
        if count > best_count or (count == best_count and depth < best_depth):
            best, best_count, best_depth = parent, count, depth
    if best != folder:
        notes.append(f"graded the files in {best.relative_to(folder).as_posix()}/")
    return best


def _unpack_download(archive: Path, target: Path, limits: UnpackLimits) -> Path:
    """The whole class's download as one zip: unpacked once (again only when it changes)."""
    marker = target.with_name(target.name + ".json")
    st = archive.stat()
    signature = f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        saved = json.loads(marker.read_text()).get("signature")
    except (OSError, ValueError, AttributeError):
        saved = None
    if not (target.is_dir() and saved == signature):
        unpack.clear(target)
        class_limits = UnpackLimits(max_bytes=limits.max_bytes * 1000, max_files=limits.max_files * 1000)
        unpack.unpack(archive, target, class_limits, nested=False)
        marker.write_text(json.dumps({"signature": signature}))
    entries = [p for p in target.iterdir() if not _junk(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]  # a zip of one folder holding the class
    return target
