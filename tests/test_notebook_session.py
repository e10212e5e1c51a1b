"""Which notebook grader.check() reads, front end by front end, where no real front end runs:
Colab's live notebook (its page answers `get_ipynb`), a Jupyter server's sessions API, and
the session name a Jupyter server gives its kernels."""

from __future__ import annotations

import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from grader import in_notebook, notebook_session
from tests.conftest import REFERENCE, SKELETONS
from tests.notebooks import RUBRIC


def student_rubric() -> dict:
    """The course's rubric with two public items that need no reference, and two hidden ones."""
    course = yaml.safe_load(RUBRIC.read_text())
    items = {i["id"]: i for i in course["items"]}
    target = {"file": "PyTorch.ipynb", "name": "ThreeLayerConvNet", "args": [3, 12, 8, 10]}
    params = 3 * 12 * 25 + 12 + 12 * 8 * 9 + 8 + 8 * 32 * 32 * 10 + 10
    public = [
        {"id": "ThreeLayerConvNet.shape", "title": "Q3-4 ThreeLayerConvNet output shape", "points": 5,
         "check": "output_shape", "target": target, "inputs": [[4, 3, 32, 32]], "expected": [4, 10]},
        {"id": "ThreeLayerConvNet.params", "title": "Q3 ThreeLayerConvNet parameter count", "points": 5,
         "check": "param_count", "target": target, "expected": params},
    ]
    hidden = [{**items["three_layer_convnet"], "visibility": "hidden"},
              {**items["challenge.accuracy"], "visibility": "hidden"}]
    keep = ("assignment", "title", "files", "data", "limits", "notebook")
    return {**{k: course[k] for k in keep}, "items": public + hidden}


@pytest.fixture
def colab(monkeypatch):
    """A Colab kernel whose page holds `live` (a notebook as JSON)."""
    page = {}
    message = types.ModuleType("google.colab._message")
    message.blocking_request = lambda kind, request="", timeout_sec=0: (
        {"ipynb": page["live"]} if kind == "get_ipynb" else None)
    package = types.ModuleType("google.colab")
    package._message = message
    if "google" not in sys.modules:  # a namespace package others may have imported: kept
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setitem(sys.modules, "google.colab._message", message)
    monkeypatch.delenv("GRADER_NOTEBOOK", raising=False)
    return page


def test_colab_checks_the_notebook_as_the_page_holds_it_not_the_saved_file(tmp_path, monkeypatch, colab):
    # Colab's folder (/content) holds an old download of the skeleton; the page has the answers.
    (tmp_path / "PyTorch.ipynb").write_bytes((SKELETONS / "pytorch_basics" / "PyTorch.ipynb").read_bytes())
    (tmp_path / "pytorch_basics.yaml").write_text(yaml.safe_dump(student_rubric(), sort_keys=False))
    colab["live"] = json.loads((REFERENCE / "pytorch_basics" / "PyTorch.ipynb").read_text())
    monkeypatch.chdir(tmp_path)

    result = in_notebook.check("ThreeLayerConvNet.params", show=False)
    assert result.error is None, result.message
    assert result.statuses == {"ThreeLayerConvNet.params": "passed"}
    assert result.text.splitlines()[0] == "checking your notebook as it is now in Colab"
    assert "pytorch_basics: the Colab notebook" in result.text

    out = in_notebook.export(save=False)
    import zipfile

    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("PyTorch.ipynb")) == colab["live"]
        assert "score: 5/5" in archive.read("check.txt").decode()


def test_colab_that_sends_nothing_is_a_message(tmp_path, monkeypatch, colab):
    colab["live"] = None
    monkeypatch.chdir(tmp_path)
    result = in_notebook.check(show=False)
    assert result.error == "Colab did not send the notebook: run the cell again"


