"""DPO: the loss and its variants against hand computations, the summed log-probs' mask, the
reference computed once, training raising the margin, and an exact resume."""

import math
import os
from collections import namedtuple

import pytest
import torch

from minialign.chat import end_id, render
from minialign.checkpoint import load_checkpoint
from minialign.dpo import DPOConfig, concatenated_logps, preference_loss, preference_metrics, train_dpo
from minialign.model import GPT, GPTConfig
from minialign.preferences import PreferenceGroup, as_groups
from minialign.tokenizer import Tokenizer

TOK = Tokenizer([])            # byte-level, no merges: 256 bytes + 6 special tokens
CFG = GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16)

# Summed log-probs of 3 pairs: policy chosen / rejected, reference chosen / rejected, lengths.
PW, PL = [-4.0, -7.5, -2.25], [-5.0, -6.0, -9.0]
RW, RL = [-4.5, -7.0, -3.0], [-4.0, -6.5, -8.0]
NW, NL = [4, 6, 3], [5, 2, 7]


def log_sigmoid(x):
    return -math.log(1 + math.exp(-x))


def t(xs):
    return torch.tensor(xs, dtype=torch.float64)


def run_loss(**kw):
    return preference_loss(t(PW), t(PL), t(RW), t(RL), kw.pop("beta", 0.1),
                           chosen_lengths=t(NW), rejected_lengths=t(NL), **kw)


def test_dpo_loss_and_implicit_rewards_by_hand():
    beta = 0.1
    losses, rw, rl = run_loss(beta=beta)
    for i in range(3):
        h = (PW[i] - RW[i]) - (PL[i] - RL[i])
        assert losses[i].item() == pytest.approx(-log_sigmoid(beta * h), abs=1e-12)
        assert rw[i].item() == pytest.approx(beta * (PW[i] - RW[i]))
        assert rl[i].item() == pytest.approx(beta * (PL[i] - RL[i]))
    m = preference_metrics(rw, rl, t(PW), t(PL))
    margins = [beta * ((PW[i] - RW[i]) - (PL[i] - RL[i])) for i in range(3)]
    assert m["rewards/margins"] == pytest.approx(sum(margins) / 3)
    assert m["rewards/accuracy"] == pytest.approx(sum(x > 0 for x in margins) / 3)
    assert m["logps/chosen"] == pytest.approx(sum(PW) / 3)


def test_conservative_dpo_ipo_reference_free_length_normalized_by_hand():
    beta, eps = 0.5, 0.2
    cdpo, _, _ = run_loss(beta=beta, label_smoothing=eps)
    ipo, _, _ = run_loss(beta=beta, loss="ipo")
    free, free_w, _ = run_loss(beta=beta, reference_free=True)
    norm, norm_w, norm_l = run_loss(beta=beta, length_normalize=True)
    for i in range(3):
        h = (PW[i] - RW[i]) - (PL[i] - RL[i])
        assert cdpo[i].item() == pytest.approx(
            -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h), abs=1e-12)
        assert ipo[i].item() == pytest.approx((h - 1 / (2 * beta)) ** 2, abs=1e-12)
        h_free = PW[i] - PL[i]
        assert free[i].item() == pytest.approx(-log_sigmoid(beta * h_free), abs=1e-12)
        assert free_w[i].item() == pytest.approx(beta * PW[i])
        h_norm = (PW[i] - RW[i]) / NW[i] - (PL[i] - RL[i]) / NL[i]
        assert norm[i].item() == pytest.approx(-log_sigmoid(beta * h_norm), abs=1e-12)
        assert norm_w[i].item() == pytest.approx(beta * (PW[i] - RW[i]) / NW[i])
        assert norm_l[i].item() == pytest.approx(beta * (PL[i] - RL[i]) / NL[i])


def model(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG).eval()


Pair = namedtuple("Pair", "prompt chosen rejected")
PAIRS = [Pair("Say yes.", "yes", "no thanks"),
         Pair("Is the sky blue?", "It is blue.", "No"),
         Pair("Hi", "Hello there, friend!", "go away")]


