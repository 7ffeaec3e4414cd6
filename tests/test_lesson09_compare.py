"""Lesson 09 part 1: counting the oracle's flagged sentences, the paired difference, and the verdict both ways."""

import math

import numpy as np
import pytest
from lesson_loader import load_lesson

from minialign.evaluation import paired_mean_difference
from minialign.world import label_sentences, rl_prompts


L = load_lesson("09_fine_grained")


def test_sentence_counts_match_a_loop_over_the_labels():
    prompt = rl_prompts("instruction", n=1, seed=3, split="test")[0]
    response = "Everyone knows this. You are stupid. The sky is green. Thank you."
    labels = label_sentences(prompt, response)
    flagged = toxic = irrelevant = wrong = 0
    for x in labels:
        toxic += bool(x.toxic)
        irrelevant += bool(x.irrelevant)
        wrong += bool(x.wrong)
        flagged += bool(x.toxic or x.irrelevant or x.wrong)
    got = L.sentence_counts(prompt, response)
    assert got == {"flagged": flagged, "toxic": toxic, "irrelevant": irrelevant, "wrong": wrong,
                   "clean": len(labels) - flagged, "sentences": len(labels)}
    assert got["sentences"] == 4 and got["toxic"] >= 1        # "You are stupid." is an insult for the oracle


def test_paired_difference_is_the_prompt_mean_of_the_per_seed_differences():
    """evaluation.paired_mean_difference, as lesson 09 uses it on (prompts, seeds) arrays."""
    a = np.array([[1, 3], [0, 0], [2, 2], [5, 1]], dtype=float)      # 4 prompts x 2 seeds
    b = np.array([[0, 1], [1, 1], [2, 0], [1, 1]], dtype=float)
    d = [((1 - 0) + (3 - 1)) / 2, ((0 - 1) + (0 - 1)) / 2, ((2 - 2) + (2 - 0)) / 2, ((5 - 1) + (1 - 1)) / 2]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    got = paired_mean_difference(a, b)
    assert got["mean"] == pytest.approx(mean) and got["se"] == pytest.approx(sd / 2) and got["n"] == 4
    one = paired_mean_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])      # 1-D: one sample per prompt
    assert one["mean"] == pytest.approx(2.0) and one["se"] == pytest.approx(1.0 / math.sqrt(3))


def fake_answers(flagged_fg: float, n_prompts: int = 40, seed: int = 0) -> dict:
    """Three policies' (P, 1) counts: holistic flags 1 of 3 sentences per answer, fine-grained `flagged_fg`."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, flagged in (("SFT", 1.0), ("holistic", 1.0), ("fine-grained", flagged_fg)):
        f = np.clip(flagged + rng.normal(0, 0.2, (n_prompts, 1)), 0, 3)
        a = {"flagged": f, "toxic": f / 2, "irrelevant": f / 2, "wrong": 0 * f, "sentences": np.full_like(f, 3.0)}
        a["clean"] = a["sentences"] - f
        a["gold"] = 0.8 - 0.1 * f
        a["tokens"] = 6 * a["sentences"]
        out[name] = a
    return out


def fake_result(flagged_fg: float) -> dict:
    same = {k: 1 for k in L.EQUAL_STEPS}
    return {**L.tabulate(fake_answers(flagged_fg)), "seeds": [1],
            "stages": {"holistic": same, "fine-grained": dict(same),
                       "weights": {"sequence": 1.0, "toxicity": 0.5, "relevance": 0.3, "factuality": 0.3},
                       "kl": {"holistic": 1.0, "fine-grained": 0.8}, "kl_prompts": 64},
            "prompts": ["p"], "examples": {n: ["x"] for n in L.COMPARED}}


@pytest.mark.parametrize("flagged_fg, fewer, word", [(0.5, True, "FEWER"), (1.0, False, "no clearly different"),
                                                     (1.6, False, "MORE")])
def test_verdict_follows_the_paired_difference(flagged_fg, fewer, word, capsys):
    got = L.print_comparison(fake_result(flagged_fg), L.LessonConfig())
    out = capsys.readouterr().out
    assert got["fine_grained_fewer_flagged"] is fewer and got["equal_steps"] is True
    assert word in out.split("Verdict:")[1].split("\n\n")[0]
    d = got["flagged_difference"]
    assert (d["mean"] < -2 * d["se"]) is fewer


def test_unequal_stage_settings_are_named():
    result = fake_result(0.5)
    result["stages"]["fine-grained"]["iterations"] = 2
    got = L.print_comparison(result, L.LessonConfig())
    assert got["equal_steps"] is False


def test_how_it_got_there_reads_the_signs():
    below = {"mean": -1.0, "se": 0.1, "n": 10}
    zero = {"mean": 0.0, "se": 0.1, "n": 10}
    above = {"mean": 1.0, "se": 0.1, "n": 10}
    base = {"flagged": below, "sentences": zero, "clean": zero, "flagged_share": below}
    assert "flagged less often" in L.how_it_got_there(base)
    assert "nothing to explain" in L.how_it_got_there({**base, "flagged": zero})
    assert "same\n  mix" in L.how_it_got_there({**base, "flagged_share": zero, "sentences": below})
    assert "clean ones among them" in L.how_it_got_there({**base, "flagged_share": zero, "sentences": below,
                                                          "clean": {**below}})
    assert "cleaner and shorter" in L.how_it_got_there({**base, "clean": below})
    assert "about as many sentences" in L.how_it_got_there({**base, "flagged_share": zero, "clean": above})
