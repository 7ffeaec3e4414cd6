"""GRPO: reinforcement learning on a verifiable reward, with the group as baseline and no critic.

Deck 002, "Current Developments": RL where "the correct answer can be programmatically derived". GRPO (Shao et
al. 2024, DeepSeekMath; then DeepSeek-R1) samples G answers o_1..o_G to each question q from pi_old, scores each
(r_i = 1 when the checker accepts it) and lets the group be the baseline (section 4.1.2, outcome supervision):

    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G),   given to every token of o_i
    J(theta) = E[ 1/G sum_i 1/|o_i| sum_t { min(rho_it A_i, clip(rho_it, 1 - eps, 1 + eps) A_i) - beta D_it } ]  (Eq. 3)
    rho_it = pi_theta(o_it | q, o_i,<t) / pi_old(o_it | q, o_i,<t)
    D_it = pi_ref(o_it | .) / pi_theta(o_it | .) - log(pi_ref(o_it | .) / pi_theta(o_it | .)) - 1  (Eq. 4: k3, >= 0)

Unlike PPO (ppo.py) there is no value model, and the KL to pi_ref is a term of the loss (k3), not of the reward
(docs/grpo.md, sections 1-2; what to watch and the pitfalls: sections 3 and 5).
One iteration, in the order the code runs it:
  1. sample G responses per prompt from pi_theta at temperature T (pure sampling, up to <|end|>);
  2. score: r_i = 1 when the response ended and its answer is exactly right (world.verifiable_reward);
  3. log-probs of pi_old and pi_ref (both at T) by the training forward;
  4. group advantages A_i; groups whose rewards are all equal get A = 0 (and may be dropped);
  5. epochs over shuffled minibatches of the loss -J.
Then `grpo_iteration` (steps 1-5) and, last, the loop `train_grpo`. Under torchrun each process runs steps 1-3 on
its share of the problems (whole groups), then all gather the whole batch (distributed.py).

Flags, each the choice of another paper:
- scale_rewards=False: A_i = r_i - mean, no division by the std (Dr. GRPO, Liu et al. 2025: the std
  up-weights questions that are nearly always or nearly never solved);
- loss_aggregation='token': one sum over the batch's tokens over their count (DAPO, Yu et al. 2025);
  'constant': token sums over a fixed budget, n_rows * max_new_tokens (Dr. GRPO), so that no response's
  tokens weigh more for being short; the default 'sequence' is Eq. 3's 1/|o_i|;
- baseline='leave_one_out': r_i minus the mean of the other G-1 rewards (RLOO, Ahmadian et al. 2024);
- drop_equal_groups: leave out the groups whose rewards are all equal (DAPO's dynamic sampling);
- clip_high above clip_low: DAPO's clip-higher (0.28 vs 0.2); beta=0: no KL term (DAPO drops it).
Deviations, said plainly: the std has Bessel's n-1 and 1e-4 is added to it (TRL, verl); DAPO refills the batch
after dropping groups, we do not; several updates per batch (ppo_epochs x n_minibatches: DeepSeekMath's mu);
rollouts, log-probs, dropout-off and checkpoints are PPO's and the trainers' (ppo.py, training.py).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import distributed
from .chat import end_id as chat_end_id
from .chat import parse_response
from .chat import prompt_ids as chat_prompt_ids
from .checkpoint import check_compatible
from .config import ConfigError, autocast, write_json
from .generate import generate, sample_batches
from .model import GPT, disable_dropout, freeze
from .plotting import GRPO_PANELS, plot_ppo_history
from .ppo import Rollout, kl_per_token, masked_mean, response_logprobs, rollout_from_generation
from .training import (Checkpoint, Clock, append_history, linear_decay, optimizer_step, record_eval, set_lr,
                       steps, stopped_early)
from .world import check_format, verifiable_reward
from .world.reasoning import family_names


@dataclass
class GRPOConfig:
    """GRPO on verifiable problems (defaults sized for a ~1M-parameter model on a CPU)."""

    iterations: int = 60
    """GRPO iterations: each samples `group_size` responses to each of `prompts_per_iteration` problems.
    Range: iterations >= 1."""
    prompts_per_iteration: int = 24
    """Problems q per iteration, drawn without replacement. Most groups of a trained model answer all right (A = 0,
    no gradient), so the few mixed ones carry each step: 24 rather than 8 gave a steadier held-out gain over seeds
    (README, "Measured on the default run"). Range: prompts_per_iteration >= 1."""
    group_size: int = 8
    """G, responses sampled per problem (DeepSeekMath: 64). Range: group_size >= 2 (one sample has no baseline)."""
    temperature: float = 1.0
    """Sampling temperature T; every log-prob (policy, old policy, reference) uses logits / T too.
    Range: temperature > 0."""
    max_new_tokens: int = 80
    """Response budget: a response without <|end|> by then scores 0. Worked answers of the training band take
    up to ~70 tokens of the default tokenizer, the hard band's up to ~115. Range: max_new_tokens >= 1."""
    beta: float = 0.04
    """Weight of the k3 KL term in the loss (DeepSeekMath: 0.04); 0 drops the term (as DAPO does), and the
    reference model may then be None. Range: beta >= 0."""
    clip_low: float = 0.2
    """eps_low: the ratio is clipped below at 1 - clip_low (PPO, DeepSeekMath: 0.2). Range: 0 < clip_low < 1."""
    clip_high: float = 0.2
    """eps_high: the ratio is clipped above at 1 + clip_high; DAPO's clip-higher raises it to 0.28, so that
    unlikely tokens that paid off can grow. Range: clip_high > 0."""
    scale_rewards: bool = True
    """Divide the group-centred rewards by the group's std (DeepSeekMath); False: Dr. GRPO's r - mean.
    Range: scale_rewards in (True, False)."""
    baseline: str = "mean"
    """'mean' of the group's rewards (GRPO), or 'leave_one_out': the mean of the other G-1 (RLOO).
    Range: baseline in ('mean', 'leave_one_out')."""
    loss_aggregation: str = "sequence"
    """'sequence': mean over responses of 1/|o_i| sum_t (DeepSeekMath Eq. 3); 'token': sum over all tokens / their
    count (DAPO); 'constant': sum over all tokens / (responses x max_new_tokens) (Dr. GRPO).
    Range: loss_aggregation in ('sequence', 'token', 'constant')."""
    drop_equal_groups: bool = False
    """Leave out groups whose G rewards are all equal (A = 0: they only dilute the batch); DAPO's dynamic
    sampling, without its refill. Range: drop_equal_groups in (True, False)."""
    ppo_epochs: int = 2
    """Passes over each batch of samples (DeepSeekMath's mu: 1). Range: ppo_epochs >= 1."""
    n_minibatches: int = 2
    """Minibatches per pass; only the first minibatch of the first pass is fully on-policy (ratio 1).
    Range: n_minibatches >= 1."""
    lr: float = 3e-5
    """Adam learning rate (DeepSeekMath: 1e-6 for a 7B model; here 3e-5 kept held-out pass@1 at or above the start
    where 1e-4 let it dip, README). Range: lr > 0."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the iterations. Range: anneal_lr in (True, False)."""
    adam_eps: float = 1e-5
    """Adam epsilon. Range: adam_eps > 0."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this value (TRL, verl: 1); 0: no clipping. Range: max_grad_norm >= 0."""
    ckpt_every: int = 10
    """Checkpoint every this many iterations (and at the end). Range: ckpt_every >= 1."""
    n_samples_shown: int = 4
    """Problems answered before and after training (in metrics.json). Range: n_samples_shown >= 0."""
    # What the `grpo` stage (pipeline.ensure_grpo) trains on and measures; train_grpo itself reads none of these.
    n_problems: int = 800
    """Training problems, an equal share per family, from the train pool (problems SFT did not see, mostly).
    Range: n_problems >= 1."""
    families: str = "count"
    """Comma-separated families (add, count, sort, people); empty: all four. The default, counting, is the family
    the sft_reasoning stage trains on by default."""
    eval_problems: int = 80
    """Held-out problems per family (the test split: problems no stage trained on). Range: eval_problems >= 1."""
    eval_samples: int = 16
    """Samples per held-out problem at temperature T, before and after training: pass@k for k = 1, 2, 4, ... up
    to this. Range: eval_samples >= 1."""
    eval_every: int = 10
    """Held-out pass@1 (2 samples per problem) every this many iterations, for the curve; 0: only before and
    after. Range: eval_every >= 0."""

    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        try:
            family_names(self.families)
        except ValueError as e:
            raise ConfigError(f"--families: {e}") from None
        if self.n_minibatches > self.prompts_per_iteration * self.group_size:
            raise ConfigError(f"--n-minibatches ({self.n_minibatches}) must be at most --prompts-per-iteration x "
                              f"--group-size ({self.prompts_per_iteration * self.group_size} responses)")


