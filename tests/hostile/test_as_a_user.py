"""Issue 17, points 1 and 2 when the grader is not root: bubblewrap then makes the sandbox's
user namespace itself, no cgroup can be made, and each student's process still gets its own
namespaces (one nested user namespace, then none) and resource limits.  Run here by dropping
from root to uid 65534 (setpriv) in a private mount namespace."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from grader.sandbox import boundary
from grader.sandbox.session import isolated
from tests.conftest import ROOT
from tests.hostile.test_fresh_state import ATTACKS

pytestmark = [
    pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]}"),
    pytest.mark.skipif(os.getuid() != 0 or not (shutil.which("setpriv") and shutil.which("unshare")),
                       reason="needs root (to become a normal user), setpriv and unshare"),
]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from grader.sandbox import boundary
    from grader.sandbox.session import Limits, StudentFailure, StudentProcess

    assert boundary.available()[0], boundary.available()
    attacks = {"attacks.py": Path(sys.argv[1])}
    with StudentProcess(attacks, Limits(timeout_s=60, disk_mb=32, processes=64)) as process:
        print("left", process.call("call", file="attacks.py", name="leave_ipc")["tensor"].tolist())
        for name, args in (("fill_disk", ["/submission"]), ("thread_bomb", [])):
            try:
                process.call("call", file="attacks.py", name=name, args=args)
                print(name, "no failure")
            except StudentFailure as failure:
                print(name, failure.message)
        print("isolation", process.isolation.get("limits"))
    with StudentProcess(attacks, Limits(timeout_s=60)) as process:
        print("found", process.call("call", file="attacks.py", name="find_ipc")["tensor"].tolist())
""")


def _hidden_ancestor(path: Path) -> tuple[Path, str] | None:
    """The one folder above `path` others may not enter (like /root, 0700), and its next part."""
    for parent in path.parents:
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent, path.relative_to(parent).parts[0]
    return None


def test_as_a_normal_user_each_student_still_starts_clean_and_is_limited():
    work = Path(tempfile.mkdtemp(prefix="grader-as-user-"))
    try:
        work.chmod(0o777)
        (work / "attacks.py").write_text(ATTACKS.read_text())
        (work / "script.py").write_text(SCRIPT)
        for name in ("attacks.py", "script.py"):
            (work / name).chmod(0o644)
        python = Path(os.path.realpath(sys.executable))
        steps = []
        hidden = _hidden_ancestor(python)
        if hidden is not None:  # shown through a traversable stand-in, in this private mount namespace only
            folder, part = hidden
            view = work / "view"
            (view / part).mkdir(parents=True)
            view.chmod(0o755)
            steps += [f"mount --bind {folder / part} {view / part}", f"mount --rbind {view} {folder}"]
        if _hidden_ancestor(ROOT) is not None:
            pytest.skip("the grader's folder is not readable by other users here")
        run_as = (f"exec setpriv --reuid=65534 --regid=65534 --clear-groups env HOME={work} "
                  f"XDG_CACHE_HOME={work}/cache PYTHONPATH={ROOT} {sys.executable} {work}/script.py {work}/attacks.py")
        done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", " && ".join(steps + [run_as])],
                              capture_output=True, text=True, timeout=300, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["left"] == "[1.0, 1.0, 1.0, 1.0, 1.0]"
    assert lines["fill_disk"].startswith("wrote more than 32 MB")
    assert lines["thread_bomb"].startswith("started more than 64 processes")
    assert lines["isolation"].startswith("resource limits only")
    assert lines["found"] == "[0.0, 0.0, 0.0, 0.0, 0.0]"
