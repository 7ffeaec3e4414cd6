"""Preference data (Bradley-Terry annotators), ratings, RL prompt sets and the LIMA sets."""

import math
from dataclasses import replace
from itertools import combinations

import pytest

from random import Random

from minialign.world import (DEFAULT_NOISE, RL_KINDS, AnnotatorBias, demonstrate, gold_reward,
                             instruction_data, lima_sets, perceived_reward, preference_data,
                             preference_pairs, rank_responses, rating_data, ratings_to_pairs,
                             rl_prompts)
from minialign.world.text import toxicity

OFF = AnnotatorBias.off()


def _agreement(pairs):
    return sum(p.gold_chosen > p.gold_rejected for p in pairs) / len(pairs)


def test_rankings_shape_and_pairs():
    rankings = preference_data(seed=0, n_prompts=50, K=4)
    assert len(rankings) == 50
    for r in rankings:
        assert len(r.responses) == 4 == len(set(r.responses)) == len(r.gold) == len(r.flaws)
        assert "reference" in r.flaws
        pairs = r.pairs()
        assert len(pairs) == math.comb(4, 2)
        expected = [(r.responses[i], r.responses[j]) for i, j in combinations(range(4), 2)]
        assert [(p.chosen, p.rejected) for p in pairs] == expected
        for response, g in zip(r.responses, r.gold):
            assert g == gold_reward(r.prompt, response).total


def test_deterministic():
    a = preference_data(seed=5, n_prompts=20)
    b = preference_data(seed=5, n_prompts=20)
    c = preference_data(seed=6, n_prompts=20)
    assert [(r.prompt, r.responses) for r in a] == [(r.prompt, r.responses) for r in b]
    assert [(r.prompt, r.responses) for r in a] != [(r.prompt, r.responses) for r in c]


def test_noise_zero_always_prefers_the_higher_gold():
    pairs = preference_pairs(preference_data(seed=1, n_prompts=300, K=5, noise=0.0, bias=OFF))
    assert all(p.gold_chosen > p.gold_rejected for p in pairs)


def test_noise_zero_with_bias_follows_the_perceived_reward():
    rankings = preference_data(seed=1, n_prompts=300, K=5, noise=0.0)
    assert all(r.perceived == sorted(r.perceived, reverse=True) for r in rankings)
    # ... which is not the gold's order: the bias turns some pairs around
    assert 0 < sum(p.gold_chosen < p.gold_rejected for p in preference_pairs(rankings))


def test_default_noise_matches_bradley_terry():
    pairs = preference_pairs(preference_data(seed=0, n_prompts=1500, K=4, bias=OFF))
    # Bradley-Terry, computed directly: P(y_w is the higher-gold one) = sigmoid(|g_a - g_b| / T)
    predicted = sum(1 / (1 + math.exp(-abs(p.gold_chosen - p.gold_rejected) / DEFAULT_NOISE))
                    for p in pairs) / len(pairs)
    observed = _agreement(pairs)
    assert abs(observed - predicted) < 0.02
    assert 0.7 < observed < 0.9  # noisy, like real labelers


def test_biased_rankings_are_bradley_terry_on_the_perceived_reward():
    rankings = preference_data(seed=0, n_prompts=1500, K=4)
    pairs = [(r.perceived[i], r.perceived[j]) for r in rankings for i, j in combinations(range(4), 2)]
    predicted = sum(1 / (1 + math.exp(-abs(a - b) / DEFAULT_NOISE)) for a, b in pairs) / len(pairs)
    observed = sum(a > b for a, b in pairs) / len(pairs)
    assert abs(observed - predicted) < 0.02


def test_pairwise_comparisons_beat_miscalibrated_ratings():
    """Miscalibration alone (bias off): with the bias on, both kinds of label share it."""
    pairwise = _agreement(preference_pairs(preference_data(seed=0, n_prompts=1500, K=4, bias=OFF)))
    ratings = rating_data(seed=0, n_prompts=1500, K=4, bias=OFF)
    assert all(1 <= r.rating <= 7 for r in ratings)
    assert len({r.annotator for r in ratings}) == 8
    from_ratings = _agreement(ratings_to_pairs(ratings))
    assert from_ratings < pairwise - 0.02


def test_rl_prompts():
    for kind in RL_KINDS:
        prompts = rl_prompts(kind, n=40, seed=0)
        assert len(prompts) == 40 and all(p.prompt for p in prompts)
    toxic = rl_prompts("toxic", n=40, seed=0)
    assert all("angry" in p.meta["prefix"] or "shouted" in p.meta["prefix"] for p in toxic)
    assert all(toxicity(p.response) == 0 for p in toxic)
    sentiment = rl_prompts("sentiment", n=40, seed=0)
    assert {p.family for p in sentiment} == {"review", "story"}
    instruction = rl_prompts("instruction", n=40, seed=0)
    assert all(p.split == "test" for p in instruction)
    with pytest.raises(ValueError):
        rl_prompts("nope", n=1)


