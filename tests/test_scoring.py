"""Scoring from records, without a student process: each check kind's measurement under new
points, thresholds and credit policies; what counts as a changed check; overrides.yaml and its
errors; the late policy; the leaderboard; and the examples of docs/gradebook.md, run as written."""

from __future__ import annotations

import textwrap
from dataclasses import asdict
from datetime import datetime, timezone

import pytest

from grader import rubric as rubric_module
from grader.batch import late, overrides, records, scoring
from grader.results import FAILED, PARTIAL, PASSED, UNCERTAIN, ItemResult
from tests.conftest import ROOT, run_cli

RUBRIC = textwrap.dedent("""\
    assignment: demo
    files: [net.py]
    items:
      - id: acc
        points: 10
        check: accuracy
        target: {file: net.py, name: Net}
        threshold: 0.7
      - id: blanks
        points: 8
        check: blanks
        target: {file: net.py, name: Net}
        blanks:
          - {module: a, attrs: [x, y]}
          - {module: b, attrs: [x, y]}
      - id: layer
        points: 6
        check: structure
        target: {file: net.py, name: Net}
        module: layer
      - id: shape
        points: 4
        check: output_shape
        target: {file: net.py, name: Net}
        inputs: [[1, 3]]
        expected: [1, 2]
    """)


def load(text: str = RUBRIC):
    return rubric_module.parse(text)


def measured(rubric, result: ItemResult) -> dict:
    return {"key": records.check_keys(rubric)[result.id], "result": asdict(result)}


def accuracy_result(accuracy: float, *, sample: bool = False) -> ItemResult:
    extra = {"accuracy": accuracy, "correct": int(accuracy * 3000), "total": 3000, "threshold": 0.7,
             "data": "the sample", "precision": "fp32", "notes": []}
    if sample:
        extra.update(sample=True, interval95=[accuracy - 0.02, accuracy + 0.02])
    return ItemResult("acc", "acc", 10.0 if accuracy >= 0.7 else 0.0, 10.0, PASSED if accuracy >= 0.7 else FAILED,
                      "test accuracy", extra=extra)


def test_accuracy_is_judged_again_under_a_new_threshold_and_points():
    old = load()
    m = measured(old, accuracy_result(0.75))
    new = load(RUBRIC.replace("threshold: 0.7", "threshold: 0.8").replace("points: 10", "points: 20"))
    item = new.items[0]
    result = scoring.score_item(item, m)
    assert (result.points, result.max_points, result.status) == (0.0, 20.0, FAILED)
    assert "test accuracy 75.00% (2,250/3,000) < 80%" == result.message
    assert records.check_keys(new)["acc"] == m["key"]  # a threshold is scoring, not a new check
    lower = load(RUBRIC.replace("threshold: 0.7", "threshold: 0.5").replace("points: 10", "points: 20"))
    assert scoring.score_item(lower.items[0], m).points == 20
    # on a sample, a threshold inside the interval is uncertain, as when grading
    m = measured(old, accuracy_result(0.75, sample=True))
    near = load(RUBRIC.replace("threshold: 0.7", "threshold: 0.76"))
    result = scoring.score_item(near.items[0], m)
    assert result.status == UNCERTAIN and "the sample cannot settle this" in result.details[0]


def test_blanks_and_structure_are_recounted_from_their_verdicts():
    old = load()
    blanks = ItemResult("blanks", "blanks", 6.0, 8.0, PARTIAL, "3/4 blanks right",
                        extra={"right": 3, "total": 4, "blanks": {"a.x": True, "a.y": True, "b.x": True, "b.y": False}})
    layer = ItemResult("layer", "layer", 0.0, 6.0, FAILED, "layer: 2 of 3 blocks right",
                       extra={"matched": 2, "reference_children": 3, "student_children": 3,
                              "children": [True, True, False]})
    new = load(RUBRIC.replace("points: 8", "points: 12").replace("module: layer", "module: layer\n    credit: per_child"))
    items = {i.id: i for i in new.items}
    assert scoring.score_item(items["blanks"], measured(old, blanks)).points == 9
    result = scoring.score_item(items["layer"], measured(old, layer))
    assert (result.points, result.status) == (4.0, PARTIAL)
    assert records.check_keys(new)["layer"] == records.check_keys(old)["layer"]  # credit policy is scoring


def test_an_all_or_nothing_item_keeps_its_share_and_a_changed_check_is_stale():
    old = load()
    shape = ItemResult("shape", "shape", 4.0, 4.0, PASSED, "output shape [1, 2]")
    new = load(RUBRIC.replace("points: 4", "points: 5"))
    assert scoring.score_item(new.items[3], measured(old, shape)).points == 5
    changed = load(RUBRIC.replace("expected: [1, 2]", "expected: [1, 3]"))
    assert records.check_keys(changed)["shape"] != records.check_keys(old)["shape"]
    assert records.check_keys(changed)["acc"] == records.check_keys(old)["acc"]