def test_policy_equal_to_reference_gives_log2_and_zero_rewards():
    pi = model()
    chosen = [render(TOK, p.prompt, p.chosen) for p in PAIRS]
    rejected = [render(TOK, p.prompt, p.rejected) for p in PAIRS]
    with torch.no_grad():
        pw, pl, _, _ = concatenated_logps(pi, TOK, chosen, rejected, torch.device("cpu"))
        rw, rl, _, _ = concatenated_logps(pi, TOK, chosen, rejected, torch.device("cpu"))
    losses, cr, rr = preference_loss(pw, pl, rw, rl, beta=0.1)
    assert losses.mean().item() == pytest.approx(math.log(2), abs=1e-6)
    assert torch.all(cr == 0) and torch.all(rr == 0)
    assert preference_metrics(cr, rr, pw, pl)["rewards/accuracy"] == 0.0   # strict >


def test_summed_logps_cover_exactly_the_response_and_the_end_token():
    pi = model(1)
    chosen = [render(TOK, p.prompt, p.chosen) for p in PAIRS]
    rejected = [render(TOK, p.prompt, p.rejected) for p in PAIRS]
    with torch.no_grad():
        pw, pl, nw, nl = concatenated_logps(pi, TOK, chosen, rejected, torch.device("cpu"))
    for got, n, rows in ((pw, nw, chosen), (pl, nl, rejected)):
        for i, (r, p) in enumerate(zip(rows, PAIRS)):
            ids = r.ids                                       # one unpadded sequence
            response = (p.chosen if rows is chosen else p.rejected).encode() + b""
            P = len(ids) - len(response) - 1                  # prompt tokens (bytes + specials)
            assert ids[-1] == end_id(TOK)                     # the end token closes the response
            with torch.no_grad():
                logits = pi.logits(pi(torch.tensor([ids])))[0].double()   # (L, V)
            logp = torch.log_softmax(logits, -1)
            want = 0.0
            for j in range(P, len(ids)):                      # response tokens + <|end|>
                want += logp[j - 1, ids[j]].item()            # position j-1 predicts token j
            assert got[i].item() == pytest.approx(want, abs=1e-4)
            assert n[i].item() == len(ids) - P == len(response) + 1


def test_ranked_lists_give_all_pairs_best_first():
    groups = as_groups([{"prompt": "x", "responses": ["a", "b", "c"]},
                        {"prompt": "y", "chosen": "good", "rejected": "bad"}])
    assert [c for g in groups for c in g.comparisons()] == [("a", "b"), ("a", "c"), ("b", "c"),
                                                            ("good", "bad")]
    with pytest.raises(ValueError, match="item 0"):
        as_groups([{"prompt": "x"}])


def test_identical_responses_in_a_ranking_give_no_pair():
    [g] = as_groups([{"prompt": "x", "responses": ["a", "b", "a"]}])
    assert g.comparisons() == [("a", "b"), ("b", "a")]      # (a, a) compares a response with itself


