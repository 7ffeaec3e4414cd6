"""PPO: per-token rewards, GAE, whitening, clipped losses, the KL controller, ratio = 1 on the first
minibatch, a toy task that PPO must learn, and exact resume. Every formula is checked against a plain
loop or a hand computation written here, on tiny random GPTs."""

import copy
import math
import types
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from minialign.model import GPT, GPTConfig
from minialign.ppo import (KLController, PPOConfig, ValueModel, apply_missing_end, collect_rollout,
                           compute_gae, kl_per_token, make_optimizer, place_scores, policy_loss, ppo_iteration,
                           ppo_update, prepare_models, rm_reward_fn, train_ppo, value_loss, value_mask, whiten)

PAD, END = 0, 1
V = 40


def tiny_gpt(seed=0, dropout=0.0, vocab=V, n_layer=1):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=64, n_layer=n_layer, n_head=2, n_embd=32, dropout=dropout))


def prefix_mask(lengths, N):
    return torch.tensor([[1.0] * L + [0.0] * (N - L) for L in lengths])


# ----------------------------------------------------------------------------------------------------------------
# GAE
def test_gae_equals_a_backwards_loop_per_response():
    torch.manual_seed(0)
    lengths, N, gamma, lam = [6, 3, 1, 5], 6, 0.9, 0.8
    mask = prefix_mask(lengths, N)
    rewards, values = torch.randn(4, N), torch.randn(4, N)
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    for b, L in enumerate(lengths):
        a_next = 0.0
        for t in reversed(range(L)):           # only the real tokens of this response
            v_next = values[b, t + 1].item() if t + 1 < L else 0.0
            delta = rewards[b, t].item() + gamma * v_next - values[b, t].item()
            a_next = delta + gamma * lam * a_next
            assert adv[b, t].item() == pytest.approx(a_next, abs=1e-5)
            assert ret[b, t].item() == pytest.approx(a_next + values[b, t].item(), abs=1e-5)
        assert (adv[b, L:] == 0).all() and (ret[b, L:] == 0).all()


