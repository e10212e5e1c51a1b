"""`grader export OUT --to canvas|moodle|gradescope|csv`: the gradebook in the format each
LMS imports as it is.

  canvas      Canvas's gradebook CSV: Student, ID, SIS User ID, SIS Login ID, Section, then the
              assignment's column ("HW1 (1234)": its name and id as Canvas's own export spells
              it; without the id Canvas makes a new assignment); the second row is
              "Points Possible".  Matched on ID (the Canvas user id from the download's
              names) or the SIS ids of a roster.  UTF-8 with a byte order mark, as Canvas
              writes it (Excel then keeps accents).
  moodle      Moodle's grading worksheet ("Upload grading worksheet" of the assignment):
              Identifier ("Participant 123456", from the download's names), Full name, Email
              address, Grade, Maximum Grade, Feedback comments.  The gradebook's "Import CSV"
              takes the same file, mapping Email address (or ID number, from a roster) to
              the user.  UTF-8 without a byte order mark.
  gradescope  Name, SID, Email, Score: matched by Email or SID (from submission_metadata.yml
              or a roster).  UTF-8 without a byte order mark.
  csv         Everything, for a spreadsheet: one row per student (and per roster student who
              handed in nothing), a status column (graded, missing, empty, unreadable, error)
              that tells a real zero from no submission, the late penalty, adjustments and
              each item.  UTF-8 with a byte order mark, for Excel.

A roster (--roster FILE.csv, with a header) adds what a download lacks: emails, SIS ids,
sections, students who handed in nothing.  Its columns are found by name: student (or id:
the student's id as grader shows it), name, email, sis_user_id (or sid, id number,
student number), sis_login_id (or login, username), section.
Text cells that a spreadsheet would run as a formula (= + - @) get a leading apostrophe, and
control characters show as escapes (grader.safe_text.csv_cell).  Moodle imports the feedback
comments as HTML: they are HTML-escaped too.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

from grader import atomic
from grader.safe_text import csv_cell
from grader.batch import gradebook, intake, scoring
from grader.errors import GraderError
from grader.rubric import load as load_rubric

FORMATS = ("canvas", "moodle", "gradescope", "csv")
REGISTRY = "exports.json"  # in OUT/.grader: what `grader rescore` writes again
_ALIASES = {
    "student": ("student", "id", "studentid_grader", "grader id", "participant"),
    "name": ("name", "full name", "student name", "fullname"),
    "email": ("email", "email address", "e-mail"),
    "sis_user_id": ("sis user id", "sid", "id number", "idnumber", "student number", "student id"),
    "sis_login_id": ("sis login id", "login", "login id", "username"),
    "section": ("section", "sections"),
    "canvas_id": ("canvas id", "canvas user id"),
}


class ExportError(GraderError):
    """An export that cannot be made as asked; the message says what is missing."""


def export(out: Path, to: str, path: Path | None = None, *, assignment: str | None = None,
           roster: Path | None = None, remember: bool = True) -> Path:
    """Write OUT's gradebook for `to`; returns the file written (default OUT/exports/<to>.csv)."""
    if to not in FORMATS:
        raise ExportError(f"--to is one of {', '.join(FORMATS)}, not {to!r}")
    out = Path(out)
    rows, rubric = _rows(out, roster)
    title = assignment or rubric.title or rubric.assignment
    graded = [r["max_score"] for r in rows if r["max_score"] is not None]
    max_score = max(graded) if graded else rubric.total_points  # what was graded (--items may grade fewer)
    text, bom = {"canvas": _canvas, "moodle": _moodle, "gradescope": _gradescope, "csv": _generic}[to](
        rows, title, max_score, rubric)
    target = Path(path) if path else out / "exports" / f"{to}.csv"
    _write(target, ("\ufeff" if bom else "") + text)
    if remember:
        _remember(out, {"to": to, "path": str(target.resolve()), "assignment": assignment,
                        "roster": str(Path(roster).resolve()) if roster else None})
    return target


def rewrite_all(out: Path) -> list[Path]:
    """Every export made from OUT before, again (after a rescore)."""
    written = []
    for entry in _registry(out):
        roster = Path(entry["roster"]) if entry.get("roster") else None
        if roster is not None and not roster.is_file():
            continue
        written.append(export(out, entry["to"], Path(entry["path"]), assignment=entry.get("assignment"),
                              roster=roster, remember=False))
    return written


# -- the rows: records, identities and the roster ---------------------------------------


