"""PPO's wiring: what ppo_update, ppo_iteration and train_ppo feed the formulas that tests/test_ppo.py checks.

The end-to-end PPO tests compare two runs that share any bug, so each test here asserts one piece of wiring
directly against a hand computation written below (plain loops over python floats, full-softmax log-probs):
the advantages and value targets the losses receive on the first minibatch, the per-token KL reward against
the reference, the after_end layout of TRL >= 0.12, the number of minibatch steps, the learning rate and the
adaptive beta across a resume, the value head's normalisation, how rollouts sample, and a frozen reference.
The loss functions are observed by replacing their names inside minialign.ppo with recording wrappers.
"""

import copy
import inspect
import math

import pytest
import torch

from minialign import ppo
from minialign.model import GPT, GPTConfig
from minialign.ppo import (PPOConfig, ValueModel, collect_rollout, compute_gae, make_optimizer, ppo_iteration,
                           ppo_update, prepare_models, train_ppo, value_mask)

PAD, END = 0, 1
V = 40
PROMPTS = [[5, 6, 7], [9, 10, 11, 12, 13, 14], [20], [30, 31, 32, 33], [7, 8], [2, 3, 4, 5, 6], [15, 16], [25]]


# ----------------------------------------------------------------------------------------------------------------
# Tiny models and the recording wrapper
def tiny_gpt(seed=0, vocab=V):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=64, n_layer=1, n_head=2, n_embd=32))


def end_biased_gpt(seed=0):
    """A random GPT that emits END often enough for responses of different lengths."""
    m = tiny_gpt(seed)
    with torch.no_grad():
        m.transformer.wte.weight[END] *= 0.0
        m.transformer.wte.weight[END] += m.transformer.ln_f.weight.sign() * 0.3 * torch.rand(32)
    return m


def random_value_model(seed=1, vocab=V):
    """A value model whose head is not zero, so V(s_t) differs from token to token."""
    vm = ValueModel(tiny_gpt(seed, vocab))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        vm.head.weight.copy_(torch.randn(vm.head.weight.shape, generator=g) * 0.5)
        vm.head.bias.fill_(0.3)
    return vm


def cfg_of(**kw):
    base = dict(temperature=0.7, max_new_tokens=12, batch_size=8, n_minibatches=2, ppo_epochs=1, lr=1e-3)
    return PPOConfig(**{**base, **kw})


class Spy:
    """Stands in for ppo.<name>: records each call's arguments by parameter name (tensors cloned), then calls
    the real function."""

    def __init__(self, monkeypatch, name):
        self.real = getattr(ppo, name)
        self.signature = inspect.signature(self.real)
        self.calls = []
        monkeypatch.setattr(ppo, name, self)

    def __call__(self, *args, **kwargs):
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.calls.append({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in bound.arguments.items()})
        return self.real(*args, **kwargs)


def rows_of(minibatch_logprobs, rollout_logprobs):
    """Which rollout row each minibatch row is (matched by its old log-probs, unique per row)."""
    rows = []
    for lp in minibatch_logprobs:
        hits = [b for b in range(rollout_logprobs.size(0)) if torch.equal(lp, rollout_logprobs[b])]
        assert len(hits) == 1
        rows.append(hits[0])
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Hand computations, on python floats
def gae_loop(rewards, values, gamma, lam):
    """A_t = delta_t + gamma lambda A_{t+1}, delta_t = r_t + gamma V_{t+1} - V_t, V = 0 after the last entry."""
    adv, a = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        v_next = values[t + 1] if t + 1 < len(rewards) else 0.0
        a = rewards[t] + gamma * v_next - values[t] + gamma * lam * a
        adv[t] = a
    return adv


def whiten_rows(rows, shift_mean=True):
    """(x - mean) / sqrt(var + 1e-8) over all entries of all rows, population variance (PPOConfig default)."""
    flat = [x for row in rows for x in row]
    mu = sum(flat) / len(flat)
    var = sum((x - mu) ** 2 for x in flat) / len(flat)
    return [[(x - mu) / math.sqrt(var + 1e-8) + (0.0 if shift_mean else mu) for x in row] for row in rows]


