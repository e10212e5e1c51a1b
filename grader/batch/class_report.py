"""OUT/report.html: the class at a glance, one self-contained page that opens from disk.

    class_report.write(out)              # after a batch, or `grader report OUT` later

Everything comes from what the batch left in OUT (grades.csv, students/<id>/record.json,
duplicates.csv), so the page can be rewritten at any time without running student code.
Scores are read from grades.csv, the file instructors upload: the page's numbers are its
numbers.  Plots are matplotlib figures inlined as SVG; each has its data in a table beside
it (for screen readers, for copying, and as the whole report where matplotlib is missing).
The page loads nothing (a Content-Security-Policy forbids it), and every string that came
from a student (names, ids, messages) is escaped.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import platform
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from grader import atomic
from grader.batch import gradebook
from grader.errors import GraderError

REPORT = "report.html"
PROVENANCE = Path(".grader") / "provenance.json"  # the batch's own, for a later `grader report`
# Okabe & Ito's palette: told apart by readers with any common colour-vision deficiency.
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "grey": "#999999"}
EXAMPLES = 5  # students named per failure reason before "and N more"
SLOWEST = 10


class ReportError(GraderError):
    """OUT is not a batch's output folder (no grades.csv)."""


# -- what OUT holds ---------------------------------------------------------------


@dataclass
class ClassData:
    out: Path
    header: list[str]
    rows: list[dict[str, str]]  # grades.csv, cell text as written
    items: list[tuple[str, str, float]]  # (id, title, max points) in grades.csv order
    records: list[dict]  # in grades.csv order; {} where a student has no record
    duplicates: list[dict[str, str]] = field(default_factory=list)
    provenance: list[dict] = field(default_factory=list)  # distinct, with the students each covers

    @property
    def max_score(self) -> float:
        return sum(mx for _, _, mx in self.items)

    def totals(self) -> list[float]:
        """The totals of the graded students, as grades.csv has them."""
        return [float(r["total"]) for r in self.rows if r.get("total", "").strip()]


def load(out: Path) -> ClassData:
    out = Path(out)
    path = out / "grades.csv"
    if not path.is_file():
        raise ReportError(f"{out} has no grades.csv: give the folder `grader batch -o` wrote")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = [dict(zip(header, row)) for row in reader]
    records = [gradebook.load_record(out, r.get("student", "")) or {} for r in rows]
    items = _items(header, records)
    duplicates = []
    if (out / "duplicates.csv").is_file():
        with open(out / "duplicates.csv", newline="") as f:
            duplicates = list(csv.DictReader(f))
    return ClassData(out, header, rows, items, records, duplicates, _provenance(out, rows, records))


def _items(header: list[str], records: list[dict]) -> list[tuple[str, str, float]]:
    """The item columns of grades.csv (those that are results of some record), with titles and points."""
    known: dict[str, tuple[str, float]] = {}
    for record in records:
        for r in (record.get("report") or {}).get("results", []):
            known.setdefault(r["id"], (r.get("title") or r["id"], float(r.get("max_points") or 0)))
    return [(c, *known[c]) for c in header if c in known]


def _provenance(out: Path, rows: list[dict], records: list[dict]) -> list[dict]:
    """Who and what graded the class: each distinct provenance of the records, with its students,
    or the batch's own when the records do not carry one."""
    groups: dict[str, dict] = {}
    for row, record in zip(rows, records):
        p = record.get("provenance")
        if not p or not isinstance(p, dict):
            continue
        if "graded" in p or "scored" in p:  # graded by one run, maybe rescored by another: the latest wins
            p = {**(p.get("graded") or {}), **{k: v for k, v in (p.get("scored") or {}).items() if v is not None}}
        key = json.dumps(p, sort_keys=True)
        groups.setdefault(key, {"provenance": p, "students": []})["students"].append(row.get("student", ""))
    if groups:
        return list(groups.values())
    try:
        return [{"provenance": json.loads((out / PROVENANCE).read_text()), "students": []}]
    except (OSError, ValueError):
        return []


