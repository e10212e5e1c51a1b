"""The GPU path end to end, inside the OS sandbox: run this on a machine with an NVIDIA GPU.

    python bench/gpu_check.py                  # exit 0: every step used the GPU inside bubblewrap
    python bench/gpu_check.py --device cpu     # the same steps on CPU: checks this script itself

A tiny challenge notebook (tests/notebooks.py: real CIFAR-10 images from the embedded sample)
whose model raises unless its input is on the asked device, so a PASS means training and
evaluation ran there, inside the student's sandboxed process.  Three steps, as an instructor
types them:

  1. grader check --device cuda: trains the model (no checkpoint yet) and evaluates it
  2. grader train --device cuda --budget 60, then grader check evaluates the checkpoint written
  3. grader batch --device cuda of 4 students (-j 2)

Each step must pass, report "boundary: bubblewrap sandbox" (every report says which boundary
ran the code) and say "on cuda" where it trained.  It needs bubblewrap, and a torch built with
CUDA; without either it stops at once and says so (exit 2).  A few minutes on one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.sandbox import boundary  # noqa: E402
from tests.notebooks import tiny_challenge_notebook, tiny_cifar, tiny_rubric  # noqa: E402

# The student's model: it refuses to run anywhere but on the device under test.
MODEL = """class OnDevice(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x):
        if x.device.type != {kind!r}:
            raise RuntimeError(f"ran on {{x.device}}, not on {kind}")
        return self.net(x)

model = OnDevice()"""
OPTIMIZER = "optimizer = optim.SGD(model.parameters(), lr={lr}, momentum=0.9)"
TRAIN = """      epochs: 2
      batch_size: 32
      optimizer: {type: Adam, lr: 0.001}
      seed: 0"""


class Failed(Exception):
    pass


def grader(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    print(f"$ grader {' '.join(args[:1])} ... -> exit {done.returncode} in {time.monotonic() - started:.1f} s",
          flush=True)
    return done


def expect(condition: bool, what: str, done: subprocess.CompletedProcess | None = None) -> None:
    if not condition:
        shown = f"\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}" if done else ""
        raise Failed(f"{what}{shown}")
    print(f"  ok: {what}", flush=True)


def student(folder: Path, kind: str, lr: float = 0.05) -> Path:
    return tiny_challenge_notebook(folder, MODEL.format(kind=kind), OPTIMIZER.format(lr=lr), epochs=2)


def run(work: Path, device: str) -> None:
    kind = device.split(":")[0]
    data = tiny_cifar(work / "data")
    rubric = tiny_rubric(work / "tiny.yaml", TRAIN, threshold=0.0)
    common = ["--rubric", str(rubric), "--data-dir", str(data), "--device", device]

    # 1. check: no checkpoint, so the rubric's recipe trains the student's model, then evaluates it.
    folder = student(work / "alice", kind)
    done = grader("check", str(folder), *common, "--verbose")
    expect(done.returncode == 0 and "PASS" in done.stdout, "grader check trains and evaluates: PASS", done)
    expect("boundary: bubblewrap sandbox" in done.stdout, "grader check ran inside bubblewrap", done)
    expect(f" on {device}:" in done.stdout, f"grader check trained on {device}", done)

    # 2. train with a budget, then check evaluates the checkpoint it wrote.
    done = grader("train", str(folder), "--item", "challenge.accuracy", *common, "--budget", "60")
    expect(done.returncode == 0 and (folder / "challenge.pt").is_file(), "grader train wrote challenge.pt", done)
    expect(f"on {device}" in done.stdout, f"grader train trained on {device}", done)
    done = grader("check", str(folder), *common, "--no-train", "--verbose")
    expect(done.returncode == 0 and "PASS" in done.stdout, f"grader check evaluates that checkpoint on {device}",
           done)
    expect("boundary: bubblewrap sandbox" in done.stdout, "... inside bubblewrap", done)

    # 3. a class of 4 (different learning rates: no result is shared between them).
    for n, name in enumerate(("s1", "s2", "s3", "s4")):
        student(work / "class" / name, kind, lr=0.01 * (n + 1))
    out = work / "out"
    done = grader("batch", str(work / "class"), *common, "-o", str(out), "-j", "2")
    expect(done.returncode == 0, "grader batch of 4 graded everyone", done)
    expect("OS boundary: bubblewrap sandbox (4 students)" in done.stdout, "every student inside bubblewrap", done)
    for name in ("s1", "s2", "s3", "s4"):
        record = json.loads((out / "students" / name / "record.json").read_text())
        [result] = record["report"]["results"]
        expect(result["status"] == "passed" and any(f" on {device}:" in d for d in result["details"]),
               f"{name} trained and evaluated on {device} ({result['message']})")
        expect(record["provenance"]["graded"]["device"] == device, f"{name}'s record says device {device}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to check the script")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    isolated, why = boundary.available()
    if not isolated:
        print(f"gpu_check: no OS sandbox here ({why}): install bubblewrap", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"gpu_check: torch {torch.__version__} sees no CUDA device here", file=sys.stderr)
            return 2
    started = time.monotonic()
    try:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            run(args.keep, args.device)
        else:
            with tempfile.TemporaryDirectory(prefix="grader-gpu-check-") as tmp:
                run(Path(tmp), args.device)
    except Failed as e:
        print(f"gpu_check: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"gpu_check: the {args.device} path works inside the sandbox ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
