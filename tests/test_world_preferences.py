"""Preference data (Bradley-Terry annotators), ratings, RL prompt sets and the LIMA sets."""

import math
from itertools import combinations

import pytest

from minialign.world import (DEFAULT_NOISE, RL_KINDS, gold_reward, lima_sets, preference_data,
                             preference_pairs, rating_data, ratings_to_pairs, rl_prompts)
from minialign.world.text import toxicity


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
    pairs = preference_pairs(preference_data(seed=1, n_prompts=300, K=5, noise=0.0))
    assert all(p.gold_chosen > p.gold_rejected for p in pairs)


def test_default_noise_matches_bradley_terry():
    pairs = preference_pairs(preference_data(seed=0, n_prompts=1500, K=4))
    # Bradley-Terry, computed directly: P(y_w is the higher-gold one) = sigmoid(|g_a - g_b| / T)
    predicted = sum(1 / (1 + math.exp(-abs(p.gold_chosen - p.gold_rejected) / DEFAULT_NOISE))
                    for p in pairs) / len(pairs)
    observed = _agreement(pairs)
    assert abs(observed - predicted) < 0.02
    assert 0.7 < observed < 0.9  # noisy, like real labelers


def test_pairwise_comparisons_beat_miscalibrated_ratings():
    pairwise = _agreement(preference_pairs(preference_data(seed=0, n_prompts=1500, K=4)))
    ratings = rating_data(seed=0, n_prompts=1500, K=4)
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
    assert sum("flaw" in e.meta for e in noisy) > 150
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
