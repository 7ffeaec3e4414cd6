"""The reward model: the Bradley-Terry loss and its K-wise pair expansion, the last-token read-out
under both paddings, normalisation, the metrics, and a tiny end-to-end training run.

Every expected value is computed here, independently, with plain loops and closed forms."""

import math
import os
import random

import numpy as np
import pytest
import torch

from minialign.batching import pad_batch
from minialign.chat import render
from minialign.generate import left_pad, sample_batches
from minialign.model import GPT, GPTConfig
from minialign.evaluation import calibration, oracle_accuracy, pairwise_accuracy, pearson, spearman
from minialign.preferences import PreferenceGroup, group_from_ranking
from minialign.reward import (RMConfig, RewardModel, fit_normalization, last_token_index, load_reward_model, normalization_from_rewards, pair_indices,
                              bradley_terry_loss, save_reward_model, train_reward_model)
from minialign.tokenizer import Tokenizer

TOK = Tokenizer([])   # bytes only: 256 byte tokens + the special tokens, no training needed
CFG = GPTConfig(vocab_size=TOK.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16)


def tiny_rm(seed=0) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel.from_sft(GPT(CFG)).eval()


def log_sigmoid(x: float) -> float:
    return -math.log(1.0 + math.exp(-x))


# ----------------------------------------------------------------------------------------------
# The loss
def test_ranking_gives_all_pairs_in_rank_order_and_drops_ties():
    g = group_from_ranking("x", ["a", "b", "c", "d"], order=[2, 0, 3, 1])
    assert sorted(g.pairs) == sorted([(2, 0), (2, 3), (2, 1), (0, 3), (0, 1), (3, 1)])
    g = group_from_ranking("x", ["a", "b", "c"], order=[1, 0, 2], ties=[(2, 0)])
    assert sorted(g.pairs) == sorted([(1, 0), (1, 2)])


@pytest.mark.parametrize("margin,center", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.01), (0.3, 0.1)])
def test_loss_equals_hand_computation_with_per_prompt_weights(margin, center):
    # three prompts with K = 3, 4 and 2 in one batch; each response appears once in `scores`
    groups = [group_from_ranking("p1", ["a", "b", "c"], order=[1, 2, 0]),
              group_from_ranking("p2", ["a", "b", "c", "d"], order=[3, 0, 2, 1]),
              PreferenceGroup("p3", ["a", "b"], pairs=[(1, 0)])]
    scores = [[0.3, 1.2, -0.5], [0.0, -1.0, 2.0, 0.7], [0.25, -0.4]]
    # by hand: the mean over each prompt's pairs, then the mean over prompts
    per_prompt = []
    for g, s in zip(groups, scores):
        terms = []
        for w, l in g.pairs:
            terms.append(-log_sigmoid(s[w] - s[l] - margin) + center * (s[w] + s[l]) ** 2)
        per_prompt.append(sum(terms) / len(terms))
    expected = sum(per_prompt) / len(per_prompt)

    rewards = torch.tensor([v for s in scores for v in s], dtype=torch.float64, requires_grad=True)
    w, l, weight = pair_indices(groups)
    assert len(w) == 3 + 6 + 1                               # C(3,2) + C(4,2) + C(2,2)
    got = bradley_terry_loss(rewards, w, l, weight, margin=margin, center_coef=center)
    assert got.item() == pytest.approx(expected, rel=1e-10)

    # a flat mean over the 10 pairs weighs the K=4 prompt more: it is a different number
    flat = sum(-log_sigmoid(s[a] - s[b] - margin) + center * (s[a] + s[b]) ** 2
               for g, s in zip(groups, scores) for a, b in g.pairs) / 10
    assert abs(flat - expected) > 1e-3

    # gradient by hand: d/dr_w of -log sigma(d) is -sigma(-d), d/dr_l is +sigma(-d)
    got.backward()
    grad = [0.0] * 9
    offsets = [0, 3, 7]
    for g, s, off in zip(groups, scores, offsets):
        for a, b in g.pairs:
            d = s[a] - s[b] - margin
            sig = 1.0 / (1.0 + math.exp(d))                  # sigma(-d)
            wt = 1.0 / len(g.pairs) / 3
            grad[off + a] += wt * (-sig + 2 * center * (s[a] + s[b]))
            grad[off + b] += wt * (sig + 2 * center * (s[a] + s[b]))
    assert rewards.grad.tolist() == pytest.approx(grad, rel=1e-9, abs=1e-12)


