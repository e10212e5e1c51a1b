"""Reuse never changes a grade: a student's results are the same whether graded in a batch
that shares work, in a batch that does not, or alone, item by item and message by message.

The exact-reuse key covers the raw bytes of every file the student's process can read,
under the name it is graded as: one byte anywhere makes another key, whatever the check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import batch, grading
from grader import rubric as rubrics
from grader.checks import KINDS
from grader.options import Options
from grader.results import FAILED, SKIPPED, GradeReport, ItemResult
from grader.reuse import Reuse
from tests import cnn_class, notebook_class, tiny_accuracy
from tests.conftest import REFERENCE, ROOT, RUBRICS, SKELETONS

# -- the key -------------------------------------------------------------------------


def one_item_of_each_kind() -> list[tuple[str, str]]:
    """(rubric, item id) for every check kind, taken from the course rubrics."""
    found = {}
    for path in sorted(RUBRICS.glob("*.yaml")):
        for item in rubrics.load(path).items:
            found.setdefault(item.check, (path.stem, item.id))
    assert set(found) == set(KINDS), f"no course rubric item of kind {set(KINDS) - set(found)}"
    return [found[kind] for kind in sorted(found)]


def keys(store: Reuse, rubric, folder: Path, item_id: str | None = None, options: Options | None = None) -> list:
    selected = rubric.select([item_id] if item_id else None)
    return grading.reuse_keys(store, rubric, selected, folder, options or Options())


def flip_one_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("assignment,item_id", one_item_of_each_kind())
def test_one_byte_of_what_an_item_reads_makes_another_key(tmp_path, assignment, item_id):
    rubric = rubrics.load(RUBRICS / f"{assignment}.yaml")
    item = next(i for i in rubric.items if i.id == item_id)
    store = Reuse.for_run(tmp_path / "state")
    original = shutil.copytree(REFERENCE / assignment, tmp_path / "a")
    if getattr(item, "checkpoint", None):
        (original / item.checkpoint).write_bytes(b"weights " * 64)
    before = keys(store, rubric, original, item_id)
    assert before == keys(store, rubric, shutil.copytree(original, tmp_path / "same"), item_id)

    read = item.files() + ([item.checkpoint] if getattr(item, "checkpoint", None) else [])
    assert read, item_id
    for name in read:
        changed = shutil.copytree(original, tmp_path / f"changed-{name}")
        flip_one_byte(changed / name)
        assert keys(store, rubric, changed, item_id) != before, (item_id, name)
    # A file the item does not name can still be imported or read by the code it runs.
    others = sorted(p.name for p in original.iterdir() if p.name not in read)
    if others:
        changed = shutil.copytree(original, tmp_path / "changed-other")
        flip_one_byte(changed / others[0])
        assert keys(store, rubric, changed, item_id) != before, (item_id, others[0])
    # So do a new file, the rubric item itself, the reference solution and the options.
    added = shutil.copytree(original, tmp_path / "added")
    (added / "helpers.py").write_text("x = 1\n")
    assert keys(store, rubric, added, item_id) != before
    other_item = item.model_copy(update={"points": item.points + 1})
    other_rubric = rubric.model_copy(update={"items": [other_item if i is item else i for i in rubric.items]})
    assert keys(store, other_rubric, original, item_id) != before
    assert keys(store, rubric, original, item_id, Options(precision="bf16")) != before
    assert keys(store, rubric, original, item_id, Options(device="cuda")) != before
    reference = shutil.copytree(REFERENCE / assignment, tmp_path / "course" / "reference")
    moved = rubric.model_copy(update={"reference": str(reference), "path": None})
    with_reference = keys(store, moved, original, item_id)
    flip_one_byte(reference / sorted(p.name for p in reference.iterdir())[0])
    assert keys(store, moved, original, item_id) != with_reference


def test_a_renamed_notebook_has_the_key_of_the_courses_name(tmp_path):
    rubric = rubrics.load(RUBRICS / "pytorch_basics.yaml")
    store = Reuse.for_run(tmp_path / "state")
    a, b, c = (tmp_path / n for n in "abc")
    for folder, name in ((a, "PyTorch.ipynb"), (b, "PyTorch (1).ipynb"), (c, "HW3_PyTorch.ipynb")):
        folder.mkdir()
        shutil.copyfile(SKELETONS / "pytorch_basics" / "PyTorch.ipynb", folder / name)
    assert keys(store, rubric, a) == keys(store, rubric, b) == keys(store, rubric, c)
    reference = tmp_path / "ref"
    reference.mkdir()
    shutil.copyfile(REFERENCE / "pytorch_basics" / "PyTorch.ipynb", reference / "HW3_PyTorch.ipynb")
    # Items without a target (the variables of Question 2) read the notebook too.
    assert keys(store, rubric, reference, "three_layer_convnet.init") != keys(store, rubric, a,
                                                                               "three_layer_convnet.init")


RAW_UNICODE_COOKIE = "# -*- coding: raw_unicode_escape -*-\n"
HIDDEN = "# \\u000araise RuntimeError('the code in this comment runs')\n"


def cookie_attack(source: str) -> str:
    """The right answer, plus a line that Python decodes as code and a normaliser as a comment."""
    return RAW_UNICODE_COOKIE + source + HIDDEN


def test_a_coding_cookie_with_code_in_a_comment_has_its_own_key(tmp_path):
    rubric = rubrics.load(RUBRICS / "cnn_architecture.yaml")
    store = Reuse.for_run(tmp_path / "state")
    right = shutil.copytree(REFERENCE / "cnn_architecture", tmp_path / "right")
    attack = shutil.copytree(REFERENCE / "cnn_architecture", tmp_path / "attack")
    source = (right / "resnet50_skeleton.py").read_text()
    (attack / "resnet50_skeleton.py").write_text(cookie_attack(source))
    # Python runs the hidden line: the two files are different programs...
    with pytest.raises(RuntimeError, match="the code in this comment runs"):
        exec(compile((attack / "resnet50_skeleton.py").read_bytes(), "attack.py", "exec"), {})
    # ...and get different keys, item by item.
    for a, b in zip(keys(store, rubric, right), keys(store, rubric, attack)):
        assert a != b


def result(message: str, **extra) -> ItemResult:
    return ItemResult(id="q1", title="Q1", points=0.0, max_points=5.0, status=FAILED, message=message, extra=extra)


def test_only_results_that_depend_on_the_inputs_alone_are_shared(tmp_path):
    folder = tmp_path / "alice_12345"
    marks = grading._student_marks(folder, "alice", ["PyTorch (1).ipynb"])

    def shareable(*results: ItemResult, notes=(), output="") -> bool:
        report = GradeReport("a", str(folder), list(results), notes=list(notes), output=output)
        return grading._reusable_report(report, list(notes), marks)

    plain = result("RuntimeError: shapes do not match", failure="exception")
    assert shareable(plain)
    # Anything that names the student: their id, their folder, the name they gave their file.
    assert not shareable(plain, result("alice's model is wrong"))
    assert not shareable(plain, result(f"cannot read {folder}/x.py"))
    assert not shareable(plain, notes=["PyTorch (1).ipynb: cell 3 failed"])
    assert not shareable(plain, output="hello from alice\n")
    assert shareable(plain, output="malice is a word, not a name\n")
    # A verdict of the machine's load or luck: a time limit, a crash, the memory, training.
    for failure in ("timeout", "crash", "memory", "output"):
        assert not shareable(plain, result("stopped", failure=failure)), failure
    assert not shareable(plain, result("test accuracy 71%", training={"seconds": 3.2}))
    assert not shareable(ItemResult(id="q", title="q", points=0, max_points=1, status=SKIPPED, message="no data"))


# -- the invariant on generated classes --------------------------------------------


def graded_alone(folder: Path, rubric_path: Path, items: list[str] | None, options: Options) -> dict:
    """What `grader check --json` prints for one submission (the same function, in this process)."""
    report = grading.grade(folder, rubrics.load(rubric_path), options, items=items, threads=1)
    return without_time(report.to_gradescope())


def checked_alone(folders: list[Path], rubric_path: Path, items: list[str] | None, options: Options) -> dict:
    """folder -> what the `grader check --json` command prints for it, two commands at a time."""
    args = ["--rubric", str(rubric_path), "--device", options.device, "--json",
            *(["--items", ",".join(items)] if items else [])]
    running, out = {}, {}
    for folder in folders + [None, None]:
        if len(running) >= 2 or folder is None:
            if not running:
                break
            done, proc = next(iter(running.items()))
            stdout, stderr = proc.communicate(timeout=900)
            assert proc.returncode in (0, 1) and stdout.startswith("{"), stdout + stderr
            out[done] = without_time(json.loads(stdout))
            del running[done]
        if folder is not None:
            running[folder] = subprocess.Popen([sys.executable, "-m", "grader", "check", str(folder), *args], cwd=ROOT,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return out


def without_time(results: dict) -> dict:
    """The verdicts: not how long grading took, nor the batch's record of the run (extra_data:
    provenance, late policy, overrides), which `grader check` alone has no class to say."""
    return {k: v for k, v in results.items() if k not in ("execution_time", "extra_data")}


def run_batch(download: Path, rubric_path: Path, out: Path, items: list[str] | None, options: Options, reuse: bool):
    config = batch.BatchConfig(submissions=download, rubric=rubric_path, out=out, options=options, items=items,
                               workers=2, threads=1, reuse=reuse)
    return batch.run(config)


def student_files(out: Path, student: str) -> tuple[dict, str]:
    folder = out / "students" / student
    return without_time(json.loads((folder / "results.json").read_text())), (folder / "feedback.md").read_text()


def reused(out: Path, student: str) -> dict[str, str]:
    """item -> whose result it is, from the instructor's record."""
    record = json.loads((out / "students" / student / "record.json").read_text())
    return {r["id"]: r["extra"]["reused_from"] for r in record["report"]["results"] if "reused_from" in r["extra"]}


