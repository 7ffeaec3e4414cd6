"""GRPO: group advantages and the loss of DeepSeekMath Eq. 3 against hand-written loops over the group and the
tokens (with and without every flag), a group of equal rewards carries no policy gradient, the first ratio is 1,
GRPO raises a rewarded behaviour on a toy task, and train_grpo resumes exactly. Tiny random GPTs throughout."""

import copy
import itertools
import math
from dataclasses import replace

import pytest
import torch

from minialign.chat import end_id
from minialign.config import ConfigError, validate
from minialign.grpo import (GRPOConfig, add_logprobs, aggregate, equal_groups, group_advantages, grpo_iteration,
                            grpo_loss, grpo_update, prepare_models, sample_groups, train_grpo)
from minialign.model import GPT, GPTConfig
from minialign.tokenizer import Tokenizer
from minialign.world import reasoning_data

TOK = Tokenizer([])          # 256 bytes + the special tokens, no merges: instant
PROMPTS = ["ab", "hello", "xyz!", "q"]


def tiny_gpt(seed=0, end_bias=0.0):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32, dropout=0.0,
                      bias=True))
    if end_bias:  # emit <|end|> often enough for responses of different lengths: logit(end) ~ end_bias * h_0
        with torch.no_grad():
            m.transformer.ln_f.bias[0] = 1.0
            m.transformer.wte.weight[end_id(TOK)] = 0.0
            m.transformer.wte.weight[end_id(TOK), 0] = end_bias
    return m


# ----------------------------------------------------------------------------------------------------------------
# Step 3: group advantages
REWARDS = torch.tensor([[1.0, 0.0, 0.0, 0.0],      # one right of four
                        [1.0, 1.0, 0.0, 1.0],
                        [0.7, 0.7, 0.7, 0.7],      # all equal (and 0.7 is not exact in binary)
                        [0.0, 0.5, 2.0, -1.0]])


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("baseline", ["mean", "leave_one_out"])
def test_group_advantages_equal_a_loop_over_each_group(scale, baseline):
    got = group_advantages(REWARDS, scale=scale, baseline=baseline)
    for b, group in enumerate(REWARDS.tolist()):
        G = len(group)
        mean = sum(group) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (G - 1))
        for i, r in enumerate(group):
            base = mean if baseline == "mean" else (sum(group) - r) / (G - 1)
            want = (r - base) / (std + 1e-4) if scale else r - base
            if len(set(group)) == 1:
                want = 0.0
            assert got[b, i].item() == pytest.approx(want, abs=1e-5), (b, i)


def test_group_advantages_worked_by_hand():
    one_of_four = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # mean 1/4, sample std sqrt((9/16 + 3/16) / 3) = 1/2
    assert group_advantages(one_of_four, scale=False).tolist()[0] == [0.75, -0.25, -0.25, -0.25]
    assert group_advantages(one_of_four).tolist()[0] == pytest.approx([0.75 / 0.5001, -0.25 / 0.5001,
                                                                       -0.25 / 0.5001, -0.25 / 0.5001])
    # RLOO: the one right answer against the other three (all 0), a wrong one against 1/3
    assert group_advantages(one_of_four, scale=False, baseline="leave_one_out").tolist()[0] == \
        pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    assert equal_groups(REWARDS).tolist() == [False, False, True, False]
    assert (group_advantages(REWARDS)[2] == 0).all()
    # float32 means of eight 0.7s miss 0.7 by an ulp; over std + 1e-4 that would be an advantage of 6e-4
    for baseline in ("mean", "leave_one_out"):
        assert (group_advantages(torch.full((2, 8), 0.7), baseline=baseline) == 0).all()


# ----------------------------------------------------------------------------------------------------------------
# Step 5: the loss, against a loop over responses and tokens
LENGTHS = [5, 3, 1, 4]


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    R, N = len(LENGTHS), 5
    mask = torch.tensor([[1.0] * L + [0.0] * (N - L) for L in LENGTHS])
    old = -torch.rand(R, N, generator=g) * 2
    logp = old + 0.4 * torch.randn(R, N, generator=g)           # ratios on both sides of both clip edges
    ref = old + 0.3 * torch.randn(R, N, generator=g)
    adv = torch.tensor([1.3, -0.7, 0.0, 2.0])
    return logp * mask, old * mask, ref * mask, adv, mask


