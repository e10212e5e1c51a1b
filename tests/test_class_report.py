"""OUT/report.html: one self-contained page, checked in a real headless Chromium: it loads with
no console error and no request beyond itself, every plot renders, its numbers are those of
grades.csv, students' strings stay text, it prints; and `grader report OUT` rewrites it from
OUT without running student code."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from grader.batch import class_report, duplicates, gradebook
from grader.results import FAILED, PARTIAL, PASSED, GradeReport, ItemResult
from tests import browser
from tests.conftest import RUBRICS, run_cli

ITEMS = ["q1", "q2", "challenge.accuracy"]
HOSTILE_NAME = '<script>alert("name")</script><img src=x onerror=alert(2)>'
HOSTILE_MESSAGE = "expected <b>3</b> & got </table><script>alert(3)</script>"


def _report(q1: float, q2: float, accuracy: float, *, failure: str | None = None, seconds: float = 1.0,
            message: str = "wrong answer") -> GradeReport:
    extra = {"accuracy": accuracy, "correct": round(accuracy * 400), "total": 400, "params": 50_000 + round(
        accuracy * 1000), "training": {"seconds": 100 * accuracy}}
    results = [
        ItemResult("q1", "Question 1", q1, 10.0, PASSED if q1 == 10 else FAILED, "no"),
        ItemResult("q2", "Question 2", q2, 20.0, PASSED if q2 == 20 else PARTIAL if q2 else FAILED, message,
                   extra={"failure": failure} if failure else {}),
        ItemResult("challenge.accuracy", "Challenge", 10.0 if accuracy >= 0.7 else 0.0, 10.0,
                   PASSED if accuracy >= 0.7 else FAILED, f"test accuracy {accuracy:.2%}", extra=extra),
    ]
    return GradeReport("demo", "x", results, seconds=seconds)


def write_class(out: Path) -> Path:
    """Eight students as a batch leaves them: varied scores, a timeout, an ungraded one, a duplicate pair,
    and a student whose name and messages are HTML."""
    students = [("1001", "Kim Minji", _report(10, 20, 0.91)), ("1002", HOSTILE_NAME, _report(10, 7.5, 0.62,
                message=HOSTILE_MESSAGE, seconds=12.5)), ("1003", "Park Ara", _report(0, 0, 0.74, failure="timeout")),
                ("1004", "Lee Jun", _report(10, 13.3333, 0.83)), ("1005", "Choi Yuna", _report(10, 20, 0.77)),
                ("1006", "Jung Ho", _report(0, 20, 0.55, seconds=30.0)), ("1007", "Han Seo", _report(10, 0, 0.7))]
    records = []
    for student, name, rep in students:
        record = {"student": student, "name": name, "fingerprint": "f", "status": gradebook.GRADED, "error": None,
                  "seconds": rep.seconds, "report": rep.to_dict(), "notes": []}
        gradebook.write_student(out, record, rep, "Demo")
        records.append(record)
    broken = {"student": "1008", "name": "Kang Dae", "fingerprint": "f", "status": gradebook.NOT_GRADED,
              "error": "internal grader error: worker died", "seconds": None, "report": None, "notes": []}
    gradebook.write_student(out, broken, None, "")
    records.append(broken)
    gradebook.write_grades(out, ITEMS, records)
    found = duplicates.Found([duplicates.Group("code", "model.py", ["1002", "1006"], "", "ab12")])
    duplicates.write_csv(found, out / "duplicates.csv", {"1002": HOSTILE_NAME, "1006": "Jung Ho"})
    return out


def grades(out: Path) -> list[dict[str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def out(tmp_path) -> Path:
    folder = write_class(tmp_path / "out")
    class_report.write(folder)
    return folder


def test_the_page_is_self_contained_and_escapes_what_students_wrote(out):
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "</table><script>" not in page
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;3&lt;/b&gt; &amp; got" in page
    # Nothing is fetched: no URL in any src/href, and the page forbids loading anything anyway.
    assert "default-src 'none'" in page
    for attribute in ("src=\"http", "href=\"http", "@import", "url(http"):
        assert attribute not in page
    assert page.count("<script>") == 1  # the page's own (it opens folded sections when printing)


def test_the_histogram_and_the_item_counts_are_grades_csv(out):
    rows = grades(out)
    data = class_report.load(out)
    totals = [float(r["total"]) for r in rows if r["total"]]
    assert data.totals() == totals and len(totals) == 7
    edges = class_report.histogram_bins(data.max_score)
    assert len(edges) == 10 and edges[-1][1] == 40
    counts = class_report.histogram_counts(totals, edges)
    assert sum(counts) == 7 and counts[-1] == sum(t >= 36 for t in totals) == 2  # 40 of 40: the last bin
    stats = {s["id"]: s for s in class_report.item_distribution(data)}
    q2 = [float(r["q2"]) for r in rows if r["q2"]]
    assert (stats["q2"]["full"], stats["q2"]["partial"], stats["q2"]["zero"]) == (
        sum(p == 20 for p in q2), sum(0 < p < 20 for p in q2), sum(p == 0 for p in q2))
    board = class_report.leaderboard(data, "challenge.accuracy")
    assert [s.student for s in board][:3] == ["1001", "1004", "1005"]
    assert board[0].low < 0.91 < board[0].high  # the Wilson interval on 400 images


def test_without_matplotlib_the_report_is_its_tables(out, monkeypatch):
    monkeypatch.setattr(class_report, "_matplotlib", lambda: None)
    page = class_report.render(class_report.load(out))
    assert "<svg" not in page and "matplotlib is not installed" in page
    assert 'data-table="histogram"' in page and 'data-table="grades"' in page


def test_grader_report_rewrites_it_from_out_alone(out, tmp_path):
    (out / "report.html").unlink()
    done = run_cli("report", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'report.html'}" in done.stdout and (out / "report.html").is_file()
    # Only files the report reads were touched: no student folder gained anything.
    assert sorted(p.name for p in (out / "students" / "1001").iterdir()) == ["feedback.md", "record.json",
                                                                             "results.json"]
    missing = run_cli("report", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "has no grades.csv" in missing.stderr


# -- in a real browser --------------------------------------------------------------

needs_chromium = pytest.mark.skipif(browser.find() is None, reason="Chromium is not installed (Debian: apt-get "
                                    "install chromium; .ci/run does): the browser tests need a real browser")

FIGURES = """JSON.stringify([...document.querySelectorAll("figure[data-plot]")].map(f => {
  const svg = f.querySelector("svg"); const box = svg ? svg.getBoundingClientRect() : null;
  return {plot: f.dataset.plot, width: box ? box.width : 0, height: box ? box.height : 0,
          shapes: svg ? svg.querySelectorAll("path, rect, use").length : 0};
}))"""
CELLS = """JSON.stringify([...document.querySelectorAll('table[data-table="grades"] tbody tr')].map(tr =>
  Object.fromEntries([...tr.querySelectorAll("td")].map(td => [td.dataset.column, td.textContent]))))"""
HISTOGRAM = """JSON.stringify([...document.querySelectorAll('table[data-table="histogram"] td[data-count]')]
  .map(td => Number(td.dataset.count)))"""
STATS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll("[data-stat]")].map(d =>
  [d.dataset.stat, d.querySelector("span").textContent])))"""


