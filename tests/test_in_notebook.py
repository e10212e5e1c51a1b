"""grader.check() and grader.export() in a real Jupyter kernel (ipykernel, driven by
jupyter_client), as a student runs them in a notebook: the table shown under the cell,
the result a cell can assert on, messages instead of tracebacks, and the zip to hand in.

The kernel finds its notebook through JPY_SESSION_NAME, which a Jupyter server sets for
the kernels it starts.  The student's rubric has public items that need no reference
(output shape and parameter count of ThreeLayerConvNet, in the Question 3 section) and
hidden ones, so each check takes seconds, not a training or an evaluation."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REFERENCE, SKELETONS
from tests.notebooks import variant
from tests.test_notebook_session import student_rubric

jupyter_client = pytest.importorskip("jupyter_client", reason="jupyter_client is not installed (the test extra "
                                     "installs it): no kernel to run a notebook in")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the test extra installs it)")

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ["ThreeLayerConvNet.shape", "ThreeLayerConvNet.params"]


# Students keep their check cells in the notebook they hand in: while graded, they do nothing.
CHECK_CELL = "import grader\nr = grader.check()\nassert r.passed, r\nassert grader.export() is None\n"


def student_folder(tmp_path: Path, source: Path, notebook_name: str, checkpoint: bool) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    if source == REFERENCE / "pytorch_basics":
        variant(tmp_path / "reference", insert=[("def three_layer_convnet(", CHECK_CELL)], checkpoint=True)
        source = tmp_path / "reference"
    (folder / notebook_name).write_bytes((source / "PyTorch.ipynb").read_bytes())
    if checkpoint:
        (folder / "challenge.pt").write_bytes((source / "challenge.pt").read_bytes())
    (folder / "pytorch_basics.yaml").write_text(yaml.safe_dump(student_rubric(), sort_keys=False))
    (folder / "other.ipynb.txt").write_text("not handed in")
    return folder


class Kernel:
    """One ipykernel in the student's folder, with this checkout's grader importable."""

    def __init__(self, tmp_path: Path, cwd: Path, session_name: str):
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        specs = tmp_path / "kernels"
        (specs / "grader-test").mkdir(parents=True)
        (specs / "grader-test" / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "grader test", "language": "python"}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "JPY_SESSION_NAME": session_name}
        env.pop("GRADER_NOTEBOOK", None)
        self.manager = KernelManager(kernel_name="grader-test",
                                     kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 240) -> tuple[dict, list[dict]]:
        """(the execute reply's content, the cell's outputs: display data, results, streams, errors)."""
        outputs = []

        def hook(msg):
            if msg["msg_type"] in ("display_data", "execute_result", "stream", "error"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        return reply["content"], outputs

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel_in(tmp_path):
    started = []

    def start(folder: Path, session_name: str) -> Kernel:
        started.append(Kernel(tmp_path, folder, session_name))
        return started[-1]

    yield start
    for kernel in started:
        kernel.close()


def tables(outputs: list[dict]) -> list[tuple[str, str]]:
    """(text/plain, text/html) of each output that shows a check's table."""
    shown = [o for o in outputs if o["type"] in ("display_data", "execute_result")]
    return [(o["data"].get("text/plain", ""), o["data"].get("text/html", "")) for o in shown
            if "TOTAL" in o["data"].get("text/plain", "")]


def stdout(outputs: list[dict]) -> str:
    return "".join(o["text"] for o in outputs if o["type"] == "stream" and o["name"] == "stdout")


def no_traceback(reply: dict, outputs: list[dict]) -> None:
    assert reply["status"] == "ok", reply
    assert not [o for o in outputs if o["type"] == "error"]
    assert "Traceback" not in json.dumps(outputs)


