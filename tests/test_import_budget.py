"""A file that trains its model when imported is stopped after the rubric's limits.import_s:
what it defined before is graded, and the message names the line to move under
`if __name__ == '__main__':`."""

from __future__ import annotations

import time

import pytest

from grader.sandbox.session import Limits, StudentFailure, StudentProcess

TRAINS_AT_IMPORT = '''import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


net = Net()
optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
for epoch in range(10 ** 9):
    try:
        optimizer.zero_grad()
        net(torch.randn(8, 4)).sum().backward()
        optimizer.step()
    except Exception:  # students' loops swallow errors: not the grader's stop
        pass


class Later(nn.Module):
    pass
'''


def _student(tmp_path, source: str, import_s: float | None = 1.0) -> StudentProcess:
    code = tmp_path / "net.py"
    code.write_text(source)
    return StudentProcess({"net.py": code}, Limits(timeout_s=60, import_s=import_s))


def test_training_at_import_is_stopped_and_what_came_before_is_graded(tmp_path):
    started = time.monotonic()
    with _student(tmp_path, TRAINS_AT_IMPORT) as student:
        loaded = student.call("load", file="net.py")
        assert loaded["stopped"]["line"] == 16  # the top-level `for epoch ...:`, not a line inside it
        assert loaded["stopped"]["code"] == "for epoch in range(10 ** 9):"
        built = student.call("build", file="net.py", name="Net")
        assert built["param_count"] == 10
        with pytest.raises(StudentFailure) as missing:
            student.call("build", file="net.py", name="Later")
    assert time.monotonic() - started < 55  # stopped by the 1 s budget, not by the 60 s limit
    assert missing.value.kind == "missing"
    assert missing.value.message == (
        "net.py does not define Later before line 16, where its import was stopped (net.py trains a model when "
        "imported (line 16: for epoch in range(10 ** 9):), still running after 1 s: put it under "
        "if __name__ == '__main__')")


def test_a_file_that_imports_in_time_is_whole(tmp_path):
    with _student(tmp_path, TRAINS_AT_IMPORT.replace("10 ** 9", "2")) as student:
        loaded = student.call("load", file="net.py")
        assert "stopped" not in loaded and "Later" in loaded["names"]


def test_grading_notes_the_stopped_import_and_grades_the_classes(tmp_path):
    from grader import grading, rubric as rubric_module

    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "net.py").write_text(TRAINS_AT_IMPORT)
    (tmp_path / "rubric.yaml").write_text(
        "assignment: budget\nfiles: [net.py]\nlimits: {import_s: 1, item_timeout_s: 60}\nitems:\n"
        "  - {id: net.params, points: 5, check: param_count, target: {file: net.py, name: Net}, expected: 10}\n"
        "  - {id: later.params, points: 5, check: param_count, target: {file: net.py, name: Later}, expected: 0}\n")
    report = grading.grade(folder, rubric_module.load(tmp_path / "rubric.yaml"))
    by_id = {r.id: r for r in report.results}
    assert by_id["net.params"].status == "passed" and by_id["net.params"].points == 5
    assert by_id["later.params"].status == "failed"
    assert "does not define Later before line 16" in by_id["later.params"].message
    assert ("net.py trains a model when imported (line 16: for epoch in range(10 ** 9):), still running after 1 s: "
            "put it under if __name__ == '__main__'; what it defines before that line is graded") in report.notes
    assert report.problems == []


def test_a_slow_library_import_is_not_stopped(tmp_path):
    """Importing seaborn or pandas can take seconds on a busy machine: that is not the student's
    work at import, and the budget waits until the import statement is done."""
    (tmp_path / "slowlib.py").write_text("import time\ntime.sleep(2.5)\nREADY = 1\n")
    source = "import slowlib\n" + TRAINS_AT_IMPORT
    code = tmp_path / "net.py"
    code.write_text(source)
    with StudentProcess({"net.py": code, "slowlib.py": tmp_path / "slowlib.py"},
                        Limits(timeout_s=60, import_s=1.0)) as student:
        loaded = student.call("load", file="net.py")
        assert loaded["stopped"]["line"] == 17  # the training loop, after the 2.5 s import
        assert student.call("build", file="net.py", name="Net")["param_count"] == 10