# --quick: a handful of tiny iterations, for tests and CI.
QUICK = dict(iterations=3, prompts_per_iteration=4, group_size=4, max_new_tokens=96, ppo_epochs=1,
             n_minibatches=2, ckpt_every=2, n_samples_shown=2, n_problems=16, eval_problems=2, eval_samples=4,
             eval_every=2)


# ----------------------------------------------------------------------------------------------------------------
# 1. Sample G responses per prompt
@torch.no_grad()
def sample_groups(policy: GPT, tok, prompts: list[str], cfg: GRPOConfig, seed: int,
                  groups: range | None = None) -> Rollout:
    """G responses to each prompt by pure sampling at temperature T, in PPO's rollout layout, prompt-major:
    row i * G + j is o_j of prompt i. `rollout.responses` holds the texts up to <|end|>.

    groups: under torchrun, the prompts whose groups this process samples (distributed.rows_of); the rollout
    holds their rows, with the samples one process would draw for them (generate's `rows`).
    """
    if tok.pad_id == chat_end_id(tok):
        raise ValueError("the pad id equals the end id: masks built from pads would hide real end tokens")
    G, groups = cfg.group_size, groups or range(len(prompts))
    encoded = [chat_prompt_ids(tok, p) for p in prompts]                              # once per prompt
    prompt_of = [i for i in range(len(prompts)) for _ in range(G)]                    # the prompt of each row
    rows = range(groups.start * G, groups.stop * G)
    gen = generate(policy, [encoded[i] for i in prompt_of], max_new_tokens=cfg.max_new_tokens,
                   stop_ids=[chat_end_id(tok)], pad_id=tok.pad_id, temperature=cfg.temperature,
                   generator=torch.Generator().manual_seed(seed), rows=rows)
    mine = prompt_of[rows.start:rows.stop]
    r = rollout_from_generation(gen, [encoded[i] for i in mine], tok.pad_id)
    r.mask = r.mask.to(policy.output_weight.device)
    r.prompts = [prompts[i] for i in mine]
    r.responses = [parse_response(tok, ids)[0] for ids in gen.response_ids]
    return r


