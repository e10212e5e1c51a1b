"""grader's speed, measured side by side in one run.

    python bench/run.py [--quick] [--data-dir DIR]

Prints `name: value` lines (ratios are the figures to compare between machines;
absolute rates drift with the machine's load):

  eval_vs_bare_vgg16            grader's evaluation throughput / a bare forward pass of
  eval_vs_bare_resnet50_layer4  the same model on the same tensors (goal >= 0.95)
  grader_vs_course_loop_vgg16   grader's evaluation speed-up over the course's own loop
                                (DataLoader, ToTensor + Normalize per image, batch 100)
  class40_vs_single             `grader batch` of 40 correct, differently written CNN
                                Architecture submissions / `grader check` of one (goal <= 3)
  overhead_per_submission_s     seconds per submission beyond the model's own compute, warm
                                workers (a batch of tiny-model students; goal <= 0.5), with the
                                OS sandbox where this machine has it (the `# isolation:` line says)
  overhead_unisolated_s         the same without the sandbox (--unsafe-no-isolation): what the
                                boundary costs is the difference
  challenge_time_to_70_s        training time of the pytorch_basics reference challenge model
                                to 70% test accuracy (bench/challenge_time_to_70.py; needs the
                                whole CIFAR-10 in --data-dir, else reported as skipped)

Each pair is measured alternately (A B, B A, A B, ...) and the median ratio reported.
Data: the CIFAR-10 test set from --data-dir, else the 3,000-image sample shipped with grader.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader import datasets, evaluate  # noqa: E402
from grader.sandbox.session import Limits, StudentProcess  # noqa: E402

REFERENCE = ROOT / "reference_solutions" / "cnn_architecture"
MODELS = {"vgg16": ("vgg16_full.py", "vgg16"), "resnet50_layer4": ("resnet50_skeleton.py", "ResNet50_layer4")}


def report(name: str, value: float, unit: str = "") -> None:
    print(f"{name}: {value:.3f}{unit}", flush=True)


def build(name: str) -> torch.nn.Module:
    file, builder = MODELS[name]
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REFERENCE / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return getattr(module, builder)().eval()


def bare_forward(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Images per second of model(x) over pre-normalised tensors: the limit."""
    start = time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            model(x).argmax(1)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def grader_eval(student: StudentProcess, handle: int, data: datasets.LabelledImages, count: int,
                batch_size: int) -> float:
    """Images per second of the grader's evaluation: a secret order, batches of uint8 images sent to
    the student's process call by call, class scores checked and mapped back (what accuracy items do).
    Counted per image the model sees, the flipped and shifted ones of the lookup check included."""
    images = data.images.open()[:count]
    schedule = evaluate.Schedule.draw(count, int(images[0].numel()), "cpu", batch_size)

    def ask(batch: torch.Tensor) -> dict:
        return student.call("predict", handle=handle, images=batch, mean=datasets.CIFAR10_MEAN,
                            std=datasets.CIFAR10_STD, batch_size=batch_size, logits=True, timeout=3600,
                            max_reply_bytes=evaluate.reply_bytes(len(batch), len(data.classes)))

    start = time.perf_counter()
    out = evaluate.run_schedule(ask, images, len(data.classes), schedule)
    elapsed = time.perf_counter() - start
    assert len(out.predictions) == count and bool((out.predictions >= 0).all())
    return len(schedule.order) / elapsed