@needs_chromium
def test_the_report_in_headless_chromium(out, tmp_path):
    rows = grades(out)
    totals = [float(r["total"]) for r in rows if r["total"]]
    with browser.Browser.start() as chromium:
        page = chromium.open(out / "report.html")
        assert page.console_errors() == []
        assert page.requests() == [(out / "report.html").resolve().as_uri()]  # nothing else was fetched
        assert page.dialogs() == []  # no student string ran as script

        figures = json.loads(page.evaluate(FIGURES))
        assert {f["plot"] for f in figures} == {"histogram", "items", "leaderboard1"}
        for figure in figures:
            assert figure["width"] > 200 and figure["height"] > 100 and figure["shapes"] > 5, figure

        # The gradebook table is grades.csv, cell for cell; the histogram counts and the overview agree.
        assert json.loads(page.evaluate(CELLS)) == rows
        counts = json.loads(page.evaluate(HISTOGRAM))
        data = class_report.load(out)
        assert counts == class_report.histogram_counts(totals, class_report.histogram_bins(data.max_score))
        stats = json.loads(page.evaluate(STATS))
        assert stats["students"] == "8" and stats["graded"] == "7" and stats["not graded"] == "1"
        assert float(stats["mean"]) == round(statistics.fmean(totals), 2)
        assert float(stats["median"]) == statistics.median(totals)
        shown_name = page.evaluate('document.querySelector(\'tr[data-student="1002"] td[data-column="name"]\')'
                                   ".textContent")
        assert shown_name == HOSTILE_NAME  # shown as the text it is

        png = page.screenshot()
        folded = 'document.querySelector("#gradebook details").open'
        assert page.evaluate(folded) is False
        pdf = page.pdf()
        assert page.evaluate(folded) is True  # printing opened it: paper shows the whole gradebook
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF")
    shot = tmp_path / "report.png"
    shot.write_bytes(png)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1200 and image.height > 1500  # the whole page, not the first screen
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16) or []
        assert len(colours) > 20  # not blank: text, bars, the palette's colours
        blue = sum(n for n, rgb in colours if rgb == (0x00, 0x72, 0xB2))
        assert blue > 2000  # the histogram's and items' bars were painted