def hand_logprobs(model, r, temperature):
    """log pi(y_i | x, y_<i) at temperature T from the full softmax: token P+i is predicted at column P-1+i."""
    with torch.no_grad():
        logits = model.logits(model(r.tokens, attention_mask=r.attention_mask)).double() / temperature
    logsm = torch.log_softmax(logits, -1)
    P, N = r.prompt_len, r.mask.size(1)
    return [[logsm[b, P - 1 + i, r.tokens[b, P + i]].item() for i in range(N)] for b in range(r.tokens.size(0))]


def hand_values(value_model, r):
    """V(s before response token i) = the value model's output at column P-1+i, from one full forward."""
    with torch.no_grad():
        v = value_model(r.tokens, r.attention_mask)
    P, N = r.prompt_len, r.mask.size(1)
    return [[v[b, P - 1 + i].item() for i in range(N)] for b in range(r.tokens.size(0))]


def rollout_with_lengths(cfg, seed=0):
    policy, value = end_biased_gpt(), random_value_model()
    ref = copy.deepcopy(policy)
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    r = collect_rollout(policy, ref, value, PROMPTS, cfg, end_id=END, pad_id=PAD,
                        generator=torch.Generator().manual_seed(seed))
    lengths = r.lengths.tolist()
    assert len(set(lengths)) > 2 and min(lengths) < r.mask.size(1)
    return policy, value, r, lengths


def random_rewards(r, seed=1):
    return torch.randn(r.mask.shape, generator=torch.Generator().manual_seed(seed)) * r.mask


# ----------------------------------------------------------------------------------------------------------------
# What the losses receive on the first minibatch
def test_first_minibatch_sees_masked_whitened_gae_and_unwhitened_returns(monkeypatch):
    cfg = cfg_of(gamma=0.9, lam=0.8)
    policy, value, r, lengths = rollout_with_lengths(cfg)
    V_hand = hand_values(value, r)                     # before any update
    rewards = random_rewards(r)
    pl, vl = Spy(monkeypatch, "policy_loss"), Spy(monkeypatch, "value_loss")
    ppo_update(policy, value, r, rewards, cfg, make_optimizer(policy, value, cfg), torch.Generator().manual_seed(2))

    raw = [gae_loop(rewards[b, :L].tolist(), V_hand[b][:L], cfg.gamma, cfg.lam) for b, L in enumerate(lengths)]
    whitened = whiten_rows(raw)                        # over the real tokens of the whole batch, pads excluded
    first_pg, first_vf = pl.calls[0], vl.calls[0]
    rows = rows_of(first_pg["old_logprobs"], r.logprobs)
    N = r.mask.size(1)
    for i, b in enumerate(rows):
        L = lengths[b]
        assert first_pg["mask"][i].tolist() == [1.0] * L + [0.0] * (N - L)
        assert first_vf["mask"][i].tolist() == [1.0] * L + [0.0] * (N - L)
        for t in range(L):
            assert first_pg["advantages"][i, t].item() == pytest.approx(whitened[b][t], abs=1e-4), (b, t)
            # value targets: the raw GAE plus V, never the whitened advantages
            assert first_vf["returns"][i, t].item() == pytest.approx(raw[b][t] + V_hand[b][t], abs=1e-4), (b, t)
            assert first_vf["old_values"][i, t].item() == pytest.approx(V_hand[b][t], abs=1e-5), (b, t)


def test_reward_whitening_scales_but_keeps_the_mean(monkeypatch):
    cfg = cfg_of(gamma=0.9, lam=0.8, whiten_rewards=True)
    policy, value, r, lengths = rollout_with_lengths(cfg)
    V_hand = hand_values(value, r)
    rewards = random_rewards(r) + 0.7 * r.mask         # a mean far from 0: shifting it would show
    pl, vl = Spy(monkeypatch, "policy_loss"), Spy(monkeypatch, "value_loss")
    ppo_update(policy, value, r, rewards, cfg, make_optimizer(policy, value, cfg), torch.Generator().manual_seed(2))

    scaled = whiten_rows([rewards[b, :L].tolist() for b, L in enumerate(lengths)], shift_mean=False)
    flat = [x for row in scaled for x in row]
    assert sum(flat) / len(flat) == pytest.approx(sum(rewards.sum(1).tolist()) / sum(lengths), abs=1e-6)
    raw = [gae_loop(scaled[b], V_hand[b][:L], cfg.gamma, cfg.lam) for b, L in enumerate(lengths)]
    rows = rows_of(pl.calls[0]["old_logprobs"], r.logprobs)
    for i, b in enumerate(rows):
        for t in range(lengths[b]):
            assert vl.calls[0]["returns"][i, t].item() == pytest.approx(raw[b][t] + V_hand[b][t], abs=1e-4), (b, t)


