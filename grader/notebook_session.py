"""The notebook a kernel runs, as its student sees it: which file it is, and saving it first.

A kernel does not know its notebook.  Each front end says it its own way:

- `GRADER_NOTEBOOK` (a path) when a course's setup or a test sets it;
- Colab: the live notebook, asked of the page (`get_ipynb`, as otter-grader does);
- VS Code: `__vsc_ipynb_file__` in the notebook's namespace;
- Jupyter Server (JupyterLab, Notebook 7): `JPY_SESSION_NAME` in the kernel's environment,
  which ipykernel also puts in the namespace as `__session__`;
- else the running Jupyter servers (their records in Jupyter's runtime folder): the sessions
  API (`/api/sessions`) of the one that started this kernel names its notebook;
- else the only notebook in the working folder.

Saving: a classic Notebook or JupyterLab page runs a save command sent as Javascript output,
and the file's modification time tells whether it was saved.  VS Code and Colab run no such
output: VS Code's file is checked as last saved (and said so), Colab's live notebook needs no save.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from grader.errors import GraderError


class NotebookNotFound(GraderError):
    """The notebook could not be found; the message says what to do."""


@dataclass
class Found:
    path: Path | None  # the saved file (None in Colab)
    folder: Path  # where the other files of the submission are
    front_end: str  # jupyter, vscode, colab, file
    how: str  # how it was found, said in the report
    live: dict | None = None  # Colab: the notebook as the page holds it


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _namespace() -> dict:
    shell = _shell()
    return getattr(shell, "user_ns", {}) if shell is not None else {}


def in_colab() -> bool:
    return "google.colab" in sys.modules


def find(notebook: str | os.PathLike | None = None) -> Found:
    """The student's notebook, by the first of the ways above that names an existing file."""
    if notebook is not None:
        return _file(Path(notebook), "file", "given")
    if os.environ.get("GRADER_NOTEBOOK"):
        return _file(Path(os.environ["GRADER_NOTEBOOK"]), "file", "GRADER_NOTEBOOK")
    if in_colab():
        return Found(None, Path.cwd(), "colab", "Colab", live=_colab_notebook())
    namespace = _namespace()
    if namespace.get("__vsc_ipynb_file__"):
        return _file(Path(namespace["__vsc_ipynb_file__"]), "vscode", "VS Code")
    session = os.environ.get("JPY_SESSION_NAME") or namespace.get("__session__")
    if session:
        path = _session_path(str(session))
        if path is not None:
            return Found(path, path.parent, "jupyter", "Jupyter")
    path = _from_server_sessions()
    if path is not None:
        return Found(path, path.parent, "jupyter", "Jupyter")
    here = sorted(p for p in Path.cwd().glob("*.ipynb") if p.is_file())
    if len(here) == 1:
        return Found(here[0].resolve(), Path.cwd(), "jupyter" if _shell() is not None else "file",
                     "the only notebook in this folder")
    named = f" ({len(here)} notebooks in {Path.cwd()}: {' and '.join(p.name for p in here)})" if here else ""
    raise NotebookNotFound(
        "could not tell which notebook this is" + named + ": name it, as in grader.check(notebook=\"PyTorch.ipynb\")")


def _file(path: Path, front_end: str, how: str) -> Found:
    path = path.expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise NotebookNotFound(f"no notebook {path} ({how})")
    return Found(path.resolve(), path.resolve().parent, front_end, how)


def _session_path(session: str) -> Path | None:
    """JPY_SESSION_NAME: an absolute path (jupyter_server >= 2) or one relative to the server's root."""
    path = Path(session)
    if path.is_absolute():
        return path if path.is_file() else None
    for candidate in (Path.cwd() / path, Path.cwd() / path.name):
        if candidate.is_file() and candidate.suffix == ".ipynb":
            return candidate.resolve()
    return None


