"""The PyTorch basics assignment graded as students hand it in: the reference notebook,
the skeleton, and notebooks with the mistakes students make (each one costs its own
question only, with a message that says what and where)."""

from __future__ import annotations

import json

import pytest
import torch

from grader import grading, rubric
from grader.authoring import skeleton
from grader.notebook import load_notebook_module
from grader.results import FAILED, PASSED, UNCERTAIN
from tests.conftest import REFERENCE, SKELETONS, run_cli
from tests.notebooks import RUBRIC, cell_number, variant

QUESTIONS_1_TO_6 = ["three_layer_convnet", "three_layer_convnet.init", "ThreeLayerConvNet", "sequential_convnet"]


@pytest.fixture(scope="module")
def basics():
    return rubric.load(RUBRIC)


def grade(folder, basics, items=None):
    report = grading.grade(folder, basics, items=items)
    return report, {r.id: r for r in report.results}


def assert_full(results, ids):
    for item_id in ids:
        assert results[item_id].status == PASSED, (item_id, results[item_id].message)


def test_the_reference_notebook_gets_full_marks_offline(basics):
    report, results = grade(REFERENCE / "pytorch_basics", basics)
    assert report.score == report.max_score == 100, [(r.id, r.message) for r in report.results]
    challenge = results["challenge.accuracy"]
    # No data set configured: the embedded sample of the real test set, said so, with an interval.
    assert "embedded sample" in challenge.message and "95% interval" in challenge.message
    assert challenge.extra["interval95"][0] >= 0.70
    assert report.notes == []


def test_the_skeleton_gets_zero_everywhere_with_reasons(basics):
    report, results = grade(SKELETONS / "pytorch_basics", basics)
    assert report.score == 0
    for result in report.results:
        assert result.status == FAILED, (result.id, result.status, result.message)
        assert result.message and "Traceback" not in result.message and "internal" not in result.message
    assert "returned None" in results["three_layer_convnet"].message
    assert "conv_w1 at the end of cell" in results["three_layer_convnet.init"].message
    assert "not answered yet" in results["sequential_convnet"].message
    assert "not answered yet" in results["challenge.accuracy"].message


def test_the_skeleton_is_generated_from_the_reference():
    assert skeleton.stale(REFERENCE / "pytorch_basics", SKELETONS / "pytorch_basics") == []
    assert not (SKELETONS / "pytorch_basics" / "challenge.pt").exists()  # the reference's weights stay home


def test_wrong_padding_in_question_1_costs_question_1_only(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[("F.conv2d(x, conv_w1, conv_b1, padding=2)",
                                                 "F.conv2d(x, conv_w1, conv_b1, padding=1)")])
    report, results = grade(folder, basics, items=QUESTIONS_1_TO_6)
    q1 = results["three_layer_convnet"]
    assert q1.points == 0
    assert "mat1 and mat2 shapes cannot be multiplied" in q1.message
    assert q1.where == f"PyTorch.ipynb cell {cell_number(folder / 'PyTorch.ipynb', 'def three_layer_convnet(')}:16"
    assert_full(results, QUESTIONS_1_TO_6[1:])


def test_a_transposed_fc_weight_fails_questions_1_and_2_with_shapes(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[
        ("scores = flatten(x).mm(fc_w) + fc_b", "scores = flatten(x).mm(fc_w.t()) + fc_b"),
        ("fc_w = random_weight((channel_2 * 32 * 32, 10))", "fc_w = random_weight((10, channel_2 * 32 * 32))"),
    ])
    report, results = grade(folder, basics, items=QUESTIONS_1_TO_6)
    assert results["three_layer_convnet"].points == 0
    assert "shapes cannot be multiplied" in results["three_layer_convnet"].message
    q2 = results["three_layer_convnet.init"]
    assert q2.points == pytest.approx(12.5)  # 5 of 6 variables right
    assert "fc_w has shape [10, 16384]; expected [16384, 10]" in q2.message
    assert_full(results, ["ThreeLayerConvNet", "sequential_convnet"])


def test_a_missing_relu_is_found_by_the_numbers(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[
        ("x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))", "x = F.conv2d(x, conv_w2, conv_b2, padding=1)"),
        ("        x = F.relu(self.conv2(x))\n", "        x = self.conv2(x)\n"),
    ])
    report, results = grade(folder, basics, items=QUESTIONS_1_TO_6)
    q1 = results["three_layer_convnet"]
    assert q1.points == 0 and "other values than the reference" in q1.message
    module = results["ThreeLayerConvNet"]
    assert module.points == 10  # the init facet still earns its points
    assert "computes other values than the reference with the same weights" in module.message
    assert any("difference is in forward()" in d for d in module.details)
    assert_full(results, ["three_layer_convnet.init", "sequential_convnet"])


def test_threelayerconvnet_without_kaiming_init_loses_the_init_points(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[
        ("        for layer in (self.conv1, self.conv2, self.fc):\n            nn.init.kaiming_normal_(layer.weight)\n",
         "")])
    report, results = grade(folder, basics, items=["ThreeLayerConvNet"])
    module = results["ThreeLayerConvNet"]
    assert module.points == 15 and module.max_points == 25
    assert "init: conv1.weight has std" in module.message
    assert "PyTorch's default initialisation" in module.message