def test_loss_at_equal_scores_is_log_2():
    g = [group_from_ranking("p", ["a", "b", "c", "d"], order=[0, 1, 2, 3])]
    w, l, weight = pair_indices(g)
    assert bradley_terry_loss(torch.zeros(4), w, l, weight).item() == pytest.approx(math.log(2))


# ----------------------------------------------------------------------------------------------
# The read-out at the last real token
def test_last_token_index_right_left_and_both_sides_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0],     # right padded
                         [0, 0, 1, 1, 1],     # left padded
                         [0, 1, 1, 1, 0],     # a rollout: prompt pads left, response pads right
                         [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 3, 4]


def test_score_is_read_at_last_real_token_for_right_and_left_padding():
    rm = tiny_rm()
    seqs = [render(TOK, "hello", "a short answer").ids,
            render(TOK, "what is two plus two?", "four").ids,
            render(TOK, "hi", "a much longer answer than the others, with more words").ids]
    alone = [rm(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)).item() for s in seqs]
    # by hand: the head applied to the hidden state of the last token of the unpadded sequence
    for s, a in zip(seqs, alone):
        with torch.no_grad():
            h = rm.trunk(torch.tensor([s]))[0, -1]
            by_hand = float(rm.head.weight[0] @ h + rm.head.bias[0])
        assert a == pytest.approx(by_hand, abs=1e-5)
    right = pad_batch(seqs, [[1] * len(s) for s in seqs], TOK.pad_id)
    got_right = rm(right.ids, right.attention_mask)
    ids, mask = left_pad(seqs, TOK.pad_id)
    got_left = rm(ids, mask)
    assert got_right.tolist() == pytest.approx(alone, abs=1e-5)
    assert got_left.tolist() == pytest.approx(alone, abs=1e-5)
    # score() renders prompt + response + <|end|> itself
    got = rm.score(TOK, ["hello", "what is two plus two?", "hi"],
                   ["a short answer", "four", "a much longer answer than the others, with more words"])
    assert got == pytest.approx(alone, abs=1e-5)


def test_head_init_follows_lm_human_preferences():
    torch.manual_seed(0)
    rm = RewardModel(GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=400)))
    w = rm.head.weight.detach()
    assert w.std().item() == pytest.approx(1 / math.sqrt(401), rel=0.1)
    assert rm.head.bias.item() == 0.0


# ----------------------------------------------------------------------------------------------
# Normalisation
def test_normalization_from_rewards_gives_mean_0_std_1():
    raw = np.array([3.0, 5.0, 4.0, 10.0])
    gain, bias = normalization_from_rewards(raw)
    z = [gain * x + bias for x in raw]
    mean = sum(z) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in z) / 4)
    assert mean == pytest.approx(0.0, abs=1e-12) and std == pytest.approx(1.0)


def test_fit_normalization_on_policy_samples():
    rm = tiny_rm(1)
    torch.manual_seed(2)
    policy = GPT(CFG).eval()
    prompts = [f"question {i}" for i in range(24)]
    stats = fit_normalization(rm, policy, TOK, prompts, max_new_tokens=12, seed=5)
    assert stats["raw_std"] > 0 and stats["n_samples"] == 24
    # the same seed draws the same samples; their normalised scores have mean 0 and std 1
    scores = []
    for b in sample_batches(policy, TOK, prompts, max_new_tokens=12, seed=5):
        scores += rm(b.gen.tokens, b.gen.attention_mask).tolist()
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    assert mean == pytest.approx(0.0, abs=1e-4) and std == pytest.approx(1.0, abs=1e-4)


