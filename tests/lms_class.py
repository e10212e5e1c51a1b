"""A tiny assignment (one small CNN, three items, a leaderboard) and its class as Canvas, Moodle
and Gradescope hand it to the instructor: fast to grade, and every LMS's names and metadata."""

from __future__ import annotations

import os
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import torch

NET = textwrap.dedent("""\
    import torch.nn as nn


    class TinyNet(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, classes)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x).relu()).flatten(1))
    """)
BROKEN = NET.replace("def forward(self, x):", "def forward(self, x)")
PARAMS = 3 * 4 * 9 + 4 + 4 * 10 + 10  # 162
DEADLINE = "2026-03-01T23:59:00+00:00"


def rubric(path: Path, *, shape_points: float = 4, threshold: float = 0.01, late: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""\
        assignment: tiny_lms
        title: Tiny CNN
        files: [net.py]
        data: {{dataset: cifar10, split: test}}
        limits: {{timeout_s: 300, item_timeout_s: 60, memory_mb: 2048}}
        leaderboard: {{item: challenge, top: 5}}
        items:
          - id: shape
            title: Output shape
            points: {shape_points}
            check: output_shape
            target: {{file: net.py, name: TinyNet}}
            inputs: [[2, 3, 32, 32]]
            expected: [2, 10]
          - id: params
            title: Parameter count
            points: 6
            check: param_count
            target: {{file: net.py, name: TinyNet}}
            expected: {PARAMS}
          - id: challenge
            title: Challenge accuracy
            points: 10
            check: accuracy
            target: {{file: net.py, name: TinyNet}}
            checkpoint: net.pt
            threshold: {threshold}
        """) + late)
    return path


LATE_POLICY = textwrap.dedent(f"""\
    late:
      deadline: "{DEADLINE}"
      percent_per_day: 10
      grace_minutes: 15
      max_days: 5
    """)


def checkpoint(path: Path) -> None:
    torch.manual_seed(0)
    namespace: dict = {}
    exec(NET, namespace)
    torch.save(namespace["TinyNet"]().state_dict(), path)


def _at(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def canvas(root: Path) -> Path:
    """Jane on time, John late (2.5 days: 3 started days), Ana's code does not parse."""
    root.mkdir(parents=True)
    due = datetime.fromisoformat(DEADLINE)
    for prefix, code, when in (("doejane_1234_5678_", NET, due - timedelta(hours=2)),
                               ("smithjohn_LATE_2345_6789_", NET, due + timedelta(days=2, hours=12)),
                               ("leeana_3456_7890_", BROKEN, due - timedelta(days=1))):
        (root / f"{prefix}net.py").write_text(code)
        checkpoint(root / f"{prefix}net.pt")
        for name in ("net.py", "net.pt"):
            _at(root / f"{prefix}{name}", when)
    return root


def moodle(root: Path) -> Path:
    root.mkdir(parents=True)
    due = datetime.fromisoformat(DEADLINE)
    for prefix, code in (("Kim Minji_1001_assignsubmission_file_", NET), ("Lee Jun_1002_assignsubmission_file_", BROKEN)):
        (root / f"{prefix}net.py").write_text(code)
        checkpoint(root / f"{prefix}net.pt")
        for name in ("net.py", "net.pt"):
            _at(root / f"{prefix}{name}", due - timedelta(hours=1))
    return root


def gradescope(root: Path) -> Path:
    root.mkdir(parents=True)
    for folder, code in (("submission_111", NET), ("submission_222", BROKEN)):
        (root / folder).mkdir()
        (root / folder / "net.py").write_text(code)
        checkpoint(root / folder / "net.pt")
    (root / "submission_metadata.yml").write_text(textwrap.dedent("""\
        submission_111:
          :submitters:
          - :name: Ada Lovelace
            :sid: '2024001'
            :email: ada@example.edu
          :created_at: 2026-03-02 01:00:00.000000000 +00:00
        submission_222:
          :submitters:
          - :name: Alan Turing
            :sid: '2024002'
            :email: alan@example.edu
          :created_at: 2026-03-01 12:30:00.000000000 +00:00
        """))
    return root
