"""What a download says about each submission besides its files: when it was handed in, whether
the LMS marked it late, and who handed it in (the ids an LMS import matches on).

    info = submissions.describe(sub, root)    # -> {"time", "time_source", "late_marker", "identity", "problem"}

Where the time comes from:
  * Blackboard: the attempt's time in the file name (`..._attempt_2026-03-01-23-59-00_...`);
  * Gradescope: `:created_at:` of the submission in submission_metadata.yml;
  * Canvas: `_LATE_` in the name says the work is late; names carry no time, so the files'
    modification times (kept by Canvas's zip) give how late;
  * Moodle: names carry no time either: the files' modification times (Moodle's zip keeps them);
  * anything else (folders made by hand, zips per student): no time, so never late.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import yaml

_CANVAS_LATE = re.compile(r"^[a-z0-9\-]+_late_\d+_\d+_", re.I)
_CANVAS = re.compile(r"^[a-z0-9\-]+?(?:_late)?_(?P<id>\d+)_(?P<sub>\d+)_", re.I)
_MOODLE = re.compile(r"^.+?_(?P<id>\d+)_assign(?:submission|feedback)_")
_BLACKBOARD_STAMP = re.compile(r"_attempt_(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")


def describe(sub, layout: str) -> dict:
    """Submission time, late marker, identity and problem of one intake.Submission."""
    sources = [Path(s) for s in sub.sources]
    identity = {"id": sub.id, "name": _plain_name(sub.name)}
    info = {"time": None, "time_source": None, "late_marker": False, "identity": identity,
            "problem": sub.problem}
    stamps = [m for m in (_BLACKBOARD_STAMP.search(p.name) for p in sources) if m]
    gradescope = _gradescope_entry(sources)
    if stamps:
        latest = max(stamps, key=lambda m: m.groups())
        info.update(time=datetime(*map(int, latest.groups())).isoformat(), time_source="Blackboard attempt time")
        identity["lms"] = "blackboard"
    elif gradescope is not None:
        created = gradescope.get(":created_at") or gradescope.get("created_at")
        if created:
            info.update(time=_iso(created), time_source="Gradescope submission_metadata.yml")
        submitter = ((gradescope.get(":submitters") or gradescope.get("submitters") or [{}]) or [{}])[0] or {}
        identity.update(lms="gradescope", email=str(submitter.get(":email") or submitter.get("email") or ""),
                        sid=str(submitter.get(":sid") or submitter.get("sid") or ""))
    elif any(_CANVAS.match(p.name) for p in sources if p.is_file()):
        identity["lms"] = "canvas"
        identity["canvas_id"] = next(_CANVAS.match(p.name)["id"] for p in sources if _CANVAS.match(p.name))
        info["late_marker"] = any(_CANVAS_LATE.match(p.name) for p in sources)
        info.update(time=_newest_mtime(sources), time_source="file times (Canvas download)")
    elif any(_MOODLE.match(p.name) for p in sources):
        identity.update(lms="moodle", participant=next(_MOODLE.match(p.name)["id"] for p in sources
                                                        if _MOODLE.match(p.name)))
        info.update(time=_newest_mtime(sources), time_source="file times (Moodle download)")
    return info


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
