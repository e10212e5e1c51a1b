"""Issue 19: a self-check students can trust.  The handed-in checkpoint is what gets graded,
a failed answer cell leaves no model for its section, errors are located at the student's
own line and layer, and an incomplete submission is not a pass."""

from __future__ import annotations

import pytest

from grader import grading, rubric
from grader.notebook import NotebookOptions, load_notebook_module
from grader.options import Options
from grader.results import PASSED
from grader.rubric import questions
from tests.conftest import REFERENCE, run_cli
from tests.notebooks import (RUBRIC, TINY_IMPORTS, TINY_TRAIN, cell_number, code_cell, markdown_cell, variant,
                             write_notebook)

SAVE_LINE = "torch.save(model.state_dict(), 'challenge.pt')"


@pytest.fixture(scope="module")
def basics():
    return rubric.load(RUBRIC)


def basics_notebook() -> NotebookOptions:
    return rubric.load(RUBRIC).notebook


# -- 1. the handed-in checkpoint is what gets graded -------------------------------------------


def test_a_challenge_cell_that_saves_challenge_pt_is_graded_on_the_handed_in_weights(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[("train_part34(model, optimizer, epochs=2)",
                                                 f"train_part34(model, optimizer, epochs=2)\n{SAVE_LINE}")],
                     checkpoint=True)
    handed_in = (folder / "challenge.pt").read_bytes()
    report = grading.grade(folder, basics, items=["challenge.accuracy"])
    [challenge] = report.results
    # The notebook's save line ran (its training did not): untrained weights would score about 10%.
    assert challenge.status == PASSED and challenge.extra["accuracy"] >= 0.70, challenge.message
    assert ("your notebook's code wrote challenge.pt while being graded; the file you handed in was graded"
            in report.notes)
    assert (folder / "challenge.pt").read_bytes() == handed_in  # the student's own file is untouched


def test_a_notebook_that_writes_no_handed_in_file_gets_no_such_note(tmp_path, basics):
    folder = variant(tmp_path / "sub", checkpoint=True)
    report = grading.grade(folder, basics, items=["challenge.accuracy"])
    assert report.results[0].status == PASSED
    assert not [n for n in report.notes if "wrote" in n]


# -- 4. a failed answer cell leaves no model for its section --------------------------------------


def test_a_broken_challenge_cell_is_not_graded_with_question_6s_model_given_to_check_accuracy(tmp_path, basics):
    # The handout's last cell, `best_model = model; check_accuracy_part34(loader_test, best_model)`,
    # hands the evaluation Question 6's model when the challenge cell does not parse.
    folder = variant(tmp_path / "sub", replace=[("optimizer = optim.Adam(model.parameters(), lr=1e-3)\n",
                                                 "optimizer = optim.Adam(model.parameters(), lr=1e-3\n")],
                     checkpoint=True)
    q7 = cell_number(folder / "PyTorch.ipynb", "# Question 7")
    assert "check_accuracy_part34(loader_test, best_model)" in (folder / "PyTorch.ipynb").read_text()
    [challenge] = grading.grade(folder, basics, items=["challenge.accuracy"]).results
    assert challenge.points == 0
    assert f"cell {q7} of the challenge section failed" in challenge.message and "SyntaxError" in challenge.message
    assert "does not fit" not in challenge.message and "missing" not in " ".join(challenge.details)


def test_the_evaluation_call_of_a_section_whose_cell_failed_is_not_its_answer(tmp_path):
    path = write_notebook(tmp_path / "PyTorch.ipynb", [
        code_cell(TINY_IMPORTS),
        code_cell(TINY_TRAIN + "\ndef check_accuracy_part34(loader, model):\n    pass"),
        code_cell("# Question 6\nmodel = nn.Linear(2, 2)\noptimizer = optim.SGD(model.parameters(), lr=0.1)"),
        code_cell("# Question 7\nmodel = nn.Sequential(nn.Linear(3, 3)\n"),
        code_cell("best_model = model\ncheck_accuracy_part34(None, best_model)"),
    ])
    run = load_notebook_module(path, "nb_b19_best_model", basics_notebook()).__notebook__
    with pytest.raises(LookupError, match=r"cell 4 of the challenge section failed at line 2 \(SyntaxError"):
        run.value("challenge", "model")
    # A challenge that reuses an earlier model on purpose, with no failed cell, keeps it.
    path.write_text(path.read_text().replace("nn.Sequential(nn.Linear(3, 3)\\n", "model"))
    run = load_notebook_module(path, "nb_b19_best_model_ok", basics_notebook()).__notebook__
    assert run.value("challenge", "model")[0].in_features == 2