def test_gae_with_lambda_one_and_gamma_one_is_reward_to_go_minus_value():
    torch.manual_seed(1)
    mask = prefix_mask([4, 2], 4)
    r, v = torch.randn(2, 4) * mask, torch.randn(2, 4) * mask
    adv, ret = compute_gae(r, v, mask, 1.0, 1.0)
    to_go = torch.flip(torch.cumsum(torch.flip(r, [1]), 1), [1])
    assert torch.allclose(ret, to_go * mask, atol=1e-6)
    assert torch.allclose(adv, (to_go - v) * mask, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Per-token rewards
def test_per_token_rewards_equal_a_hand_built_vector():
    torch.manual_seed(2)
    lengths, N, beta, penalty = [5, 2, 5, 3], 5, 0.3, 1.0
    ended = torch.tensor([True, True, False, True])   # row 2 filled the budget without <|end|>
    mask = prefix_mask(lengths, N)
    logp, ref = -torch.rand(4, N) * mask, -torch.rand(4, N) * mask
    scores = torch.tensor([0.7, -0.2, 3.0, 1.5])
    for position in ("end", "after_end"):
        got = (place_scores(apply_missing_end(scores, ended, "replace", penalty), mask, position)
               - beta * kl_per_token(logp, ref, mask, "k1"))
        want = torch.zeros(4, N)
        for b, L in enumerate(lengths):
            for t in range(L):
                want[b, t] = -beta * (logp[b, t] - ref[b, t])
            s = scores[b].item() if ended[b] else -penalty
            at = L - 1 if position == "end" or L == N else L
            want[b, at] += s
        assert torch.allclose(got, want, atol=1e-6), position


def test_missing_end_modes_and_k3():
    s, ended = torch.tensor([2.0, 2.0]), torch.tensor([True, False])
    assert apply_missing_end(s, ended, "replace", 1.0).tolist() == [2.0, -1.0]
    assert apply_missing_end(s, ended, "subtract", 0.5).tolist() == [2.0, 1.5]
    assert apply_missing_end(s, ended, "none", 1.0).tolist() == [2.0, 2.0]
    lp, rf, m = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.tensor([[1.0, 1.0]])
    for t in range(2):
        r = math.exp(rf[0, t] - lp[0, t])
        assert kl_per_token(lp, rf, m, "k3")[0, t].item() == pytest.approx((r - 1) - math.log(r), abs=1e-6)


def test_after_end_value_mask_adds_one_slot():
    mask = prefix_mask([2, 4, 1], 4)
    assert value_mask(mask, "after_end").tolist() == prefix_mask([3, 4, 2], 4).tolist()
    assert value_mask(mask, "end") is mask


class LastTokenRM(nn.Module):
    """A fake reward model: the score is the id of the last real token (assumes RIGHT padding, like most RMs)."""

    def forward(self, ids, attention_mask):
        last = attention_mask.sum(1) - 1
        return ids[torch.arange(ids.size(0)), last].float()


def test_rm_reward_fn_reads_the_last_real_token_and_normalises():
    # A left-padded rollout: the reward function must re-pack it so a right-padding read-out sees <|end|>.
    cfg = PPOConfig(missing_end="replace", missing_end_penalty=1.0)
    mask = prefix_mask([2, 3], 3)
    rollout = types.SimpleNamespace(prompt_ids=[[5, 6, 7], [8]], response_ids=[[9, 11], [12, 13, 14]],
                                    ended=torch.tensor([True, False]), mask=mask)
    rewards, info = rm_reward_fn(LastTokenRM(), cfg, PAD, score_mean=10.0, score_std=2.0)(rollout)
    assert info["rm_score_raw"].tolist() == [11.0, 14.0]
    want = torch.tensor([[0.0, (11 - 10) / 2, 0.0], [0.0, 0.0, -1.0]])  # row 1 never ended: -penalty
    assert torch.allclose(rewards, want)


# ----------------------------------------------------------------------------------------------------------------
# Whitening
def test_whiten_uses_only_masked_entries_and_the_stated_variance():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, -7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    vals = [1.0, 2.0, 3.0, 4.0, 5.0]
    mu = sum(vals) / 5
    pop = sum((v - mu) ** 2 for v in vals) / 5
    w = whiten(x, mask)
    assert w[0, 0].item() == pytest.approx((1 - mu) / math.sqrt(pop + 1e-8), abs=1e-6)
    w_u = whiten(x, mask, unbiased=True)
    assert w_u[1, 1].item() == pytest.approx((5 - mu) / math.sqrt(pop * 5 / 4 + 1e-8), abs=1e-6)
    w_s = whiten(x, mask, shift_mean=False)
    assert w_s[0, 2].item() == pytest.approx((3 - mu) / math.sqrt(pop + 1e-8) + mu, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# The losses
def test_clipped_policy_and_value_losses_equal_hand_computations():
    logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.1, -3.0, -1.0]])
    old = torch.tensor([[-1.3, -0.5, -1.0], [-0.2, -2.0, -1.0]])
    adv = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 2.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    eps = 0.2
    loss, st = policy_loss(logp, old, adv, mask, eps)
    terms, clipped, sq = [], 0, []
    for b in range(2):
        for t in range(3):
            if not mask[b, t]:
                continue
            ratio = math.exp(logp[b, t] - old[b, t])
            a = adv[b, t].item()
            unclipped, clip = -a * ratio, -a * min(max(ratio, 1 - eps), 1 + eps)
            terms.append(max(unclipped, clip))
            clipped += clip > unclipped
            sq.append((logp[b, t] - old[b, t]).item() ** 2)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-6)
    assert st["clipfrac"] == pytest.approx(clipped / len(terms))
    assert st["approxkl"] == pytest.approx(0.5 * sum(sq) / len(sq), abs=1e-6)

    v = torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 3.0]])
    v_old = torch.tensor([[0.0, 1.1, -0.5], [1.0, 0.1, 0.0]])
    R = torch.tensor([[1.0, 0.0, -2.0], [0.0, 0.3, 0.0]])
    loss_v, st_v = value_loss(v, v_old, R, mask, 0.2)
    terms = []
    for b in range(2):
        for t in range(3):
            if mask[b, t]:
                vc = v_old[b, t] + min(max(v[b, t] - v_old[b, t], -0.2), 0.2)
                terms.append(max((v[b, t] - R[b, t]) ** 2, (vc - R[b, t]) ** 2).item())
    assert loss_v.item() == pytest.approx(0.5 * sum(terms) / len(terms), abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# The KL controller
def test_adaptive_kl_controller_follows_its_formula():
    ctl = KLController(beta=0.1, target=6.0, horizon=1000)
    beta = 0.1
    for kl in [3.0, 6.0, 7.2, 100.0, 0.0]:
        e = min(max(kl / 6.0 - 1, -0.2), 0.2)
        beta = beta * (1 + e * 64 / 1000)
        assert ctl.update(kl, 64) == pytest.approx(beta, rel=1e-12)
    fixed = KLController(beta=0.1)
    assert fixed.update(100.0, 64) == 0.1


# ----------------------------------------------------------------------------------------------------------------
# Rollout log-probs == training log-probs: ratio 1 on the first minibatch
PROMPTS = [[5, 6, 7], [9, 10, 11, 12, 13, 14], [20], [30, 31, 32, 33], [7, 8], [2, 3, 4, 5, 6], [15, 16], [25]]


def rollout_cfg(**kw):
    base = dict(temperature=0.7, max_new_tokens=12, batch_size=8, n_minibatches=2, ppo_epochs=1, lr=1e-3)
    return PPOConfig(**{**base, **kw})


def end_biased_gpt(seed=0, dropout=0.0):
    """A random GPT that emits END often enough for responses of different lengths."""
    m = tiny_gpt(seed, dropout)
    with torch.no_grad():
        m.transformer.wte.weight[END] *= 0.0
        m.transformer.wte.weight[END] += m.transformer.ln_f.weight.sign() * 0.3 * torch.rand(32)
    return m


def test_rollout_logprobs_use_temperature_and_positions():
    policy = end_biased_gpt()
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(1))
    cfg = rollout_cfg()
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    r = collect_rollout(policy, ref, value, PROMPTS, cfg, end_id=END, pad_id=PAD,
                        generator=torch.Generator().manual_seed(0))
    lengths = r.lengths.tolist()
    assert len(set(lengths)) > 2 and r.ended.any() and not r.ended.all()
    P = r.prompt_len
    with torch.no_grad():  # the obvious way: full logits, softmax at T, the token at column P+i read at P-1+i
        logits = policy.logits(policy(r.tokens, attention_mask=r.attention_mask)).double() / cfg.temperature
        logsm = torch.log_softmax(logits, -1)
    for b, L in enumerate(lengths):
        for i in range(L):
            want = logsm[b, P - 1 + i, r.tokens[b, P + i]].item()
            assert r.logprobs[b, i].item() == pytest.approx(want, abs=1e-5)
        assert (r.logprobs[b, L:] == 0).all()
    assert torch.equal(r.logprobs, r.ref_logprobs)  # pi_theta == pi_ref before any update: KL exactly 0