class _Sessions(BaseHTTPRequestHandler):
    sessions: list = []
    token = "secret"

    def do_GET(self):
        ok = self.path == "/api/sessions" and self.headers.get("Authorization") == f"token {self.token}"
        body = json.dumps(self.sessions if ok else {"message": "Forbidden"}).encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_jupyter_server_names_the_notebook_of_this_kernel(tmp_path, monkeypatch):
    (tmp_path / "course" / "hw").mkdir(parents=True)
    notebook = tmp_path / "course" / "hw" / "PyTorch.ipynb"
    notebook.write_text("{}")
    _Sessions.sessions = [
        {"path": "other.ipynb", "kernel": {"id": "someone-else"}},
        {"path": "hw/PyTorch.ipynb", "notebook": {"path": "hw/PyTorch.ipynb"}, "kernel": {"id": "abc-123"}},
    ]
    server = HTTPServer(("127.0.0.1", 0), _Sessions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    ipykernel_connect = pytest.importorskip("ipykernel.connect", reason="ipykernel is not installed (the test "
                                            "extra installs it): no connection file to name the kernel")
    try:

        monkeypatch.setattr(ipykernel_connect, "get_connection_file", lambda: "/run/kernel-abc-123.json")
        # The servers' records in Jupyter's runtime folder: a stale one whose token is refused, then ours.
        runtime = tmp_path / "runtime"
        runtime.mkdir()
        (runtime / "jpserver-11.json").write_text(json.dumps({"url": url, "token": "old", "root_dir": str(tmp_path)}))
        (runtime / "nbserver-12.json").write_text(json.dumps({"url": url, "token": "secret",
                                                             "notebook_dir": str(tmp_path / "course")}))
        (runtime / "jpserver-13.json").write_text("{not json")
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
        monkeypatch.delenv("GRADER_NOTEBOOK", raising=False)
        monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
        monkeypatch.chdir(tmp_path)
        found = notebook_session.find()
        assert (found.path, found.folder, found.front_end) == (notebook, notebook.parent, "jupyter")
    finally:
        server.shutdown()


def test_a_session_name_is_absolute_or_relative_to_the_kernels_folder(tmp_path, monkeypatch):
    notebook = tmp_path / "hw" / "My notebook.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}")
    monkeypatch.delenv("GRADER_NOTEBOOK", raising=False)
    monkeypatch.chdir(notebook.parent)
    for name in (str(notebook), "hw/My notebook.ipynb", "My notebook.ipynb"):
        monkeypatch.setenv("JPY_SESSION_NAME", name)
        assert notebook_session.find().path == notebook
    monkeypatch.setenv("GRADER_NOTEBOOK", "missing.ipynb")
    with pytest.raises(notebook_session.NotebookNotFound, match="no notebook .*missing.ipynb \\(GRADER_NOTEBOOK\\)"):
        notebook_session.find()


def test_an_untrained_challenge_is_skipped_with_a_command_on_the_students_folder(tmp_path, monkeypatch):
    """grader.check(train=False) is `grader check --no-train`; the message names the student's
    folder, not the temporary copy the check graded."""
    rubric = student_rubric()
    for item in rubric["items"]:
        item["visibility"] = "visible" if item["id"] == "challenge.accuracy" else "hidden"
    (tmp_path / "PyTorch.ipynb").write_bytes((REFERENCE / "pytorch_basics" / "PyTorch.ipynb").read_bytes())
    (tmp_path / "pytorch_basics.yaml").write_text(yaml.safe_dump(rubric, sort_keys=False))
    monkeypatch.setenv("GRADER_NOTEBOOK", str(tmp_path / "PyTorch.ipynb"))

    result = in_notebook.check("challenge", train=False, show=False)
    assert result.statuses == {"challenge.accuracy": "skipped"}
    message = result.report.results[0].message
    assert message == ("no challenge.pt in the submission and training is off: hand in the trained weights, or run "
                       f"`grader train {tmp_path} --item challenge.accuracy`")
    assert "grader-check-" not in result.text + result.html