# -- 5. errors at the student's own cell, line and layer --------------------------------------------


def test_cells_are_numbered_as_jupyter_shows_them_and_an_answer_is_located_in_its_own_cell(tmp_path):
    path = write_notebook(tmp_path / "PyTorch.ipynb", [
        markdown_cell("# PyTorch basics"),
        code_cell(TINY_IMPORTS),
        markdown_cell("### Barebones PyTorch: training a ConvNet\n**Question 2.**"),
        code_cell("conv_w1 = None\n# Question 2\nconv_w1 = torch.zeros(3)"),
        markdown_cell("## Part III. PyTorch Module API"),
        code_cell("class TwoLayerFC(nn.Module):\n    pass"),  # same section, after the answer
    ])
    run = load_notebook_module(path, "nb_b19_numbers", basics_notebook()).__notebook__
    assert [o.cell for o in run.outcomes] == [1, 2, 3]  # In [1], In [2], In [3]: markdown is not counted
    value, origin = run.value("question_2", "conv_w1")
    assert value.shape == (3,) and origin == "conv_w1 at the end of cell 2"


def test_the_skeletons_question_2_is_located_at_its_answer_cell(basics):
    from tests.conftest import SKELETONS

    notebook = SKELETONS / "pytorch_basics" / "PyTorch.ipynb"
    answer = cell_number(notebook, "# Question 2: the weights")
    report = grading.grade(SKELETONS / "pytorch_basics", basics, items=["three_layer_convnet.init"])
    assert f"conv_w1 at the end of cell {answer} is None" in report.results[0].message, report.results[0].message


def test_a_missing_flatten_names_the_layer_and_its_input(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[("    Flatten(),\n    nn.Linear(channel_2 * 32 * 32, 10),",
                                                 "    nn.Linear(channel_2 * 32 * 32, 10),")])
    [q6] = grading.grade(folder, basics, items=["sequential_convnet"]).results
    assert q6.points < q6.max_points
    assert "mat1 and mat2 shapes cannot be multiplied" in q6.message
    assert "in layer 4 (Linear), whose input is 4x16x32x32" in q6.message, q6.message


def test_a_3x3_conv_without_padding_is_named_at_its_own_line_not_the_given_return(tmp_path):
    from tests.test_cnn_architecture import RUBRIC as CNN, REFERENCE_SOURCE, submission

    given = "conv3x3(middle_channels, middle_channels, 1, 1),\n                conv1x1(middle_channels, out_channels, 1, 0),\n                # END SOLUTION\n            )\n            self.make_equal_channel"
    assert REFERENCE_SOURCE.count(given) == 1
    source = REFERENCE_SOURCE.replace(given, given.replace("1, 1),", "1, 0),", 1))
    line = source.splitlines().index("                conv3x3(middle_channels, middle_channels, 1, 0),") + 1
    folder = submission(tmp_path, source)
    [plain] = grading.grade(folder, CNN, items=["residual_block.plain"], threads=2).results
    assert plain.points == 0
    assert f"layer.1 (line {line}) returns 6x6 where 8x8 is needed" in plain.message, plain.message


# -- 6. incomplete is not a pass ------------------------------------------------------------------


def test_a_missing_challenge_checkpoint_is_incomplete_and_exits_1(tmp_path, basics):
    folder = variant(tmp_path / "sub")  # no challenge.pt, and no training
    done = run_cli("check", str(folder), "-r", str(RUBRIC), "--items", "challenge.accuracy", "--no-train")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "incomplete: challenge.pt missing (see grader train)" in done.stdout
    options = Options(train_if_missing=False)
    report = grading.grade(folder, basics, options, items=["challenge.accuracy"])
    assert report.incomplete == ["challenge.pt missing (see grader train)"] and not report.all_passed
    assert "incomplete: challenge.pt missing (see grader train)" in report.to_gradescope()["output"]


def test_a_missing_checkpoint_that_cannot_be_trained_here_is_incomplete_too(tmp_path, basics):
    folder = variant(tmp_path / "sub")  # no challenge.pt; training is on, but the tests have no training images
    report = grading.grade(folder, basics, Options(), items=["challenge.accuracy"])
    [challenge] = report.results
    assert challenge.status == "skipped" and "training images" in challenge.message, challenge.message
    assert report.incomplete == ["challenge.pt missing (see grader train)"] and not report.all_passed