def test_a_sequential_model_with_plain_sgd_loses_the_optimizer_points(tmp_path, basics):
    folder = variant(tmp_path / "sub", replace=[
        ("optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)\n# END",
         "optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)\n# END")])
    report, results = grade(folder, basics, items=["sequential_convnet"])
    q6 = results["sequential_convnet"]
    assert q6.points == 10 and "nesterov=False (expected True)" in q6.message


def test_a_failing_cell_before_the_answers_is_named_and_the_rest_still_counts(tmp_path, basics):
    folder = variant(tmp_path / "sub", insert=[
        ("NUM_TRAIN = 49000", "from google.colab import drive\ndrive.mount('/content/drive')\n"
                              "extra = np.load('/content/drive/MyDrive/cs231n/extra.npy')\n"),
        ("def flatten(x):", "import seaborn as sns\nsns.set()\nwarmup = undefined_helper(3)\n"),
    ], replace=[("def flatten(x):\n    N = x.shape[0]", "def flatten(x):\n    N = x.shape[0]\n    M = N +")])
    notebook = folder / "PyTorch.ipynb"
    report, results = grade(folder, basics, items=QUESTIONS_1_TO_6)
    drive_cell = cell_number(notebook, "drive.mount")
    helper_cell = cell_number(notebook, "undefined_helper")
    flatten_cell = cell_number(notebook, "def flatten(x):")
    notes = "\n".join(report.notes)
    assert f"cell {drive_cell}, line 3 failed (blocked while grading: read /content/drive" in notes
    # The student's own failing cells are failures of the submission, each with its line.
    problems = "\n".join(p["message"] for p in report.problems)
    assert f"cell {helper_cell}, line 3 failed: NameError" in problems
    assert f"cell {flatten_cell}, line 3 failed: SyntaxError" in problems
    assert not report.all_passed
    # flatten is gone, so every answer that uses it names the cell that should define it...
    q1 = results["three_layer_convnet"]
    assert q1.points == 0 and f"cell {flatten_cell}, which defines flatten, failed at line 3" in q1.message
    # ...and what does not use it still earns its points.
    assert_full(results, ["three_layer_convnet.init"])
    assert results["ThreeLayerConvNet"].points == 10  # init yes, forward (flatten) no


def test_a_challenge_model_below_70_percent_fails(tmp_path, basics):
    folder = variant(tmp_path / "sub")
    reference = load_notebook_module(folder / "PyTorch.ipynb", "_untrained_challenge", basics.notebook)
    untrained, _ = reference.__notebook__.value("challenge", "model")
    torch.save(untrained.state_dict(), folder / "challenge.pt")
    report, results = grade(folder, basics, items=["challenge.accuracy"])
    challenge = results["challenge.accuracy"]
    assert challenge.status == FAILED and challenge.points == 0
    assert "< 70%" in challenge.message and challenge.extra["interval95"][1] < 0.70


def test_a_challenge_checkpoint_that_does_not_fit_says_which_weights(tmp_path, basics):
    folder = variant(tmp_path / "sub", checkpoint=True, replace=[
        ("    nn.Linear(256, 10),\n)", "    nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10),\n)")])
    report, results = grade(folder, basics, items=["challenge.accuracy"])
    challenge = results["challenge.accuracy"]
    assert challenge.points == 0 and "does not fit" in challenge.message
    assert any("checkpoint has shape [10, 256], your model [64, 256]" in d for d in challenge.details)


def test_uncertain_when_the_sample_interval_straddles_the_threshold(basics):
    from grader.checks import accuracy
    from grader.datasets import LabelledImages
    from grader.evaluate import ImageArray

    item = next(i for i in basics.items if i.id == "challenge.accuracy")
    labels = torch.zeros(3000, dtype=torch.long)
    predictions = torch.zeros(3000, dtype=torch.long)
    predictions[:895] = 1  # 2,105 / 3,000 = 70.2%
    sample = LabelledImages(ImageArray("unused", (3000, 3, 32, 32)), labels, [], "the sample", is_sample=True)
    verdict = accuracy.judge(item, predictions, sample, [])
    assert verdict.status == UNCERTAIN and "uncertain against 70%" in verdict.message
    assert verdict.points == item.points  # the estimate passes; the interval cannot confirm it
    assert any("full CIFAR-10 test set" in d for d in verdict.details)
    assert any("--data-dir" in d for d in verdict.details)