def test_each_epoch_runs_every_minibatch_once(monkeypatch):
    cfg = cfg_of(ppo_epochs=3, n_minibatches=2)
    policy, value, r, _ = rollout_with_lengths(cfg)
    pl = Spy(monkeypatch, "policy_loss")
    ppo_update(policy, value, r, random_rewards(r), cfg, make_optimizer(policy, value, cfg),
               torch.Generator().manual_seed(2))
    assert len(pl.calls) == cfg.ppo_epochs * cfg.n_minibatches
    B = r.mask.size(0)
    for epoch in range(cfg.ppo_epochs):       # each epoch: the minibatches partition the rollout
        calls = pl.calls[epoch * cfg.n_minibatches:(epoch + 1) * cfg.n_minibatches]
        seen = [b for c in calls for b in rows_of(c["old_logprobs"], r.logprobs)]
        assert sorted(seen) == list(range(B))


# ----------------------------------------------------------------------------------------------------------------
# score_position="after_end": TRL >= 0.12 (trl/trainer/ppo_trainer.py, steps "4. compute rewards" to
# "6. compute advantages and returns"), transcribed below for one row of length `seq_len + 1`:
#   values[t] = 0 for t > seq_len + 1                       (padding_mask_p1)
#   rewards = -beta * kl (0 for t > seq_len);  rewards[seq_len + 1 if seq_len + 1 < N else seq_len] += score
#   for t in reversed(range(N)): nextvalues = values[t + 1] if t < N - 1 else 0
#       delta = rewards[t] + gamma * nextvalues - values[t];  lastgaelam = delta + gamma * lam * lastgaelam
#   returns = advantages + values;  advantages whitened over t <= seq_len
def trl_gae_row(rewards, values, gamma, lam):
    N, adv, last = len(rewards), [0.0] * len(rewards), 0.0
    for t in reversed(range(N)):
        next_values = values[t + 1] if t < N - 1 else 0.0
        delta = rewards[t] + gamma * next_values - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, [a + v for a, v in zip(adv, values)]


def score_slot(L, N):
    return L if L < N else L - 1


def test_after_end_gae_matches_trl_on_the_issue_example():
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    values = torch.tensor([[0.3, 0.5, 0.8, 0.1]])
    rewards = torch.tensor([[-0.01, -0.02, 1.0, 0.0]])            # score 1 at index 2, one slot after the end
    adv, _ = trl_gae_row(rewards[0].tolist(), [0.3, 0.5, 0.8, 0.0], 1.0, 0.95)
    assert adv == pytest.approx([0.6365, 0.47, 0.2, 0.0], abs=1e-9)   # worked by hand in the issue
    got, ret = compute_gae(rewards, values, value_mask(mask, "after_end"), 1.0, 0.95)
    assert got[0].tolist() == pytest.approx([0.6365, 0.47, 0.2, 0.0], abs=1e-6)
    assert ret[0, :3].tolist() == pytest.approx([0.9365, 0.97, 1.0], abs=1e-6)


def test_after_end_update_runs_trl_gae_over_the_score_slot(monkeypatch):
    cfg = cfg_of(score_position="after_end", gamma=1.0, lam=0.95)
    policy, value, r, lengths = rollout_with_lengths(cfg)
    B, N = r.mask.shape
    g = torch.Generator().manual_seed(3)
    values = torch.randn(B, N, generator=g)                       # the rollout's V, zero beyond seq_len + 1
    rewards = -0.05 * torch.rand(B, N, generator=g) * r.mask      # a KL-like term on the response
    for b, L in enumerate(lengths):
        values[b, L + 1:] = 0.0
        rewards[b, score_slot(L, N)] += 1.0 + 0.25 * b
    r.values = values
    pl, vl = Spy(monkeypatch, "policy_loss"), Spy(monkeypatch, "value_loss")
    ppo_update(policy, value, r, rewards, cfg, make_optimizer(policy, value, cfg), torch.Generator().manual_seed(2))
    check_after_end_first_minibatch(pl.calls[0], vl.calls[0], r, lengths, rewards.tolist(), values.tolist(), cfg)