def test_checkpoint_round_trip_keeps_scores_and_normalization(tmp_path):
    rm = tiny_rm(3)
    rm.set_normalization(2.0, -0.5)
    path = os.path.join(tmp_path, "rm.pt")
    save_reward_model(path, rm, done=True)
    back = load_reward_model(path, "cpu")
    p, r = ["a question"] * 2, ["yes", "no"]
    assert back.score(TOK, p, r) == pytest.approx(rm.score(TOK, p, r), abs=1e-6)
    raw = rm.score(TOK, p, r, normalized=False)
    assert back.score(TOK, p, r) == pytest.approx([2.0 * x - 0.5 for x in raw], abs=1e-5)
    from minialign.pipeline import load_model   # the trunk loads as a plain GPT
    trunk = load_model(path, "cpu")
    assert torch.equal(trunk.output_weight, rm.trunk.output_weight)


# ----------------------------------------------------------------------------------------------
# Metrics
def test_pearson_and_spearman_against_closed_forms():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [2.0, 1.0, 4.0, 3.0, 7.0]
    mx, my = sum(x) / 5, sum(y) / 5
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    r = cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert pearson(x, y) == pytest.approx(r)
    # no ties: Spearman = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks of y are [2, 1, 4, 3, 5]
    d2 = sum((a - b) ** 2 for a, b in zip([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]))
    assert spearman(x, y) == pytest.approx(1 - 6 * d2 / (5 * 24))
    # a monotone but non-linear relation: Spearman 1, Pearson < 1
    assert spearman(x, [v ** 3 for v in x]) == pytest.approx(1.0)
    assert pearson(x, [v ** 3 for v in x]) < 0.99
    # ties take the average rank: x ranks [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(pearson([1, 2.5, 2.5, 4], [1, 2, 3, 4]))


def test_accuracies_on_a_hand_example():
    groups = [PreferenceGroup("p", ["a", "b", "c"], pairs=[(0, 1), (0, 2), (2, 1)], gold=[1.0, 0.0, 0.5]),
              PreferenceGroup("q", ["a", "b"], pairs=[(1, 0)], gold=[0.2, 0.2])]
    rewards = [np.array([0.5, 0.1, 0.5]), np.array([0.0, 3.0])]
    # labelled pairs: (0,1) right, (0,2) tie -> wrong, (2,1) right, (1,0) right -> 3/4
    assert pairwise_accuracy(rewards, groups) == pytest.approx(3 / 4)
    # gold pairs (equal gold skipped): 0>1 right, 0>2 tie -> wrong, 2>1 right -> 2/3
    assert oracle_accuracy(rewards, groups) == pytest.approx(2 / 3)


def test_calibration_bins_match_a_loop():
    rng = random.Random(0)
    groups, rewards = [], []
    for _ in range(200):
        r = [rng.gauss(0, 1.5) for _ in range(3)]
        # labels drawn from the model's own probabilities: a calibrated model
        pairs = []
        for i in range(3):
            for j in range(i + 1, 3):
                p = 1 / (1 + math.exp(-(r[i] - r[j])))
                pairs.append((i, j) if rng.random() < p else (j, i))
        groups.append(PreferenceGroup("p", ["a", "b", "c"], pairs=pairs))
        rewards.append(np.array(r))
    cal = calibration(rewards, groups, n_bins=5)
    assert sum(b["count"] for b in cal["bins"]) == 2 * 600
    for b in cal["bins"]:
        if b["count"] > 100:
            assert abs(b["predicted"] - b["observed"]) < 0.08
    assert cal["ece"] < 0.05
    # bin 0 by hand: orientations with predicted probability below 0.2
    preds, obs = [], []
    for r, g in zip(rewards, groups):
        for w, l in g.pairs:
            p = 1 / (1 + math.exp(-(r[w] - r[l])))
            for pp, oo in ((p, 1.0), (1 - p, 0.0)):
                if pp < 0.2:
                    preds.append(pp)
                    obs.append(oo)
    assert cal["bins"][0]["predicted"] == pytest.approx(sum(preds) / len(preds))
    assert cal["bins"][0]["observed"] == pytest.approx(sum(obs) / len(obs))


