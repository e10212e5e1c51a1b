"""Ordinary library code in a student's file behaves as on the student's laptop: plotting
with matplotlib and seaborn, progress bars, model summaries, and folders of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.sandbox.session import Limits, StudentProcess

pytest.importorskip("matplotlib")

PLOTTING = '''
import os
import matplotlib.pyplot as plt
import seaborn as sns
import torch
from torchsummary import summary
from tqdm import tqdm

for _ in tqdm(range(3)):
    pass
plt.plot([1, 2, 3], [3, 1, 2])
sns.lineplot(x=[1, 2, 3], y=[1, 4, 9])
plt.savefig("loss.png")
plt.show()
os.makedirs("checkpoint", exist_ok=True)
os.makedirs("runs/exp1", exist_ok=True)
torch.save({"net": torch.nn.Linear(2, 2).state_dict()}, "checkpoint/ckpt.pth")
summary(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), (3, 8, 8), device="cpu")


def written():
    sizes = [os.path.getsize(p) for p in ("loss.png", "checkpoint/ckpt.pth")]
    return torch.tensor([float(s > 0) for s in sizes] + [float(os.path.isdir("runs/exp1"))])
'''


def test_plotting_progress_bars_summaries_and_own_folders_work_at_import(tmp_path):
    pytest.importorskip("seaborn")
    pytest.importorskip("tqdm")
    pytest.importorskip("torchsummary")
    code = tmp_path / "train.py"
    code.write_text(PLOTTING)
    with StudentProcess({"train.py": code}, Limits(timeout_s=120)) as student:
        out = student.call("call", file="train.py", name="written")
        assert out["tensor"].tolist() == [1.0, 1.0, 1.0]
        assert "blocked" not in student.output and "Traceback" not in student.output
    assert not student.notes  # nothing refused along the way


def test_matplotlib_needs_no_program_at_first_import(tmp_path):
    """The font cache is built by the grader, outside: a student's first import runs no fc-list."""
    code = tmp_path / "plots.py"
    code.write_text("import matplotlib\nimport matplotlib.pyplot as plt\n\n\n"
                    "def backend():\n    import torch\n    return torch.tensor([float(matplotlib.get_backend().lower() == 'agg')])\n")
    with StudentProcess({"plots.py": code}, Limits(timeout_s=120)) as student:
        assert student.call("call", file="plots.py", name="backend")["tensor"].tolist() == [1.0]
    assert not [n for n in student.notes if "start a program" in n]


SCRATCH = '''
import os
import tempfile

import torch

os.makedirs("/tmp", exist_ok=True)
with open("/tmp/cache.txt", "w") as f:
    f.write("scratch")
with tempfile.NamedTemporaryFile("w", delete=False) as f:
    f.write("more")
    made = f.name
with open("/dev/shm/shared.bin", "wb") as f:
    f.write(b"x")


def scratch():
    return torch.tensor([float(open("/tmp/cache.txt").read() == "scratch"), float(os.path.getsize(made) == 4),
                         float(os.path.getsize("/dev/shm/shared.bin") == 1)])
'''


def test_scratch_files_in_tmp_and_dev_shm_work_inside_the_sandbox(tmp_path):
    """/tmp and /dev/shm are the student's own inside the sandbox (a fresh tmpfs per student):
    tempfile and libraries' scratch files cost nothing; the next student never sees them."""
    from grader.sandbox import boundary

    if not boundary.available()[0]:
        pytest.skip(f"needs the sandbox: {boundary.available()[1]}")
    code = tmp_path / "scratch.py"
    code.write_text(SCRATCH)
    with StudentProcess({"scratch.py": code}, Limits(timeout_s=120)) as student:
        assert student.call("call", file="scratch.py", name="scratch")["tensor"].tolist() == [1.0, 1.0, 1.0]
    assert not student.notes
    assert not Path("/tmp/cache.txt").exists() and not Path("/dev/shm/shared.bin").exists()