def check_after_end_first_minibatch(pg, vf, r, lengths, rewards, values, cfg):
    N = r.mask.size(1)
    trl = [trl_gae_row(rewards[b], values[b], cfg.gamma, cfg.lam) for b in range(len(lengths))]
    whitened = whiten_rows([trl[b][0][:L] for b, L in enumerate(lengths)])
    for i, b in enumerate(rows_of(pg["old_logprobs"], r.logprobs)):
        L = lengths[b]
        p1 = min(L + 1, N)                                        # value targets: the response and the slot after
        assert vf["mask"][i].tolist() == [1.0] * p1 + [0.0] * (N - p1)
        for t in range(L):
            assert pg["advantages"][i, t].item() == pytest.approx(whitened[b][t], abs=1e-4), (b, t)
        for t in range(p1):
            assert vf["returns"][i, t].item() == pytest.approx(trl[b][1][t], abs=1e-4), (b, t)
            assert vf["old_values"][i, t].item() == pytest.approx(values[b][t], abs=1e-5), (b, t)


def test_after_end_iteration_keeps_the_value_of_the_score_slot_like_trl(monkeypatch):
    """The whole iteration against TRL: V is kept at the slot after <|end|> (TRL masks values only beyond
    seq_len + 1), rewards are -beta k1 from the reference plus the score on that slot."""
    policy, ref, value = end_biased_gpt(0), tiny_gpt(7), random_value_model(1)
    cfg = cfg_of(score_position="after_end", gamma=1.0, lam=0.95, beta=0.1)
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    policy0, value0 = copy.deepcopy(policy), copy.deepcopy(value)

    def reward_fn(r):                                             # a score of 1 + b/4 on the slot after <|end|>
        out = torch.zeros(r.mask.shape)
        for b, L in enumerate(r.lengths.tolist()):
            out[b, score_slot(L, r.mask.size(1))] = 1.0 + 0.25 * b
        return out, {}

    pl, vl = Spy(monkeypatch, "policy_loss"), Spy(monkeypatch, "value_loss")
    r, _, _ = ppo_iteration(policy, ref, value, reward_fn, PROMPTS, cfg, cfg.beta, make_optimizer(policy, value, cfg),
                            end_id=END, pad_id=PAD, generator=torch.Generator().manual_seed(0))
    lengths, N = r.lengths.tolist(), r.mask.size(1)
    assert len(set(lengths)) > 2 and min(lengths) < N
    lp, lr = hand_logprobs(policy0, r, cfg.temperature), hand_logprobs(ref, r, cfg.temperature)
    vals = hand_values(value0, r)
    rewards, values = [], []
    for b, L in enumerate(lengths):
        rewards.append([-cfg.beta * (lp[b][t] - lr[b][t]) if t < L else 0.0 for t in range(N)])
        rewards[b][score_slot(L, N)] += 1.0 + 0.25 * b
        values.append([vals[b][t] if t <= L else 0.0 for t in range(N)])
    check_after_end_first_minibatch(pl.calls[0], vl.calls[0], r, lengths, rewards, values, cfg)