def provenance(rubric, device: str | None) -> dict:
    """The rubric (path and SHA-256 of its content), grader, torch and Python versions, and device."""
    from grader.fingerprint import grader_version

    path = Path(rubric.path) if getattr(rubric, "path", None) else None
    content = path.read_bytes() if path is not None and path.is_file() else rubric.model_dump_json().encode()
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = "unknown"
    return {"rubric": {"path": str(path) if path else None, "sha256": hashlib.sha256(content).hexdigest()},
            "grader": grader_version(), "torch": torch_version, "python": platform.python_version(),
            "device": device}


def write(out: Path, *, rubric=None, device: str | None = None) -> Path:
    """Write OUT/report.html from OUT.  With the rubric of the run, its provenance is kept for later rewrites."""
    out = Path(out)
    if rubric is not None:
        atomic.write_text(out / PROVENANCE, json.dumps(provenance(rubric, device), indent=1) + "\n")
    data = load(out)
    rubric = rubric if rubric is not None else _recorded_rubric(data)
    board_items = [getattr(getattr(rubric, "leaderboard", None), "item", None)] if rubric is not None else []
    target = out / REPORT
    atomic.write_text(target, render(data, leaderboard_items=[i for i in board_items if i]))
    return target


def _recorded_rubric(data: ClassData):
    """The rubric the provenance names, when it is still there unchanged (for its leaderboard item)."""
    from grader.rubric import load as load_rubric

    for group in data.provenance:
        rubric = group["provenance"].get("rubric") or {}
        path = Path(rubric.get("path") or "")
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == rubric.get("sha256"):
            try:
                return load_rubric(path)
            except Exception:  # an unreadable rubric only loses the leaderboard's choice of item
                return None
    return None


# -- the numbers ------------------------------------------------------------------


@dataclass
class Standing:
    student: str
    name: str
    accuracy: float
    low: float
    high: float
    params: int | None
    training_s: float | None


def leaderboard(data: ClassData, item: str) -> list[Standing]:
    """The class ranked by an accuracy item: best first, then the smaller model."""
    from grader.datasets import wilson_interval

    rows = []
    for row, record in zip(data.rows, data.records):
        if record.get("status") != gradebook.GRADED:
            continue
        result = next((r for r in (record.get("report") or {}).get("results", []) if r["id"] == item), None)
        extra = (result or {}).get("extra") or {}
        if "accuracy" not in extra:
            continue
        interval = extra.get("interval95")
        if not interval and extra.get("total"):
            interval = wilson_interval(int(extra["correct"]), int(extra["total"]))
        low, high = interval or (extra["accuracy"], extra["accuracy"])
        training = extra.get("training") or {}
        rows.append(Standing(row.get("student", ""), row.get("name", ""), float(extra["accuracy"]), float(low),
                             float(high), extra.get("params"), training.get("seconds")))
    return sorted(rows, key=lambda s: (-s.accuracy, s.params or 0, s.student))


def challenge_items(data: ClassData, named: list[str]) -> list[str]:
    """The rubric's leaderboard item; else the accuracy items whose models students trained;
    else every accuracy item measured."""
    measured, trained = [], []
    for record in data.records:
        for r in (record.get("report") or {}).get("results", []):
            extra = r.get("extra") or {}
            if "accuracy" in extra and r["id"] not in measured:
                measured.append(r["id"])
            if extra.get("training") and r["id"] not in trained:
                trained.append(r["id"])
    named = [i for i in named if i in measured]
    return named or trained or measured


def item_distribution(data: ClassData) -> list[dict]:
    """Per item: how many students got full, partial and no points (from grades.csv), and the pass rate."""
    stats = []
    for item, title, mx in data.items:
        cells = [r.get(item, "").strip() for r in data.rows]
        points = [float(c) for c in cells if c]
        full = sum(1 for p in points if p >= mx > 0 or (mx == 0 and p >= 0))
        zero = sum(1 for p in points if p <= 0 < mx)
        stats.append({"id": item, "title": title, "max": mx, "graded": len(points), "full": full,
                      "partial": len(points) - full - zero, "zero": zero,
                      "mean": statistics.fmean(points) if points else 0.0,
                      "median": statistics.median(points) if points else 0.0})
    return stats


