"""Best-of-n: the estimator against brute force over every n-subset, the analytic KL against a sum over a discrete
best-of-n distribution, the proxy's standardisation by hand, and the curve on a tiny model."""

import itertools
import math

import numpy as np
import pytest
import torch

from minialign.best_of_n import (best_of_n_answers, best_of_n_curve, best_of_n_expectation, bon_kl, bon_weights,
                                 default_ns, sample_candidates, standardise)
from minialign.chat import end_id
from minialign.model import GPT, GPTConfig
from minialign.tokenizer import Tokenizer


def brute_force(proxy, gold, n):
    """Mean over all C(N, n) subsets of the chosen answer's (gold, proxy); a proxy tie goes to the lower gold."""
    subsets = itertools.combinations(range(len(proxy)), n)
    chosen = [max(subset, key=lambda i: (proxy[i], -gold[i])) for subset in subsets]
    return np.mean([gold[i] for i in chosen]), np.mean([proxy[i] for i in chosen])


def test_estimator_equals_the_mean_over_every_subset_ties_broken_towards_lower_gold():
    proxy = [0.3, -1.0, 1.2, -1.0, 0.3, 2.0]          # two ties in proxy, each between different golds
    gold = [0.9, 0.4, 0.2, 0.1, 0.5, 0.6]
    for n in range(1, 7):
        assert best_of_n_expectation(proxy, gold, n) == pytest.approx(brute_force(proxy, gold, n), abs=1e-12)
    assert best_of_n_expectation(proxy, gold, 1) == pytest.approx((np.mean(gold), np.mean(proxy)))
    assert best_of_n_expectation(proxy, gold, 6) == pytest.approx((0.6, 2.0))       # the max itself
    # all tied: best-of-n can only pick the worst gold of the subset (the conservative reading)
    assert best_of_n_expectation([-1.0] * 6, gold, 6)[0] == pytest.approx(0.1)


def test_estimator_on_a_hand_worked_example():
    # N = 3, n = 2: subsets {a, b} -> b, {a, c} -> c, {b, c} -> b: E[gold] = (2 * 5 + 7) / 3
    assert best_of_n_expectation([0.1, 0.5, 0.3], [1.0, 5.0, 7.0], 2) == pytest.approx((17 / 3, (2 * 0.5 + 0.3) / 3))
    assert bon_weights(3, 2).tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="1 <= n <= N"):
        bon_weights(3, 4)


def bon_of_uniform(m: int, n: int) -> np.ndarray:
    """Best-of-n over m equally likely items of distinct reward (item k has the k-th smallest): P(max rank = k)."""
    k = np.arange(1, m + 1)
    return (k / m) ** n - ((k - 1) / m) ** n


def test_bon_of_a_uniform_categorical_by_enumeration():
    m, n = 4, 3
    counts = np.zeros(m)
    for draw in itertools.product(range(m), repeat=n):
        counts[max(draw)] += 1
    assert (counts / m ** n).tolist() == pytest.approx(bon_of_uniform(m, n).tolist())


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_analytic_kl_is_the_limit_and_an_upper_bound_of_the_summed_kl(n):
    def kl(m):                                        # sum_k p_k log(p_k / (1/m)), the direct computation
        p = bon_of_uniform(m, n)
        return sum(pk * math.log(pk * m) for pk in p if pk > 0)
    assert kl(100_000) == pytest.approx(bon_kl(n), abs=1e-3)        # many distinct answers: the formula
    assert kl(2) <= kl(10) <= kl(1000) <= bon_kl(n) + 1e-12           # few (ties): below it
    if n > 1:
        assert kl(4) < bon_kl(n) - 0.01
    assert bon_kl(64) == pytest.approx(math.log(64) - 63 / 64) and bon_kl(1) == 0.0


def test_default_ns_are_powers_of_two_up_to_N():
    assert default_ns(64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_ns(48) == [1, 2, 4, 8, 16, 32, 48]


def test_proxy_is_standardised_on_the_ended_answers_and_unended_ones_get_the_penalty():
    raw = torch.tensor([1.0, 2.0, 3.0, 10.0])
    ended = torch.tensor([True, True, True, False])
    proxy, (mean, std) = standardise(raw, ended, penalty=1.0)        # mean 2, sample std 1 over the ended three
    assert (mean, std) == pytest.approx((2.0, 1.0))
    assert proxy.tolist() == pytest.approx([-1.0, 0.0, 1.0, -1.0])
    _, (mean, std) = standardise(raw, torch.zeros(4, dtype=torch.bool), penalty=1.0)  # none ended: all count
    assert (mean, std) == pytest.approx((4.0, float(np.std([1, 2, 3, 10], ddof=1))))


TOK = Tokenizer([])


class LengthRM(torch.nn.Module):
    """A stand-in r_phi: the number of real tokens of each row."""

    def forward(self, ids, attention_mask):
        return attention_mask.sum(1).float()


def length_judge(prompt, response):
    return float(len(response)), {}


def tiny_policy():
    """A random GPT that says <|end|> often (about 6% a step), so that some answers end and some do not."""
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        policy.transformer.ln_f.bias.fill_(3.0)
        policy.output_weight[end_id(TOK)] = 0.06
    return policy


def test_curve_and_answers_on_a_tiny_model():
    policy, prompts = tiny_policy(), ["hi", "tell me a story", "2+2?"]
    kw = dict(temperature=1.0, max_new_tokens=8, seed=3, judge=length_judge)
    c = sample_candidates(policy, LengthRM(), TOK, prompts, 8, **kw)
    assert c.proxy.shape == c.gold.shape == c.ended.shape == (3, 8) and all(len(t) == 8 for t in c.texts)
    assert 0 < c.ended.sum() < 24                                      # both kinds are there
    assert c.gold.tolist() == [[len(t) for t in texts] for texts in c.texts]
    # PPO's scale: the ended answers standardised (mean 0, sample std 1), the others at -1
    assert c.proxy[c.ended].mean() == pytest.approx(0.0, abs=1e-6)
    assert c.proxy[c.ended].std(ddof=1) == pytest.approx(1.0, abs=1e-6)
    assert (c.proxy[~c.ended] == -1.0).all()
    curve = best_of_n_curve(policy, LengthRM(), TOK, prompts, N=8, **kw)   # same seed: the same candidates
    assert [p["n"] for p in curve["points"]] == [1, 2, 4, 8] and curve["n_prompts"] == 3
    assert [p["kl"] for p in curve["points"]] == pytest.approx([bon_kl(n) for n in (1, 2, 4, 8)])
    first, last = curve["points"][0], curve["points"][-1]
    assert first["proxy"] == pytest.approx(c.proxy.mean()) and first["gold"] == pytest.approx(c.gold.mean())
    assert last["proxy"] == pytest.approx(c.proxy.max(1).mean())
    best = [min(g for p, g in zip(ps, gs) if p == ps.max()) for ps, gs in zip(c.proxy, c.gold)]
    assert last["gold"] == pytest.approx(np.mean(best))               # the lowest gold among the top proxy
    answers = best_of_n_answers(policy, LengthRM(), TOK, prompts, 8, temperature=1.0, max_new_tokens=8, seed=3)
    assert answers == [texts[int(np.argmax(p))] for texts, p in zip(c.texts, c.proxy)]