def loop_loss(logp, old, ref, adv, *, clip_low, clip_high, beta, aggregation, max_new_tokens):
    """-J and d(-J)/d logp, written out token by token (the derivative by hand, not by autograd)."""
    R = len(LENGTHS)
    per_seq, grads, n_clipped = [], torch.zeros_like(logp), 0
    total_tokens = sum(LENGTHS)
    for i, L in enumerate(LENGTHS):
        terms = []
        for t in range(L):
            lp, o, rf, a = logp[i, t].item(), old[i, t].item(), ref[i, t].item(), adv[i].item()
            rho = math.exp(lp - o)
            clipped_rho = min(max(rho, 1 - clip_low), 1 + clip_high)
            surrogate = min(rho * a, clipped_rho * a)
            clipped = clipped_rho * a < rho * a
            n_clipped += clipped
            kl = math.exp(rf - lp) - (rf - lp) - 1
            terms.append(-surrogate + beta * kl)
            d = (0.0 if clipped else -a * rho) + beta * (1 - math.exp(rf - lp))
            weight = {"sequence": 1 / (L * R), "token": 1 / total_tokens, "constant": 1 / (R * max_new_tokens)}
            grads[i, t] = d * weight[aggregation]
        per_seq.append(terms)
    if aggregation == "sequence":
        loss = sum(sum(ts) / len(ts) for ts in per_seq) / R
    elif aggregation == "token":
        loss = sum(sum(ts) for ts in per_seq) / total_tokens
    else:
        loss = sum(sum(ts) for ts in per_seq) / (R * max_new_tokens)
    return loss, grads, n_clipped / total_tokens


@pytest.mark.parametrize("aggregation", ["sequence", "token", "constant"])
@pytest.mark.parametrize("clip_low, clip_high", [(0.2, 0.2), (0.2, 0.28)])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_grpo_loss_and_gradient_equal_a_loop_over_tokens(aggregation, clip_low, clip_high, beta):
    logp, old, ref, adv, mask = fixed_batch()
    logp = logp.clone().requires_grad_(True)
    loss, stats = grpo_loss(logp, old, ref, adv, mask, clip_low=clip_low, clip_high=clip_high, beta=beta,
                            aggregation=aggregation, max_new_tokens=8)
    loss.backward()
    want, want_grad, clipfrac = loop_loss(logp.detach(), old, ref, adv, clip_low=clip_low, clip_high=clip_high,
                                          beta=beta, aggregation=aggregation, max_new_tokens=8)
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert torch.allclose(logp.grad, want_grad, atol=1e-6)
    assert stats["clipfrac"] == pytest.approx(clipfrac)
    assert 0 < clipfrac < 1                                       # the batch does reach the clip edges
    assert ("kl_k3" in stats) == (beta > 0)


def test_clip_higher_lets_a_rewarded_ratio_grow_further():
    # one token, A > 0, ratio 1.25: clipped at 1.2 (no gradient) but not at 1.28
    logp, old = torch.tensor([[math.log(1.25)]], requires_grad=True), torch.zeros(1, 1)
    args = dict(advantages=torch.tensor([1.0]), mask=torch.ones(1, 1), beta=0.0, ref_logprobs=None)
    loss, st = grpo_loss(logp, old, clip_low=0.2, clip_high=0.2, **args)
    assert torch.autograd.grad(loss, logp)[0].item() == 0.0 and st["clipfrac_high"] == 1.0
    loss, st = grpo_loss(logp, old, clip_low=0.2, clip_high=0.28, **args)
    assert torch.autograd.grad(loss, logp)[0].item() == pytest.approx(-1.25) and st["clipfrac_high"] == 0.0


def test_aggregations_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(per_token, mask, "sequence", 3).item() == pytest.approx((6 / 3 + 4 / 1) / 2)   # 3.0
    assert aggregate(per_token, mask, "token", 3).item() == pytest.approx(10 / 4)
    assert aggregate(per_token, mask, "constant", 3).item() == pytest.approx(10 / (2 * 3))