def _from_server_sessions() -> Path | None:
    """Ask each running Jupyter server which notebook holds this kernel (token servers only)."""
    try:
        from ipykernel.connect import get_connection_file

        kernel_id = Path(get_connection_file()).stem.removeprefix("kernel-")
    except Exception:  # not in an ipykernel, or no connection file
        return None
    for server in _running_servers():
        try:
            url = server["url"].rstrip("/") + "/api/sessions"
            request = urllib.request.Request(url, headers={"Authorization": f"token {server.get('token', '')}"})
            with urllib.request.urlopen(request, timeout=2) as response:
                sessions = json.load(response)
        except Exception:  # a password-protected or stopped server says nothing
            continue
        for session in sessions:
            if (session.get("kernel") or {}).get("id") == kernel_id:
                relative = session.get("path") or (session.get("notebook") or {}).get("path")
                root = server.get("root_dir") or server.get("notebook_dir") or ""
                path = Path(root) / (relative or "")
                if relative and path.is_file():
                    return path.resolve()
    return None


def _running_servers() -> list[dict]:
    """The servers' own records (jpserver-*.json, nbserver-*.json in Jupyter's runtime folder): read
    directly, since the kernel's environment need not have the server's package installed."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return []
    servers = []
    for record in sorted(Path(jupyter_runtime_dir()).glob("*server-*.json")):
        try:
            servers.append(json.loads(record.read_text()))
        except (OSError, ValueError):
            continue
    return [s for s in servers if isinstance(s, dict) and isinstance(s.get("url"), str)]


def _colab_notebook() -> dict:
    """The notebook as the Colab page holds it now (its cells as typed, not as last saved)."""
    from google.colab import _message  # type: ignore[import-not-found]

    reply = _message.blocking_request("get_ipynb", request="", timeout_sec=30)
    if not reply or not isinstance(reply.get("ipynb"), dict):
        raise NotebookNotFound("Colab did not send the notebook: run the cell again")
    return reply["ipynb"]


# -- saving ---------------------------------------------------------------------------

# Classic Notebook has Jupyter.notebook (and IPython.notebook); JupyterLab and Notebook 7 run
# this output when it comes from the running session, and their save button is bound to
# docmanager:save, which acts on the notebook the cell runs in.  Where ipylab is installed,
# its front-end object runs docmanager:save directly (as otter-grader does).
_SAVE_JS = """
var nb = (window.Jupyter && Jupyter.notebook) || (window.IPython && IPython.notebook);
if (nb) { nb.save_checkpoint(); }
else { var b = document.querySelector('[data-command="docmanager:save"]'); if (b) { b.click(); } }
"""


def save(found: Found, wait_s: float = 5.0) -> str:
    """Save the notebook where the front end allows; one line that says what happened."""
    if found.front_end == "colab":
        return "checking your notebook as it is now in Colab"
    saved_at = time.strftime("%H:%M:%S", time.localtime(found.path.stat().st_mtime))
    if found.front_end == "vscode":
        return (f"checking {found.path.name} as last saved ({saved_at}): VS Code cannot be asked to save, "
                "so save it (Ctrl-S) first if you changed it since")
    shell = _shell()
    if found.front_end != "jupyter" or shell is None or not hasattr(shell, "kernel"):
        return f"checking {found.path.name} as saved at {saved_at}"
    if _save_in_page(found.path, wait_s):
        return f"saved your notebook; checking {found.path.name}"
    return (f"could not save your notebook from here: save it (Ctrl-S) and run again. "
            f"This check read {found.path.name} as saved at {saved_at}")


def _save_in_page(path: Path, wait_s: float) -> bool:
    from IPython.display import HTML, Javascript, display

    before = path.stat().st_mtime_ns
    handle = display(Javascript(_SAVE_JS), display_id=True)
    try:
        import ipylab  # type: ignore[import-not-found]

        ipylab.JupyterFrontEnd().commands.execute("docmanager:save")
    except Exception:  # not installed, or no JupyterLab page behind this kernel
        pass
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if path.stat().st_mtime_ns != before:
                time.sleep(0.3)  # the page writes the file in one go; let it finish
                return True
        return False
    finally:
        if handle is not None:  # the command is not kept in the notebook, to run on reopening
            handle.update(HTML(""))