def test_first_minibatch_ratio_is_one_and_approxkl_zero():
    policy = end_biased_gpt(dropout=0.2).train()    # dropout in the config: prepare_models must switch it off
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(1, dropout=0.2))
    cfg = rollout_cfg()
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    r = collect_rollout(policy, ref, value, PROMPTS, cfg, end_id=END, pad_id=PAD, generator=g)
    assert len(set(r.lengths.tolist())) > 2
    rewards = torch.randn(r.mask.shape, generator=torch.Generator().manual_seed(1)) * r.mask
    stats = ppo_update(policy, value, r, rewards, cfg, make_optimizer(policy, value, cfg), g)
    assert stats["first_ratio_maxdev"] < 1e-6
    assert stats["first_approxkl"] < 1e-12 and stats["first_clipfrac"] == 0.0
    assert stats["approxkl"] > 0  # the second minibatch comes after a step: the policy moved


def test_with_dropout_left_on_the_ratio_is_not_one():
    # The same check catches the classic bug: without disable_dropout the training forward is noisy.
    policy = end_biased_gpt(dropout=0.2).train()
    ref, value = copy.deepcopy(policy).eval(), ValueModel(tiny_gpt(1))
    cfg = rollout_cfg()
    g = torch.Generator().manual_seed(0)
    r = collect_rollout(policy, ref, value, PROMPTS, cfg, end_id=END, pad_id=PAD, generator=g)
    stats = ppo_update(policy, value, r, torch.zeros_like(r.mask), cfg, make_optimizer(policy, value, cfg), g)
    assert stats["first_ratio_maxdev"] > 1e-3