def histogram_bins(max_score: float, bins: int = 10) -> list[tuple[float, float]]:
    """Tenths of the maximum (the summary's bins), or one bin per point when the maximum is small."""
    if 0 < max_score <= 12 and float(max_score).is_integer():
        bins = int(max_score) + 1  # 0, 1, ..., max: each score its own bar
        return [(i - 0.5, i + 0.5) for i in range(bins)]
    width = max_score / bins if max_score else 1.0
    return [(i * width, (i + 1) * width) for i in range(bins)]


def histogram_counts(totals: list[float], edges: list[tuple[float, float]]) -> list[int]:
    counts = [0] * len(edges)
    for total in totals:
        if total < edges[0][0]:
            index = 0  # below zero (a penalty larger than the points): the first bin
        else:  # full marks (and above, with a bonus) land in the last bin
            index = next((i for i, (low, high) in enumerate(edges) if low <= total < high), len(edges) - 1)
        counts[index] += 1
    return counts


# -- plots: matplotlib to inline SVG ------------------------------------------------


def _matplotlib():
    """matplotlib, or None when it cannot be loaded (the report is then its tables)."""
    try:
        import matplotlib
        import matplotlib.figure
        import matplotlib.ticker  # noqa: F401  (used through the module)
    except Exception:  # not installed, or broken: the tables carry the same numbers
        return None
    return matplotlib


# Figures are made with matplotlib.figure.Figure, not pyplot: no global backend or figure list
# is touched, so writing a report from a notebook or a library call changes nothing there.
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "grader", "font.size": 10, "axes.spines.top": False,
         "axes.spines.right": False}


def _figure_of(mpl, width: float, height: float):
    fig = mpl.figure.Figure(figsize=(width, height))
    return fig, fig.subplots()


def _svg(mpl, fig, name: str) -> str:
    """The figure as an <svg> element whose ids cannot clash with another figure's on the page."""
    buf = io.StringIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'id="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'(url\(#|href="#)([^")]+)', rf"\g<1>{name}-\2", text)
    return text.replace("<svg ", f'<svg role="img" aria-labelledby="{name}-caption" ', 1)


def plot_histogram(mpl, edges, counts, max_score) -> str:
    with mpl.rc_context(STYLE):
        fig, ax = _figure_of(mpl, 7, 3)
        lefts = [low for low, _ in edges]
        widths = [high - low for low, high in edges]
        ax.bar(lefts, counts, width=widths, align="edge", color=OKABE_ITO["blue"], edgecolor="white")
        ax.set_xlabel(f"total points (of {gradebook.number(max_score)})")
        ax.set_ylabel("students")
        ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        for left, width, count in zip(lefts, widths, counts):
            if count:
                ax.annotate(str(count), (left + width / 2, count), ha="center", va="bottom", fontsize=8)
        return _svg(mpl, fig, "histogram")


def plot_items(mpl, stats) -> str:
    with mpl.rc_context(STYLE):
        fig, ax = _figure_of(mpl, 7, 0.45 * len(stats) + 1.2)
        labels = [s["id"] for s in stats][::-1]
        parts = (("full", "full points", OKABE_ITO["blue"], ""),
                 ("partial", "partial", OKABE_ITO["orange"], "//"),
                 ("zero", "no points", OKABE_ITO["vermillion"], ".."))
        left = [0.0] * len(stats)
        for key, label, colour, hatch in parts:
            share = [(s[key] / s["graded"] if s["graded"] else 0.0) for s in stats][::-1]
            ax.barh(labels, share, left=left, color=colour, hatch=hatch, edgecolor="white", label=label)
            left = [a + b for a, b in zip(left, share)]
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0))
        ax.set_xlabel("share of graded students")
        ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        return _svg(mpl, fig, "items")