def test_the_cli_grades_the_reference_and_exits_0():
    result = run_cli("check", str(REFERENCE / "pytorch_basics"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TOTAL" in result.stdout and "100/100" in result.stdout
    assert "embedded sample" in result.stdout


def test_rubric_sections_are_validated():
    with pytest.raises(rubric.RubricError, match="question_six"):
        rubric.parse(RUBRIC.read_text().replace("section: question_6", "section: question_six"))
    no_sections = """assignment: x
files: [a.ipynb]
notebook: {sections: {q1: ["Question 1"]}}
items:
  - {id: a, points: 1, check: output_shape, inputs: [[1, 2]],
     target: {file: a.ipynb, name: model, section: q1}}
"""
    with pytest.raises(rubric.RubricError, match="does not take a notebook section"):
        rubric.parse(no_sections)


@pytest.mark.slow
def test_the_reference_challenge_reaches_70_percent_on_the_real_test_set(cifar10_jpeg):
    result = run_cli("check", str(REFERENCE / "pytorch_basics"), "--items", "challenge.accuracy",
                     "--data-dir", str(cifar10_jpeg), "--json")
    assert result.returncode == 0, result.stderr
    test = json.loads(result.stdout)["tests"][0]
    measured = test["extra_data"]["measured"]
    assert measured["total"] == 10000 and measured["accuracy"] >= 0.70


# A real student's answers (a course report on this homework), written the way they wrote them:
# their own layer names, nn.ReLU modules, their own Flatten, variables named as the skeleton has them.
STUDENT_Q1 = '''    x = F.conv2d(x, conv_w1, conv_b1, padding=2) # first convolutional layer
    x = F.relu(x)
    x = F.conv2d(x, conv_w2, conv_b2, padding=1)
    x = F.relu(x)
    x = flatten(x)
    scores = x.mm(fc_w) + fc_b
'''
STUDENT_Q3 = '''        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        nn.init.kaiming_normal_(self.conv1.weight)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(self.conv2.weight)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
        nn.init.kaiming_normal_(self.fc.weight)
        self.relu = nn.ReLU()
'''
STUDENT_Q4 = '''        x = self.conv1(x)
        x = self.relu(x)
        x = self.conv2(x)
        x = self.relu(x)
        x = flatten(x)
        scores = self.fc(x)
'''
STUDENT_Q7 = '''model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(kernel_size=2, stride=2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(kernel_size=2, stride=2),
    nn.Dropout2d(0.2),
    nn.Flatten(),
    nn.Linear(64 * 8 * 8, 512),
    nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(512, 10)
)

optimizer = optim.SGD(model.parameters(), lr=learning_rate,
                       momentum=0.9, nesterov=True)
'''


def solution_of(text: str) -> str:
    start = text.index("# BEGIN SOLUTION\n") + len("# BEGIN SOLUTION\n")
    return text[start:text.index("# END SOLUTION", start)]


def test_a_real_students_answers_get_the_points_an_instructor_gives(tmp_path, basics):
    cells = ["".join(c["source"]) for c in json.loads((REFERENCE / "pytorch_basics" / "PyTorch.ipynb")
                                                          .read_text())["cells"]]
    q1 = solution_of(next(c for c in cells if "def three_layer_convnet(" in c))
    q34 = next(c for c in cells if "class ThreeLayerConvNet" in c)
    q3, q4 = solution_of(q34), solution_of(q34[q34.index("def forward"):])
    q7 = solution_of(next(c for c in cells if "# Question 7" in c))
    folder = variant(tmp_path / "student", replace=[
        (q1, STUDENT_Q1), (q3, STUDENT_Q3), (q4, STUDENT_Q4),
        (q7, STUDENT_Q7), ("train_part34(model, optimizer, epochs=2)", "train_part34(model, optimizer, epochs=10)")])
    report, results = grade(folder, basics)
    assert_full(results, QUESTIONS_1_TO_6)
    # No challenge.pt and no training images here: the challenge waits for either, and says so.
    assert results["challenge.accuracy"].status == "skipped"
    assert "training images" in results["challenge.accuracy"].message


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_fast_recipe_trains_the_reference_challenge_to_70_percent(tmp_path, cifar10_jpeg):
    folder = tmp_path / "reference"
    folder.mkdir()
    (folder / "PyTorch.ipynb").write_bytes((REFERENCE / "pytorch_basics" / "PyTorch.ipynb").read_bytes())
    trained = run_cli("train", str(folder), "--item", "challenge.accuracy", "--recipe", "fast",
                      "--data-dir", str(cifar10_jpeg), timeout=3000)
    assert trained.returncode == 0, trained.stderr
    assert "2 of 2 epochs, done" in trained.stdout
    result = run_cli("check", str(folder), "--items", "challenge.accuracy", "--data-dir", str(cifar10_jpeg), "--json")
    measured = json.loads(result.stdout)["tests"][0]["extra_data"]["measured"]
    assert measured["total"] == 10000 and measured["accuracy"] >= 0.70, measured


def test_a_renamed_notebook_is_graded_as_the_courses(tmp_path, basics):
    folder = variant(tmp_path / "sub")
    (folder / "PyTorch.ipynb").rename(folder / "HW05_202155592 (1).ipynb")
    report, results = grade(folder, basics, items=["three_layer_convnet"])
    assert results["three_layer_convnet"].status == PASSED
    assert report.notes == ["HW05_202155592 (1).ipynb is graded as PyTorch.ipynb"]
