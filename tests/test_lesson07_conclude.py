"""Lesson 07's conclusions follow the numbers: each fed both outcomes."""

from lesson_loader import load_lesson


L = load_lesson("07_reward_model")


def hits(acc, n=40):
    """Per-prompt oracle hit rates with mean `acc`, spread +-1/6 (pairs of prompts)."""
    return [acc + (1 / 6 if i % 2 else -1 / 6) for i in range(n)]


def inputs(first_acc, last_acc, ratings_acc, comparisons_agree, ratings_agree, pad_acc, rating_hits=None):
    curve = lambda a, b, h=None: [  # noqa: E731
        {"prompts": 50, "labels": 300, "accuracy_vs_oracle": a, "oracle_hits": hits(a)},
        {"prompts": 400, "labels": 2400, "accuracy_vs_oracle": b, "oracle_hits": h or hits(b)}]
    res = {"comparisons": curve(first_acc, last_acc), "ratings": curve(first_acc, ratings_acc, rating_hits),
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
    assert "Here more comparisons did NOT help" in out and "ratings win" in out and "-15.0 ± 0.0 points" in out
    assert "ratings were the more reliable labels" in out and "ABOVE the reference" not in out


def test_comparisons_vs_ratings_within_noise_is_no_verdict(capsys):
    """Ratings 2 points behind on average, but prompt by prompt the difference swings by +-37 points: the
    paired standard error (5.9 points over 40 prompts) leaves it undecided."""
    noisy = [0.70 - 0.02 - (0.2 if i % 2 else -0.2) for i in range(40)]
    L.conclude(*inputs(0.60, 0.70, 0.68, 0.65, 0.60, 0.1, rating_hits=noisy))
    out = capsys.readouterr().out
    assert "no clear difference" in out and "+2.0 ± 5.9 points over 40 prompts" in out
    assert "comparisons win" not in out and "ratings win" not in out