# ----------------------------------------------------------------------------------------------------------------
# A group with all-equal rewards carries no policy gradient
def rollout_and_models(cfg, seed=0):
    policy = tiny_gpt(seed, end_bias=4.0)
    ref = copy.deepcopy(policy)
    prepare_models(policy, ref, "cpu")
    r = sample_groups(policy, TOK, PROMPTS[:2], cfg, seed=seed)
    add_logprobs(r, policy, ref, cfg)
    return policy, ref, r


def loss_on(policy, r, advantages, rows, cfg):
    from minialign.ppo import response_logprobs
    logp = response_logprobs(policy, r.tokens[rows], r.attention_mask[rows], r.response_mask[rows], r.prompt_len,
                             cfg.temperature)
    return grpo_loss(logp, r.logprobs[rows], r.ref_logprobs[rows], advantages[rows], r.mask[rows],
                     clip_low=cfg.clip_low, clip_high=cfg.clip_high, beta=cfg.beta,
                     aggregation=cfg.loss_aggregation, max_new_tokens=cfg.max_new_tokens)[0]


@pytest.mark.parametrize("scale, baseline", [(True, "mean"), (False, "mean"), (True, "leave_one_out")])
def test_a_group_of_equal_rewards_contributes_zero_policy_gradient(scale, baseline):
    cfg = GRPOConfig(group_size=4, max_new_tokens=10, beta=0.0, temperature=0.8)
    policy, _, r = rollout_and_models(cfg)
    assert len(set(r.lengths.tolist())) > 1                     # responses of different lengths
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])   # group 1: all equal
    adv = group_advantages(rewards, scale=scale, baseline=baseline).reshape(-1)
    degenerate, mixed = torch.arange(4, 8), torch.arange(8)
    policy.zero_grad()
    loss_on(policy, r, adv, degenerate, cfg).backward()          # the degenerate group alone
    assert all(p.grad is None or (p.grad == 0).all() for p in policy.parameters())
    # in a mixed batch, the degenerate rows' log-probs receive exactly no gradient
    from minialign.ppo import response_logprobs
    logp = response_logprobs(policy, r.tokens, r.attention_mask, r.response_mask, r.prompt_len, cfg.temperature)
    logp.retain_grad()
    grpo_loss(logp, r.logprobs, None, adv, r.mask, clip_low=0.2, clip_high=0.2, beta=0.0)[0].backward()
    assert (logp.grad[4:] == 0).all() and (logp.grad[:4] * r.mask[:4]).abs().sum() > 0
    # with beta > 0 what is left of the degenerate group is the KL term's gradient, and only that
    cfg_kl = replace(cfg, beta=0.1)
    policy.zero_grad()
    loss_on(policy, r, adv, degenerate, cfg_kl).backward()
    with_kl = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    logp = response_logprobs(policy, r.tokens[degenerate], r.attention_mask[degenerate],
                             r.response_mask[degenerate], r.prompt_len, cfg.temperature)
    from minialign.ppo import kl_per_token
    (0.1 * aggregate(kl_per_token(logp, r.ref_logprobs[degenerate], r.mask[degenerate], "k3"), r.mask[degenerate],
                     "sequence", 10)).backward()
    for a, p in zip(with_kl, policy.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# Iterations on a tiny model
def first_token_reward(problems, rollout):
    """1 when the first response token is an ASCII byte: about half of a random byte-level model's samples."""
    first = torch.tensor([ids[0] < 128 for ids in rollout.response_ids], dtype=torch.float)
    return first, {"correct": first}


class P:  # a problem: only a prompt (the reward ignores answers)
    def __init__(self, prompt):
        self.prompt = prompt


def test_first_minibatch_ratio_is_one():
    cfg = GRPOConfig(group_size=4, max_new_tokens=8, n_minibatches=2, ppo_epochs=2, lr=1e-3, temperature=0.7)
    policy, ref, r = rollout_and_models(cfg)      # every log-prob at T = 0.7: the rollout's and the update's
    adv = torch.randn(8, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    stats = grpo_update(policy, r, adv, torch.arange(8), cfg, opt, torch.Generator().manual_seed(0))
    assert stats["first_ratio_maxdev"] < 1e-6 and stats["approxkl"] > 0   # later minibatches moved


def test_drop_equal_groups_trains_only_on_mixed_groups():
    def by_prompt(problems, rollout):        # prompt "ab": all right; "hello": every other one right
        r = torch.tensor([1.0 if p.prompt == "ab" else float(i % 2 == 0) for i, p in enumerate(problems)])
        return r, {"correct": r}
    policy = tiny_gpt(1)
    ref = copy.deepcopy(policy)
    prepare_models(policy, ref, "cpu")
    for drop, trained in [(False, 1.0), (True, 0.5)]:
        cfg = GRPOConfig(group_size=4, prompts_per_iteration=2, max_new_tokens=6, drop_equal_groups=drop)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        _, st = grpo_iteration(policy, ref, TOK, [P("ab"), P("hello")], cfg, opt, reward_fn=by_prompt, seed=0,
                               generator=torch.Generator().manual_seed(0))
        assert st["frac_trained"] == trained and st["frac_equal_groups"] == 0.5 and st["pass@1"] == 0.75
    # a batch of equal groups only, dropped: no step at all
    cfg = GRPOConfig(group_size=4, prompts_per_iteration=1, max_new_tokens=6, drop_equal_groups=True)
    before = [p.clone() for p in policy.parameters()]
    _, st = grpo_iteration(policy, ref, TOK, [P("ab")], cfg, torch.optim.Adam(policy.parameters(), lr=1e-2),
                           reward_fn=by_prompt, seed=0, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters())) and math.isnan(st["loss"])


def test_grpo_raises_a_rewarded_behaviour():
    policy = tiny_gpt(3)
    ref = copy.deepcopy(policy)
    cfg = GRPOConfig(group_size=8, prompts_per_iteration=4, max_new_tokens=1, beta=0.0, lr=1e-2, ppo_epochs=2)
    prepare_models(policy, ref, "cpu")
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    problems = [P(p) for p in PROMPTS]
    rewards = []
    for it in range(10):
        _, st = grpo_iteration(policy, ref, TOK, problems, cfg, opt, reward_fn=first_token_reward, seed=it,
                               generator=torch.Generator().manual_seed(it))
        rewards.append(st["reward"])
    assert rewards[0] < 0.7 and min(rewards[-2:]) > 0.9, rewards


def test_train_grpo_resumes_exactly_and_refuses_other_settings(tmp_path):
    cfg = GRPOConfig(iterations=4, prompts_per_iteration=2, group_size=4, max_new_tokens=6, ckpt_every=100,
                     lr=1e-3, n_samples_shown=2)
    problems = [P(p) for p in PROMPTS]

    def models():
        policy = tiny_gpt(6)
        return policy, copy.deepcopy(policy)

    policy, ref = models()
    full = train_grpo(policy, ref, TOK, problems, cfg, str(tmp_path / "a"), "cpu", reward_fn=first_token_reward)
    policy2, ref2 = models()
    assert train_grpo(policy2, ref2, TOK, problems, cfg, str(tmp_path / "b"), "cpu", reward_fn=first_token_reward,
                      max_iterations=2) == {}
    policy3, ref3 = models()                                     # a fresh process rebuilds the models like this
    resumed = train_grpo(policy3, ref3, TOK, problems, cfg, str(tmp_path / "b"), "cpu",
                         reward_fn=first_token_reward)
    assert resumed["history"]["reward"] == full["history"]["reward"]
    assert resumed["history"]["kl"] == full["history"]["kl"]
    for p, q in zip(policy.parameters(), policy3.parameters()):
        assert torch.equal(p, q)
    for k in ("reward", "pass@1", "frac_equal_groups", "response_length", "entropy", "kl", "kl_k3", "clipfrac",
              "clipfrac_high", "approxkl", "frac_ended", "first_ratio_maxdev"):
        assert len(full["history"][k]) == 4, k
    assert (tmp_path / "a" / "grpo_curves.png").exists() and (tmp_path / "a" / "metrics.json").exists()
    from minialign.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="different configuration"):
        train_grpo(policy3, ref3, TOK, problems, replace(cfg, beta=0.5), str(tmp_path / "a"), "cpu",
                   reward_fn=first_token_reward)