def test_a_batch_writes_the_report_with_its_provenance(tmp_path):
    """The pipeline's hook: a rubric given to write() is recorded, and shown in the page."""
    from grader import rubric

    out = write_class(tmp_path / "out")
    the_rubric = rubric.load(RUBRICS / "cnn_architecture.yaml")
    class_report.write(out, rubric=the_rubric, device="cpu")
    page = (out / "report.html").read_text()
    import hashlib
    import platform

    digest = hashlib.sha256((RUBRICS / "cnn_architecture.yaml").read_bytes()).hexdigest()
    assert digest in page and str(RUBRICS / "cnn_architecture.yaml") in page
    assert f"<code>{platform.python_version()}</code>" in page and "<code>cpu</code>" in page
    # A later `grader report OUT` keeps it.
    (out / "report.html").unlink()
    class_report.write(out)
    assert digest in (out / "report.html").read_text()


def test_records_with_their_own_provenance_are_grouped(tmp_path):
    out = write_class(tmp_path / "out")
    for student, device in (("1001", "cuda:0"), ("1002", "cpu")):
        path = out / "students" / student / "record.json"
        record = json.loads(path.read_text())
        record["provenance"] = {"graded": {"rubric": {"path": "r.yaml", "sha256": "ab" * 32}, "grader": "0.1.0",
                                           "torch": "2.14.1", "python": "3.11.9", "device": device}}
        path.write_text(json.dumps(record))
    page = class_report.render(class_report.load(out))
    assert page.count('data-table="provenance"') == 2 and "cuda:0" in page and "1 student: 1001" in page
    # Rescored later by another grader: its versions are shown, the device that graded is kept.
    path = out / "students" / "1001" / "record.json"
    record = json.loads(path.read_text())
    record["provenance"]["scored"] = {**record["provenance"]["graded"], "grader": "0.2.0", "device": None}
    path.write_text(json.dumps(record))
    page = class_report.render(class_report.load(out))
    assert "<code>0.2.0</code>" in page and "cuda:0" in page



def test_late_penalties_and_overrides_are_marked(tmp_path):
    out = write_class(tmp_path / "out")
    path = out / "students" / "1004" / "record.json"
    record = json.loads(path.read_text())
    record["late"] = {"penalty": 4.3333, "note": "1 day late, 10% per day"}
    record["adjustments"] = [{"item": "q2", "text": "+2 (regraded by hand)", "reason": "<i>fair</i>", "by": "TA Kim"}]
    path.write_text(json.dumps(record))
    page = class_report.render(class_report.load(out))
    assert 'data-table="adjustments"' in page and "late: -4.3333" in page and "1 day late" in page
    assert "+2 (regraded by hand)" in page and "&lt;i&gt;fair&lt;/i&gt; (by TA Kim)" in page
    assert 'data-table="adjustments"' not in class_report.render(class_report.load(write_class(tmp_path / "b")))