# ----------------------------------------------------------------------------------------------
# Training end to end on a small synthetic preference set
def synthetic_groups(n, seed):
    """Prompt 'item N'; the preferred response names a fruit, the other a tool."""
    rng = random.Random(seed)
    good = ["apple", "pear", "plum", "fig", "lime"]
    bad = ["saw", "nail", "drill", "axe", "file"]
    groups = []
    for i in range(n):
        resp = [f"the {rng.choice(good)}", f"the {rng.choice(bad)}", f"a {rng.choice(bad)}"]
        groups.append(group_from_ranking(f"item {rng.randint(0, 99)}", resp, order=[0, 1, 2],
                                         gold=[1.0, 0.0, -0.1]))
    return groups


def test_training_separates_chosen_from_rejected():
    rm = tiny_rm(0)
    train, held_out = synthetic_groups(96, 0), synthetic_groups(32, 1)
    cfg = RMConfig(lr=3e-3, batch_prompts=8, epochs=2, eval_every=6)
    hist = train_reward_model(rm, TOK, train, cfg, device="cpu", eval_groups=held_out, seed=0)
    assert hist["eval_accuracy_vs_annotators"][0] < 0.8            # about chance before training
    assert hist["eval_accuracy_vs_annotators"][-1] > 0.9
    assert np.mean(hist["loss"][-4:]) < np.mean(hist["loss"][:4])


def test_ratings_variant_trains_by_regression():
    rm = tiny_rm(0)
    train = synthetic_groups(96, 0)
    for g in train:
        g.ratings = [7.0, 2.0, 1.5]
    cfg = RMConfig(lr=3e-3, batch_prompts=8, epochs=2, eval_every=6)
    hist = train_reward_model(rm, TOK, train, cfg, device="cpu", eval_groups=synthetic_groups(32, 1),
                              objective="mse", seed=0)
    assert hist["eval_accuracy_vs_oracle"][-1] > 0.9


def test_killed_training_resumes_to_the_same_model(tmp_path):
    cfg = RMConfig(lr=3e-3, batch_prompts=8, epochs=1, ckpt_every=100)
    train = synthetic_groups(48, 0)
    full = tiny_rm(0)
    train_reward_model(full, TOK, train, cfg, device="cpu", seed=4)
    ckpt = os.path.join(tmp_path, "ckpt.pt")
    part = tiny_rm(0)
    train_reward_model(part, TOK, train, cfg, device="cpu", seed=4, ckpt_path=ckpt, max_steps=2)
    resumed = tiny_rm(0)   # a fresh process: same init, then the checkpoint
    hist = train_reward_model(resumed, TOK, train, cfg, device="cpu", seed=4, ckpt_path=ckpt)
    assert hist["step"] == list(range(6))
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_noise_ceiling_predicts_agreement_with_the_gold_from_what_annotators_perceive():
    """sigma(sign(g_a - g_b)(p_a - p_b) / T) averaged over the pairs of different gold: unbiased (p = g) it
    is sigma(|g_a - g_b| / T); a biased annotator who perceives the worse answer as better sits below 1/2."""
    from minialign.pipeline import noise_ceiling
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    unbiased = [PreferenceGroup("p", ["a", "b", "c"], [(0, 1), (0, 2), (1, 2)], gold=[0.9, 0.5, 0.5])]
    got = noise_ceiling(unbiased, 0.2)["noise_ceiling_expected"]
    assert got == pytest.approx((sig(0.4 / 0.2) + sig(0.4 / 0.2)) / 2)        # the tied pair (b, c) is left out
    biased = [PreferenceGroup("p", ["a", "b"], [(1, 0)], gold=[0.9, 0.6], perceived=[0.5, 0.8])]
    got = noise_ceiling(biased, 0.2)["noise_ceiling_expected"]
    assert got == pytest.approx(sig(-0.3 / 0.2)) and got < 0.5
    assert noise_ceiling(biased, 0.0)["noise_ceiling_expected"] == 0.0          # noiseless: always the wrong one