def test_beta_zero_runs_without_a_reference_and_beta_needs_one(tmp_path):
    cfg = GRPOConfig(iterations=1, prompts_per_iteration=2, group_size=2, max_new_tokens=4, beta=0.0,
                     n_samples_shown=0)
    m = train_grpo(tiny_gpt(7), None, TOK, [P(p) for p in PROMPTS], cfg, None, "cpu", reward_fn=first_token_reward)
    assert "kl" not in m["history"] and "kl_k3" not in m["history"]
    with pytest.raises(ConfigError, match="needs a reference model"):
        train_grpo(tiny_gpt(7), None, TOK, [P("a")] * 2, replace(cfg, beta=0.1), None, "cpu")
    with pytest.raises(ConfigError, match="--n-minibatches"):
        validate(GRPOConfig(prompts_per_iteration=1, group_size=2, n_minibatches=3))


def test_the_default_reward_checks_the_exact_answer():
    from minialign.grpo import verifiable_rewards
    import types
    problems = reasoning_data(seed=0, n_per_family=1, families=["add"]) * 3
    answer = problems[0].answers[0]
    rollout = types.SimpleNamespace(responses=[f"The answer is {answer}.", f"The answer is 0{answer}.",
                                               f"The answer is {answer}."], ended=torch.tensor([True, True, False]))
    rewards, info = verifiable_rewards(problems, rollout)
    assert rewards.tolist() == [1.0, 0.0, 0.0] and info["format"].tolist() == [1.0, 1.0, 1.0]


