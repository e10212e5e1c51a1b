"""What ordinary library code expects of a Python environment, made true inside the sandbox.

Students' files import matplotlib, seaborn and tqdm beside their model.  On its first import
matplotlib builds a font cache by running `fc-list`, a program the sandbox refuses to start, and
it wants a writable config folder.  So the grader builds that cache once, outside the sandbox, in
its own cache folder (`font_cache`); the sandbox sees it read-only (`sandbox_args`), and each
student's process starts with a private, writable copy in its scratch folder (`prepare`, before
the guard) and the non-interactive Agg backend (`variables`): `import matplotlib.pyplot`,
`plt.show()` and `savefig` then need no program and no display.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

_built: dict[str, str | None] = {}
_lock = threading.Lock()


def font_cache() -> str | None:
    """The folder holding matplotlib's prebuilt font list (built on first use), or None when
    matplotlib is not installed or the cache cannot be built (then plotting imports fail as
    they would without this module, with the sandbox's message)."""
    with _lock:
        if "matplotlib" not in _built:
            _built["matplotlib"] = _build_font_cache()
        return _built["matplotlib"]


def _build_font_cache() -> str | None:
    if importlib.util.find_spec("matplotlib") is None:
        return None
    from grader.datasets import cache_root

    folder = cache_root() / f"matplotlib-{importlib.metadata.version('matplotlib')}"
    if not _font_lists(folder):
        env = {**os.environ, "MPLCONFIGDIR": str(folder), "MPLBACKEND": "Agg"}
        try:  # a process of its own: importing matplotlib here would cost the grader its start-up time
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env, timeout=300,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
    return str(folder.resolve()) if _font_lists(folder) else None


def _font_lists(folder: Path) -> list[Path]:
    try:  # a cache folder this user may not read is no cache
        return sorted(folder.glob("fontlist-*.json")) if folder.is_dir() else []
    except OSError:
        return []


def sandbox_args() -> list[str]:
    """bubblewrap arguments: the prebuilt cache, read-only, at its own path."""
    cache = font_cache()
    return ["--ro-bind", cache, cache] if cache else []


def config_dir(workdir: str) -> str:
    """matplotlib's writable config folder in a student's process: in its scratch folder."""
    return os.path.join(workdir, "tmp", "matplotlib")


def prepare(workdir: str, cache: str | None) -> None:
    """Before the guard: copy the prebuilt font list into this process's config folder."""
    target = config_dir(workdir)
    os.makedirs(target, exist_ok=True)
    for source in _font_lists(Path(cache)) if cache else []:
        try:
            shutil.copyfile(source, os.path.join(target, source.name))
        except OSError:
            pass  # matplotlib then rebuilds it, and the sandbox says what it refused


def variables(workdir: str) -> dict[str, str]:
    """Environment variables of a student's process, besides the guard's own."""
    return {"MPLBACKEND": "Agg", "MPLCONFIGDIR": config_dir(workdir)}
