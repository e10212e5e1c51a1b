"""Non-finite weights fail every initialisation check (NaN compares False with every bound,
so a check of mean and spread alone would let all-NaN weights through)."""

from __future__ import annotations

import pytest
import torch

from grader import grading, rubric
from grader.initialization import Expectation, judge
from tests.notebooks import RUBRIC, variant


@pytest.mark.parametrize("scheme", ["kaiming", "kaiming_normal", "kaiming_uniform", "zeros", "reference"])
@pytest.mark.parametrize("value, what", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_every_scheme_refuses_non_finite_weights(scheme, value, what):
    weights = torch.nn.init.kaiming_normal_(torch.empty(64, 32, 3, 3))
    reference = weights.clone()
    for broken in (torch.full_like(weights, value), weights.clone().index_fill_(0, torch.tensor([3]), value)):
        ok, looks = judge(broken, Expectation(init=scheme), reference)
        assert not ok and what in looks and "must be finite" in looks, (scheme, looks)
    assert judge(weights, Expectation(init="kaiming_normal"), reference)[0]  # the same weights, finite, pass


def test_a_model_whose_weights_are_nan_fails_its_init_facet(tmp_path):
    kaiming = "            nn.init.kaiming_normal_(layer.weight)\n"
    folder = variant(tmp_path / "sub", replace=[(kaiming, kaiming + "            layer.weight.data.fill_(float('nan'))\n")])
    report = grading.grade(folder, rubric.load(RUBRIC), items=["ThreeLayerConvNet"])
    [result] = report.results
    assert "init: conv1.weight holds 2,400 NaN values (of 2,400); initialised weights must be finite numbers; "\
           "and 2 more" in result.message
    assert result.points < result.max_points