def _rows(out: Path, roster: Path | None) -> tuple[list[dict], object]:
    settings = scoring.load_settings(out)
    if not settings.get("rubric"):
        raise ExportError(f"{out} is not the output of grader batch (no .grader/{scoring.SETTINGS})")
    rubric = load_rubric(settings["rubric"])
    folder = out / "students"
    ids = sorted((p.name for p in folder.iterdir() if (p / "record.json").is_file()),
                 key=intake.natural_key) if folder.is_dir() else []
    people = _roster(roster) if roster else []
    rows = []
    for student in ids:
        record = gradebook.load_record(out, student) or {}
        rows.append(_row(record, _match(people, student, record)))
    known = {r["student"] for r in rows}
    for person in people:
        if person.get("student") not in known and not any(_same_person(person, r) for r in rows):
            rows.append(_missing(person))
    return rows, rubric


def _row(record: dict, person: dict) -> dict:
    info = record.get("submission") or {}
    identity = {k: v for k, v in (info.get("identity") or {}).items() if v}
    graded = record.get("status") == gradebook.GRADED and record.get("report")
    report = gradebook.report_of(record) if graded else None
    name = person.get("name") or identity.get("name") or re.sub(r"\s*\(late\)$", "", record.get("name") or "")
    return {
        "student": record.get("student", ""), "name": name,
        "email": person.get("email") or identity.get("email", ""),
        "sis_user_id": person.get("sis_user_id") or identity.get("sid", ""),
        "sis_login_id": person.get("sis_login_id", ""), "section": person.get("section", ""),
        "canvas_id": person.get("canvas_id") or identity.get("canvas_id", ""),
        "participant": identity.get("participant", ""),
        "status": _status(record, info), "score": record.get("total", report.score if report else None)
        if report else None, "max_score": report.max_score if report else None,
        "late_penalty": (record.get("late") or {}).get("penalty"),
        "adjusted": "; ".join(a["text"] for a in record.get("adjustments") or []),
        "items": {r.id: r.points for r in report.results} if report else {},
        "feedback": _feedback(report, record) if report else (record.get("error") or ""),
    }


def _status(record: dict, info: dict) -> str:
    problem = info.get("problem") or ""
    if not problem and record.get("report"):  # older records: the unreadable report says it
        results = (record.get("report") or {}).get("results") or []
        if results and all((r.get("extra") or {}).get("failure") == "submission" for r in results):
            problem = results[0].get("message", "")
    if "empty" in problem:
        return "empty"
    if problem:
        return "unreadable"
    return "graded" if record.get("status") == gradebook.GRADED else "error"


def _missing(person: dict) -> dict:
    return {"student": person.get("student", ""), "name": person.get("name", ""), "email": person.get("email", ""),
            "sis_user_id": person.get("sis_user_id", ""), "sis_login_id": person.get("sis_login_id", ""),
            "section": person.get("section", ""), "canvas_id": person.get("canvas_id", ""), "participant": "",
            "status": "missing", "score": None, "max_score": None, "late_penalty": None, "adjusted": "",
            "items": {}, "feedback": ""}


def _feedback(report, record: dict) -> str:
    lost = [f"{r.title}: {gradebook.number(r.points)}/{gradebook.number(r.max_points)}" for r in report.results
            if r.points < r.max_points and r.visibility != "hidden"]
    parts = [f"Score {gradebook.number(record.get('total', report.score))}/{gradebook.number(report.max_score)}."]
    if lost:
        parts.append("Lost points: " + "; ".join(lost) + ".")
    parts += gradebook.adjustment_lines(record)
    return " ".join(parts)


def _roster(path: Path) -> list[dict]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"cannot read roster {path}: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {}
    for header in reader.fieldnames or []:
        key = header.strip().lower().replace("_", " ")
        for field, names in _ALIASES.items():
            if key in {n.replace("_", " ") for n in names} and field not in columns:
                columns[field] = header
    if not ({"student", "email", "sis_user_id"} & set(columns)):
        raise ExportError(f"{path}: a roster needs a header with a student (or id), email or SID column; "
                          f"found {', '.join(reader.fieldnames or []) or 'no header'}")
    people = []
    for row in reader:
        person = {field: (row.get(header) or "").strip() for field, header in columns.items()}
        if any(person.values()):
            people.append(person)
    return people


