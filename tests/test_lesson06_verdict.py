"""Lesson 06's paired differences and its LIMA verdict, fed both outcomes."""

import math

import pytest
from lesson_loader import load_lesson


L = load_lesson("06_lima")


def test_paired_gold_is_the_mean_difference_per_prompt_with_its_se():
    results = {"a": {"all": {"gold_per_prompt": [0.9, 0.5, 0.7, 0.2]}},
               "b": {"all": {"gold_per_prompt": [0.6, 0.5, 0.4, 0.4]}}}
    d = [0.3, 0.0, 0.3, -0.2]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    got = L.paired_gold(results, "a", "b")
    assert got["mean"] == pytest.approx(mean) and got["se"] == pytest.approx(sd / 2) and got["n"] == 4


def diff(mean: float) -> dict:
    return {"mean": mean, "se": 0.01, "n": 100}


@pytest.mark.parametrize("quantity, reproduces, words", [(0.05, True, "curated one is better"),
                                                         (0.0, True, "no clear difference"),
                                                         (-0.05, False, "quantity still pays")])
def test_lima_verdict_both_ways(quantity, reproduces, words, capsys):
    got = L.verdict({"quantity": diff(quantity), "quality": diff(0.05), "diversity": diff(-0.05)})
    out = capsys.readouterr().out
    assert got["lima_reproduces"] is reproduces and words in out
    assert got["quality_matters"] is True and got["diversity_matters"] is False
    assert "quality at equal size: matters here" in out and "diversity at equal quality: does not show" in out


def test_format_constraint_pairs_the_follow_grades_per_family(capsys):
    follow = {"curated": {"uppercase": [1.0, 1.0, 0.5, 1.0], "name_three": [0.5, 0.5, 0.5, 0.5]},
              "curated_no_format": {"uppercase": [0.5, 0.0, 0.5, 0.5], "name_three": [0.5, 0.5, 0.5, 0.5]}}
    got = L.format_constraint(follow, 4)
    d = [0.5, 1.0, 0.0, 0.5]
    mean = sum(d) / 4
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 3) / 2
    assert got["uppercase"]["difference"]["mean"] == pytest.approx(mean)
    assert got["uppercase"]["difference"]["se"] == pytest.approx(se)
    assert got["uppercase"]["with"] == pytest.approx(0.875) and got["uppercase"]["without"] == pytest.approx(0.375)
    out = capsys.readouterr().out
    assert "teaches the format" in out and "no clear change" in out          # name_three: no difference