# ----------------------------------------------------------------------------------------------------------------
# 2. Score: the verifiable reward
def verifiable_rewards(problems: list, rollout: Rollout) -> tuple[torch.Tensor, dict]:
    """r_i = 1.0 when response i ended with <|end|> and its answer is exactly its problem's, else 0.0.

    problems: one world.reasoning Example per row. Returns (rewards (R,), {"correct", "format": (R,)}), where
    "format" is 1 for a well-formed answer (world.check_format), logged, never rewarded.
    """
    ended = rollout.ended.tolist()
    rewards = torch.tensor([verifiable_reward(p, t, e) for p, t, e in zip(problems, rollout.responses, ended)])
    well_formed = torch.tensor([float(check_format(t) is not None) for t in rollout.responses])
    return rewards, {"correct": rewards, "format": well_formed}


# ----------------------------------------------------------------------------------------------------------------
# 3. Log-probs of pi_old and pi_ref, by the training forward
@torch.no_grad()
def add_logprobs(r: Rollout, policy: GPT, ref: GPT | None, cfg: GRPOConfig) -> Rollout:
    """log pi_old and log pi_ref of every response token at temperature T, and pi_old's entropy (B*G, N).

    Recomputed by the forward the update uses, so the first minibatch's ratio is exactly 1. Without a
    reference model (beta = 0) `r.ref_logprobs` stays None.
    """
    with autocast(r.mask.device):
        r.logprobs, r.entropy = response_logprobs(policy, r.tokens, r.attention_mask, r.response_mask,
                                                  r.prompt_len, cfg.temperature, return_entropy=True)
        if ref is not None:
            r.ref_logprobs = response_logprobs(ref, r.tokens, r.attention_mask, r.response_mask, r.prompt_len,
                                               cfg.temperature)
    return r