def assert_invariant(tmp_path: Path, students: list[str], download: Path, rubric_path: Path,
                     items: list[str] | None, options: Options, alone: list[str], cli: bool = False) -> Path:
    """batch == batch --no-reuse for every student (results.json and feedback.md), == graded alone
    for the students in `alone`; nobody's files name a classmate.  Returns the shared run's folder."""
    shared, separate = tmp_path / "shared", tmp_path / "separate"
    run_batch(download, rubric_path, shared, items, options, reuse=True)
    run_batch(download, rubric_path, separate, items, options, reuse=False)
    for student in students:
        results, feedback = student_files(shared, student)
        assert (results, feedback) == student_files(separate, student), student
        others = [s for s in students if s != student]
        for text in (json.dumps(results), feedback):
            assert not [s for s in others if s in text], student
        assert reused(separate, student) == {}
    if cli:
        by_command = checked_alone([download / s for s in alone], rubric_path, items, options)
    for student in alone:
        got = by_command[download / student] if cli else graded_alone(download / student, rubric_path, items, options)
        assert got == student_files(shared, student)[0], student
    return shared


FEW_NOTEBOOKS = ["n01_skeleton", "n02_q2_shape", "n03_reference", "n04_renamed_reference", "n05_download_name",
                 "n06_not_json", "n07_skeleton_renamed"]


