"""This grader as wheels: for a student handout (`grader bundle --student`) and for the
Gradescope autograder (`--gradescope`), one builder for both.

  build()          a pure-Python wheel of the grader package being run, made here from its
                   files (no build tool, no network): the handout runs the very code that made it;
  dependencies()   the wheels of its run-time dependencies, for the platforms and Pythons
                   students use, so a handout installs with `pip install --no-index`.

torch and torchvision are never carried: the student's own (Colab's, a CUDA build, ...) is
used, and numpy and pillow come with torchvision.  The dependencies are downloaded once with
`pip download` (binary wheels only, one set per platform and Python) and kept in a cache, so
the next handout is made offline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from grader.errors import GraderError

DISTRIBUTION = "cnn-grader"  # our name on the package index ("grader" there is another project)
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
# The student's own: torch and torchvision, and what torchvision brings (numpy, pillow).
NOT_CARRIED = ("torch", "torchvision", "numpy", "pillow")
# Where students run the self-check: Colab and Linux, Apple silicon (torch has no Intel-Mac
# builds any more), Windows; each name is the pip platform tags it stands for.
PLATFORMS = {
    "linux": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "linux-arm": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "macos": ("macosx_14_0_arm64",),
    "macos-intel": ("macosx_13_0_x86_64",),
    "windows": ("win_amd64",),
}
DEFAULT_PLATFORMS = ("linux", "macos", "windows")
DEFAULT_PYTHONS = ("3.10", "3.11", "3.12", "3.13")


class WheelError(GraderError):
    """A wheel cannot be built or its dependencies cannot be fetched; the message says what to do."""


# -- the grader ---------------------------------------------------------------------------


def build() -> tuple[str, bytes]:
    """(file name, bytes) of a py3-none-any wheel of the grader package being run: reproducible
    (fixed dates, sorted names), with its data files (the CIFAR-10 sample, the schema)."""
    package = Path(__file__).resolve().parents[1]
    name, version, requires, python = metadata(package.parent)
    stem = f"{name.replace('-', '_')}-{version}"  # the distribution's own name (cnn-grader)
    dist = f"{stem}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files[f"grader/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             "Summary: Grade PyTorch CNN assignments against a rubric YAML.", f"Requires-Python: {python}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    files[f"{dist}/METADATA"] = ("\n".join(lines) + "\n").encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: grader\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = b"[console_scripts]\ngrader = grader.cli:main\n"
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in sorted(files.items())]
    files[f"{dist}/RECORD"] = ("\n".join(record + [f"{dist}/RECORD,,"]) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, files[path])
    return f"{stem}-py3-none-any.whl", buf.getvalue()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def metadata(source: Path) -> tuple[str, str, list[str], str]:
    """Name, version, run-time dependencies (extras left out) and Python of the grader: from
    pyproject.toml in a source tree, else from the installed distribution's metadata."""
    pyproject = source / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(pyproject.read_text())["project"]
            return (project["name"], project["version"], list(project.get("dependencies", [])),
                    project.get("requires-python", ">=3.10"))
    from importlib import metadata as installed

    dist = installed.distribution(DISTRIBUTION)
    requires = [r for r in (dist.requires or []) if "extra ==" not in r]
    return dist.metadata["Name"], dist.version, requires, dist.metadata.get("Requires-Python") or ">=3.10"


# -- its dependencies -------------------------------------------------------------------------


def carried_requirements() -> list[str]:
    """The grader's run-time requirements that a handout carries (all but the student's torch)."""
    _, _, requires, _ = metadata(Path(__file__).resolve().parents[2])
    return [r for r in requires if _name(r) not in NOT_CARRIED]


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")


def cache_folder() -> Path:
    """Where downloaded dependency wheels are kept between handouts: GRADER_WHEELHOUSE, else the
    user's cache folder."""
    if os.environ.get("GRADER_WHEELHOUSE"):
        return Path(os.environ["GRADER_WHEELHOUSE"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("cnn-grader")) / "wheels"


def dependencies(platforms: tuple[str, ...] = DEFAULT_PLATFORMS, pythons: tuple[str, ...] = DEFAULT_PYTHONS
                 ) -> list[Path]:
    """The dependency wheels for every platform and Python asked for: from the cache, else
    downloaded (`pip download`, binary wheels only) into it.  Raises WheelError offline."""
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise WheelError(f"unknown platform {unknown[0]!r}; the platforms are: {', '.join(PLATFORMS)}")
    requirements = carried_requirements()
    key = hashlib.sha256(repr((requirements, sorted(platforms), sorted(pythons))).encode()).hexdigest()[:16]
    folder = cache_folder() / key
    if not (folder / "complete").is_file():
        _download(requirements, platforms, pythons, folder)
    return sorted(folder.glob("*.whl"))


def _download(requirements: list[str], platforms, pythons, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        for platform in platforms:
            for python in pythons:
                tags = [arg for tag in PLATFORMS[platform] for arg in ("--platform", tag)]
                try:  # offline, pip retries for a while: bounded, so a bundle never hangs on it
                    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                                           "--retries", "2", "--timeout", "20", "--only-binary=:all:", *tags,
                                           "--python-version", python, "--implementation", "cp", "--dest", tmp,
                                           *requirements], capture_output=True, text=True, timeout=600)
                except subprocess.TimeoutExpired:
                    raise WheelError(f"cannot download the grader's dependencies for {platform}, Python {python} "
                                     "(no answer from the package index in 10 minutes)") from None
                if done.returncode != 0:
                    why = (done.stderr or done.stdout).strip().splitlines()
                    raise WheelError(f"cannot download the grader's dependencies for {platform}, Python {python} "
                                     f"({why[-1] if why else 'pip failed'})")
        Path(tmp, "complete").write_text("\n".join(requirements) + "\n")
        if folder.exists():  # another bundle finished first: keep its
            return
        shutil.move(tmp, folder)
        Path(tmp).mkdir()  # for TemporaryDirectory's cleanup


__all__ = ["DISTRIBUTION", "PLATFORMS", "WheelError", "build", "dependencies", "metadata"]