def course_loop(model: torch.nn.Module, data: datasets.LabelledImages, count: int) -> float:
    """main.py's evaluation: a Dataset doing PIL -> ToTensor -> Normalize per image, DataLoader(batch 100)."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    images = np.asarray(data.images.open()[:count])
    labels = data.labels[:count]
    transform = T.Compose([T.ToTensor(), T.Normalize(datasets.CIFAR10_MEAN, datasets.CIFAR10_STD)])

    class CourseDataset(torch.utils.data.Dataset):  # what torchvision's CIFAR10 does per item
        def __len__(self):
            return count

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i].transpose(1, 2, 0))), int(labels[i])

    loader = torch.utils.data.DataLoader(CourseDataset(), batch_size=100, shuffle=False)
    start = time.perf_counter()
    with torch.no_grad():
        for x, y in loader:
            torch.max(model(x).data, 1)
    return count / (time.perf_counter() - start)


def measure_eval(name: str, data, count: int, rounds: int, student: StudentProcess, workdir: Path,
                 course_count: int = 0) -> dict:
    """Bare forward, the grader's evaluation and (with course_count) the course's loop, alternately
    in each round; ratios are taken within a round, so the machine's drift cancels."""
    model = build(name)
    batch_size = evaluate.default_batch_size("cpu")
    normalize = evaluate.normalizer(datasets.CIFAR10_MEAN, datasets.CIFAR10_STD, "cpu")
    tensors = data.images.open()[:count]
    batches = [normalize(tensors[i:i + batch_size]) for i in range(0, count, batch_size)]
    file, builder = MODELS[name]
    handle = student.call("build", file=file, name=builder, seed=0)["handle"]
    state = model.state_dict()
    student.call("load_state", handle=handle, state=state)
    bare_forward(model, batches[:1])  # warm-up both sides
    grader_eval(student, handle, data, min(count, batch_size), batch_size)
    ratios, bares, graders, courses, over_course = [], [], [], [], []
    for round_ in range(rounds):
        # A B, then B A: neither side always runs second (a shared machine's speed drifts).
        if round_ % 2:
            g = grader_eval(student, handle, data, count, batch_size)
            b = bare_forward(model, batches)
        else:
            b = bare_forward(model, batches)
            g = grader_eval(student, handle, data, count, batch_size)
        bares.append(b)
        graders.append(g)
        ratios.append(g / b)
        if course_count:
            c = course_loop(model, data, course_count)
            courses.append(c)
            over_course.append(grader_eval(student, handle, data, course_count, batch_size) / c)
    result = {"ratio": statistics.median(ratios), "bare": statistics.median(bares),
              "grader": statistics.median(graders)}
    if course_count:
        result.update(course=statistics.median(courses), over_course=statistics.median(over_course))
    return result


# -- a class of 40 -------------------------------------------------------------------

# Edits that keep ResNet50_layer4 computing the same function (and the same state_dict
# keys) while changing its code: each student gets a different combination.
EQUIVALENT_EDITS = [
    ("nn.Conv2d(3, 64, 7, 2, 3)", "nn.Conv2d(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3)"),
    ("nn.MaxPool2d(3, 2, 1)", "nn.MaxPool2d(kernel_size=3, stride=2, padding=1)"),
    ("nn.AvgPool2d(2, 1)", "nn.AvgPool2d(kernel_size=2, stride=2)"),
    ("nn.Linear(1024, 10)", "nn.Linear(1024, num_classes)"),
    ("        out = self.layer1(x)\n        out = self.layer2(out)\n",
     "        h = self.layer2(self.layer1(x))\n        out = h\n"),
    ("            ResidualBlock(512, 256, 1024, False),\n" + "            ResidualBlock(1024, 256, 1024, False),\n" * 5,
     "            ResidualBlock(512, 256, 1024, False),\n"
     "            *[ResidualBlock(1024, 256, 1024, False) for _ in range(5)],\n"),
]


def write_class(root: Path, count: int) -> Path:
    source = (REFERENCE / "resnet50_skeleton.py").read_text()
    combos = list(itertools.product([False, True], repeat=len(EQUIVALENT_EDITS)))[1:count + 1]
    for index, combo in enumerate(combos, start=1):
        text = source
        for use, (old, new) in zip(combo, EQUIVALENT_EDITS):
            if use:
                assert old in text, old
                text = text.replace(old, new, 1)
        folder = root / f"student{index:02d}"
        folder.mkdir(parents=True)
        for name in ("main.py", "vgg16_full.py"):
            shutil.copy(REFERENCE / name, folder / name)
        (folder / "resnet50_skeleton.py").write_text(text)
    return root


def write_checkpoints(folder: Path) -> Path:
    """Instructor-style checkpoints: the reference models' seeded weights."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(build("resnet50_layer4").state_dict(), folder / "resnet50_epoch285.ckpt")
    torch.save(build("vgg16").state_dict(), folder / "vgg16_epoch250.ckpt")
    return folder


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"benchmark command failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return elapsed


def measure_class(work: Path, data_dir: str | None, count: int, env: dict) -> float:
    checkpoints = write_checkpoints(work / "checkpoints")
    download = write_class(work / "class", count)
    data = ["--data-dir", data_dir] if data_dir else []
    grader = [sys.executable, "-m", "grader"]
    one = timed(grader + ["check", str(download / "student01"), "-r", "cnn_architecture",
                          "-c", str(checkpoints), *data], env)
    many = timed(grader + ["batch", str(download), "-r", "cnn_architecture", "-o", str(work / "out"),
                           "-c", str(checkpoints), *data], env)
    print(f"# one submission: {one:.1f} s (grader check); {count} submissions: {many:.1f} s (grader batch)",
          flush=True)
    return many / one


TINY_NET = """import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))
"""

TINY_RUBRIC = """assignment: tiny
files: [net.py]
items:
  - {id: shape, points: 1, check: output_shape, target: {file: net.py, name: Net}, inputs: [[2, 3, 32, 32]], expected: [2, 10]}
  - {id: params, points: 1, check: param_count, target: {file: net.py, name: Net}, expected: 314}
  - {id: accuracy, points: 1, check: accuracy, target: {file: net.py, name: Net}, checkpoint: net.pt, threshold: 0.0}