def test_pass_at_k_equals_counting_subsets():
    from minialign.evaluation import pass_at_k
    for n, c in [(5, 2), (8, 1), (4, 0), (6, 6)]:
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_evaluate_reasoning_counts_exact_ended_answers(monkeypatch):
    import types
    from minialign import evaluation
    problems = reasoning_data(seed=0, n_per_family=1, families=["add", "sort"], splits="test")
    right = [p.answers[0] for p in problems]
    texts = [[f"The answer is {right[0]}.", "The answer is 1.", f"The answer is {right[0]}.",
              f"Let me think. 1 plus 1 is 2, so 2. The answer is {right[0]}."],
             ["The answer is 1.", "no idea", f"The answer is 0{right[1]}.", "The answer is 2."]]
    ended = [[True, True, False, True], [True, False, True, True]]

    def fake_sample_batches(model, tok, prompts, *, n, **kw):      # prompt-major rows, as sample_batches gives
        assert prompts == [p.prompt for p in problems] and n == 4
        gen = types.SimpleNamespace(response_ids=[[0] * (3 + j) for i in range(2) for j in range(4)])
        yield types.SimpleNamespace(rows=[i for i in range(2) for _ in range(4)], gen=gen,
                                    texts=texts[0] + texts[1], ended=ended[0] + ended[1])

    monkeypatch.setattr(evaluation, "sample_batches", fake_sample_batches)
    out = evaluation.evaluate_reasoning(None, TOK, problems, n_samples=4, ks=(1, 2, 4))
    # problem 0: 2 of 4 right (the third never ended); problem 1: none ("0..." is not the answer)
    assert out["pass@1"] == pytest.approx((2 / 4 + 0) / 2)
    assert out["pass@2"] == pytest.approx((1 - 1 / 6 + 0) / 2)              # 1 - C(2,2)/C(4,2)
    assert out["pass@4"] == pytest.approx(0.5) and out["pass@1_se"] == pytest.approx(0.25)
    assert out["format"] == pytest.approx(7 / 8) and out["worked"] == pytest.approx(1 / 8)   # all but "no idea"
    assert out["response_tokens"] == pytest.approx(4.5) and out["ended"] == pytest.approx(6 / 8)
    assert out["families"]["add"]["pass@1"] == 0.5 and out["families"]["sort"]["pass@1"] == 0.0
    assert out["correct_counts"] == [2, 0]


def test_paired_difference_is_the_mean_and_se_of_per_problem_differences():
    from minialign.evaluation import paired_difference
    before, after = [0, 2, 4, 1], [3, 2, 4, 4]                      # correct samples of 4, same four problems
    d = [0.75, 0.0, 0.0, 0.75]                                       # per-problem pass@1 differences, by hand
    mean = sum(d) / 4
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 3) / math.sqrt(4)
    assert paired_difference(before, after, 4, 4) == (pytest.approx(mean), pytest.approx(se))
    assert paired_difference(before, after, 4, 4)[0] == pytest.approx(0.375)
    with pytest.raises(ValueError, match="paired comparison of 4 and 3 problems"):
        paired_difference(before, after[:3], 4, 4)