def test_notebooks_renamed_broken_and_untouched_get_the_same_grades_with_and_without_reuse(tmp_path):
    download = tmp_path / "download"
    students = notebook_class.write_class(download, only=FEW_NOTEBOOKS)
    shared = assert_invariant(tmp_path, students, download, RUBRICS / "pytorch_basics.yaml",
                              notebook_class.QUESTIONS_1_TO_6, Options(),
                              alone=["n04_renamed_reference", "n05_download_name", "n06_not_json",
                                     "n07_skeleton_renamed"])
    # What the old key gave them, graded alone: the skeleton 0 on Question 2, the reference full marks.
    skeleton = {t["extra_data"]["id"]: t for t in student_files(shared, "n07_skeleton_renamed")[0]["tests"]}
    assert skeleton["three_layer_convnet.init"]["score"] == 0
    assert student_files(shared, "n04_renamed_reference")[0]["score"] == 70
    assert "conv_w2 has shape" not in student_files(shared, "n04_renamed_reference")[1]
    # A byte-for-byte copy under another notebook name was graded once.
    assert set(reused(shared, "n07_skeleton_renamed").values()) == {"n01_skeleton"}
    assert "PyTorch (2).ipynb is graded as PyTorch.ipynb" in student_files(shared, "n07_skeleton_renamed")[1]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_class_of_notebooks_gets_the_same_grades_with_and_without_reuse_and_alone(tmp_path):
    download = tmp_path / "download"
    students = notebook_class.write_class(download)
    assert len(students) >= 12
    shared = assert_invariant(tmp_path, students, download, RUBRICS / "pytorch_basics.yaml", None, Options(),
                              alone=students, cli=True)
    assert student_files(shared, "n04_renamed_reference")[0]["score"] == 100
    assert set(reused(shared, "n07_skeleton_renamed").values()) == {"n01_skeleton"}
    assert set(reused(shared, "n13_reference_again").values()) <= {"n03_reference", "n04_renamed_reference"}
    assert reused(shared, "n13_reference_again")
    assert reused(shared, "n14_reference_reformatted") == {}  # one byte differs: graded on its own