# ----------------------------------------------------------------------------------------------------------------
# 4. Group advantages
def equal_groups(rewards: torch.Tensor) -> torch.Tensor:
    """(B, G) rewards -> (B,) bool: the groups whose G rewards are all equal."""
    return rewards.amax(1) == rewards.amin(1)


def group_advantages(rewards: torch.Tensor, *, scale: bool = True, baseline: str = "mean",
                     eps: float = 1e-4) -> torch.Tensor:
    """One advantage per response from its group's rewards: (B, G) -> (B, G).

        baseline 'mean':           A_i = r_i - mean_j r_j               (GRPO; Dr. GRPO stops here)
        baseline 'leave_one_out':  A_i = r_i - mean_{j != i} r_j        (RLOO; = G / (G-1) (r_i - mean))
        scale:                     A_i / (std_j r_j + eps), std with Bessel's n-1   (DeepSeekMath 4.1.2)
    A group whose rewards are all equal gets A = 0 exactly (not a rounding error over eps).
    """
    G = rewards.size(1)
    if baseline == "mean":
        adv = rewards - rewards.mean(1, keepdim=True)
    elif baseline == "leave_one_out":
        adv = rewards - (rewards.sum(1, keepdim=True) - rewards) / (G - 1)
    else:
        raise ValueError(f"baseline must be 'mean' or 'leave_one_out', got {baseline!r}")
    if scale:
        adv = adv / (rewards.std(1, keepdim=True) + eps)
    return torch.where(equal_groups(rewards)[:, None], torch.zeros_like(adv), adv)