# ----------------------------------------------------------------------------------------------------------------
# A toy task: reward one token, PPO must raise its probability
TARGET = 17


def prob_of_target(policy, prompts):
    with torch.no_grad():
        from minialign.generate import left_pad
        ids, mask = left_pad(prompts, PAD)
        h = policy(ids, attention_mask=mask)[:, -1]
        return torch.softmax(policy.logits(h), -1)[:, TARGET].mean().item()


def test_ppo_raises_the_probability_of_a_rewarded_token():
    policy = tiny_gpt(3)
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(4))
    cfg = rollout_cfg(temperature=1.0, max_new_tokens=6, beta=0.0, ppo_epochs=2, lr=3e-3, batch_size=16)
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    opt = make_optimizer(policy, value, cfg)

    def reward_fn(r):  # +1 on every TARGET token of the response, where it was emitted
        return ((r.tokens[:, r.prompt_len:] == TARGET).float() * r.mask), {}

    before = prob_of_target(policy, PROMPTS)
    for it in range(8):
        g = torch.Generator().manual_seed(it)
        ppo_iteration(policy, ref, value, reward_fn, PROMPTS * 2, cfg, 0.0, opt, end_id=END, pad_id=PAD,
                      generator=g)
    after = prob_of_target(policy, PROMPTS)
    assert before < 0.05 and after > 5 * before, (before, after)


# ----------------------------------------------------------------------------------------------------------------
# Value model from a reward model; train_ppo end to end with exact resume
class FakeRM(nn.Module):
    """Reward-model shaped: a GPT trunk, a linear head on the last real token (right padding), a gain."""

    def __init__(self, trunk):
        super().__init__()
        self.trunk, self.head = trunk, nn.Linear(trunk.config.n_embd, 1)
        self.gain = nn.Parameter(torch.tensor(2.0))

    def forward(self, ids, attention_mask):
        h = self.trunk(ids, attention_mask=attention_mask)
        last = attention_mask.sum(1) - 1
        return self.gain * self.head(h[torch.arange(ids.size(0)), last]).squeeze(-1)


def test_value_model_starts_at_the_reward_models_score():
    rm = FakeRM(tiny_gpt(5))
    vm = ValueModel.from_reward_model(rm)
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    attn = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.allclose(vm(ids, attn)[:, -1], rm(ids, attn), atol=1e-5)
        vm.rescale_(1.0, 4.0)
        assert torch.allclose(vm(ids, attn)[:, -1], (rm(ids, attn) - 1.0) / 4.0, atol=1e-5)
    assert vm.trunk is not rm.trunk


def byte_tokenizer():
    from minialign.tokenizer import Tokenizer
    return Tokenizer([])  # 256 bytes + the special tokens, no merges: instant