def test_lima_sets():
    sets = lima_sets(seed=0, n_large=600)
    curated, noisy, low = sets["curated"], sets["noisy"], sets["low_diversity"]
    assert 50 <= len(curated) <= 150 and len(noisy) == len(low) == 600
    mean = lambda xs: sum(gold_reward(e.prompt, e.response).total for e in xs) / len(xs)
    assert mean(curated) > mean(noisy) + 0.05
    assert sum("flaw" in e.meta for e in noisy) > 150                 # measured 317 of 600
    # the flaws are the demonstrators' (demonstrators.py), as the detector reads them off the text
    from minialign.world import response_flaws
    for e in noisy:
        found = {name for name, shown in response_flaws(e.prompt, e.response).items() if shown}
        assert found == set(e.meta["flaws"])
        assert (e.response == e.meta["reference"]) == (not found)
    assert len({e.family for e in curated}) > 20 > 3 == len({e.family for e in low})
    assert {e.template_id for e in low} == {0}


def test_rl_prompt_splits_never_share_a_text():
    """Sentiment, toxic and story prompts recur across seeds; 'train' and 'test' keep disjoint texts."""
    for kind in ("sentiment", "toxic", "story"):
        train = {e.prompt for e in rl_prompts(kind, n=300, seed=0, split="train")}
        test = {e.prompt for e in rl_prompts(kind, n=100, seed=1, split="test")}
        assert train and test and not train & test
        assert len(rl_prompts(kind, n=50, seed=0, split="test")) == 50
        if kind != "sentiment":                        # the same opening under another template: still held out
            openings = lambda split, seed, n: {e.meta["prefix"] for e in rl_prompts(kind, n=n, seed=seed, split=split)}
            assert not openings("train", 0, 300) & openings("test", 1, 100)


def test_story_prompts_mix_calm_and_angry_openings_and_keep_the_prefix():
    openings = [e.meta["prefix"] for e in rl_prompts("story", n=200, seed=0)]
    angry = [p for p in openings if "angry" in p or "shouted" in p]
    assert 0.3 < len(angry) / len(openings) < 0.7
    for e in rl_prompts("story", n=20, seed=3):
        assert e.meta["prefix"] in e.prompt


def test_story_completeness_worked_out_by_hand():
    from minialign.world import story_completeness
    opening = "Ben took the ball from Mia. Mia was angry and said"        # people and things: ben, ball, mia
    assert story_completeness(opening, "") == 0.0
    assert story_completeness(opening, " Give it back, Ben!") == pytest.approx(1 / 3)
    assert story_completeness(opening, " Ben gave the ball back to Mia.") == 1.0
    assert story_completeness(opening, " Tom found a kite.") == 0.0      # other people and things do not count
    assert story_completeness("It was a sunny day.", "Anything.") == 1.0   # nothing to bring back


# --- the annotators' bias: "seem authoritative and helpful, regardless of truth" -------------------
QA = "Where does Mia live?"  # Mia lives in Oakton; a home_qa answer's length budget is 10 words
PLAIN = "Mia lives in Oakton."
PADDED = "Certainly. Mia lives in Oakton. This is a well-known fact."
CONFIDENT_WRONG = "Certainly. Mia lives in Riverby."
BIAS = AnnotatorBias(check_rate=0.5, confidence=0.35, max_claims=2, length=0.1)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _perceived_by_hand():
    """(plain, padded, confident wrong checked, confident wrong unchecked), worked out by hand.

    p = (gold components of the text without its authoritative sentences . weights
         + 0.35 * sure + 0.1 * long) / (1 + 0.35 + 0.1);  sure = 1/2 + claims / 4, long = words / 20.
    The text read is "Mia lives in Oakton." (gold 1) or "Mia lives in Riverby." (correct 0: 0.7;
    taken at face value, unchecked: 1).
    """
    plain = (1.0 + 0.35 * 0.5 + 0.1 * 4 / 20) / 1.45          # 4 words, no claim
    padded = (1.0 + 0.35 * 1.0 + 0.1 * 11 / 20) / 1.45        # 11 words, 2 claims
    wrong_checked = (0.7 + 0.35 * 0.75 + 0.1 * 5 / 20) / 1.45  # 5 words, 1 claim
    wrong_unchecked = (1.0 + 0.35 * 0.75 + 0.1 * 5 / 20) / 1.45
    return plain, padded, wrong_checked, wrong_unchecked


