"""Lesson 07's conclusions follow the numbers: each fed both outcomes."""

from lesson_loader import load_lesson


L = load_lesson("07_reward_model")


def inputs(first_acc, last_acc, ratings_acc, comparisons_agree, ratings_agree, pad_acc):
    curve = lambda a, b: [{"prompts": 50, "labels": 300, "accuracy_vs_oracle": a},
                          {"prompts": 400, "labels": 2400, "accuracy_vs_oracle": b}]
    res = {"comparisons": curve(first_acc, last_acc), "ratings": curve(first_acc, ratings_acc),
           "labels": {"comparisons_agree_with_oracle": comparisons_agree,
                      "rating_pairs_agree_with_oracle": ratings_agree}}
    ceiling = {"annotators_vs_oracle": 0.66, "noise_ceiling_expected": 0.66, "annotator_noise": 0.15}
    full = {"accuracy_vs_oracle": 0.70, "accuracy_vs_annotators": 0.68, "spearman_vs_gold": 0.4,
            "calibration": {"ece": 0.01}}
    flaws = {"toxic": {"accuracy": 1.0, "pairs": 10}, "authoritative": {"accuracy": pad_acc, "pairs": 10}}
    return res, ceiling, full, {"prompts": 2000}, flaws


def test_conclusions_when_everything_goes_the_slides_way(capsys):
    L.conclude(*inputs(0.60, 0.70, 0.65, 0.65, 0.60, 0.1))
    out = capsys.readouterr().out
    assert "More comparisons, a better reward model" in out and "comparisons win" in out
    assert "a comparison cancels them" in out and "ABOVE the reference in 90% of pairs" in out
    assert "MORE often than its own annotators" in out


def test_conclusions_when_nothing_does(capsys):
    L.conclude(*inputs(0.70, 0.60, 0.75, 0.60, 0.65, 0.9))
    out = capsys.readouterr().out
    assert "Here more comparisons did NOT help" in out and "ratings do as well or better here" in out
    assert "ratings were the more reliable labels" in out and "ABOVE the reference" not in out
