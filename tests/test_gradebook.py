"""The gradebook, feedback and class summary a batch writes."""

from __future__ import annotations

import csv
import io

from rich.console import Console

from grader.batch import gradebook
from grader.results import FAILED, PARTIAL, PASSED, SKIPPED, GradeReport, ItemResult

ITEMS = [("q1", "Question 1", 10.0), ("q2", "Question 2", 20.0)]


def report(q1: float, q2: float, *, q2_failure: str | None = None, q2_message: str = "wrong answer",
           where: str | None = None) -> GradeReport:
    results = [
        ItemResult("q1", "Question 1", q1, 10.0, PASSED if q1 == 10 else FAILED, "ok" if q1 == 10 else "no"),
        ItemResult("q2", "Question 2", q2, 20.0, PASSED if q2 == 20 else PARTIAL if q2 else FAILED, q2_message,
                   details=["  61 |         while True:"] if where else [], where=where,
                   extra={"failure": q2_failure} if q2_failure else {}),
    ]
    return GradeReport("demo", "x", results, seconds=1.5, isolation={"network": "namespace", "files": "landlock v6"},
                       output="debug print\n")


def record(student: str, rep: GradeReport | None, **kw) -> dict:
    return {"student": student, "name": kw.pop("name", ""), "fingerprint": "f", "status": kw.pop("status", "graded"),
            "error": kw.pop("error", None), "seconds": rep.seconds if rep else None,
            "report": rep.to_dict() if rep else None, "notes": kw.pop("notes", [])}


def test_grades_csv_has_a_row_per_student_and_blank_cells_when_not_graded():
    rows = [record("ann", report(10, 13.33333)), record("bob", None, status="error", error="worker died",
                                                           name="Bob B")]
    text = gradebook.grades_csv(["q1", "q2"], rows)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed == [["student", "name", "q1", "q2", "total"], ["ann", "", "10", "13.3333", "23.3333"],
                      ["bob", "Bob B", "", "", ""]]


def test_records_round_trip_and_files_are_replaced_atomically(tmp_path):
    rep = report(10, 0, q2_failure="timeout", q2_message="did not finish within 5 s while running forward",
                 where="block.py:61")
    rec = record("ann", rep, notes=["graded the files in hw1/"])
    gradebook.write_student(tmp_path, rec, rep, "Demo assignment")
    again = gradebook.report_of(gradebook.load_record(tmp_path, "ann"))
    assert again == rep
    folder = tmp_path / "students" / "ann"
    assert sorted(p.name for p in folder.iterdir()) == ["feedback.md", "record.json", "results.json"]


def test_feedback_tells_the_student_what_failed_where_and_why(tmp_path):
    rep = report(10, 0, q2_failure="timeout", q2_message="did not finish within 5 s while running forward",
                 where="block.py:61")
    text = gradebook.feedback(rep, "Demo assignment", record("ann", rep, name="Ann A", notes=["graded hw1/"]))
    assert "Feedback for **Ann A**" in text and "**Score: 10 / 30**" in text
    assert "| Question 2 | 0 / 20 | time limit (endless loop?) |" in text
    assert "did not finish within 5 s while running forward (in `block.py:61`)" in text
    assert "61 |         while True:" in text
    assert "Look for a loop that never ends" in text
    assert "- graded hw1/" in text and "debug print" in text


def test_hidden_items_are_not_explained_in_feedback():
    rep = report(10, 0)
    rep.results[1].visibility = "hidden"
    text = gradebook.feedback(rep, "Demo", record("ann", rep))
    assert "| Question 2 | hidden | graded by your instructor |" in text and "wrong answer" not in text


def test_summary_pass_rates_histogram_failures_and_slowest():
    rows = [record("ann", report(10, 20)), record("bob", report(10, 10)),
            record("cat", report(0, 0, q2_failure="memory", q2_message="ran out of memory")),
            record("dan", None, status="error", error="worker died")]
    rows[1]["seconds"] = 9.0
    s = gradebook.summarize("demo", ITEMS, rows, regraded=2)
    assert (s.students, s.graded, s.regraded) == (4, 3, 2)
    assert [(i.id, i.passed, i.graded) for i in s.items] == [("q1", 2, 3), ("q2", 1, 3)]
    assert s.histogram[-1] == ("27-30", 1)  # full marks land in the last bin
    assert s.histogram[0] == ("0-3", 1) and sum(c for _, c in s.histogram) == 3
    assert s.failures["memory"] == {"cat": ["q2"]}
    assert s.failures["partial|q2"] == {"bob": ["q2"]}
    assert s.failures["wrong|q1"] == {"cat": ["q1"]}
    assert s.slowest[0] == ("bob", 9.0)
    assert s.errors == [("dan", "worker died")]
    assert round(s.mean, 2) == 16.67 and s.median == 20

    text = gradebook.summary_markdown(s)
    assert "| Question 1 (`q1`) | 10 | 2/3 | 67% | 6.67 |" in text
    assert "### out of memory: 1 student" in text and "### partial credit: q2: 1 student" in text
    assert "## Not graded" in text and "- dan: worker died" in text

    out = io.StringIO()
    gradebook.show_summary(s, Console(file=out, width=120))
    shown = out.getvalue()
    assert "3/4 students graded" in shown and "out of memory (1): cat" in shown and "not graded: dan" in shown


def test_missing_isolation_is_reported():
    rep = report(10, 20)
    rep.isolation = {"network": "audit hook only (namespaces not permitted here)", "files": "unavailable"}
    s = gradebook.summarize("demo", ITEMS, [record("ann", rep)])
    assert len(s.warnings) == 2
    assert "network namespaces were not available" in s.warnings[0]
    assert "Landlock was not available" in s.warnings[1]
    assert "**Warning:** network namespaces" in gradebook.summary_markdown(s)


def test_skipped_items_do_not_count_against_the_pass_rate():
    rep = report(10, 0)
    rep.results[1].status = SKIPPED
    s = gradebook.summarize("demo", ITEMS, [record("ann", rep)])
    assert [(i.passed, i.graded) for i in s.items] == [(1, 1), (0, 0)]
    assert "skipped|q2" in s.failures