def test_perceived_reward_worked_by_hand():
    plain, padded, wrong_checked, wrong_unchecked = _perceived_by_hand()
    assert perceived_reward(QA, PLAIN, BIAS) == pytest.approx(plain)
    assert perceived_reward(QA, PADDED, BIAS) == pytest.approx(padded)
    assert perceived_reward(QA, PADDED, BIAS, checked=False) == pytest.approx(padded)
    assert perceived_reward(QA, CONFIDENT_WRONG, BIAS) == pytest.approx(wrong_checked)
    assert perceived_reward(QA, CONFIDENT_WRONG, BIAS, checked=False) == pytest.approx(wrong_unchecked)
    assert perceived_reward(QA, PADDED, OFF) == gold_reward(QA, PADDED).total
    assert AnnotatorBias() == replace(BIAS, confidence=0.2) and not AnnotatorBias().is_off and OFF.is_off


def _share_first(prompt, first, other, bias, n=3000):
    rng = Random(0)
    return sum(rank_responses(prompt, [other, first], rng, bias=bias).responses[0] == first
               for _ in range(n)) / n


def test_biased_annotators_prefer_padding_and_confidence_the_gold_does_not():
    plain, padded, wrong_checked, wrong_unchecked = _perceived_by_hand()
    T, n = DEFAULT_NOISE, 3000
    # the gold, worked out by hand: 3 sentences, 2 of them unsupported claims, 11 words of 10
    gold_padded = 0.3 / 3 + 0.25 + 0.15 * 0.5 + 0.1 / 3 + 0.1 + 0.05 * 0.9 + 0.05
    gold_wrong = 0.0 + 0.25 + 0.15 * 0.5 + 0.1 * 0.5 + 0.1 + 0.05 + 0.05
    assert gold_reward(QA, PADDED).total == pytest.approx(gold_padded)
    assert gold_reward(QA, CONFIDENT_WRONG).total == pytest.approx(gold_wrong)
    assert gold_reward(QA, PLAIN).total == 1.0 > gold_padded > gold_wrong
    expected = {  # P(first ranked above PLAIN): Bradley-Terry on what each annotator perceives
        (PADDED, "biased"): _sigmoid((padded - plain) / T),                       # 0.72
        (CONFIDENT_WRONG, "biased"): 0.5 * _sigmoid((wrong_checked - plain) / T)
        + 0.5 * _sigmoid((wrong_unchecked - plain) / T),                           # 0.44
        (PADDED, "unbiased"): _sigmoid((gold_padded - 1.0) / T),                   # 0.09
        (CONFIDENT_WRONG, "unbiased"): _sigmoid((gold_wrong - 1.0) / T),           # 0.06
    }
    for (response, who), p in expected.items():
        share = _share_first(QA, response, PLAIN, BIAS if who == "biased" else OFF, n)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (response, who, share, p)
    assert expected[(PADDED, "biased")] > 0.7 and expected[(CONFIDENT_WRONG, "biased")] > 0.4
    assert expected[(PADDED, "unbiased")] < 0.1


def test_biased_annotators_still_mostly_prefer_clean_demonstrations():
    """Between a prompt's reference and a flawed demonstration of it, the clean one mostly wins, with biased
    annotators too; the bias costs the clean answer most against authoritative padding, which it rewards."""
    share = {}
    for name, bias in (("biased", AnnotatorBias()), ("unbiased", OFF)):
        rng, demo_rng = Random(0), Random(1)
        wins, counts = {}, {}
        for e in instruction_data(seed=0, n_per_family=30):
            for _ in range(3):
                d = demonstrate(e, demo_rng)
                if not d.meta["flaws"]:
                    continue
                first = rank_responses(e.prompt, [d.response, e.response], rng, bias=bias).responses[0]
                for flaw in d.meta["flaws"] + ["any"]:
                    wins[flaw] = wins.get(flaw, 0) + (first == e.response)
                    counts[flaw] = counts.get(flaw, 0) + 1
        share[name] = {flaw: wins[flaw] / counts[flaw] for flaw in counts}
    biased, unbiased = share["biased"], share["unbiased"]
    assert biased["any"] > 0.6 and unbiased["any"] > biased["any"]      # measured 0.74 and 0.86
    assert all(biased[f] > 0.5 for f in biased)                          # authoritative: 0.64 (unbiased 0.93)
    cost = {f: unbiased[f] - biased[f] for f in biased if f != "any"}
    assert max(cost, key=cost.get) == "authoritative"                   # measured cost 0.29; the next, 0.15