def test_overrides_are_checked_line_by_line():
    text = textwrap.dedent("""\
        - student: ann
          item: shape
          delta: 2
          reason: regrade request
          by: TA Kim
        - student: bob
          points: 3
          delta: 1
          reason: x
        - student: zed
          item: nope
          points: ten
        """)
    with pytest.raises(overrides.OverridesError) as e:
        overrides.parse(text, "o.yaml", {"ann", "bob"}, {"shape", "acc"})
    message = str(e.value)
    assert "o.yaml:6: give either `points`" in message
    assert "o.yaml:10: no student 'zed' in this class" in message and "o.yaml:10: no item 'nope'" in message
    assert "o.yaml:10: `points` is a number, not 'ten'" in message and "o.yaml:10: `reason` is missing" in message
    [ok] = overrides.parse(text.split("- student: bob")[0], "o.yaml", {"ann"}, {"shape"})
    assert ok.describe(4, ok.apply(4)) == "Adjusted by TA Kim: +2 (regrade request)"
    with pytest.raises(overrides.OverridesError, match="o.yaml:1: a list of overrides"):
        overrides.parse("student: ann\n", "o.yaml")


def policy(**kw):
    data = {"percent_per_day": 10, "grace_minutes": 15, "max_days": 5, **kw}
    return rubric_module.parse(RUBRIC + "late: " + repr(data).replace("'", "") + "\n").late


DUE = datetime(2026, 3, 1, 23, 59, tzinfo=timezone.utc)


def at(**delta) -> dict:
    from datetime import timedelta

    return {"time": (DUE + timedelta(**delta)).isoformat(), "time_source": "test"}


def test_late_policy_grace_whole_days_cap_and_max_days():
    assert late.assess(policy(), DUE, at(minutes=10)) is None  # within the grace
    one = late.assess(policy(), DUE, at(minutes=20))
    assert (one.days, one.percent, one.points(20)) == (1, 10, 2)
    three = late.assess(policy(), DUE, at(days=2, hours=1))
    assert (three.days, three.percent) == (3, 30)
    assert late.assess(policy(whole_days=False), DUE, at(days=2, hours=12)).percent == 25
    assert late.assess(policy(cap_percent=20), DUE, at(days=4)).percent == 20
    gone = late.assess(policy(), DUE, at(days=6))
    assert gone.percent == 100 and "more than 5 days late, no points" in gone.note
    marked = late.assess(policy(), None, {"late_marker": True})
    assert marked.days == 1 and "marked late by the LMS" in marked.note
    assert late.assess(None, DUE, at(days=3)) is None
    with pytest.raises(late.DeadlineError, match="not an ISO time"):
        late.parse_time("next friday")


def test_the_leaderboard_ranks_by_accuracy_then_size():
    rubric = load(RUBRIC + "leaderboard: {item: acc, top: 2}\n")
    from grader.results import GradeReport

    def record(student, accuracy, params):
        result = accuracy_result(accuracy)
        result.extra.update(params=params, training={"seconds": 12.0})
        return {"student": student, "name": student.title(), "status": "graded",
                "report": GradeReport("demo", "", [result]).to_dict()}

    rows = [record("ann", 0.71, 500), record("bob", 0.80, 900), record("cat", 0.80, 100)]
    assert [s.student for s in scoring.standings(rubric, rows)] == ["cat", "bob", "ann"]
    lines = scoring.leaderboard_lines(rubric, rows, markdown=False)
    assert lines[0] == "Leaderboard: acc (top 2):" and len(lines) == 3 and "cat" in lines[1]
    entries = scoring.leaderboard_entries(rubric, GradeReport("demo", "", [accuracy_result(0.7)]))
    assert entries == [{"name": "Accuracy", "value": 70.0}]
    with pytest.raises(rubric_module.RubricError, match="not an accuracy item"):
        load(RUBRIC + "leaderboard: {item: shape}\n")


def test_submission_times_from_names_metadata_and_zip_dates(tmp_path):
    import zipfile

    from grader.batch import intake, submissions, unpack

    # One LMS per download (intake never lets one student's file name claim another LMS's layout).
    info = {}
    for lms, name in (("bb", "HW1_jdoe_attempt_2026-03-02-09-30-00_net.py"), ("canvas", "smithjohn_LATE_2345_6789_net.py")):
        root = tmp_path / lms
        root.mkdir()
        (root / name).write_text("x = 1\n")
        found = intake.find(root, ["net.py"], tmp_path / f"state-{lms}")
        info.update({s.id: submissions.describe(s, found.layout) for s in found.submissions})
    assert info["jdoe"]["time"] == "2026-03-02T09:30:00" and info["jdoe"]["time_source"] == "Blackboard attempt time"
    assert info["2345"]["late_marker"] and info["2345"]["identity"]["canvas_id"] == "2345"
    assert info["2345"]["identity"]["name"] == "smithjohn"  # without intake's " (late)"
    # a downloaded zip keeps each member's date (what the late policy reads)
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo("a/net.py", date_time=(2026, 3, 1, 12, 0, 0)), "x = 1\n")
    unpack.unpack(archive, tmp_path / "out")
    assert datetime.fromtimestamp((tmp_path / "out" / "a" / "net.py").stat().st_mtime) == datetime(2026, 3, 1, 12)