# ----------------------------------------------------------------------------------------------------------------
# ppo_iteration: the KL reward against the reference, a frozen reference, pure sampling
def test_per_token_rewards_are_minus_beta_k1_against_the_reference(monkeypatch):
    policy, ref, value = end_biased_gpt(0), tiny_gpt(5), random_value_model(1)
    cfg = cfg_of(beta=0.3)
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    policy0 = copy.deepcopy(policy)
    up = Spy(monkeypatch, "ppo_update")
    zero_task = lambda r: (torch.zeros(r.mask.shape), {})
    r, stats, _ = ppo_iteration(policy, ref, value, zero_task, PROMPTS, cfg, cfg.beta,
                                make_optimizer(policy, value, cfg), end_id=END, pad_id=PAD,
                                generator=torch.Generator().manual_seed(0))
    lp, lr = hand_logprobs(policy0, r, cfg.temperature), hand_logprobs(ref, r, cfg.temperature)
    N = r.mask.size(1)
    want = torch.tensor([[-cfg.beta * (lp[b][t] - lr[b][t]) if t < L else 0.0 for t in range(N)]
                         for b, L in enumerate(r.lengths.tolist())], dtype=torch.float64)
    assert want.abs().max() > 1e-2                                   # pi_ref != pi_theta: the KL is not 0
    assert torch.allclose(up.calls[0]["rewards"].double(), want, atol=1e-5)
    lengths = r.lengths.tolist()
    kl_by_hand = sum(sum(lp[b][t] - lr[b][t] for t in range(L)) for b, L in enumerate(lengths)) / len(PROMPTS)
    assert stats["kl"] == pytest.approx(kl_by_hand, abs=1e-4)


def test_reference_is_frozen_and_untouched():
    policy, ref, value = end_biased_gpt(0), tiny_gpt(5), random_value_model(1)
    ref.train()
    ref0 = copy.deepcopy(ref)
    cfg = cfg_of(beta=0.3)
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in policy.parameters())
    ppo_iteration(policy, ref, value, lambda r: (torch.zeros(r.mask.shape), {}), PROMPTS, cfg, cfg.beta,
                  make_optimizer(policy, value, cfg), end_id=END, pad_id=PAD,
                  generator=torch.Generator().manual_seed(0))
    for (k, p), q in zip(ref.named_parameters(), ref0.parameters()):
        assert torch.equal(p, q) and p.grad is None, k


def test_rollouts_use_pure_sampling_at_the_ppo_temperature(monkeypatch):
    policy, ref, value = end_biased_gpt(0), tiny_gpt(5), random_value_model(1)
    cfg = cfg_of(temperature=0.6)
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    gen = Spy(monkeypatch, "generate")
    ppo_iteration(policy, ref, value, lambda r: (torch.zeros(r.mask.shape), {}), PROMPTS, cfg, cfg.beta,
                  make_optimizer(policy, value, cfg), end_id=END, pad_id=PAD,
                  generator=torch.Generator().manual_seed(0))
    assert gen.calls, "the rollout was not sampled with minialign.generate.generate"
    for call in gen.calls:
        assert call["top_k"] in (0, None) or call["top_k"] >= V          # no top-k truncation
        assert call["top_p"] == 1.0                                       # no nucleus truncation
        assert call["temperature"] == cfg.temperature and not call["greedy"]


# ----------------------------------------------------------------------------------------------------------------
# train_ppo: the learning rate, the adaptive beta across a resume, the value head's normalisation
# A reward-model-shaped stub and a gold stub, shared with tests/test_ppo.py
from test_ppo import FakeRM, gold_stub  # noqa: E402



def run_models():
    from minialign.tokenizer import Tokenizer
    tok = Tokenizer([])                       # 256 bytes + the special tokens: instant
    policy = tiny_gpt(6, vocab=tok.vocab_size)
    ref, rm = copy.deepcopy(policy), FakeRM(tiny_gpt(7, vocab=tok.vocab_size))
    return tok, policy, ref, rm, ValueModel.from_reward_model(rm)


PROMPT_TEXTS = ["ab", "hello", "xyz!", "q"]


def run_cfg(**kw):
    base = dict(iterations=3, batch_size=4, n_minibatches=2, ppo_epochs=1, max_new_tokens=6, norm_samples=8,
                ckpt_every=100, lr=1e-3, n_samples_shown=1)
    return PPOConfig(**{**base, **kw})


def record_iterations(monkeypatch, on_call):
    """Replace ppo.ppo_iteration by a wrapper that calls on_call(arguments by name) first."""
    real = ppo.ppo_iteration
    signature = inspect.signature(real)

    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        on_call(bound.arguments)
        return real(*args, **kwargs)

    monkeypatch.setattr(ppo, "ppo_iteration", wrapper)