def _match(people: list[dict], student: str, record: dict) -> dict:
    identity = ((record.get("submission") or {}).get("identity") or {})
    for person in people:
        if person.get("student") and person["student"] == student:
            return person
        if person.get("email") and person["email"].lower() == str(identity.get("email", "")).lower():
            return person
        if person.get("sis_user_id") and person["sis_user_id"] == str(identity.get("sid", "")):
            return person
    return {}


def _same_person(person: dict, row: dict) -> bool:
    return bool((person.get("email") and person["email"].lower() == row["email"].lower())
                or (person.get("sis_user_id") and person["sis_user_id"] == row["sis_user_id"]))


# -- the formats -------------------------------------------------------------------------


def _require_identity(rows: list[dict], keys: tuple[str, ...], how: str, remedy: str) -> None:
    """Every student who handed in has one of the identities the LMS matches on, or ExportError says who not."""
    unmatched = [r["student"] for r in rows if r["status"] != "missing" and not any(r[k] for k in keys)]
    if unmatched:
        raise ExportError(f"{how}, which these students lack: {', '.join(unmatched[:10])}"
                          f"{' ...' if len(unmatched) > 10 else ''} ({remedy})")


def _canvas(rows: list[dict], title: str, max_score: float, rubric) -> tuple[str, bool]:
    _require_identity(rows, ("canvas_id", "sis_user_id", "sis_login_id"),
                      "Canvas matches students by its user ID or SIS ids",
                      "grade a Canvas download, or pass --roster with an id, sis_user_id or sis_login_id column")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title])
    w.writerow(["    Points Possible", "", "", "", "", gradebook.number(max_score)])
    for r in rows:
        w.writerow([_text(r["name"]), _text(r["canvas_id"]), _text(r["sis_user_id"]), _text(r["sis_login_id"]),
                    _text(r["section"]), gradebook.number(r["score"])])
    return buf.getvalue(), True


def _moodle(rows: list[dict], title: str, max_score: float, rubric) -> tuple[str, bool]:
    _require_identity(rows, ("participant", "email"), "Moodle matches students by participant identifier or email",
                      "grade a Moodle download, or pass --roster with an email column")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Identifier", "Full name", "Email address", "Grade", "Maximum Grade", "Feedback comments"])
    for r in rows:
        if r["status"] == "missing" and not r["email"]:
            continue
        w.writerow([f"Participant {r['participant']}" if r["participant"] else "", _text(r["name"]), _text(r["email"]),
                    gradebook.number(r["score"]), gradebook.number(max_score),
                    _text(html.escape(r["feedback"], quote=False))])
    return buf.getvalue(), False


def _gradescope(rows: list[dict], title: str, max_score: float, rubric) -> tuple[str, bool]:
    _require_identity(rows, ("email", "sis_user_id"), "Gradescope matches students by email or SID",
                      "grade a Gradescope export, or pass --roster with an email or sid column")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Name", "SID", "Email", "Score"])
    for r in rows:
        w.writerow([_text(r["name"]), _text(r["sis_user_id"]), _text(r["email"]), gradebook.number(r["score"])])
    return buf.getvalue(), False


def _generic(rows: list[dict], title: str, max_score: float, rubric) -> tuple[str, bool]:
    items = [i.id for i in rubric.items if any(i.id in r["items"] for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "name", "email", "sis_user_id", "section", "status", "score", "max_score", "late_penalty",
                "adjusted", *items])
    for r in rows:
        penalty = -r["late_penalty"] if r["late_penalty"] else None
        w.writerow([_text(r["student"]), _text(r["name"]), _text(r["email"]), _text(r["sis_user_id"]),
                    _text(r["section"]), r["status"], gradebook.number(r["score"]), gradebook.number(max_score),
                    gradebook.number(penalty), _text(r["adjusted"]), *[gradebook.number(r["items"].get(i)) for i in items]])
    return buf.getvalue(), True


def _text(value) -> str:
    """A text cell a spreadsheet will not run as a formula, its control characters escaped."""
    return "" if value is None else csv_cell(value)


# -- remembering what was exported ---------------------------------------------------------


def _registry(out: Path) -> list[dict]:
    try:
        return json.loads((Path(out) / ".grader" / REGISTRY).read_text())
    except (OSError, ValueError):
        return []


def _remember(out: Path, entry: dict) -> None:
    entries = [e for e in _registry(out) if e.get("path") != entry["path"]] + [entry]
    atomic.write_text(Path(out) / ".grader" / REGISTRY, json.dumps(entries, indent=1) + "\n")


def _write(path: Path, text: str) -> None:
    atomic.write_bytes(path, text.encode("utf-8"))