def test_the_reference_checks_in_a_kernel_and_exports_the_zip(tmp_path, kernel_in):
    folder = student_folder(tmp_path, REFERENCE / "pytorch_basics", "PyTorch.ipynb", checkpoint=True)
    kernel = kernel_in(folder, str(folder / "PyTorch.ipynb"))

    reply, outputs = kernel.run("import grader\nr = grader.check()\n"
                                "print(r.score, r.max_score, r.passed, sorted(r.statuses.items()))")
    no_traceback(reply, outputs)
    [(text, html)] = tables(outputs)
    # No page to run the save command: said plainly, and the saved file is what was checked.
    assert "could not save your notebook from here: save it (Ctrl-S) and run again" in text
    for item in PUBLIC:
        assert any(line.startswith("PASS") and item in line for line in text.splitlines()), text
    assert "TOTAL      10/10" in text
    assert "The 2 hidden items (45 points), graded by your instructor, may still fail." in text
    assert "three_layer_convnet " not in text and "challenge.accuracy" not in text  # hidden: not graded
    # The same table as on a terminal, as HTML.
    assert html.startswith("<pre") and "ThreeLayerConvNet.params" in html and "10/10" in html and "PASS" in html
    assert stdout(outputs).strip() == ("10.0 10.0 True [('ThreeLayerConvNet.params', 'passed'), "
                                       "('ThreeLayerConvNet.shape', 'passed')]")

    # One section (by the notebook's Question 3 cell), one item, and a section with no public item.
    reply, outputs = kernel.run("r3 = grader.check('question_3', save=False)\n"
                                "r1 = grader.check('ThreeLayerConvNet.params', save=False)\n"
                                "q1 = grader.check('question_1', save=False)\n"
                                "print(sorted(r3.statuses), sorted(r1.statuses), q1.statuses, q1.error is not None)")
    no_traceback(reply, outputs)
    shown = [text for text, _ in tables(outputs)]
    assert len(shown) == 2 and "TOTAL      10/10" in shown[0] and "TOTAL        5/5" in shown[1]
    assert "ThreeLayerConvNet.shape" not in shown[1]
    assert stdout(outputs).strip() == "['ThreeLayerConvNet.params', 'ThreeLayerConvNet.shape'] " \
                                      "['ThreeLayerConvNet.params'] {} True"
    message = json.dumps([o.get("data", {}) for o in outputs])
    assert "question_1 has no public item: it is graded by your instructor after you hand in" in message

    reply, outputs = kernel.run("grader.export()")
    no_traceback(reply, outputs)
    out = folder / "pytorch_basics-submission.zip"
    printed = stdout(outputs)
    assert f"wrote {out}, to hand in:" in printed and "challenge.pt  (4.5 MB)" in printed
    assert "not beside the notebook" not in printed
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["PyTorch.ipynb", "challenge.pt", "check.txt"]
        assert archive.read("PyTorch.ipynb") == (folder / "PyTorch.ipynb").read_bytes()
        assert CHECK_CELL.splitlines()[1] in archive.read("PyTorch.ipynb").decode()
        log = archive.read("check.txt").decode()
    assert "score: 5/5" in log and "selection: ThreeLayerConvNet.params" in log
    assert "PASS   5/5  ThreeLayerConvNet.params" in log
    assert "changed after this check" not in log


def test_the_skeleton_fails_each_item_with_its_reason_and_mistakes_are_messages(tmp_path, kernel_in):
    # Renamed by a download ("PyTorch (1).ipynb"), found through a session name relative to the
    # server's root, and handed in by the course's name.
    folder = student_folder(tmp_path, SKELETONS / "pytorch_basics", "PyTorch (1).ipynb", checkpoint=False)
    kernel = kernel_in(folder, "work/PyTorch (1).ipynb")

    reply, outputs = kernel.run("import grader\ngrader.check(save=False)")  # the cell's last value
    no_traceback(reply, outputs)
    [(text, html)] = tables(outputs)  # shown once, not again as the cell's value
    assert not [o for o in outputs if o["type"] == "execute_result"]
    lines = text.splitlines()
    for item in PUBLIC:
        assert any(line.startswith("FAIL") and item in line for line in lines), text
    assert "TOTAL       0/10" in text and "Traceback" not in text

    reply, outputs = kernel.run("r = grader.check('question_9', save=False)\nprint(r.passed, r.error)")
    no_traceback(reply, outputs)
    assert ("False no item or section 'question_9' in pytorch_basics; did you mean question_6 or question_5 or "
            "question_3?") in stdout(outputs)

    # The notebook is edited after the check: the log says so.
    notebook = folder / "PyTorch (1).ipynb"
    notebook.write_text(notebook.read_text().replace("Question 1", "Question  1", 1))
    reply, outputs = kernel.run("grader.export(save=False)")
    no_traceback(reply, outputs)
    with zipfile.ZipFile(folder / "pytorch_basics-submission.zip") as archive:
        assert sorted(archive.namelist()) == ["PyTorch.ipynb", "check.txt"]
        log = archive.read("check.txt").decode()
    assert "not beside the notebook, so not in the zip: challenge.pt" in stdout(outputs)
    assert "score: 0/10" in log and "FAIL   0/5  ThreeLayerConvNet.shape" in log
    assert "the notebook changed after this check" in log


def test_which_notebook_is_a_message_until_vs_code_names_it(tmp_path, kernel_in):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("draft.ipynb", "final.ipynb"):
        (folder / name).write_bytes((SKELETONS / "pytorch_basics" / "PyTorch.ipynb").read_bytes())
    (folder / "pytorch_basics.yaml").write_text(yaml.safe_dump(student_rubric(), sort_keys=False))
    kernel = kernel_in(folder, "")  # not started by a Jupyter server
    reply, outputs = kernel.run("import grader\nr = grader.check()\nz = grader.export()\nprint(r.passed, z)")
    no_traceback(reply, outputs)
    message = json.dumps([o.get("data", {}) for o in outputs])
    assert (f"could not tell which notebook this is (2 notebooks in {folder}: draft.ipynb and final.ipynb): "
            f"name it, as in "
            f"grader.check(notebook=\\\"PyTorch.ipynb\\\")") in message
    assert stdout(outputs).splitlines()[-1] == "False None"
    assert "grader.export: could not tell which notebook this is" in stdout(outputs)

    # VS Code names the notebook in its namespace; it cannot be asked to save, and says so.
    reply, outputs = kernel.run(f"__vsc_ipynb_file__ = {str(folder / 'final.ipynb')!r}\n"
                                "r = grader.check('ThreeLayerConvNet.shape')")
    no_traceback(reply, outputs)
    [(text, _)] = tables(outputs)
    assert "checking final.ipynb as last saved (" in text and "VS Code cannot be asked to save" in text
    assert "FAIL         0/5  ThreeLayerConvNet.shape" in text