@pytest.mark.slow  # grades a three-student class, twice for one item
def test_every_command_of_the_gradebook_page_runs(tmp_path):
    from tests.test_docs import parse, run_blocks

    page = (ROOT / "docs" / "gradebook.md").read_text()
    blocks = parse(page)
    ran = run_blocks(blocks, tmp_path)
    assert len(ran) == sum(len(b.commands) for b in blocks if b.kind == "console") >= 5
    grades = (tmp_path / "graded" / "grades.csv").read_text()
    assert grades.splitlines()[0] == "student,name,shape,params,late_penalty,adjusted,total"
    ana = (tmp_path / "graded" / "students" / "3456" / "feedback.md").read_text()
    assert "params: Adjusted by TA Kim: set to 3, was 0 (the parameter count is right for the five classes" in ana
    assert (tmp_path / "everyone.csv").is_file() and (tmp_path / "graded" / "exports" / "canvas.csv").is_file()


def test_the_generic_export_tells_a_real_zero_from_no_submission(tmp_path):
    """Without grading anything: records as a batch leaves them, then `grader export --to csv`."""
    import csv
    import io

    from grader.batch import exports, gradebook
    from grader.batch.job import unreadable
    from grader.results import GradeReport

    path = tmp_path / "demo.yaml"
    path.write_text(RUBRIC)
    rubric = rubric_module.load(path)
    out = tmp_path / "out"
    scoring.save_settings(out, path, None, "cpu")
    scorer = scoring.Scorer.open(out, rubric)
    zero = GradeReport("demo", "", [ItemResult(i.id, i.id, 0.0, i.points, FAILED, "wrong") for i in rubric.items])
    students = {"ann": (zero, None, "=cmd|' /C calc'!A0"), "bob": (unreadable(rubric, None, "the submission is empty"),
                "the submission is empty", "Bob, Jr."),
                "cat": (unreadable(rubric, None, "the submission could not be unpacked: bad zip"),
                        "the submission could not be unpacked: bad zip", "Cat")}
    for student, (report, problem, name) in students.items():
        record = {"student": student, "name": name, "status": gradebook.GRADED, "report": report.to_dict()}
        info = {"problem": problem, "identity": {"id": student, "name": name}}
        scorer.finish(record, fresh=True, info=info)
    gradebook.write_student(out, {"student": "dan", "name": "Dan", "status": gradebook.NOT_GRADED,
                                  "error": "internal grader error", "report": None}, None, "")
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name,email\nann,Ann,ann@x.edu\neve,Eve,eve@x.edu\n")
    written = exports.export(out, "csv", roster=roster)
    text = written.read_text(encoding="utf-8-sig")
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(text))}
    assert {s: (r["status"], r["score"]) for s, r in rows.items()} == {
        "ann": ("graded", "0"), "bob": ("empty", "0"), "cat": ("unreadable", "0"), "dan": ("error", ""),
        "eve": ("missing", "")}
    assert rows["ann"]["name"] == "Ann" and rows["ann"]["email"] == "ann@x.edu"  # the roster's name wins
    assert '"Bob, Jr."' in text  # quoted, not split
    assert rows["ann"]["max_score"] == "28"
    # a name a spreadsheet would run is defused
    assert exports._text("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    with pytest.raises(exports.ExportError, match="--to is one of canvas, moodle, gradescope, csv"):
        exports.export(out, "blackboard")


def test_rescore_names_records_without_measurements_and_changes_nothing_in_them(tmp_path):
    from grader.batch import gradebook, rescore
    from grader.results import GradeReport

    path = tmp_path / "demo.yaml"
    path.write_text(RUBRIC)
    out = tmp_path / "out"
    scoring.save_settings(out, path, None, "cpu")
    report = GradeReport("demo", "", [ItemResult("shape", "shape", 4.0, 4.0, PASSED, "ok")])
    gradebook.write_student(out, {"student": "ann", "name": "Ann", "status": "graded", "report": report.to_dict()},
                            report, "")  # as a grader that kept no measurements wrote it
    result = rescore.run(out)
    assert result.unmeasured == ["ann"] and result.stale == {"shape": ["ann"]}
    assert (out / "grades.csv").read_text().splitlines()[1] == "ann,Ann,4,4"
    done = run_cli("rescore", str(out))
    assert done.returncode == rescore.EXIT_STALE and "graded by an older grader" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = run_cli("rescore", str(empty))
    assert refused.returncode == 2 and "holds no graded students" in refused.stderr
