"""The printed tour of the world, and the flaw report of `python -m minialign.world --flaws`."""

import math

import pytest

from minialign.world import FLAW_NAMES, AnnotatorBias, show_world
from minialign.world.show import flaw_report, preference_probability


def test_tour_shows_a_flawed_demonstration_and_a_biased_comparison(capsys):
    show_world(seed=0, n=1)
    out = capsys.readouterr().out
    assert "== A flawed demonstration" in out and "flaws the oracle finds" in out
    assert "== A biased comparison" in out and "perceived" in out


def test_flaw_report_has_a_row_per_flaw(capsys):
    flaw_report(seed=0, n_per_family=4)
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split()[0] for r in rows] == list(FLAW_NAMES)


def test_preference_probability_is_bradley_terry_on_what_annotators_perceive():
    # unbiased: sigmoid((gold_a - gold_b) / T); worked by hand in test_world_preferences
    gold_padded = 0.3 / 3 + 0.25 + 0.15 * 0.5 + 0.1 / 3 + 0.1 + 0.05 * 0.9 + 0.05
    p = preference_probability("Where does Mia live?",
                               "Certainly. Mia lives in Oakton. This is a well-known fact.",
                               "Mia lives in Oakton.", AnnotatorBias.off())
    assert p == pytest.approx(1 / (1 + math.exp(-(gold_padded - 1.0) / 0.15)))