# ----------------------------------------------------------------------------------------------------------------
# 5. The loss -J (Eq. 3), and the epochs over minibatches
def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str, max_new_tokens: int) -> torch.Tensor:
    """Per-token terms (R, N) -> one scalar: 'sequence' mean_i (1/|o_i|) sum_t; 'token' sum / sum_i |o_i|;
    'constant' sum / (R * max_new_tokens)."""
    total = per_token * mask
    if how == "sequence":
        return (total.sum(1) / mask.sum(1).clamp(min=1)).mean()
    if how == "token":
        return total.sum() / mask.sum().clamp(min=1)
    if how == "constant":
        return total.sum() / (mask.size(0) * max_new_tokens)
    raise ValueError(f"loss_aggregation must be 'sequence', 'token' or 'constant', got {how!r}")


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, clip_low: float, clip_high: float, beta: float,
              aggregation: str = "sequence", max_new_tokens: int = 1) -> tuple[torch.Tensor, dict]:
    """-J of Eq. 3, a loss to minimise, on R responses of N token columns:

        rho_t = exp(log pi_theta - log pi_old)
        l_t   = max(-A rho_t, -A clip(rho_t, 1 - clip_low, 1 + clip_high)) + beta k3_t
        k3_t  = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1                    (Eq. 4)
    aggregated over tokens and responses by `aggregate`. logprobs (R, N) carry the gradient; old_logprobs and
    ref_logprobs (R, N) do not; advantages (R,), one per response; mask (R, N) 1 on response tokens.
    Also returns clip fractions (at the low and the high end), approxkl (old vs new) and the ratio's deviation.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    adv = advantages[:, None].to(ratio.dtype)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(pg1, pg2)
    k3 = None
    if beta > 0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs the reference model's log-probs")
        k3 = kl_per_token(logprobs, ref_logprobs, mask, "k3")
        per_token = per_token + beta * k3
    loss = aggregate(per_token, mask, aggregation, max_new_tokens)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((pg2 > pg1).float(), mask).item(),
                 "clipfrac_low": masked_mean(((ratio < 1 - clip_low) & (adv < 0)).float(), mask).item(),
                 "clipfrac_high": masked_mean(((ratio > 1 + clip_high) & (adv > 0)).float(), mask).item(),
                 "approxkl": 0.5 * masked_mean(log_ratio ** 2, mask).item(),
                 "ratio_maxdev": ((ratio - 1).abs() * mask).max().item()}
        if k3 is not None:
            stats["kl_k3"] = masked_mean(k3, mask).item()
    return loss, stats


UPDATE_STATS = ("loss", "clipfrac", "clipfrac_low", "clipfrac_high", "approxkl", "ratio_maxdev", "first_ratio_maxdev")


def grpo_update(policy: GPT, rollout: Rollout, advantages: torch.Tensor, rows: torch.Tensor, cfg: GRPOConfig,
                optimizer: torch.optim.Optimizer, generator: torch.Generator, loss_of=None) -> dict:
    """`ppo_epochs` passes over shuffled minibatches of the responses `rows` (indices), one step each.

    loss_of: `minibatch_loss` of the policy (distributed.wrap: DDP under torchrun; built here when not given).
    Returns the mean of each minibatch statistic and the first minibatch's ratio deviation (0 when the
    rollout's log-probs and the update's forward agree).
    """
    loss_of = loss_of or distributed.wrap(policy, minibatch_loss)
    mb_size = max(1, len(rows) // cfg.n_minibatches)
    per_mb: list[dict] = []
    for _ in range(cfg.ppo_epochs):
        order = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
        for start in range(0, len(rows) - mb_size + 1, mb_size):
            per_mb.append(grpo_minibatch_step(loss_of, rollout, order[start:start + mb_size], advantages, cfg,
                                              optimizer))
    stats = {k: float(np.mean([s[k] for s in per_mb])) for k in per_mb[0]}
    stats["first_ratio_maxdev"] = per_mb[0]["ratio_maxdev"]
    return stats


def grpo_minibatch_step(loss_of, rollout: Rollout, idx: torch.Tensor, advantages: torch.Tensor, cfg: GRPOConfig,
                        optimizer) -> dict:
    """One gradient step on the responses `idx` (rows of the rollout).

    Under torchrun every process holds the whole rollout and the same idx, and forwards its share, its loss
    weighted by the share's part of the minibatch (responses, or tokens for 'token' aggregation): DDP's average
    of the gradients is then the whole minibatch's (distributed.py). One process: all of it, weights 1.
    """
    n_tokens = rollout.mask[idx].sum(1).tolist()
    mine, w_tok = distributed.shard(range(len(idx)), count=lambda i: n_tokens[i])   # token means (clipfrac, k3)
    _, w_seq = distributed.shard(range(len(idx)))                                    # means over responses
    w = w_tok if cfg.loss_aggregation == "token" else w_seq
    loss, stats = loss_of(rollout, idx[mine], advantages, cfg)
    optimizer_step(optimizer, w * loss, [p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
    largest = stats.pop("ratio_maxdev")                   # a max over the ranks' rows, not a weighted mean
    maxima = distributed.all_reduce_max({"ratio_maxdev": largest if w_seq > 0 else 0.0})  # an empty share: none
    means = distributed.all_reduce_mean({"loss": w * loss.item(), **{k: w_tok * v for k, v in stats.items()}})
    return {**means, **maxima}


def minibatch_loss(policy: GPT, rollout: Rollout, rows: torch.Tensor, advantages: torch.Tensor,
                   cfg: GRPOConfig) -> tuple[torch.Tensor, dict]:
    """-J of the rollout's `rows` under the current policy (grpo_loss), and its statistics."""
    r = rollout
    with autocast(r.mask.device):
        logp = response_logprobs(policy, r.tokens[rows], r.attention_mask[rows], r.response_mask[rows], r.prompt_len,
                                 cfg.temperature)
    ref = r.ref_logprobs[rows] if r.ref_logprobs is not None else None
    return grpo_loss(logp, r.logprobs[rows], ref, advantages[rows], r.mask[rows], clip_low=cfg.clip_low,
                     clip_high=cfg.clip_high, beta=cfg.beta, aggregation=cfg.loss_aggregation,
                     max_new_tokens=cfg.max_new_tokens)


