"""Staging a batch's data set and checkpoints once, in a folder every cluster node reads.

    staged = staging.stage(jobs, Path("/project/course/grader-shared"))
    jobs = [staged.apply(job) for job in jobs]

SHARED/data/<id>/     a copy of the test set folder the batch grades on (re-copied when it changes)
SHARED/cache/         the grader cache the jobs use: the test set decoded once to uint8 arrays
                      (students' processes map them read-only) and its labels (they cannot read)
SHARED/checkpoints/   the instructor's --checkpoints files the rubric names

The batch process does this before the first job is submitted; each job then only reads
(no job copies or decodes anything), and a rerun finds everything in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from grader import atomic, datasets
from grader.batch.job import Job
from grader.fingerprint import tree_stamp
from grader.rubric import load as load_rubric


@dataclass
class Staged:
    shared: Path
    data_dir: str | None  # what the jobs pass as --data-dir
    checkpoint_dirs: list[str]  # what the jobs pass as --checkpoints, in the instructor's order
    notes: list[str] = field(default_factory=list)

    @property
    def cache(self) -> Path:
        return self.shared / "cache"

    def apply(self, job: Job) -> Job:
        """The job reading the staged copies; its fingerprint stays that of the originals."""
        options = {**job.options, "data_dir": self.data_dir, "checkpoint_dirs": list(self.checkpoint_dirs),
                   "download": False}
        env = {**job.env, "GRADER_CACHE_DIR": str(self.cache)}
        private = list(dict.fromkeys([*job.private, str(self.shared)]))
        return dataclasses.replace(job, options=options, env=env, private=private)


def stage(jobs: list[Job], shared: Path) -> Staged:
    """Everything the jobs of one batch read besides submissions, rubric and reference, in `shared`."""
    shared = Path(shared).resolve()
    first = jobs[0]
    rubric = load_rubric(first.rubric).with_limits(**first.limits)
    selected = rubric.select(first.items)
    options = first.options
    staged = Staged(shared, None, [])
    specs = _data_specs(rubric, selected)
    if specs:
        staged.data_dir = _stage_data(specs, options.get("data_dir"), shared, staged.notes)
        _decode(specs, staged, options.get("data_dir"))
    names = sorted({i.checkpoint for i in selected if getattr(i, "checkpoint", None)})
    staged.checkpoint_dirs = _stage_checkpoints(names, [Path(p) for p in options["checkpoint_dirs"]], shared,
                                                staged.notes)
    return staged


def _data_specs(rubric, selected) -> list[datasets.DataSpec]:
    specs = {}
    for item in selected:
        if item.check == "accuracy":
            spec = item.data or rubric.data
            specs[spec.model_dump_json()] = spec
    return [specs[k] for k in sorted(specs)]


def _stage_data(specs, data_dir, shared: Path, notes: list[str]) -> str | None:
    """Copy the folders the test sets come from into one folder laid out as a --data-dir."""
    sources = {}
    for spec in specs:
        found = datasets.locate(spec, data_dir)
        if found is not None:
            kind, folder = found
            sources[folder.resolve()] = "cifar-10-batches-py" if kind == "cifar10-py" else spec.split
    if not sources:
        return None  # the embedded sample (decoded below into the shared cache), or no data at all
    key = hashlib.sha256(json.dumps(sorted((str(s), t) for s, t in sources.items())).encode()).hexdigest()[:12]
    root = shared / "data" / key
    for source, name in sources.items():
        if _copy_tree_if_changed(source, root / name):
            notes.append(f"staged the data set {source} in {root / name}")
    return str(root)


def _copy_tree_if_changed(source: Path, target: Path) -> bool:
    stamp = target.with_name(target.name + ".staged.json")
    want = {"source": str(source), "tree": tree_stamp(source)}
    if target.is_dir() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return False
        except (OSError, ValueError):
            pass
    for left in target.parent.glob(f".{target.name}.tmp*"):  # an interrupted copy
        shutil.rmtree(left, ignore_errors=True)
    with atomic.replacing(target) as partial:
        shutil.copytree(source, partial, symlinks=False)
        stamp.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
    atomic.write_json(stamp, want)
    return True


def _decode(specs, staged: Staged, original_dir: str | None) -> None:
    """Decode each test set into the shared cache now, so that no job decodes it.  Reports
    name the original folder, as a local batch does, not the staged copy."""
    for spec in specs:
        try:
            source = datasets.load(spec, original_dir).source
            with _cache_dir(staged.cache):
                datasets.describe_as(datasets.load(spec, staged.data_dir), source)
        except datasets.DataNotFound:
            pass  # the jobs skip the accuracy items with the same message


@contextlib.contextmanager
def _cache_dir(folder: Path):
    before = os.environ.get("GRADER_CACHE_DIR")
    os.environ["GRADER_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GRADER_CACHE_DIR", None)
        else:
            os.environ["GRADER_CACHE_DIR"] = before


def _stage_checkpoints(names: list[str], folders: list[Path], shared: Path, notes: list[str]) -> list[str]:
    staged = []
    for index, folder in enumerate(folders):
        folder = folder.resolve()
        target = shared / "checkpoints" / f"{index}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (folder / name).is_file() and _copy_if_changed(folder / name, target / name):
                notes.append(f"staged the checkpoint {folder / name}")
        staged.append(str(target))
    return staged


def _copy_if_changed(source: Path, target: Path) -> bool:
    st = source.stat()
    if target.is_file():
        t = target.stat()
        if t.st_size == st.st_size and t.st_mtime_ns == st.st_mtime_ns:
            return False
    for left in target.parent.glob(f".{target.name}.tmp*"):  # an interrupted copy
        left.unlink(missing_ok=True)
    with atomic.replacing(target) as partial:  # a job reading the old copy keeps a whole file
        shutil.copy2(source, partial)  # keeps the modification time: the next run compares it
    return True