CNN_ITEMS = ["residual_block.downsample", "residual_block.plain", "resnet50_layer4.blanks", "resnet50_layer4.layer3",
             "resnet50_layer4.layer4"]


def test_a_class_of_cnn_architecture_submissions_gets_the_same_grades_with_and_without_reuse(tmp_path):
    download = tmp_path / "download"
    students = cnn_class.write_invariance_class(download)
    assert len(students) >= 12
    rubric_path = RUBRICS / "cnn_architecture.yaml"
    shared = assert_invariant(tmp_path, students, download, rubric_path, CNN_ITEMS, Options(),
                              alone=["c01_cookie_attack", "c02_skeleton", "c03_correct", "c09_correct_copy"])
    # The attack fails on its own hidden line; the right answers after it lose nothing.
    attack = student_files(shared, "c01_cookie_attack")[0]
    assert attack["score"] == 0 and "hidden in a comment" in attack["tests"][0]["output"]
    for student in ("c03_correct", "c09_correct_copy", "c11_renamed_locals"):
        assert student_files(shared, student)[0]["score"] == 105, student
    assert set(reused(shared, "c09_correct_copy").values()) == {"c03_correct"}
    assert set(reused(shared, "c10_skeleton_copy").values()) == {"c02_skeleton"}
    assert reused(shared, "c11_renamed_locals") == {}


# -- reuse never skips a limit -----------------------------------------------------------

SLOW = tiny_accuracy.NET.replace("import torch\n", "import time\nimport torch\n", 1).replace(
    "    def forward(self, x):\n", "    def forward(self, x):\n        time.sleep(1.5)  # every call: 16 calls take 24 s\n")
HUNGRY = tiny_accuracy.NET.replace("import torch\n", "import torch\n\nKEPT = []\n", 1).replace(
    "    def forward(self, x):\n", "    def forward(self, x):\n"
    "        KEPT.append(torch.empty(25_000_000))  # 100 MB kept per call: 16 calls need 1.6 GB\n")
LIMITED = {"r1_reference": tiny_accuracy.NET, "r2_slow": SLOW, "r3_hungry": HUNGRY}