# ----------------------------------------------------------------------------------------------------------------
# One iteration, in order (steps 1-5)
def grpo_iteration(policy: GPT, ref: GPT | None, tok, problems: list, cfg: GRPOConfig, optimizer, *,
                   reward_fn=None, seed: int, generator: torch.Generator, loss_of=None) -> tuple[Rollout, dict]:
    """Steps 1-5 on `problems` (world.reasoning Examples, or anything with `.prompt` that `reward_fn` scores).

    reward_fn(problem per row, rollout) -> (rewards (R,), {name: (R,) per-row info}), row by row; default
    `verifiable_rewards`. loss_of: see grpo_update. Under torchrun, steps 1-3 run on this process's share of
    the problems (whole groups); then every process gathers the whole batch (distributed.gather_rows), so the
    advantages, the minibatch order and the logged numbers are those of one process.
    Returns the rollout and the iteration's statistics.
    """
    clock, G = Clock(), cfg.group_size
    groups = distributed.rows_of(len(problems))             # all of them in one process
    # 1. sample G responses per prompt from pi_theta
    rollout = sample_groups(policy, tok, [p.prompt for p in problems], cfg, seed, groups)
    clock.lap("t_generate")
    # 2. score each response
    rewards, info = (reward_fn or verifiable_rewards)([problems[i] for i in groups for _ in range(G)], rollout)
    clock.lap("t_score")
    # 3. log pi_old, log pi_ref (at T), no gradient
    add_logprobs(rollout, policy, ref, cfg)
    rollout, rewards, info = distributed.gather_rows((rollout, rewards, info))      # the whole batch
    clock.lap("t_logprobs")
    # 4. group advantages, given to every token of a response; DAPO drops the groups with all-equal rewards
    grouped = rewards.float().view(-1, G)
    equal = equal_groups(grouped)
    advantages = group_advantages(grouped, scale=cfg.scale_rewards, baseline=cfg.baseline).reshape(-1)
    keep = ~equal.repeat_interleave(G) if cfg.drop_equal_groups else torch.ones_like(rewards, dtype=torch.bool)
    # 5. epochs over shuffled minibatches of -J
    device = rollout.mask.device
    rows = keep.nonzero().reshape(-1).to(device)
    if len(rows):
        stats = grpo_update(policy, rollout, advantages.to(device), rows, cfg, optimizer, generator, loss_of)
    else:                                    # every group was dropped: no step, and the curves show a gap
        stats = {k: float("nan") for k in UPDATE_STATS + (("kl_k3",) if cfg.beta > 0 else ())}
    clock.lap("t_update")
    stats.update(iteration_stats(rollout, grouped, equal, info, len(rows)), **clock.laps)
    return rollout, stats


def iteration_stats(r: Rollout, grouped: torch.Tensor, equal: torch.Tensor, info: dict, n_trained: int) -> dict:
    """What practitioners watch: reward, pass@1, the share of all-equal groups, length, entropy, KL."""
    out = {"reward": grouped.mean().item(),
           "frac_equal_groups": equal.float().mean().item(),
           "frac_trained": n_trained / grouped.numel(),
           "response_length": r.lengths.float().mean().item(),
           "frac_ended": r.ended.float().mean().item(),
           "entropy": masked_mean(r.entropy, r.mask).item(),
           **{k: v.float().mean().item() for k, v in info.items()}}
    if "correct" in info:
        out["pass@1"] = out.pop("correct")
    if r.ref_logprobs is not None:  # objective/kl as PPO logs it: the mean over responses of the summed k1
        out["kl"] = kl_per_token(r.logprobs, r.ref_logprobs, r.mask, "k1").sum(1).mean().item()
    return out


