"""A difference is a finding only when it survives the seed (atrlib.retrieval.summaries.seed_verdict)
and the sentence says so (atrlib.runs.report_text.seed_finding)."""
import numpy as np
import pytest

from atrlib.retrieval.summaries import seed_verdict
from atrlib.runs.report_text import seed_finding


def test_every_seed_agrees_and_the_test_is_significant():
    v = seed_verdict([0.030, 0.025, 0.035], p_value=0.004)
    assert v["n"] == 3 and v["mean"] == pytest.approx(0.03) and v["sd"] == pytest.approx(np.std([0.03, 0.025, 0.035], ddof=1))
    assert (v["low"], v["high"], v["same_sign"]) == (0.025, 0.035, 3) and v["distinguishable"]
    text = seed_finding(v, "greedy", "the best single system")
    assert "**greedy beats the best single system** in every one of 3 seeds" in text and "+0.030" in text


@pytest.mark.parametrize("diffs, p, why", [
    ([0.02, -0.01, 0.015], 0.01, "the seed spread covers the difference"),       # a seed disagrees
    ([0.002, 0.030, 0.001], 0.01, "the seed spread covers the difference"),      # mean 0.011 < sd 0.017
    ([0.02, 0.025, 0.03], 0.20, "the paired test is not significant"),
    ([0.05], 0.001, "one seed cannot show it"),
])
def test_not_distinguishable(diffs, p, why):
    v = seed_verdict(diffs, p_value=p)
    assert not v["distinguishable"]
    text = seed_finding(v, "vicreg", "infonce")
    assert "**vicreg is not distinguishable from infonce**" in text and why in text


def test_a_loss_below_the_baseline_in_every_seed_is_a_finding_too():
    v = seed_verdict([-0.05, -0.04, -0.06], p_value=0.0001)
    assert v["distinguishable"] and "falls below" in seed_finding(v, "pair_loss", "infonce")
    assert "p < 0.001" in seed_finding(v, "pair_loss", "infonce")


def test_no_difference_and_no_seed():
    assert not seed_verdict([0.0, 0.0], p_value=None)["distinguishable"]
    with pytest.raises(ValueError):
        seed_verdict([])
    assert seed_finding(None, "a", "b") == ""
