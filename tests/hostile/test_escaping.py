"""Issue 17, point 7: every student-controlled string in feedback.md, summary.md, the exports,
report.html, results.json and the terminal is escaped for where it lands.

feedback.md and summary.md are rendered by LMSs and editors, some of which pass HTML through
and follow any link: each is rendered here by two real Markdown renderers set up that naively
(markdown-it-py with raw HTML on and every link allowed; Python-Markdown with fenced code and
tables), and the HTML loaded in headless Chromium.  A student's text must show as the text it
is: no script runs (each payload would change the page's title or set window.pwned), and no
element, link or event handler comes from it."""

from __future__ import annotations

import csv
import io
import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from grader import report
from grader.batch import gradebook, progress
from grader.results import FAILED, GradeReport, ItemResult
from tests import browser, lms_class
from tests.conftest import run_cli
from tests.notebooks import tiny_cifar

markdown = pytest.importorskip("markdown", reason="the test extras (pip install -e '.[test]') render Markdown")
markdown_it = pytest.importorskip("markdown_it", reason="the test extras (pip install -e '.[test]') render Markdown")

needs_chromium = pytest.mark.skipif(browser.find() is None, reason="Chromium is not installed (Debian: apt-get "
                                    "install chromium): the escaping is checked in a real browser")

IMG = "<img src=x onerror=\"document.title='pwned'\">"
SCRIPT = "<script>window.pwned = 1</script>"
LINK = "[click me](javascript:window.pwned=2)"
IMAGE = "![logo](x\" onerror=\"window.pwned=3)"
REFERENCE = "[pwn]: javascript:window.pwned=4"
AUTOLINK = "<javascript:window.pwned=5>"
RICH = "[red]not red[/red] [link=https://example.com/phish]a link[/link]"

# What the rendered page reports: a script that ran, and anything that came from student text.
VERDICT = """JSON.stringify({
  title: document.title,
  pwned: window.pwned === undefined ? null : String(window.pwned),
  elements: [...document.querySelectorAll("img, script, iframe, svg, object, embed, video, audio, form, input, "
                                          + "style, link, meta, base, a")].map(e => e.outerHTML.slice(0, 120)),
  handlers: [...document.querySelectorAll("*")].flatMap(e => [...e.attributes].map(a => a.name))
                                              .filter(n => n.startsWith("on")),
  text: document.body.textContent,
})"""


def render_in_chromium(chromium: browser.Browser, markdown_text: str, folder: Path, name: str) -> list[dict]:
    """The Markdown as each naive renderer turns it into a page, loaded; what each page reports."""
    naive = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    naive.validateLink = lambda url: True  # as a renderer that does not vet links
    bodies = {"markdown-it": naive.render(markdown_text),
              "python-markdown": markdown.markdown(markdown_text, extensions=["fenced_code", "tables"])}
    verdicts = []
    for renderer, body in bodies.items():
        page_path = folder / f"{name}.{renderer}.html"
        page_path.write_text(f"<!DOCTYPE html><html><head><title>untouched</title></head><body>{body}</body></html>")
        page = chromium.open(page_path)
        time.sleep(0.3)  # an onerror handler would have run by now
        verdict = json.loads(page.evaluate(VERDICT))
        verdict.update(renderer=renderer, dialogs=page.dialogs(), requests=page.requests()[1:])
        verdicts.append(verdict)
    return verdicts


def assert_inert(verdict: dict, *shown_as_text: str) -> None:
    where = verdict["renderer"]
    assert verdict["title"] == "untouched" and verdict["pwned"] is None, (where, verdict)
    assert verdict["elements"] == [] and verdict["handlers"] == [], (where, verdict)
    assert verdict["dialogs"] == [] and verdict["requests"] == [], (where, verdict)
    for text in shown_as_text:  # shown as the text the student wrote
        assert text in verdict["text"], (where, text)


# -- a report as grading makes it, with every kind of student text ---------------------------


def hostile_report() -> tuple[dict, GradeReport]:
    cell = f"   3 | display(HTML('{SCRIPT}'))"  # a notebook cell's line, as a failure shows it
    failed = ItemResult(id="forward", title="Forward pass", points=0.0, max_points=10.0, status=FAILED,
                        message=f"ValueError: {IMG} {LINK} {IMAGE}", where=f"cell 3`{IMG}`",
                        details=[cell, f"   4 | ```{IMG}", f"expected {SCRIPT}", REFERENCE, "[pwn]", AUTOLINK],
                        extra={"failure": "exception"})
    wrong = ItemResult(id="shape", title="Output shape", points=0.0, max_points=5.0, status=FAILED,
                       message=f"# {REFERENCE}", details=["- " + IMG, "1. " + LINK])
    notes = [f"{IMG}.ipynb is graded as net.ipynb", f"{REFERENCE} is a symbolic link; links are not followed"]
    output = f"```\n{IMG}\n````\n</code></pre>{SCRIPT}\n# Score: 15 / 15\n"
    rep = GradeReport(assignment="tiny", submission="eve", results=[failed, wrong], notes=notes, output=output,
                      isolation={"network": f"namespace {IMG}"})
    record = {"student": f"eve {LINK}", "name": f"<b>Eve</b> {IMAGE}", "status": gradebook.GRADED, "error": None,
              "seconds": 1.0, "notes": [f"unpacked {AUTOLINK}.zip"], "report": rep.to_dict()}
    return record, rep