def gold_stub(prompt, response):
    return types.SimpleNamespace(total=len(response) / 10, components={"length": len(response)})


def make_run_models():
    tok = byte_tokenizer()
    policy = tiny_gpt(6, vocab=tok.vocab_size)
    ref, rm = copy.deepcopy(policy), FakeRM(tiny_gpt(7, vocab=tok.vocab_size))
    return tok, policy, ref, rm, ValueModel.from_reward_model(rm)


def test_train_ppo_resumes_exactly(tmp_path):
    cfg = PPOConfig(iterations=4, batch_size=4, n_minibatches=2, ppo_epochs=1, max_new_tokens=6, norm_samples=8,
                    ckpt_every=100, lr=1e-3, n_samples_shown=2)
    prompts = ["ab", "hello", "xyz!", "q"]
    tok, policy, ref, rm, vm = make_run_models()
    full = train_ppo(policy, ref, rm, vm, tok, prompts, cfg, str(tmp_path / "a"), torch.device("cpu"),
                     gold_fn=gold_stub)
    tok, policy2, ref2, rm2, vm2 = make_run_models()
    assert train_ppo(policy2, ref2, rm2, vm2, tok, prompts, cfg, str(tmp_path / "b"), torch.device("cpu"),
                     gold_fn=gold_stub, max_iterations=2) == {}
    tok, policy3, ref3, rm3, vm3 = make_run_models()      # a fresh process would rebuild the models like this
    resumed = train_ppo(policy3, ref3, rm3, vm3, tok, prompts, cfg, str(tmp_path / "b"), torch.device("cpu"),
                        gold_fn=gold_stub)
    assert resumed["history"]["kl"] == full["history"]["kl"]
    assert resumed["history"]["proxy_reward"] == full["history"]["proxy_reward"]
    for p, q in zip(policy.parameters(), policy3.parameters()):
        assert torch.equal(p, q)
    for k in ("gold_reward", "gold/length", "kl", "entropy", "clipfrac", "approxkl", "value_loss",
              "explained_variance", "response_length", "beta", "frac_ended", "rm_score_raw"):
        assert k in full["history"] and len(full["history"][k]) == 4, k
    assert (tmp_path / "a" / "ppo_curves.png").exists() and (tmp_path / "a" / "metrics.json").exists()
    from minialign.pipeline import load_model
    assert isinstance(load_model(str(tmp_path / "a" / "ckpt.pt"), "cpu"), GPT)
    from minialign.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="different configuration"):
        train_ppo(policy3, ref3, rm3, vm3, tok, prompts, replace(cfg, lr=2e-3), str(tmp_path / "a"),
                  torch.device("cpu"), gold_fn=gold_stub)


def test_pad_equal_to_end_is_refused():
    policy = tiny_gpt()
    with pytest.raises(ValueError, match="pad id equals the end id"):
        collect_rollout(policy, policy, ValueModel(tiny_gpt(1)), PROMPTS, rollout_cfg(), end_id=END, pad_id=END,
                        generator=torch.Generator())


def test_after_end_rollouts_have_a_slot_after_every_end_token():
    # TRL's layout: responses padded to the full budget, so the score can sit one slot after <|end|>.
    policy = end_biased_gpt()
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(1))
    cfg = rollout_cfg(score_position="after_end")
    prepare_models(policy, ref, None, value, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    r = collect_rollout(policy, ref, value, PROMPTS, cfg, end_id=END, pad_id=PAD, generator=g)
    assert r.mask.size(1) == cfg.max_new_tokens and r.tokens.size(1) == r.prompt_len + cfg.max_new_tokens
    short = r.lengths < cfg.max_new_tokens
    assert short.any()
    assert torch.equal(value_mask(r.mask, "after_end").sum(1).long(), r.lengths + short.long())
    stats = ppo_update(policy, value, r, torch.zeros_like(r.mask), cfg, make_optimizer(policy, value, cfg), g)
    assert stats["first_ratio_maxdev"] < 1e-6