def plot_leaderboard(mpl, item: str, standings: list[Standing], name: str) -> str:
    shown = standings[:30]
    with mpl.rc_context(STYLE):
        fig, ax = _figure_of(mpl, 7, 3)
        ranks = list(range(1, len(shown) + 1))
        accuracy = [100 * s.accuracy for s in shown]
        below = [100 * (s.accuracy - s.low) for s in shown]
        above = [100 * (s.high - s.accuracy) for s in shown]
        ax.errorbar(ranks, accuracy, yerr=[below, above], fmt="o", color=OKABE_ITO["blue"],
                    ecolor=OKABE_ITO["grey"], capsize=3)
        ax.set_xlabel("rank")
        ax.set_ylabel(f"{item} accuracy, % (95% interval)")
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        return _svg(mpl, fig, name)


def _plot(draw, *args) -> str | None:
    """A plot, or None when drawing it fails: its table still shows the numbers, and a class's
    report is never lost to one figure."""
    try:
        return draw(*args)
    except Exception:
        return None


# -- the page ---------------------------------------------------------------------


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _n(value: float | None) -> str:
    return gradebook.number(None if value is None else round(value, 4))


def render(data: ClassData, *, leaderboard_items: list[str] = ()) -> str:
    mpl = _matplotlib()
    title = _assignment(data)
    body = [f"<h1>Class report: {_e(title)}</h1>", _overview(data)]
    body += _histogram_section(data, mpl)
    body += _items_section(data, mpl)
    body += _failures_section(data)
    for n, item in enumerate(challenge_items(data, list(leaderboard_items))):
        body += _leaderboard_section(data, item, mpl, f"leaderboard{n + 1}")
    body += _adjustments_section(data)
    body += _duplicates_section(data)
    body += _slowest_section(data)
    body += _gradebook_section(data)
    body += _provenance_section(data)
    if mpl is None:
        body.insert(1, '<p class="note">matplotlib is not installed: the plots are left out and their data '
                       "shown as tables (pip install matplotlib, then <code>grader report OUT</code>).</p>")
    return PAGE.format(title=_e(title), css=CSS, script=SCRIPT, body="\n".join(body))


def _assignment(data: ClassData) -> str:
    for record in data.records:
        name = (record.get("report") or {}).get("assignment")
        if name:
            return name
    return data.out.name


def _overview(data: ClassData) -> str:
    totals = data.totals()
    graded = len(totals)
    not_graded = len(data.rows) - graded
    mean = statistics.fmean(totals) if totals else 0.0
    median = statistics.median(totals) if totals else 0.0
    cells = [("students", len(data.rows)), ("graded", graded), ("not graded", not_graded),
             ("maximum", _n(data.max_score)), ("mean", _n(round(mean, 2))), ("median", _n(round(median, 2)))]
    stats = "".join(f'<div class="stat" data-stat="{_e(k)}"><span>{_e(v)}</span>{_e(k)}</div>' for k, v in cells)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<section class="overview"><div class="stats">{stats}</div>'
            f'<p class="small">Written {when} from <code>{_e(data.out)}</code>. Scores are those of '
            "grades.csv.</p></section>")


def _figure(name: str, caption: str, svg: str | None) -> str:
    inner = svg or '<p class="note">(plot left out: matplotlib is missing or could not draw it)</p>'
    return (f'<figure data-plot="{name}">{inner}<figcaption id="{name}-caption">{_e(caption)}</figcaption>'
            "</figure>")