def test_learning_rate_anneals_linearly_to_zero(tmp_path, monkeypatch):
    cfg = run_cfg(iterations=3)
    lrs = []
    record_iterations(monkeypatch, lambda a: lrs.append([g["lr"] for g in a["optimizer"].param_groups]))
    tok, policy, ref, rm, vm = run_models()
    train_ppo(policy, ref, rm, vm, tok, PROMPT_TEXTS, cfg, str(tmp_path), torch.device("cpu"), gold_fn=gold_stub)
    want = [cfg.lr * (1 - it / cfg.iterations) for it in range(cfg.iterations)]    # 1e-3, 6.7e-4, 3.3e-4
    assert len(lrs) == cfg.iterations
    for got, w in zip(lrs, want):
        assert got == pytest.approx([w] * len(got), rel=1e-12)


def test_resume_keeps_the_adaptive_beta(tmp_path):
    cfg = run_cfg(iterations=3, adaptive_kl=True, kl_target=0.5, kl_horizon=8, beta=0.2)
    tok, policy, ref, rm, vm = run_models()
    full = train_ppo(policy, ref, rm, vm, tok, PROMPT_TEXTS, cfg, str(tmp_path / "a"), torch.device("cpu"),
                     gold_fn=gold_stub)
    tok, policy2, ref2, rm2, vm2 = run_models()
    assert train_ppo(policy2, ref2, rm2, vm2, tok, PROMPT_TEXTS, cfg, str(tmp_path / "b"), torch.device("cpu"),
                     gold_fn=gold_stub, max_iterations=1) == {}
    tok, policy3, ref3, rm3, vm3 = run_models()
    resumed = train_ppo(policy3, ref3, rm3, vm3, tok, PROMPT_TEXTS, cfg, str(tmp_path / "b"), torch.device("cpu"),
                        gold_fn=gold_stub)
    for history in (full["history"], resumed["history"]):
        beta = cfg.beta                        # Ziegler et al.: beta <- beta (1 + clip(KL/target - 1) B / horizon)
        for it in range(cfg.iterations):
            assert history["beta"][it] == pytest.approx(beta, rel=1e-9), it
            e = min(max(history["kl"][it] / cfg.kl_target - 1, -0.2), 0.2)
            beta *= 1 + e * cfg.batch_size / cfg.kl_horizon
    assert full["history"]["beta"][1] < 0.95 * cfg.beta      # it did adapt before the interruption
    assert resumed["history"]["beta"] == full["history"]["beta"]


def test_value_head_follows_the_score_normalisation(tmp_path, monkeypatch):
    mean, std = 1.5, 4.0
    cfg = run_cfg(iterations=1, beta=0.0, missing_end="replace", missing_end_penalty=1.0)
    tok, policy, ref, rm, vm = run_models()
    vm0 = copy.deepcopy(vm)
    probe = torch.tensor([[3, 70, 71, 72, 73], [80, 81, 82, 83, 84]])
    seen = {}

    def on_call(a):
        with torch.no_grad():
            seen["values"] = a["value_model"](probe, torch.ones_like(probe))

    record_iterations(monkeypatch, on_call)
    up = Spy(monkeypatch, "ppo_update")
    train_ppo(policy, ref, rm, vm, tok, PROMPT_TEXTS, cfg, str(tmp_path), torch.device("cpu"), gold_fn=gold_stub,
              score_norm=(mean, std))
    with torch.no_grad():
        want = (vm0(probe, torch.ones_like(probe)) - mean) / std    # the head predicts normalised scores
    assert torch.allclose(seen["values"], want, atol=1e-5)
    # and the score the update sees is (r_phi - mean) / std on <|end|>, or -penalty without it
    r, rewards = up.calls[0]["rollout"], up.calls[0]["rewards"]
    for b, (p, y) in enumerate(zip(r.prompt_ids, r.response_ids)):
        with torch.no_grad():
            raw = rm(torch.tensor([p + y]), torch.ones(1, len(p) + len(y), dtype=torch.long)).item()
        want_b = torch.zeros(r.mask.size(1))
        want_b[len(y) - 1] = (raw - mean) / std if bool(r.ended[b]) else -1.0
        assert torch.allclose(rewards[b], want_b, atol=1e-5), b
