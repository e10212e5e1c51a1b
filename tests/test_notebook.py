"""Running notebooks as students hand them in: what runs, what is recorded instead, what
a failing or long cell does, and how a section's values are found (grader/notebook.py)."""

from __future__ import annotations

import torch

from grader.notebook import NotebookOptions, load_notebook_module, python_source
from tests.notebooks import code_cell, markdown_cell, write_notebook

OPTIONS = NotebookOptions(record_calls={"train_part34": ["model", "optimizer", "epochs"],
                                        "check_accuracy_part34": ["loader", "model"]},
                          sections={"question_6": ["Question 6"], "challenge": ["Question 7", "Part V"]},
                          cell_timeout_s=2)

TRAIN = """def train_part34(model, optimizer, epochs=1):
    raise RuntimeError('real training ran')

def check_accuracy_part34(loader, model):
    raise RuntimeError('real evaluation ran')
"""


def load(tmp_path, cells, options=OPTIONS, name="nb_test"):
    path = write_notebook(tmp_path / "PyTorch.ipynb", cells)
    return load_notebook_module(path, name, options).__notebook__


def test_magics_and_shell_lines_are_removed_and_line_numbers_kept():
    code, why = python_source("%matplotlib inline\n!pip install foo\nfiles = !ls\nx = 1\n  %time y = 2")
    assert why is None
    assert code.splitlines() == ["pass", "pass", "files = None", "x = 1", "  pass"]
    assert python_source("%%bash\necho hi")[0] is None
    assert python_source("%%time\nx = 1")[0].splitlines() == ["", "x = 1"]


def test_training_calls_are_recorded_per_section_not_run(tmp_path):
    run = load(tmp_path, [
        code_cell("import torch.nn as nn\nimport torch.optim as optim"),
        code_cell(TRAIN),
        code_cell("# Question 6\nmodel = nn.Linear(2, 2)\noptimizer = optim.SGD(model.parameters(), lr=0.1)\n"
                  "train_part34(model, optimizer)"),
        markdown_cell("## Part V. CIFAR-10 open-ended challenge"),
        code_cell("net = nn.Linear(3, 3)\nopt = optim.Adam(net.parameters())\nmodel = None\n"
                  "train_part34(net, opt, epochs=10)"),
        code_cell("best = net\ncheck_accuracy_part34(None, best)"),
    ])
    assert [o.status for o in run.outcomes] == ["ok"] * 5
    # Cells are numbered as Jupyter's In [n] after Run All: code cells only, the markdown cell is not counted.
    assert [(c.function, c.cell, c.section) for c in run.calls] == [
        ("train_part34", 3, "question_6"), ("train_part34", 4, "challenge"), ("check_accuracy_part34", 5, "challenge")]
    model6, origin6 = run.value("question_6", "model")
    assert model6.in_features == 2 and "cell 3" in origin6
    # In the challenge, `model` is what the student gave their training and evaluation calls,
    # even though their variable called model is None.
    challenge_model, origin = run.value("challenge", "model")
    assert challenge_model.in_features == 3 and "check_accuracy_part34" in origin
    setup = run.training_setup("challenge", challenge_model, ("model", "optimizer", "epochs"))
    assert isinstance(setup["optimizer"], torch.optim.Adam) and setup["epochs"] == 10


def test_a_failing_cell_is_recorded_and_the_next_cells_run(tmp_path):
    run = load(tmp_path, [
        code_cell("import torch"),
        code_cell("x = 1\nundefined_thing + 1\ny = 2"),
        code_cell("def flatten(x):\n    return x.view(x.shape[0], -1)\ndef broken(:\n    pass"),
        code_cell("z = torch.ones(2)"),
    ])
    failed = {o.cell: o for o in run.failures()}
    assert failed[2].line == 2 and "NameError" in failed[2].message
    assert "SyntaxError" in failed[3].message and failed[3].line == 3
    assert [o.status for o in run.outcomes] == ["ok", "failed", "failed", "ok"]
    assert run.why_missing("flatten").startswith("cell 3, which defines flatten, failed at line 3")
    assert "cell 3" in run.missing("flatten")


def test_data_sets_are_stand_ins_and_loops_over_them_stop_the_cell_only(tmp_path):
    run = load(tmp_path, [
        code_cell("import torchvision.datasets as dset\nimport torchvision.transforms as T\n"
                  "from torch.utils.data import DataLoader, sampler\n"
                  "train = dset.CIFAR10('./datasets', train=True, download=True, transform=T.ToTensor())\n"
                  "test = dset.CIFAR10('./datasets', train=False, download=True)\n"
                  "loader = DataLoader(train, batch_size=64, num_workers=4,\n"
                  "                    sampler=sampler.SubsetRandomSampler(range(49000)))\n"
                  "sizes = (len(train), len(test))"),
        code_cell("for x, y in loader:\n    pass\nafter_loop = True"),
        code_cell("done = True"),
    ])
    module_names = run.sections  # no sections here; the namespace is the module's
    assert module_names == {}
    outcomes = [o.status for o in run.outcomes]
    assert outcomes == ["ok", "stopped", "ok"]
    assert "data set" in run.outcomes[1].message and run.outcomes[1].line == 1


def test_plotting_and_colab_imports_do_nothing(tmp_path):
    run = load(tmp_path, [
        code_cell("import matplotlib.pyplot as plt\nfrom google.colab import drive\ndrive.mount('/content/drive')\n"
                  "plt.rcParams['figure.figsize'] = (10.0, 8.0)\nfig, ax = plt.subplots(2, 5)\n"
                  "for a in ax.flat:\n    a.imshow(None)\nplt.show()\nfrom tqdm import tqdm\n"
                  "total = sum(tqdm([1, 2, 3]))"),
    ])
    assert [o.status for o in run.outcomes] == ["ok"]


def test_a_cell_that_runs_too_long_is_stopped(tmp_path):
    run = load(tmp_path, [code_cell("while True:\n    pass"), code_cell("after = 1")])
    assert [o.status for o in run.outcomes] == ["stopped", "ok"]
    assert "stopped after" in run.outcomes[0].message


def test_a_training_function_called_in_the_cell_that_defines_it_is_recorded(tmp_path):
    run = load(tmp_path, [code_cell("import torch.nn as nn\n# Question 6\n" + TRAIN +
                                    "model = nn.Linear(1, 1)\ntrain_part34(model, None)")])
    assert [o.status for o in run.outcomes] == ["ok"]
    assert run.calls[0].arguments["model"].in_features == 1


def test_sections_start_at_markers_in_comments_or_headings_only(tmp_path):
    run = load(tmp_path, [
        markdown_cell("We will get to Question 6 later."),  # prose, not a heading: no section
        code_cell("a = 1"),
        code_cell("b = 2  # Question 6"),
        markdown_cell("# Part V. The challenge"),
        code_cell("c = 3"),
    ])
    assert run.sections["question_6"].cells == [2]  # code cells, numbered as Jupyter's In [n]
    assert run.sections["challenge"].cells == [3]