def test_two_candidate_notebooks_are_an_error_naming_both(tmp_path, basics):
    folder = variant(tmp_path / "sub")
    (folder / "PyTorch (1).ipynb").write_bytes((folder / "PyTorch.ipynb").read_bytes())
    (folder / "notes.ipynb").write_text("{}")  # not a copy of the course's notebook: no candidate
    with pytest.raises(grading.AmbiguousNotebook, match=r"PyTorch \(1\)\.ipynb and PyTorch\.ipynb"):
        grading.grade(folder, basics, items=["three_layer_convnet"])
    done = run_cli("check", str(folder), "-r", str(RUBRIC), "--items", "q1")
    assert done.returncode != 0 and "PyTorch (1).ipynb and PyTorch.ipynb" in done.stdout + done.stderr
    (folder / "PyTorch.ipynb").unlink()  # the one left is graded under the course's name
    report = grading.grade(folder, basics, items=["three_layer_convnet"])
    assert report.results[0].status == PASSED and "PyTorch (1).ipynb is graded as PyTorch.ipynb" in report.notes


def test_a_blank_that_does_not_parse_costs_only_the_items_that_need_it(tmp_path):
    from tests.test_cnn_architecture import RUBRIC as CNN, REFERENCE_SOURCE, submission

    source = REFERENCE_SOURCE.replace("nn.Linear(1024, 10)", "nn.Linear(#blank#, 10)", 1)
    line = next(i for i, text in enumerate(source.splitlines(), 1) if "nn.Linear(#blank#, 10)" in text)
    folder = submission(tmp_path, source)
    report = grading.grade(folder, CNN, items=["residual_block.downsample", "resnet50_layer4.layer3"], threads=2)
    results = {r.id: r for r in report.results}
    assert results["residual_block.downsample"].status == PASSED, results["residual_block.downsample"].message
    layer3 = results["resnet50_layer4.layer3"]
    assert layer3.points == 0 and "SyntaxError" in layer3.message and layer3.where == f"resnet50_skeleton.py:{line}"
    [problem] = report.problems
    assert problem["file"] == "resnet50_skeleton.py" and "SyntaxError" in problem["message"]
    assert not report.all_passed


@pytest.mark.parametrize("alias", ["q6", "Q6", "Question 6", "question6", "6"])
def test_questions_are_named_as_the_handout_numbers_them(alias, basics):
    from grader import in_notebook

    public = basics.public_view() if not basics.public else basics
    assert in_notebook.select(public, alias, REFERENCE / "pytorch_basics") == ["sequential_convnet"]
    assert questions.resolve(basics.items, [alias]) == ["sequential_convnet"]


def test_question_aliases_cover_ranges_and_grader_check_items(tmp_path, basics):
    assert questions.resolve(basics.items, ["q4"]) == ["ThreeLayerConvNet"]  # "Q3-4 ThreeLayerConvNet ..."
    done = run_cli("check", str(REFERENCE / "pytorch_basics"), "-r", str(RUBRIC), "--items", "Question 1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "three_layer_convnet " in done.stdout and "sequential_convnet" not in done.stdout


def test_an_unknown_question_is_refused_before_the_notebook_is_saved(tmp_path, monkeypatch):
    from grader import in_notebook, notebook_session

    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "PyTorch.ipynb").write_bytes((REFERENCE / "pytorch_basics" / "PyTorch.ipynb").read_bytes())
    (folder / "pytorch_basics.yaml").write_text(RUBRIC.read_text().replace("reference: ../reference_solutions/"
                                                                           "pytorch_basics\n", ""))
    saved = []
    monkeypatch.setattr(notebook_session, "save", lambda found, wait_s=5.0: saved.append(found) or "saved")
    result = in_notebook.check("q9", notebook=str(folder / "PyTorch.ipynb"), show=False)
    assert result.error and "no item or section 'q9'" in result.error and saved == []


def test_only_the_statements_that_do_not_parse_are_left_out_and_lines_keep_their_numbers():
    from grader.sandbox.partial_import import partial_source

    source = "import os\ndef f(:\n    pass\nclass A:\n    x = (\n\ny = 2\n"
    text, broken = partial_source(source, "f.py")
    assert text.splitlines()[6] == "y = 2" and "import os" in text and "def f" not in text and "class A" not in text
    assert [(b["names"], b["line"]) for b in broken] == [(["f"], 2), (["A"], 5)]
    assert partial_source("x = 1\n", "f.py") is None  # nothing to leave out
    assert partial_source("x = 1\n\x00\n", "f.py") is None  # not a blank: the error stands
