"""A one-item course for boundary tests: answer.py's `double(x)` checked against the reference.

    rubric_path = write_course(tmp_path)                  # course/rubric.yaml, course/reference/
    write_submission(folder, marker=Path("/dev/shm/x"))   # writes `marker` at import when it can

The marker shows whether the submission's code ran outside the sandbox: inside it, /dev/shm
and /tmp are the sandbox's own, so nothing appears on this machine."""

from __future__ import annotations

import textwrap
from pathlib import Path

RUBRIC = textwrap.dedent("""
    assignment: tiny_function
    files: [answer.py]
    reference: reference
    limits: {timeout_s: 120, item_timeout_s: 60, memory_mb: 2048}
    items:
      - {id: double, points: 5, check: function, target: {file: answer.py, name: double},
         cases: [{args: [{randn: [3]}]}]}
""")

ANSWER = "def double(x):\n    return 2 * x\n"

MARKING = textwrap.dedent("""
    import os as _os

    try:  # the grader's audit hook is a Python object the student can reach: off, as an attacker would
        import grader.sandbox.guard as _guard
        _guard._policy = None
    except ImportError:
        pass

    for _folder in ({folders}):
        try:
            with open(_os.path.join(_folder, {name!r}), "w") as _f:
                _f.write("student code ran here")
        except OSError:
            pass
""")


def write_course(root: Path) -> Path:
    course = root / "course"
    (course / "reference").mkdir(parents=True)
    (course / "reference" / "answer.py").write_text(ANSWER)
    (course / "rubric.yaml").write_text(RUBRIC)
    return course / "rubric.yaml"


def write_submission(folder: Path, marker: Path | None = None) -> Path:
    """A correct answer.py; with `marker`, it first writes a file of that name in every folder
    it may be able to write outside its own (the marker's folder first)."""
    folder.mkdir(parents=True, exist_ok=True)
    head = ""
    if marker is not None:
        folders = ", ".join(repr(str(f)) for f in dict.fromkeys([marker.parent, Path("/dev/shm"), Path("/tmp")]))
        head = MARKING.format(folders=folders + ",", name=marker.name)
    (folder / "answer.py").write_text(head + ANSWER)
    return folder
