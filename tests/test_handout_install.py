"""The install line of a handout works for a student today (issue 19): in a fresh virtual
environment that has only PyTorch (the student's own, never carried), the line the README
shows installs the grader from the handout's own files with the network off, and the
self-check runs from there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, run_cli


def _torch_only(folder: Path) -> Path:
    """A folder of links to this environment's torch and torchvision and what they need (numpy,
    pillow, ...), nothing of the grader's own dependencies: a student's environment with PyTorch.
    Named site-packages, as a student's is: the sandbox lets the student's code read those."""
    folder.mkdir(parents=True)
    home = Path(metadata.distribution("torch").locate_file(""))  # what torch was installed with, there
    todo, seen = ["torch", "torchvision", "numpy", "pillow"], set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        found = sorted(metadata.distributions(name=name), key=lambda d: Path(d.locate_file("")) != home)
        if not found:
            continue  # a requirement of another platform (CUDA wheels on Linux only, ...)
        dist = found[0]
        # extras too: torch asks for cuda-toolkit[cudart, ...]; what is not installed is left out
        todo += [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in dist.requires or []]
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


def _offline(command: list[str]) -> list[str]:
    """The command with the network off: a network namespace of its own (as root), else pip's own
    --no-index is all that keeps it offline."""
    if os.geteuid() == 0 and shutil.which("unshare") and \
            subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--net", *command]
    return command


@pytest.mark.slow
def test_the_handout_installs_offline_from_its_own_files_and_the_self_check_runs(tmp_path):
    done = run_cli("bundle", "cnn_architecture", "--student", "-o", str(tmp_path / "handout.zip"))
    assert done.returncode == 0, done.stdout + done.stderr
    if "note: cannot download" in done.stderr:
        pytest.skip("no package index here: the handout could not carry the grader's dependencies")
    with zipfile.ZipFile(tmp_path / "handout.zip") as z:
        z.extractall(tmp_path)
    handout = tmp_path / "cnn_architecture"
    readme = (handout / "README.md").read_text()
    [line] = [line[2:] for line in readme.splitlines() if line.startswith("$ python -m pip install")]
    assert line == "python -m pip install --no-index --find-links wheels cnn-grader"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The venv's own setuptools is older than torch asks for; the student's pip upgraded it with torch.
    for path in [*site.glob("setuptools*"), *site.glob("_distutils_hack"), *site.glob("distutils-precedence.pth")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (site / "student_torch.pth").write_text(str(_torch_only(tmp_path / "student" / "site-packages")) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PATH=f"{venv / 'bin'}:{env['PATH']}")
    assert subprocess.run([str(python), "-c", "import pydantic"], env=env, capture_output=True).returncode != 0

    # The README's line, as the student types it in the handout's folder, with no network.
    install = subprocess.run(_offline([str(python), *line.split()[1:]]), cwd=handout, env=env, capture_output=True,
                             text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "Successfully installed" in install.stdout and "cnn-grader-0.1.0" in install.stdout

    # The self-check, from the installed grader (not this checkout), on the student's finished Q1.
    shutil.copy(REFERENCE / "cnn_architecture" / "resnet50_skeleton.py", handout)
    check = subprocess.run(_offline([str(venv / "bin" / "grader"), "check", ".", "--no-train", "--items",
                                     "residual_block.plain,resnet50_layer4.layer3"]),
                           cwd=handout, env=env, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "PASS       20/20  residual_block.plain" in check.stdout, check.stdout
    where = subprocess.run([str(python), "-c", "import grader; print(grader.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(venv)), where