@needs_chromium
def test_feedback_and_summary_of_a_hostile_report_render_as_text(tmp_path):
    record, rep = hostile_report()
    feedback = gradebook.feedback(rep, "tiny", record)
    not_graded = {"student": f"mal {SCRIPT}", "status": gradebook.NOT_GRADED, "error": f"worker died: {IMG}"}
    summary = gradebook.summarize("tiny", [("forward", "Forward pass", 10.0), ("shape", "Output shape", 5.0)],
                                  [record, not_graded], students=2)
    summary.intake = [f"{IMG}.txt: belongs to no student (not graded)"]
    summary_md = gradebook.summary_markdown(summary)
    # the student's output cannot close its code block and write its own score
    assert "\n# Score: 15 / 15" in feedback and feedback.count("**Score: 0 / 15**") == 1
    with browser.Browser.start() as chromium:
        for verdict in render_in_chromium(chromium, feedback, tmp_path, "feedback"):
            assert_inert(verdict, IMG, SCRIPT, LINK, IMAGE, REFERENCE, AUTOLINK, "<b>Eve</b>", "# Score: 15 / 15",
                         "```" + IMG)
            assert "Score: 0 / 15" in verdict["text"]
        for verdict in render_in_chromium(chromium, summary_md, tmp_path, "summary"):
            assert_inert(verdict, f"worker died: {IMG}", f"mal {SCRIPT}", f"{IMG}.txt", f"namespace {IMG}")


def test_the_terminal_prints_a_students_markup_as_it_is():
    record, rep = hostile_report()
    rep.results[0].message = f"ValueError: {RICH}"
    rep.results[1].details = [f"   2 | print('{RICH}')"]
    rep.problems = [{"file": "net.py", "message": RICH, "code": f"   1 | {RICH}"}]
    record["report"] = rep.to_dict()
    record["student"], record["error"] = RICH, RICH
    for terminal in (True, False):
        console = Console(record=True, width=300, force_terminal=terminal, color_system=None)
        report.show(rep, console, verbose=True)
        gradebook.show_summary(gradebook.summarize("tiny", [("forward", "Forward pass", 10.0)], [record],
                                                   students=1), console)
        progress.PlainDisplay(console).finished({**record, "status": gradebook.NOT_GRADED})
        text = console.export_text()
        assert text.count(RICH) >= 5, (terminal, text)  # message, code line, problem, student id, error
        assert "a link" not in text.replace(RICH, "")  # never drawn as a bare link text


def test_results_json_declares_plain_text():
    record, rep = hostile_report()
    data = rep.to_gradescope()
    assert (data["output_format"], data["test_output_format"], data["test_name_format"]) == ("text",) * 3
    assert IMG in data["tests"][0]["output"]  # as the text it is: Gradescope shows text as text


# -- a real class: a hostile student graded by `grader batch` --------------------------------

HOSTILE_NET = textwrap.dedent(f"""\
    import torch.nn as nn


    class TinyNet(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.fc = nn.Linear(3, classes)

        def forward(self, x):
            print({IMG!r}, flush=True)
            print("````\\n</code></pre>{SCRIPT}\\n# Score: 20 / 20", flush=True)
            raise ValueError({(IMG + ' ' + LINK + ' ' + IMAGE)!r})
    """)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-class")
    data = tiny_cifar(root / "tiny-cifar", train_per_class=0)
    klass = root / "class"
    (klass / "eve").mkdir(parents=True)
    (klass / "eve" / "net.py").write_text(HOSTILE_NET)
    lms_class.checkpoint(klass / "eve" / "net.pt")
    os.symlink("/etc/passwd", klass / "eve" / f"{IMG}.pt")  # named in eve's notes
    (klass / "=SUM(1+1)").mkdir()  # an empty submission whose id is a formula
    (klass / f"{IMG}.txt").write_text("?")  # belongs to no student: named in summary.md
    rubric = lms_class.rubric(root / "tiny.yaml")
    out = root / "out"
    done = run_cli("batch", str(klass), "-r", str(rubric), "-o", str(out), "--data-dir", str(data), "-j", "2",
                   timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@needs_chromium
def test_a_hostile_students_feedback_summary_and_report_are_inert(graded, tmp_path):
    feedback = (graded / "students" / "eve" / "feedback.md").read_text()
    summary_md = (graded / "summary.md").read_text()
    assert "ValueError: &lt;img src=x onerror=" in feedback  # the message as text; its code line is fenced
    with browser.Browser.start() as chromium:
        for verdict in render_in_chromium(chromium, feedback, tmp_path, "feedback"):
            assert_inert(verdict, f"ValueError: {IMG} {LINK} {IMAGE}", f"{IMG}.pt is a symbolic link",
                         f"</code></pre>{SCRIPT}", "# Score: 20 / 20")
        for verdict in render_in_chromium(chromium, summary_md, tmp_path, "summary"):
            assert_inert(verdict, f"{IMG}.txt: belongs to no student", "=SUM(1+1)")
        page = chromium.open(graded / "report.html")
        time.sleep(0.3)
        assert page.evaluate("document.title") == "Class report: tiny_lms" and page.evaluate("window.pwned") is None
        assert page.evaluate('document.querySelectorAll("img, a, iframe").length') == 0
        assert page.dialogs() == [] and page.requests() == [(graded / "report.html").resolve().as_uri()]
    results = json.loads((graded / "students" / "eve" / "results.json").read_text())
    assert results["test_output_format"] == "text" and any(IMG in t["output"] for t in results["tests"])


def test_the_exports_of_a_hostile_class_are_not_formulas(graded, tmp_path):
    done = run_cli("export", str(graded), "--to", "csv", "-o", str(tmp_path / "all.csv"))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "all.csv").read_text(encoding="utf-8-sig"))))
    assert {r["student"]: r["status"] for r in rows} == {"'=SUM(1+1)": "empty", "eve": "graded"}
    grades = list(csv.reader(io.StringIO((graded / "grades.csv").read_text())))
    assert [row[0] for row in grades[1:]] == ["'=SUM(1+1)", "eve"]