def test_a_slow_or_memory_hungry_model_gets_the_same_verdict_with_and_without_reuse_and_alone(tmp_path):
    """Each is the reference model with the instructor's checkpoint, so its first calls agree with
    the reference's scores; the whole evaluation (16 calls of 25 images) takes 24 s of a 20 s budget,
    or 1.6 GB of a 1 GB limit.  The probe's few calls fit both; reuse must not skip the rest."""
    images, _ = tiny_accuracy.sample(10)
    course = tiny_accuracy.tiny_course(tmp_path / "course", images=images, checkpoint=True)
    rubric_path = course["rubric"]
    rubric_path.write_text(rubric_path.read_text().replace("item_timeout_s: 120, memory_mb: 4096",
                                                           "item_timeout_s: 4, memory_mb: 1024"))
    download = tmp_path / "download"
    for student, source in LIMITED.items():
        tiny_accuracy.submission(download, student, source)
    options = Options(data_dir=str(course["data"]), checkpoint_dirs=[course["checkpoints"]])
    verdicts = {}
    for name, reuse in (("shared", True), ("separate", False)):
        batch.run(batch.BatchConfig(submissions=download, rubric=rubric_path, out=tmp_path / name, options=options,
                                    workers=1, threads=1, reuse=reuse))
        verdicts[name] = {s: [(t["score"], t["status"]) for t in student_files(tmp_path / name, s)[0]["tests"]]
                          for s in LIMITED}
    verdicts["alone"] = {s: [(t["score"], t["status"]) for t in graded_alone(download / s, rubric_path, None,
                                                                              options)["tests"]]
                         for s in LIMITED}
    assert verdicts["shared"] == verdicts["separate"] == verdicts["alone"]
    assert {s: v[0][0] for s, v in verdicts["shared"].items()} == {"r1_reference": 10, "r2_slow": 0, "r3_hungry": 0}
    # The reference copy was still reused; the two that would break a limit were evaluated in full.
    assert reused(tmp_path / "shared", "r1_reference") == {"net.accuracy": "reference solution"}
    assert reused(tmp_path / "shared", "r2_slow") == reused(tmp_path / "shared", "r3_hungry") == {}
    slow = student_files(tmp_path / "shared", "r2_slow")[0]["tests"][0]["output"]
    hungry = student_files(tmp_path / "shared", "r3_hungry")[0]["tests"][0]["output"]
    print(slow, hungry, sep="\n")


def test_the_probe_skips_only_what_stays_well_within_the_limits():
    from grader import probe

    quick = probe.Limits(budget_s=20, memory_bytes=1 << 30, memory_in_use=iter([500 << 20] * 4).__next__)
    for _ in range(3):
        quick.observe(0.2)
    assert quick.whole_run_fits(16)  # 3.2 s of 20, no growth
    slow = probe.Limits(budget_s=20, memory_bytes=1 << 30, memory_in_use=lambda: 500 << 20)
    for seconds in (0.1, 1.5):
        slow.observe(seconds)
    assert not slow.whole_run_fits(16)  # the slowest call, 16 times: 24 s
    assert probe.Limits(budget_s=60, memory_bytes=1 << 30, memory_in_use=lambda: 500 << 20).whole_run_fits(16) \
        is False  # no call made yet
    growing = probe.Limits(budget_s=20, memory_bytes=1 << 30,
                           memory_in_use=iter([500 << 20, 600 << 20, 700 << 20]).__next__)
    for _ in range(3):
        growing.observe(0.1)
    assert not growing.whole_run_fits(16)  # 100 MB more per call, 13 calls to go: 1.3 GB
    unmeasured = probe.Limits(budget_s=20, memory_bytes=1 << 30)  # memory that cannot be read
    for _ in range(3):
        unmeasured.observe(0.1)
    assert not unmeasured.whole_run_fits(16)
    # The measure itself: this process's own tree holds what it allocates.
    import os
    import types

    here = types.SimpleNamespace(_child=types.SimpleNamespace(pid=os.getpid()))
    before = probe.memory_in_use(here)
    kept = bytearray(64 << 20)
    assert probe.memory_in_use(here) - before >= 60 << 20 and kept
