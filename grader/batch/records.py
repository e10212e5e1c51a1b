"""What was measured for each item, kept apart from what it is worth.

A student's record.json keeps, besides the scored report, `measured`: per item the check's
identity (`key`, a hash of everything that decides what is measured: target, inputs,
cases, data, reference solution; not points, titles, thresholds or credit policy) and the
raw result as the check returned it (message, details, status, and in `extra` what was
measured: accuracy and its interval, per-blank, per-child, per-variable and per-facet
verdicts).  grader.batch.scoring turns these into points under any rubric whose checks
have the same keys, without running student code again.

    keys = records.check_keys(rubric)                  # item id -> what its check measures
    measured = records.measure(report, keys)           # after grading: what a rescore starts from
    records.provenance(rubric, device)                 # who and what produced an output
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path

from grader import fingerprint
from grader.results import GradeReport

# Fields that say what an item is worth, never what is measured: rescoring may change them.
SCORING_FIELDS = {"points", "title", "visibility", "timeout_s"}
SCORING_BY_KIND = {"accuracy": {"threshold", "recipes"}, "structure": {"credit"}}
FACETS = ("outputs", "init", "optimizer")  # model_setup facets: their points are scoring too


def check_keys(rubric, hashes: fingerprint.FileHashes | None = None) -> dict[str, str]:
    """Per item id, a hash of what decides what its check measures."""
    reference = rubric.reference_dir()
    tree = (fingerprint.tree(reference, hashes or fingerprint.FileHashes(None))
            if reference is not None and reference.is_dir() else None)
    return {item.id: _check_key(rubric, item, tree) for item in rubric.items}


def _check_key(rubric, item, reference_tree: dict | None) -> str:
    data = item.model_dump(mode="json", exclude=SCORING_FIELDS | SCORING_BY_KIND.get(item.check, set()))
    if item.check == "model_setup":
        for facet in FACETS:
            if isinstance(data.get(facet), dict):
                data[facet].pop("points", None)
    context = {"item": data, "files": list(rubric.files),
               "notebook": rubric.notebook.model_dump(mode="json") if rubric.notebook else None}
    if item.check == "accuracy":
        context["data"] = (item.data or rubric.data).model_dump(mode="json")
    if item.needs_reference():
        context["reference"] = reference_tree
    return hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode()).hexdigest()[:20]


def measurement_identity(keys: dict[str, str], items) -> dict:
    """What a batch's fingerprint takes from the rubric: the checks of the graded items (from
    check_keys), not their points, so that a change of points is rescored instead of regraded."""
    return {item.id: keys[item.id] for item in items}


def measure(report: GradeReport, keys: dict[str, str]) -> dict:
    """Per item of the report: its check's key (from check_keys) and the raw result."""
    measured = {}
    for result in report.results:
        if result.id in keys:
            measured[result.id] = {"key": keys[result.id], "result": asdict(result)}
    return measured


def rubric_identity(rubric) -> dict:
    """The rubric's path and the SHA-256 of its content."""
    path = Path(rubric.path) if rubric.path else None
    digest = hashlib.sha256(path.read_bytes() if path and path.is_file()
                            else rubric.model_dump_json().encode()).hexdigest()
    return {"path": str(path) if path else None, "sha256": digest}


def provenance(rubric, device: str | None = None) -> dict:
    """What produced an output: the rubric (path, content hash), grader, torch and Python versions, device."""
    try:
        import torch

        torch_version = torch.__version__
    except Exception:  # pragma: no cover - torch is a dependency
        torch_version = "unknown"
    return {"rubric": rubric_identity(rubric), "grader": fingerprint.grader_version(), "torch": torch_version,
            "python": platform.python_version(), "device": device}


def provenance_line(p: dict) -> str:
    """One line for feedback.md and summary.md."""
    graded = p.get("graded") or {}
    scored = p.get("scored") or p
    rubric = scored.get("rubric") or {}
    line = (f"rubric {rubric.get('path')} (sha256 {str(rubric.get('sha256'))[:12]}), grader {scored.get('grader')}, "
            f"torch {graded.get('torch', scored.get('torch'))}, Python {graded.get('python', scored.get('python'))}")
    device = graded.get("device") or scored.get("device")
    return line + (f", device {device}" if device else "")