"""


def measure_overhead(work: Path, count: int, env: dict, extra: list[str] = ()) -> float:
    """Seconds per submission of a batch whose model costs nothing: what grading itself costs."""
    rubric = work / "tiny.yaml"
    rubric.write_text(TINY_RUBRIC)
    torch.manual_seed(0)
    module = {}
    exec(TINY_NET, module)
    state = module["Net"]().state_dict()
    times = {}
    for n in (1, count + 1):
        download = work / f"tiny{n}"
        for index in range(n):
            folder = download / f"s{index:03d}"
            folder.mkdir(parents=True)
            (folder / "net.py").write_text(TINY_NET + f"\n# student {index}\nSTUDENT = {index}\n")
            torch.save(state, folder / "net.pt")
        times[n] = timed([sys.executable, "-m", "grader", "batch", str(download), "-r", str(rubric),
                          "-o", str(work / f"tiny-out{n}"), "-j", "1", "--no-reuse", *extra], env)
    per = (times[count + 1] - times[1]) / count
    print(f"# tiny batch: 1 submission {times[1]:.1f} s, {count + 1} submissions {times[count + 1]:.1f} s", flush=True)
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds (under 10 minutes on 2 cores)")
    parser.add_argument("--data-dir", help="CIFAR-10 (official or image folders); default: the embedded sample")
    parser.add_argument("--overhead-only", action="store_true", help="only the per-submission overhead figures")
    args = parser.parse_args()
    if args.overhead_only:
        return overhead_figures(10 if args.quick else 20)

    os.environ.setdefault("GRADER_CACHE_DIR", str(Path(tempfile.gettempdir()) / "grader-bench-cache"))
    data = datasets.load(datasets.DataSpec(), args.data_dir)
    # Many short alternating rounds: a shared machine's speed drifts within seconds.
    count = min(len(data), 1024 if args.quick else 2048)
    rounds = 5 if args.quick else 11
    threads = torch.get_num_threads()
    print(f"# {len(data)} test images from {data.source}; {count} per pass; {rounds} rounds; "
          f"{threads} threads; torch {torch.__version__}", flush=True)

    files = {name: REFERENCE / name for name in ("vgg16_full.py", "resnet50_skeleton.py")}
    with StudentProcess(files, Limits(timeout_s=3600, memory_mb=8192), readable=[str(datasets.arrays_dir())],
                        threads=threads, allow_unisolated=True) as student:  # the reference: our own code
        course_count = min(count, 512 if args.quick else 1000)
        for name in MODELS:
            r = measure_eval(name, data, count, rounds, student, ROOT, course_count if name == "vgg16" else 0)
            print(f"# {name}: bare {r['bare']:.0f} img/s, grader {r['grader']:.0f} img/s"
                  + (f", course loop {r['course']:.0f} img/s" if "course" in r else ""), flush=True)
            report(f"eval_vs_bare_{name}", r["ratio"])
            if "over_course" in r:
                report(f"grader_vs_course_loop_{name}", r["over_course"])

    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        report("class40_vs_single", measure_class(Path(tmp), args.data_dir, 40, env))
    overhead_figures(10 if args.quick else 20)
    print(challenge_time_to_70(args.data_dir, env), flush=True)


def overhead_figures(count: int) -> None:
    from grader.sandbox import boundary

    isolated, why = boundary.available()
    print(f"# isolation: {'bubblewrap' if isolated else 'none (' + why + ')'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        report("overhead_per_submission_s", measure_overhead(Path(tmp), count, dict(os.environ)))
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        env = {**os.environ, "GRADER_NO_ISOLATION": "1"}
        report("overhead_unisolated_s", measure_overhead(Path(tmp), count, env, ["--unsafe-no-isolation"]))


def challenge_time_to_70(data_dir: str | None, env: dict) -> str:
    """The challenge benchmark's own figure line (it trains, so it runs in its own process)."""
    name = "challenge_time_to_70_s"
    if not data_dir:
        return f"{name}: skipped (training needs the whole CIFAR-10: pass --data-dir)"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "challenge_time_to_70.py"), "--data-dir", data_dir],
                         env=env, capture_output=True, text=True)
    for line in run.stdout.splitlines():
        if line.startswith(f"{name}:"):
            return line
    reason = (run.stderr.strip().splitlines() or ["no output"])[-1]
    return f"{name}: failed ({reason})"


if __name__ == "__main__":
    main()