# ----------------------------------------------------------------------------------------------------------------
# The training loop
def train_grpo(policy: GPT, ref: GPT | None, tok, problems: list, cfg: GRPOConfig, out_dir: str | None, device, *,
               reward_fn=None, seed: int = 0, eval_fn=None, eval_every: int = 0, max_iterations: int | None = None,
               desc: str = "grpo") -> dict:
    """Train `policy` with GRPO on `problems`, resuming from `out_dir/ckpt.pt` when it is there.

    problems: world.reasoning Examples (chat prompts; the default reward checks `meta["answer"]`).
    ref: the frozen reference pi_ref (a copy of the starting policy); None is allowed when cfg.beta == 0.
    eval_fn(policy) -> {name: float}, when given, runs before training and every `eval_every` iterations
    (history["eval"]), e.g. held-out pass@1 from `evaluation.evaluate_reasoning`.
    Writes ckpt.pt (resumable; `model` = the policy), metrics.json and grpo_curves.png. Returns the metrics
    with the history; {} when `max_iterations` stopped it early (tests).
    """
    if ref is None and cfg.beta > 0:
        raise ConfigError(f"--beta {cfg.beta} needs a reference model; give one, or use --beta 0")
    if cfg.prompts_per_iteration > len(problems):
        raise ConfigError(f"--prompts-per-iteration ({cfg.prompts_per_iteration}) is more than the "
                          f"{len(problems)} problems")
    if cfg.prompts_per_iteration < distributed.world_size():
        raise ConfigError(f"--prompts-per-iteration {cfg.prompts_per_iteration}: each of the "
                          f"{distributed.world_size()} processes samples the groups of a share of the problems, so "
                          f"an iteration needs at least {distributed.world_size()}")
    prepare_models(policy, ref, device)
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr, eps=cfg.adam_eps)
    ckpt, state = start_or_resume(out_dir, policy, optimizer, cfg)
    if state["done"]:
        return {**state["metrics"], "history": state["history"]}
    shown, main = problems[:cfg.n_samples_shown], distributed.is_main()    # under torchrun rank 0 evaluates
    if state["samples_before"] is None and main:
        state["samples_before"] = shown_answers(policy, tok, shown, cfg, seed)
    evaluate = lambda it: record_eval(state["history"], it, eval_fn(policy)) if eval_fn and main else None  # noqa
    if state["iteration"] == 0:
        evaluate(0)
    loss_of = distributed.wrap(policy, minibatch_loss)                      # DDP under torchrun

    bar = steps(state, cfg.iterations, desc=desc, unit="it", max_steps=max_iterations, key="iteration")
    for it in bar:
        g = torch.Generator().manual_seed(seed * 1_000_003 + it)      # resuming replays the same problems/samples
        pick = torch.randperm(len(problems), generator=g)[:cfg.prompts_per_iteration].tolist()
        set_lr(optimizer, linear_decay(it, cfg.iterations, cfg.lr) if cfg.anneal_lr else cfg.lr)
        _, stats = grpo_iteration(policy, ref, tok, [problems[i] for i in pick], cfg, optimizer,
                                  reward_fn=reward_fn, seed=seed * 1_000_003 + it, generator=g, loss_of=loss_of)
        append_history(state["history"], it, stats)
        bar.set_postfix({k: f"{stats[k]:.2f}" for k in ("reward", "frac_equal_groups", "kl", "response_length")
                         if k in stats})
        state["iteration"] = it + 1
        if eval_every and state["iteration"] % eval_every == 0:
            evaluate(state["iteration"])
        ckpt.save_every(state, cfg.ckpt_every, cfg.iterations, key="iteration")
    bar.close()
    if stopped_early(ckpt, state, cfg.iterations, key="iteration"):
        return {}
    if eval_fn is not None and main and state["history"]["eval"]["iteration"][-1] != cfg.iterations:
        evaluate(cfg.iterations)
    return finish(ckpt, state, cfg, out_dir, desc, shown_answers(policy, tok, shown, cfg, seed) if main else [])