def test_preference_files_give_pairs():
    from minialign.loaders import load_preferences
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "examples")
    flat = [c for g in as_groups(load_preferences(os.path.join(root, "preferences.jsonl"))) for c in g.comparisons()]
    ranked = load_preferences(os.path.join(root, "rankings.jsonl"))
    assert flat and all(chosen != rejected for chosen, rejected in flat)
    k = [len(r.responses) for r in ranked]
    assert sum(len(g.pairs) for g in as_groups(ranked)) == sum(n * (n - 1) // 2 for n in k)


def test_ranked_policy_samples_at_noise_0_prefer_the_higher_gold_reward():
    from minialign.preferences import rank_policy_samples
    from minialign.world import AnnotatorBias, gold_reward
    prompts = ["Write a one-sentence story about Sam.", "11 - 7 = ?", "Say something nice."]
    groups, s = rank_policy_samples(model(4), TOK, prompts, k=4, temperature=1.0, noise=0.0, max_new_tokens=10,
                                    seed=1, bias=AnnotatorBias.off())       # unbiased and noiseless: the oracle
    assert len(s.responses) == 12 and groups
    for g in groups:
        assert len(set(g.responses)) == len(g.responses)     # each distinct sample once
        for chosen, rejected in g.comparisons():             # equal gold rewards are ties: no pair
            assert gold_reward(g.prompt, chosen).total > gold_reward(g.prompt, rejected).total
            assert chosen in s.responses and rejected in s.responses


def toy_pairs(n=24):
    return [PreferenceGroup.pair(f"Question {i}: answer politely.", "Yes, gladly.", "No way!")
            for i in range(n)]


def toy_cfg(**kw):
    base = dict(beta=0.5, lr=3e-3, warmup_steps=1, epochs=3, batch_size=8, eval_every=0,
                ckpt_every=3)
    base.update(kw)
    return DPOConfig(**base)


def test_a_few_steps_raise_the_margin_and_the_reference_is_used_once(tmp_path):
    pi, ref = model(2), model(2)
    ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
    calls = {"n": 0}
    original = ref.forward

    def counting_forward(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    ref.forward = counting_forward
    metrics = train_dpo(pi, ref, TOK, toy_pairs(), toy_cfg(), str(tmp_path), "cpu", quiet=True)
    assert calls["n"] == 2          # 24 pairs, reference batches of 16: two forwards, before training
    first, last = metrics["first_step"], metrics["final"]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)       # pi_theta = pi_ref at step 0
    assert last["rewards/margins"] > first["rewards/margins"] + 0.5
    assert last["rewards/accuracy"] == 1.0 and last["loss"] < 0.5
    for k, v in ref.state_dict().items():                              # pi_ref is frozen
        assert torch.equal(v, ref_state[k]), k
    for f in ("ckpt.pt", "metrics.json", "dpo_training.png"):
        assert os.path.exists(tmp_path / f)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    whole = tmp_path / "whole"
    train_dpo(model(3), model(3), TOK, toy_pairs(), toy_cfg(), str(whole), "cpu", quiet=True)
    part = tmp_path / "part"
    train_dpo(model(3), model(3), TOK, toy_pairs(), toy_cfg(), str(part), "cpu", quiet=True,
              max_steps=4)
    assert load_checkpoint(str(part / "ckpt.pt"))["step"] == 4
    train_dpo(model(3), model(3), TOK, toy_pairs(), toy_cfg(), str(part), "cpu", quiet=True)
    a, b = load_checkpoint(str(whole / "ckpt.pt")), load_checkpoint(str(part / "ckpt.pt"))
    assert a["done"] and b["done"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


@pytest.mark.slow
def test_ensure_dpo_quick_builds_the_stage(tmp_path):
    from minialign.dpo import QUICK
    from minialign.pipeline import ensure_dpo
    from minialign.pipeline import Run

    run = Run(out=str(tmp_path), preset="tiny", device=torch.device("cpu"), seed=0, quick=True)
    policy, tok = ensure_dpo(run, DPOConfig(**QUICK))
    stage = tmp_path / "dpo"
    state = load_checkpoint(str(stage / "ckpt.pt"))
    assert state["done"] and state["model_config"] == policy.config.to_dict()
    metrics = (stage / "metrics.json").read_text()
    assert "win_rate_vs_reference" in metrics and "rewards/margins" in metrics
    assert (stage / "dpo_training.png").exists()


def test_ranked_policy_samples_with_noisy_annotators_rank_every_two_distinct_samples():
    """With noise the annotators rank every distinct sample (no ties): C(K', 2) pairs per prompt of K' distinct
    samples; the same seed gives the same groups."""
    from minialign.preferences import rank_policy_samples
    prompts = ["Write a one-sentence story about Sam.", "11 - 7 = ?", "Say something nice."]
    groups, s = rank_policy_samples(model(4), TOK, prompts, k=4, temperature=1.0, noise=0.3, max_new_tokens=10,
                                    seed=1)
    for g in groups:
        i = [prompt for prompt in prompts].index(g.prompt)
        distinct = set(r for r, j in zip(s.responses, s.prompt_index) if j == i)
        assert set(g.responses) == distinct and len(g.pairs) == len(distinct) * (len(distinct) - 1) // 2
    again, _ = rank_policy_samples(model(4), TOK, prompts, k=4, temperature=1.0, noise=0.3, max_new_tokens=10,
                                   seed=1)
    assert [g.comparisons() for g in again] == [g.comparisons() for g in groups]
