"""What a download says about each submission besides its files: when it was handed in, whether
the LMS marked it late, and who handed it in (the ids an LMS import matches on).

    info = submissions.describe(sub)    # -> {"time", "time_source", "late_marker", "identity", "problem"}

Intake recognises each submission as one LMS's (`sub.lms`), and only that LMS's own record of
the time is read, never a name a student chose (an upload named `..._attempt_2025-01-01-00-00-00.txt`
in a Canvas download is just a file):
  * Blackboard: the graded attempt's time in Blackboard's part of the name
    (`<Assignment>_<user>_attempt_2026-03-01-23-59-00_...`, parsed by intake: `sub.attempt`);
  * Gradescope: `:created_at:` of the submission in submission_metadata.yml;
  * Canvas: `_LATE_` in Canvas's part of the name says the work is late; names carry no time,
    so the files' modification times (kept by Canvas's zip) give how late;
  * Moodle: names carry no time either: the files' modification times (Moodle's zip keeps them);
  * anything else (folders made by hand, zips per student): no time, so never late.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import yaml

# Anchored at the start of the name: the LMS's part, never the student's file name after it.
_CANVAS = re.compile(r"^[a-z0-9\-]+?(?P<late>_late)?_(?P<id>\d+)_(?P<sub>\d+)_", re.I)
_MOODLE = re.compile(r"^.+?_(?P<id>\d+)_assign(?:submission|feedback)_")
_BLACKBOARD_STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def describe(sub, layout: str = "") -> dict:
    """Submission time, late marker, identity and problem of one intake.Submission.

    layout: the download's layout, for callers that have it; the time source is the submission's
    own LMS (`sub.lms`), so a download of mixed layouts reads each submission by its own."""
    sources = [Path(s) for s in sub.sources]
    identity = {"id": sub.id, "name": _plain_name(sub.name)}
    info = {"time": None, "time_source": None, "late_marker": False, "identity": identity,
            "problem": sub.problem}
    reader = _READERS.get(getattr(sub, "lms", None))
    if reader is not None:
        reader(sub, sources, info)
    return info


def _blackboard(sub, sources: list[Path], info: dict) -> None:
    info["identity"]["lms"] = "blackboard"
    stamp = _BLACKBOARD_STAMP.match(getattr(sub, "attempt", "") or "")
    if stamp:
        info.update(time=datetime(*map(int, stamp.groups())).isoformat(), time_source="Blackboard attempt time")


def _gradescope(sub, sources: list[Path], info: dict) -> None:
    identity = info["identity"]
    identity["lms"] = "gradescope"
    entry = _gradescope_entry(sources)
    if entry is None:
        return
    created = entry.get(":created_at") or entry.get("created_at")
    if created:
        info.update(time=_iso(created), time_source="Gradescope submission_metadata.yml")
    submitter = ((entry.get(":submitters") or entry.get("submitters") or [{}]) or [{}])[0] or {}
    identity.update(email=str(submitter.get(":email") or submitter.get("email") or ""),
                    sid=str(submitter.get(":sid") or submitter.get("sid") or ""))


def _canvas(sub, sources: list[Path], info: dict) -> None:
    names = [m for m in (_CANVAS.match(p.name) for p in sources if p.is_file()) if m]
    info["identity"]["lms"] = "canvas"
    if names:
        info["identity"]["canvas_id"] = names[0]["id"]
    info["late_marker"] = any(m["late"] for m in names)
    info.update(time=_newest_mtime(sources), time_source="file times (Canvas download)")


def _moodle(sub, sources: list[Path], info: dict) -> None:
    names = [m for m in (_MOODLE.match(p.name) for p in sources) if m]
    info["identity"]["lms"] = "moodle"
    if names:
        info["identity"]["participant"] = names[0]["id"]
    info.update(time=_newest_mtime(sources), time_source="file times (Moodle download)")


_READERS = {"blackboard": _blackboard, "gradescope": _gradescope, "canvas": _canvas, "moodle": _moodle}


def _plain_name(name: str) -> str:
    return re.sub(r"\s*\(late\)$", "", name or "")


def _iso(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value).strip()
    try:  # Gradescope writes "2026-03-01 23:58:10.123456000 -0800"
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        pass
    m = re.match(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d+)?\s*([+-]\d{2}):?(\d{2})$", text)
    if m:
        return datetime.fromisoformat(f"{m[1]}T{m[2]}{m[3]}:{m[4]}").isoformat()
    return text


def _newest_mtime(sources: list[Path]) -> str | None:
    times = []
    for source in sources:
        paths = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        for path in paths:
            try:
                times.append(path.stat().st_mtime)
            except OSError:
                continue
    return datetime.fromtimestamp(max(times)).astimezone().isoformat(timespec="seconds") if times else None


def _gradescope_entry(sources: list[Path]) -> dict | None:
    """The submission's entry in the export's submission_metadata.yml, when it is a Gradescope folder."""
    for source in sources:
        meta = source.parent / "submission_metadata.yml"
        if source.is_dir() and meta.is_file():
            try:
                data = yaml.safe_load(meta.read_text()) or {}
            except (yaml.YAMLError, OSError, UnicodeDecodeError):
                return None
            entry = data.get(source.name) if isinstance(data, dict) else None
            if isinstance(entry, dict):
                return entry
    return None