def prepare_models(policy: GPT, ref: GPT | None, device) -> None:
    """Dropout off (else the first ratio is not 1); the reference frozen in eval mode; both on `device`."""
    if ref is policy:
        raise ValueError("the reference model must be a frozen copy of the policy, not the policy itself")
    disable_dropout(policy).to(device).eval()           # eval(): dropout off; gradients still flow
    if ref is not None:
        freeze(ref).to(device)


def start_or_resume(out_dir: str | None, policy: GPT, optimizer, cfg: GRPOConfig) -> tuple[Checkpoint, dict]:
    """The run's checkpoint and its state: fresh, or the saved one (refused when written with other settings)."""
    ckpt = Checkpoint(out_dir and os.path.join(out_dir, "ckpt.pt"), {"model": policy}, optimizer,
                      model_config=policy.config.to_dict(), grpo_config=asdict(cfg))
    saved = ckpt.saved()
    if saved is not None:
        keys = [k for k in asdict(cfg) if k not in ("ckpt_every", "n_samples_shown")]
        check_compatible(ckpt.path, saved.get("grpo_config", {}), asdict(cfg), keys)
    state = ckpt.resume({"iteration": 0, "history": {}, "samples_before": None}, "GRPO", saved=saved,
                        key="iteration")
    return ckpt, state


def finish(ckpt: Checkpoint, state: dict, cfg: GRPOConfig, out_dir: str | None, desc: str, after: list) -> dict:
    """The finished run: the last iterations' means, the first iteration's numbers, answers before and `after`,
    the figure, metrics.json and the final checkpoint (rank 0 writes; every rank returns rank 0's metrics)."""
    results = write_results(ckpt, state, cfg, out_dir, desc, after) if distributed.is_main() else None
    distributed.barrier()                          # the other ranks wait for the checkpoint
    return distributed.broadcast_object(results)


def write_results(ckpt: Checkpoint, state: dict, cfg: GRPOConfig, out_dir: str | None, desc: str,
                  after: list) -> dict:
    """`finish`'s work on rank 0: the metrics with the history."""
    history = state["history"]
    keys = [k for k in history if k not in ("iteration", "eval")]
    metrics = {**{k: float(np.nanmean(history[k][-5:])) for k in keys},
               "initial": {k: history[k][0] for k in ("reward", "pass@1", "kl", "response_length") if k in history},
               "seconds_per_iteration": float(np.mean([sum(t) for t in zip(*(history[k] for k in keys
                                                                                if k.startswith("t_")))])),
               "iterations": cfg.iterations, "samples": {"before": state["samples_before"], "after": after}}
    if "eval" in history:
        metrics["eval"] = history["eval"]
    if out_dir:
        plot_ppo_history(history, os.path.join(out_dir, "grpo_curves.png"), title=desc, panels=GRPO_PANELS)
        write_json(os.path.join(out_dir, "metrics.json"), {**metrics, "config": asdict(cfg), "history": history})
    ckpt.save(state, done=True, metrics=metrics)
    return {**metrics, "history": history}


@torch.no_grad()
def shown_answers(model: GPT, tok, problems: list, cfg: GRPOConfig, seed: int) -> list[dict]:
    """One answer per problem at the GRPO temperature, for metrics.json: [{prompt, response, reward}]."""
    if not problems:
        return []
    b = next(sample_batches(model, tok, [p.prompt for p in problems], max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, seed=seed + 7, batch_size=len(problems)))
    return [{"prompt": problems[i].prompt, "response": t, "reward": verifiable_reward(problems[i], t, e)}
            for i, t, e in zip(b.rows, b.texts, b.ended)]