def _histogram_section(data: ClassData, mpl) -> list[str]:
    totals = data.totals()
    edges = histogram_bins(data.max_score)
    counts = histogram_counts(totals, edges)
    whole = all(float(low + 0.5).is_integer() and high - low == 1 for low, high in edges)

    def label(low: float, high: float, last: bool) -> str:
        if whole:
            return _n(low + 0.5)
        return f"{_n(low)} – {_n(high)}" if last else f"{_n(low)} – &lt;{_n(high)}"

    svg = _plot(plot_histogram, mpl, edges, counts, data.max_score) if mpl and totals else None
    rows = "".join(f'<tr data-bin="{i}"><td>{label(low, high, i == len(edges) - 1)}</td>'
                   f'<td class="num" data-count="{c}">{c}</td></tr>'
                   for i, ((low, high), c) in enumerate(zip(edges, counts)))
    return ["<section id=\"scores\"><h2>Scores</h2>",
            _figure("histogram", f"Total points of the {len(totals)} graded students.", svg),
            f'<table class="data" data-table="histogram"><thead><tr><th>Total points</th><th>Students</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></section>"]


def _items_section(data: ClassData, mpl) -> list[str]:
    stats = item_distribution(data)
    svg = _plot(plot_items, mpl, stats) if mpl and stats else None
    rows = []
    for s in stats:
        rate = s["full"] / s["graded"] if s["graded"] else 0.0
        rows.append(f'<tr data-item="{_e(s["id"])}"><td>{_e(s["title"])}<br><code>{_e(s["id"])}</code></td>'
                    f'<td class="num">{_n(s["max"])}</td><td class="num" data-full="{s["full"]}">{s["full"]}</td>'
                    f'<td class="num" data-partial="{s["partial"]}">{s["partial"]}</td>'
                    f'<td class="num" data-zero="{s["zero"]}">{s["zero"]}</td>'
                    f'<td class="num" data-rate="{rate:.4f}">{rate:.0%}</td>'
                    f'<td class="num" data-mean="{s["mean"]:.4f}">{_n(round(s["mean"], 2))}</td>'
                    f'<td class="num">{_n(round(s["median"], 2))}</td></tr>')
    return ["<section id=\"items\"><h2>Items</h2>",
            _figure("items", "Share of students with full, partial and no points on each item.", svg),
            '<table class="data" data-table="items"><thead><tr><th>Item</th><th>Points</th><th>Full</th>'
            "<th>Partial</th><th>None</th><th>Pass rate</th><th>Mean</th><th>Median</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"]


def _failures_section(data: ClassData) -> list[str]:
    graded = [r for r in data.records if r.get("student")]
    summary = gradebook.summarize(_assignment(data), data.items, graded)
    parts = ["<section id=\"failures\"><h2>Failures by reason</h2>"]
    if not summary.failures and not summary.errors:
        parts.append("<p>None: every graded item passed.</p>")
    for reason, students in summary.failures.items():
        names = list(students)
        shown = ", ".join(f"<code>{_e(s)}</code> ({_e(', '.join(students[s]))})" for s in names[:EXAMPLES])
        more = ""
        if len(names) > EXAMPLES:
            rest = ", ".join(f"<code>{_e(s)}</code>" for s in names[EXAMPLES:])
            more = f"<details><summary>and {len(names) - EXAMPLES} more</summary>{rest}</details>"
        parts.append(f'<div class="reason" data-reason="{_e(reason)}" data-students="{len(names)}">'
                     f"<h3>{_e(gradebook.reason_label(reason))}: {len(names)} student{'s' * (len(names) != 1)}</h3>"
                     f'<p class="example">e.g. {_e(summary.examples.get(reason, ""))}</p><p>{shown}</p>{more}</div>')
    if summary.errors:
        rows = "".join(f"<tr><td><code>{_e(s)}</code></td><td>{_e(why)}</td></tr>" for s, why in summary.errors)
        parts.append(f'<h3>Not graded</h3><table class="data" data-table="not-graded"><tbody>{rows}</tbody></table>')
    parts.append("</section>")
    return parts


def _leaderboard_section(data: ClassData, item: str, mpl, name: str) -> list[str]:
    standings = leaderboard(data, item)
    if not standings:
        return []
    svg = _plot(plot_leaderboard, mpl, item, standings, name) if mpl else None
    rows = []
    for rank, s in enumerate(standings, 1):
        params = f"{s.params:,}" if s.params is not None else "unknown"
        trained = f"{s.training_s:.0f}" if s.training_s is not None else "unknown"
        rows.append(f'<tr data-student="{_e(s.student)}" data-accuracy="{s.accuracy:.6f}"><td class="num">{rank}</td>'
                    f"<td><code>{_e(s.student)}</code></td><td>{_e(s.name)}</td>"
                    f'<td class="num">{100 * s.accuracy:.2f}%</td>'
                    f'<td class="num">{100 * s.low:.1f}–{100 * s.high:.1f}%</td>'
                    f'<td class="num">{params}</td><td class="num">{trained}</td></tr>')
    return [f'<section class="leaderboard" data-item="{_e(item)}"><h2>Leaderboard: <code>{_e(item)}</code></h2>',
            _figure(name, f"{item}: accuracy of each ranked student with its 95% (Wilson) interval"
                          f"{' (the first 30)' if len(standings) > 30 else ''}.", svg),
            f'<table class="data" data-table="{name}"><thead><tr><th>#</th><th>Student</th><th>Name</th>'
            "<th>Accuracy</th><th>95% interval</th><th>Parameters</th><th>Training s</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"]


def _adjustments_section(data: ClassData) -> list[str]:
    """Late penalties and the instructor's overrides, as the records carry them (none: no section)."""
    rows = []
    for row, record in zip(data.rows, data.records):
        late = record.get("late") or {}
        if late.get("penalty"):
            rows.append((row.get("student", ""), "total", f"late: -{_n(late['penalty'])}", late.get("note", "")))
        for a in record.get("adjustments") or []:
            why = (a.get("reason") or "") + (f" (by {a['by']})" if a.get("by") else "")
            rows.append((row.get("student", ""), a.get("item") or "total", a.get("text", ""), why))
    if not rows:
        return []
    body = "".join(f'<tr data-student="{_e(s)}"><td><code>{_e(s)}</code></td><td><code>{_e(i)}</code></td>'
                   f"<td>{_e(what)}</td><td>{_e(why)}</td></tr>" for s, i, what, why in rows)
    return ["<section id=\"adjustments\"><h2>Adjustments and late penalties</h2>",
            f"<p>{len(rows)} change{'s' * (len(rows) != 1)} on top of what was graded; grades.csv includes them.</p>",
            '<table class="data" data-table="adjustments"><thead><tr><th>Student</th><th>Item</th><th>Change</th>'
            f"<th>Why</th></tr></thead><tbody>{body}</tbody></table></section>"]


def _duplicates_section(data: ClassData) -> list[str]:
    parts = ["<section id=\"duplicates\"><h2>Duplicates</h2>"]
    if not data.duplicates:
        parts.append("<p>No two students handed in the same work.</p></section>")
        return parts
    groups: dict[str, list[dict]] = {}
    for row in data.duplicates:
        groups.setdefault(row.get("group", ""), []).append(row)
    rows = []
    for number, members in groups.items():
        first = members[0]
        who = ", ".join(f"<code>{_e(m.get('student', ''))}</code>" + (f" {_e(m['name'])}" if m.get("name") else "")
                        for m in members)
        rows.append(f'<tr data-group="{_e(number)}"><td class="num">{_e(number)}</td><td>{_e(first.get("kind", ""))}'
                    f'</td><td><code>{_e(first.get("file", ""))}</code></td><td>{who}</td>'
                    f'<td>{_e(first.get("note", ""))}</td></tr>')
    parts.append(f"<p>{len(groups)} group{'s' * (len(groups) != 1)} of identical work (duplicates.csv).</p>"
                 '<table class="data" data-table="duplicates"><thead><tr><th>Group</th><th>Kind</th><th>File</th>'
                 f"<th>Students</th><th>Note</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>")
    return parts


def _slowest_section(data: ClassData) -> list[str]:
    timed = [(r.get("student", ""), float(r["seconds"])) for r in data.records if r.get("seconds") is not None]
    timed.sort(key=lambda t: -t[1])
    rows = "".join(f"<tr><td><code>{_e(s)}</code></td><td class=\"num\">{sec:.1f}</td></tr>"
                   for s, sec in timed[:SLOWEST])
    return ["<section id=\"slowest\"><h2>Slowest submissions</h2>",
            f'<table class="data" data-table="slowest"><thead><tr><th>Student</th><th>Seconds</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"]


def _gradebook_section(data: ClassData) -> list[str]:
    """grades.csv as it is, every cell marked with its column (the test compares them)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in data.header)
    rows = []
    for row in data.rows:
        cells = "".join(f'<td data-column="{_e(c)}">{_e(row.get(c, ""))}</td>' for c in data.header)
        rows.append(f'<tr data-student="{_e(row.get("student", ""))}">{cells}</tr>')
    return ["<section id=\"gradebook\"><h2>Gradebook</h2>",
            f"<details><summary>grades.csv: {len(data.rows)} students</summary>"
            f'<table class="data" data-table="grades"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></details></section>"]


def _provenance_section(data: ClassData) -> list[str]:
    parts = ["<section id=\"provenance\"><h2>Provenance</h2>"]
    if not data.provenance:
        parts.append("<p>Not recorded in this folder (graded by an older grader).</p>")
    for group in data.provenance:
        p = group["provenance"]
        rubric = p.get("rubric") or {}
        rows = [("rubric", rubric.get("path")), ("rubric sha256", rubric.get("sha256")),
                ("grader", p.get("grader")), ("torch", p.get("torch")), ("Python", p.get("python")),
                ("device", p.get("device"))]
        body = "".join(f'<tr><th>{_e(k)}</th><td data-provenance="{_e(k)}"><code>{_e(v if v is not None else "unknown")}'
                       "</code></td></tr>" for k, v in rows)
        students = group["students"]
        who = (f"<p>{len(students)} student{'s' * (len(students) != 1)}: "
               f"{_e(', '.join(students[:20]))}{' ...' if len(students) > 20 else ''}</p>"
               if students and len(data.provenance) > 1 else "")
        parts.append(f'{who}<table class="data" data-table="provenance"><tbody>{body}</tbody></table>')
    parts.append("</section>")
    return parts


CSS = """
:root { --ink: #1a1a1a; --muted: #595959; --rule: #d0d0d0; --accent: #0072B2; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0 auto;
       max-width: 60rem; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; } h2 { border-bottom: 2px solid var(--accent); padding-bottom: .2rem;
     margin-top: 2rem; } h3 { font-size: 1rem; margin: 1rem 0 .2rem; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }
.stats { display: flex; flex-wrap: wrap; gap: .6rem; }
.stat { border: 1px solid var(--rule); border-radius: 6px; padding: .4rem .8rem; min-width: 7rem; color: var(--muted); }
.stat span { display: block; font-size: 1.4rem; font-weight: 600; color: var(--ink); }
.small, .example { color: var(--muted); font-size: .9em; } .note { background: #fff4d6; padding: .5rem; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: .9em; }
table.data { border-collapse: collapse; margin: .6rem 0; font-size: .92em; }
table.data th, table.data td { border-bottom: 1px solid var(--rule); padding: .25rem .6rem; text-align: left;
                               vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reason { border-left: 4px solid #D55E00; padding-left: .8rem; margin: .8rem 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { break-after: avoid; } figure, tr, .reason { break-inside: avoid; }
  details > summary { list-style: none; }
  a { color: inherit; text-decoration: none; }
}
"""

# Printing opens the folded sections, so that paper shows everything.
SCRIPT = """
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
});
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src data:">
<title>Class report: {title}</title>
<style>{css}</style>
</head>
<body>
{body}
<script>{script}</script>
</body>
</html>
"""