def test_bad_families_are_refused_with_the_known_names():
    from minialign.sft import ReasoningSFTConfig
    for cls in (GRPOConfig, ReasoningSFTConfig):
        validate(cls(families="add, sort"))
        with pytest.raises(ConfigError, match="--families: unknown family 'adds': use one or more of add, count"):
            validate(cls(families="adds,sort"))


@pytest.mark.slow
def test_quick_sft_on_both_forms_then_grpo_from_the_worked_model(tmp_path):
    """--quick scale end to end: a tiny base model, SFT on each form at the same budget, held-out evaluation,
    and GRPO from the worked-steps model with a held-out pass@1 hook (mechanics only: the model is too small to
    learn the tasks)."""
    from minialign.evaluation import evaluate_reasoning
    from minialign.grpo import QUICK
    from minialign.pipeline import Run, ensure_pretrained
    from minialign.sft import SFTConfig, train_sft

    run = Run(out=str(tmp_path), preset="tiny", device=torch.device("cpu"), seed=0, quick=True)
    base, tok = ensure_pretrained(run)
    held_out = reasoning_data(seed=0, n_per_family=2, splits=("test", "hard"))
    sft_cfg = SFTConfig(steps=6, batch_size=8, warmup_steps=2, ckpt_every=100, eval_loss_every=0)
    models = {}
    for form in ("answer", "worked"):
        data = reasoning_data(seed=0, n_per_family=12, splits="train", form=form)
        model, metrics = train_sft(copy.deepcopy(base), tok, data, sft_cfg, out_dir=str(tmp_path / form),
                                   device="cpu", seed=0)
        assert metrics["steps"] == 6 and metrics["n_examples"] == 48        # the same budget for both forms
        scores = evaluate_reasoning(model, tok, held_out, greedy=True, max_new_tokens=96)
        assert 0.0 <= scores["pass@1"] <= 1.0 and set(scores["splits"]) == {"test", "hard"}
        models[form] = model
    cfg = GRPOConfig(**QUICK)
    problems = reasoning_data(seed=0, n_per_family=4, splits="train")
    eval_fn = lambda p: {"pass@1": evaluate_reasoning(p, tok, held_out[:4], greedy=True,  # noqa: E731
                                                      max_new_tokens=cfg.max_new_tokens)["pass@1"]}
    policy, ref = copy.deepcopy(models["worked"]), copy.deepcopy(models["worked"])
    m = train_grpo(policy, ref, tok, problems, cfg, str(tmp_path / "grpo"), "cpu", eval_fn=eval_fn)
    h = m["history"]
    assert len(h["reward"]) == cfg.iterations and h["eval"]["iteration"] == [0, cfg.iterations]
    assert max(h["first_ratio_maxdev"]) < 1e-5 and all(math.isfinite(x) for x in h["kl"])
    assert (tmp_path / "grpo" / "grpo_curves.png").exists() and (tmp_path / "grpo" / "metrics.json").exists()
    assert len(m["samples"]["before"]) == cfg.n_samples_shown


def test_the_default_budget_holds_every_worked_answer_of_the_training_band():
    """A worked answer cut off by max_new_tokens scores 0 whatever it says (docs/grpo.md, pitfall 6): with the
    default scale's tokenizer, every worked answer of the train and test splits must fit GRPO's default budget."""
    from minialign.chat import response_ids
    from minialign.pipeline import VOCAB_SIZE
    from minialign.tokenizer import train_bpe
    from minialign.world import pretraining_corpus
    tok = train_bpe(pretraining_corpus(seed=0), vocab_size=VOCAB_SIZE["tiny"], progress=False)
    lengths = [len(response_ids(tok, ex.response))
               for ex in reasoning_data(seed=0, n_per_family=200, splits=("train", "test"), form="worked")]
    assert max(lengths) <= GRPOConfig().max_new_tokens, max(lengths)
