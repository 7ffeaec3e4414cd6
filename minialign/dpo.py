"""Direct Preference Optimization (Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023).

Slides 000/002 "Direct Preference Optimization": instead of a reward model and RL (InstructGPT
steps 2 and 3), DPO "directly trains the LM ... by solving a binary classification problem" on the
preference pairs (x, y_w, y_l), starting from the SFT model pi_ref:

    L_DPO(pi_theta; pi_ref) = -E_(x, y_w, y_l) [ log sigma( beta log pi_theta(y_w|x) / pi_ref(y_w|x)
                                                           - beta log pi_theta(y_l|x) / pi_ref(y_l|x) ) ]
                                                                                  (paper, Eq. 7)

RLHF in disguise: the KL-constrained objective (Eq. 3) is solved in closed form (Eqs. 4-5) and put
into Bradley-Terry, where Z(x) cancels (Eq. 6 -> 7); the implicit reward is
r_hat(x, y) = beta [log pi_theta(y|x) - log pi_ref(y|x)] (Section 5). See docs/dpo.md, section 1.

The steps, as `train_dpo` runs them:
0. Chat-render every pair, prompt and response tokenized apart; drop pairs that do not fit the
   context (never cut a response or its end token) and pairs with y_w == y_l (`render_pairs`).
1. log pi_ref(y_w|x), log pi_ref(y_l|x) ONCE for the whole data set, no_grad, pi_ref in eval mode
   (`reference_logps`): pi_ref never changes.
2. Per batch of B pairs: one forward of pi_theta over [chosen; rejected] (2B rows, right padded),
   log-probs SUMMED over the response and its <|end|>, split at B (`concatenated_logps`).
3. `preference_loss` -> per-pair losses and implicit rewards; mean; backward; clip; step with
   linear warmup. Log `preference_metrics` (TRL's names, `rewards/accuracy` for its `rewards/accuracies`):
   logps/chosen often FALLS while the margin grows, which is expected (docs/dpo.md, section 3 and pitfall 8).
4. Every `eval_every` steps: gold reward and KL(pi_theta || pi_ref) of samples on held-out prompts
   (`evaluation.evaluate_policy`); a checkpoint every `ckpt_every` steps.

Choices and deviations, said plainly:
- Log-probs are summed, as in the paper (Eq. 7 is on sequence likelihoods). `length_normalize` (off
  by default) divides each log-ratio by its number of response tokens instead, as TRL's IPO and
  SimPO-like methods do: NOT the paper's loss, and a different beta scale.
- AdamW (no weight decay), not the paper's RMSprop: RMSprop's squared-gradient average starts at 0
  with no bias correction, so its first steps are huge; the paper hides that under 150 warmup steps
  at lr 1e-6, and our runs are a few hundred steps long. `--optimizer rmsprop` restores the paper's.
- Learning rate: 1e-6 in the paper for billion-parameter models; a 1M-parameter model needs a
  larger one (see DPOConfig.lr).
- Dropout is off (pi_theta and pi_ref in eval mode): with dropout, pi_theta != pi_ref at step 0
  and the loss would not start at log 2.

Under torchrun rank 0 builds the pairs; every rank computes the reference log-probs and trains on
its slice of each batch through DDP, its loss weighted by its share of the pairs (logged metrics
are the whole batch's); rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed
from .batching import pad_batch, sequence_logprob_sums
from .chat import render
from .checkpoint import CheckpointError
from .config import autocast, config_text, write_json
from .evaluation import compare, evaluate_policy
from .loaders import DataError
from .plotting import plot_dpo_training
from .preferences import PreferenceGroup, as_groups
from .training import Checkpoint, optimizer_step, set_lr, steps, stopped_early, warmup_constant


@dataclass
class DPOConfig:
    """DPO: the loss, its variants, the optimizer, the data and the evaluation."""

    beta: float = 0.1
    """beta of Eq. 7: the strength of the implicit KL constraint (small beta: the policy may move far
    from pi_ref). The paper uses 0.1 (0.5 for TL;DR summarization).
    Range: beta > 0 (at beta = 0 the DPO loss is the constant log 2: nothing would train)."""
    loss: str = "sigmoid"
    """'sigmoid' (DPO, Eq. 7) or 'ipo' ((h - 1/(2 beta))^2, Azar et al. 2023, Eq. 17).
    Range: loss in ('sigmoid', 'ipo')."""
    label_smoothing: float = 0.0
    """Conservative DPO (cDPO): the probability epsilon that a preference label is flipped;
    0 = plain DPO. Ignored by 'ipo'. Range: 0 <= label_smoothing < 0.5 (at 0.5 a label says nothing)."""
    reference_free: bool = False
    """Use log pi_ref = 0 (an implicit reference that is uniform over responses)."""
    length_normalize: bool = False
    """Divide each log-ratio by its response length (not the paper; see the module docstring)."""
    lr: float = 5e-5
    """Peak learning rate (the paper's 1e-6 is for a 6B model; a ~1M model needs more, but too large a
    rate over-optimizes: the gold reward rises, then falls as the KL runs away). Range: lr > 0."""
    optimizer: str = "adamw"
    """'adamw' (default, bias-corrected first steps) or 'rmsprop' (the paper's choice).
    Range: optimizer in ('adamw', 'rmsprop')."""
    warmup_steps: int = 20
    """Linear warmup from 0 to lr over this many steps, then constant (as the DPO reference).
    Range: warmup_steps >= 0."""
    epochs: int = 1
    """Passes over the preference pairs (the paper: 1). Range: epochs >= 1."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: epochs x pairs / batch_size). Range: max_steps >= 0."""
    batch_size: int = 32
    """Preference pairs per step (B); one forward sees 2B sequences. Range: batch_size >= 1."""
    grad_clip: float = 10.0
    """Clip the global gradient norm to this (the DPO reference's max_grad_norm); 0 disables. Range: grad_clip >= 0."""
    data: str = ""
    """A preference JSONL file (prompt, chosen, rejected; or prompt + ranked responses) to train on;
    empty = pairs from the embedded world (see pairs_from)."""
    pairs_from: str = "sft_samples"
    """Without data: 'sft_samples' = the DPO paper's recipe, K=4 samples of pi_ref per world prompt
    ranked by the world's noisy annotators (on-policy); 'world' = the reward model's world pairs (the
    reference answer and flawed versions of it, same annotators): off-policy, pi_ref is a poor model
    of them (docs/dpo.md, pitfall 9). Range: pairs_from in ('sft_samples', 'world')."""
    n_prompts: int = 1000
    """World training prompts to build pairs from: up to 6 pairs per prompt (ignored with data).
    Range: n_prompts >= 1."""
    annotator_noise: float = 0.1
    """Bradley-Terry noise of the world's annotators (world.DEFAULT_NOISE; 0 = the oracle's order).
    Range: annotator_noise >= 0."""
    annotator_bias: bool = True
    """The world's annotators are biased (world.AnnotatorBias, as for the reward model); False: unbiased.
    Range: annotator_bias in (True, False)."""
    eval_every: int = 50
    """Evaluate gold reward and KL(pi_theta || pi_ref) on held-out prompts every this many steps
    (0: only at the end). Range: eval_every >= 0."""
    eval_prompts: int = 128
    """Held-out prompts per evaluation. Range: eval_prompts >= 1."""
    eval_samples: int = 2
    """Sampled responses per held-out prompt. Range: eval_samples >= 1."""
    max_new_tokens: int = 48
    """Longest sampled response (evaluations, and pairs_from='sft_samples'). Range: max_new_tokens >= 1."""
    ckpt_every: int = 100
    """Checkpoint every this many steps (and at the end). Range: ckpt_every >= 1."""


# --quick: a few steps on a few pairs, so the stage takes seconds (tests and CI).
QUICK = dict(n_prompts=48, batch_size=8, epochs=1, max_steps=6, warmup_steps=2, eval_every=0,
             eval_prompts=8, eval_samples=1, max_new_tokens=16, ckpt_every=3)


# ----------------------------------------------------------------------------------------------
# The loss
def preference_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                    ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
                    beta: float, *, loss: str = "sigmoid", label_smoothing: float = 0.0,
                    reference_free: bool = False, length_normalize: bool = False,
                    chosen_lengths: torch.Tensor | None = None,
                    rejected_lengths: torch.Tensor | None = None):
    """The DPO loss and its variants, per pair.

    Inputs, all (B,): summed log-probs log pi(y|x) of the chosen (y_w) and rejected (y_l) responses
    under the policy pi_theta and the reference pi_ref; *_lengths: response tokens (end token
    included), needed only with `length_normalize`.
    With the log-ratios  Delta_w = log pi_theta(y_w|x) - log pi_ref(y_w|x),  Delta_l likewise,
    and h = Delta_w - Delta_l:
      loss='sigmoid', label_smoothing=0:   -log sigma(beta h)                       (DPO, Eq. 7)
      loss='sigmoid', label_smoothing=eps: -(1-eps) log sigma(beta h) - eps log sigma(-beta h)
                                           (conservative DPO: labels flipped with prob. eps;
                                            Mitchell 2023, "A note on DPO with noisy preferences", Eq. 3)
      loss='ipo':                          (h - 1/(2 beta))^2    (IPO, Azar et al. 2023, Eq. 17:
                                            regress h to a finite target instead of pushing it to infinity)
      reference_free=True:                 log pi_ref := 0 in Delta_w and Delta_l
      length_normalize=True:               Delta_w / |y_w| and Delta_l / |y_l| (not the paper; see module doc)
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)); the rewards are the
    implicit rewards beta * Delta (of the log-ratios the loss used), detached.
    """
    if reference_free:
        ref_chosen_logps = torch.zeros_like(ref_chosen_logps)
        ref_rejected_logps = torch.zeros_like(ref_rejected_logps)
    delta_w = policy_chosen_logps - ref_chosen_logps                       # (B,) log pi_theta/pi_ref (y_w)
    delta_l = policy_rejected_logps - ref_rejected_logps                   # (B,) log pi_theta/pi_ref (y_l)
    if length_normalize:
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("length_normalize=True needs chosen_lengths and rejected_lengths")
        delta_w = delta_w / chosen_lengths.clamp(min=1)
        delta_l = delta_l / rejected_lengths.clamp(min=1)
    h = delta_w - delta_l                                                  # (B,)
    if loss == "sigmoid":
        losses = (-(1 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    elif loss == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss {loss!r}: use 'sigmoid' or 'ipo'")
    return losses, (beta * delta_w).detach(), (beta * delta_l).detach()


def preference_metrics(chosen_rewards, rejected_rewards, policy_chosen_logps,
                       policy_rejected_logps) -> dict:
    """The logged numbers of one batch, means over its pairs (docs/dpo.md, section 3).

    rewards/chosen, rewards/rejected: beta * log pi_theta/pi_ref of y_w, y_l (the implicit rewards);
    rewards/margins: chosen - rejected (the loss is -log sigma(margin));
    rewards/accuracy: mean(chosen > rejected), strict, so 0 at the start (pi_theta = pi_ref);
    logps/chosen, logps/rejected: summed log pi_theta of y_w, y_l.
    """
    margins = chosen_rewards - rejected_rewards
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": margins.mean().item(),
        "rewards/accuracy": (chosen_rewards > rejected_rewards).float().mean().item(),  # strict >
        "logps/chosen": policy_chosen_logps.detach().mean().item(),
        "logps/rejected": policy_rejected_logps.detach().mean().item(),
    }


# ----------------------------------------------------------------------------------------------
# Data: the comparisons of PreferenceGroups (preferences.py) -> rendered token lists
@dataclass
class RenderedPairs:
    """Token ids and loss masks of the chosen and rejected conversations, one entry per pair."""

    chosen: list
    rejected: list
    too_long: int = 0
    """pairs dropped because a side is longer than the context"""
    ties: int = 0
    """pairs dropped because y_w and y_l are the same tokens (the loss would be constant)"""

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def dropped(self) -> int:
        return self.too_long + self.ties

    def why_dropped(self, max_len: int) -> str:
        return (f"{self.too_long} longer than the context of {max_len} tokens, "
                f"{self.ties} with chosen identical to rejected")


def render_pairs(tok, groups: list[PreferenceGroup], max_len: int) -> RenderedPairs:
    """Chat-render both sides of every comparison (x, y_w, y_l); drop (and count) pairs longer than `max_len`
    tokens and pairs with y_w == y_l."""
    out = RenderedPairs([], [])
    for g, (chosen, rejected) in ((g, c) for g in groups for c in g.comparisons()):
        w, l = render(tok, g.prompt, chosen), render(tok, g.prompt, rejected)
        if max(len(w.ids), len(l.ids)) > max_len:
            out.too_long += 1
        elif w.ids == l.ids:
            out.ties += 1
        else:
            out.chosen.append(w)
            out.rejected.append(l)
    return out


def concatenated_logps(model, tok, chosen: list, rejected: list, device):
    """Step 2: one forward over [chosen; rejected] -> summed log-probs (B,), (B,) and lengths (B,), (B,).

    chosen, rejected: lists of B `chat.Rendered`. Rows 0..B-1 are y_w, rows B..2B-1 are y_l, all right
    padded to the longest; pads and prompt tokens are off the loss mask, so they add nothing.
    """
    rows = chosen + rejected
    batch = pad_batch([r.ids for r in rows], [r.loss_mask for r in rows], tok.pad_id).to(device)
    with autocast(device):
        logps = sequence_logprob_sums(model, batch)                         # (2B,)
    lengths = batch.loss_mask.sum(-1)                                       # (2B,) response + <|end|>
    B = len(chosen)
    return logps[:B], logps[B:], lengths[:B], lengths[B:]


@torch.no_grad()
def reference_logps(ref, tok, data: RenderedPairs, batch_size: int, device) -> torch.Tensor:
    """Step 1: log pi_ref(y_w|x) and log pi_ref(y_l|x) for every pair, once: (N, 2) float32 on CPU."""
    ref.eval()
    out = []
    for s in tqdm(range(0, len(data), batch_size), desc="reference log-probs", leave=False,
                  disable=not distributed.is_main()):
        w, l, _, _ = concatenated_logps(ref, tok, data.chosen[s:s + batch_size],
                                        data.rejected[s:s + batch_size], device)
        out.append(torch.stack([w, l], dim=1).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 2)


# ----------------------------------------------------------------------------------------------
# Training
def make_optimizer(model, cfg: DPOConfig) -> torch.optim.Optimizer:
    """AdamW (default) or RMSprop (the paper), over all parameters, no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use 'adamw' or 'rmsprop'")


def total_steps(n_pairs: int, cfg: DPOConfig) -> int:
    """Optimizer steps of a run: epochs x ceil(pairs / batch), capped by max_steps."""
    steps = cfg.epochs * math.ceil(n_pairs / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps > 0 else steps


def batch_indices(step: int, n: int, cfg: DPOConfig, seed: int) -> list[int]:
    """Pairs of optimizer step `step`: a fresh permutation per epoch, seeded by (seed, epoch)."""
    per_epoch = math.ceil(n / cfg.batch_size)
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[k * cfg.batch_size:(k + 1) * cfg.batch_size].tolist()


def dpo_step(policy, tok, data: RenderedPairs, ref_lp: torch.Tensor, idx: list[int],
             cfg: DPOConfig, device):
    """Steps 2-3 for one batch: returns (mean loss tensor, metrics dict)."""
    pw, pl, nw, nl = concatenated_logps(policy, tok, [data.chosen[i] for i in idx],
                                        [data.rejected[i] for i in idx], device)
    rw, rl = ref_lp[idx, 0].to(device), ref_lp[idx, 1].to(device)
    losses, chosen_r, rejected_r = preference_loss(
        pw, pl, rw, rl, cfg.beta, loss=cfg.loss, label_smoothing=cfg.label_smoothing,
        reference_free=cfg.reference_free, length_normalize=cfg.length_normalize,
        chosen_lengths=nw, rejected_lengths=nl)
    loss = losses.mean()
    metrics = {"loss": loss.item(), **preference_metrics(chosen_r, rejected_r, pw, pl)}
    return loss, metrics


def train_dpo(policy, ref, tok, pairs, cfg: DPOConfig, out_dir: str, device, *, seed: int = 0,
              eval_prompts=None, judge=None, reference_eval: dict | None = None,
              max_steps: int | None = None, quiet: bool = False) -> dict:
    """Train `policy` (initialised as pi_ref, usually the SFT model) with DPO on `pairs`.

    pairs: PreferenceGroups (or anything `preferences.as_groups` accepts). ref: the frozen pi_ref. Resumes from
    `out_dir/ckpt.pt` if a partial one exists. With `eval_prompts`, evaluates gold reward and
    KL(pi_theta || pi_ref) every `cfg.eval_every` steps and at the end, plus the win rate of pi_theta
    against pi_ref (see evaluation.py); `judge` replaces the world's oracle; `reference_eval` is
    pi_ref's own `evaluate_policy` result with the same prompts and settings, when the caller already
    has it. `max_steps` stops early (to simulate an interruption in tests); `quiet` skips printing
    the config. Writes ckpt.pt, metrics.json and dpo_training.png into `out_dir`; returns the
    metrics dict (with the per-step "history"). Under torchrun every rank trains on its slice of each batch
    (module docstring); rank 0 alone evaluates and writes, and every rank returns its metrics.
    """
    device = torch.device(device)
    policy.to(device).eval().requires_grad_(True)            # dropout off: pi_theta = pi_ref at step 0
    ref.to(device).eval().requires_grad_(False)
    data, why = training_pairs(tok, pairs, cfg, policy.config.block_size)    # 0. render, filter
    n_steps = total_steps(len(data), cfg)
    opt = make_optimizer(policy, cfg)
    ckpt = Checkpoint(os.path.join(out_dir, "ckpt.pt"), {"model": policy}, opt,
                      model_config=policy.config.to_dict(), dpo_config=asdict(cfg))
    state = ckpt.resume({"step": 0, "history": {"step": [], "eval": []}, "ref_logps": None}, "DPO",
                        saved=same_pairs(ckpt, len(data)))
    if state["done"]:
        return state["metrics"]
    history = state["history"]
    if not quiet:
        print(f"[dpo] {len(data)} pairs ({why}), "
              f"{n_steps} steps\n{config_text(cfg)}")
    if state["ref_logps"] is None:                           # 1. pi_ref log-probs, once
        state["ref_logps"] = reference_logps(ref, tok, data, 2 * cfg.batch_size, device)
    ref_lp = state["ref_logps"]

    def evaluate(at_step):                                   # 4. gold reward, KL(pi_theta || pi_ref)
        e = evaluate_policy(policy, ref, tok, eval_prompts, judge=judge, n_samples=cfg.eval_samples,
                            max_new_tokens=cfg.max_new_tokens, seed=seed)
        history["eval"].append({"step": at_step, "gold_reward": e["gold_reward"], "kl": e["kl"]})
        return e

    evaluating = eval_prompts is not None and cfg.eval_every > 0 and distributed.is_main()
    if state["step"] == 0 and evaluating:
        evaluate(0)
    loss_of = distributed.wrap(policy, dpo_step)   # dpo_step(policy, ...), DDP under torchrun
    bar = steps(state, n_steps, desc=f"dpo beta={cfg.beta:g}", max_steps=max_steps)
    for step in bar:
        t0 = time.perf_counter()
        set_lr(opt, warmup_constant(step, cfg.lr, cfg.warmup_steps))
        # 2-3. forward, loss: this rank's slice of the step's pairs (all of them in one process)
        idx, weight = distributed.shard(batch_indices(step, len(data), cfg, seed))
        loss, m = loss_of(tok, data, ref_lp, idx, cfg, device)
        loss = loss * weight
        m = global_metrics(m, weight)
        optimizer_step(opt, loss, policy.parameters(), cfg.grad_clip)
        history["step"].append({"step": step, **m, "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{m['loss']:.3f}", margin=f"{m['rewards/margins']:.2f}",
                        acc=f"{m['rewards/accuracy']:.2f}")
        state["step"] = step + 1
        if evaluating and state["step"] % cfg.eval_every == 0 and state["step"] < n_steps:
            evaluate(state["step"])
        ckpt.save_every(state, cfg.ckpt_every, n_steps)
    bar.close()
    if stopped_early(ckpt, state, n_steps):
        return {}
    final = (lambda: final_evaluation(evaluate(n_steps), ref, tok, eval_prompts, cfg, judge, reference_eval,
                                      seed)) if eval_prompts is not None else dict
    return finish(ckpt, state, summarize_run(history, cfg, len(data), data.dropped, n_steps), final, out_dir)


def training_pairs(tok, pairs, cfg: DPOConfig, max_len: int) -> tuple[RenderedPairs, str]:
    """Step 0: the rendered pairs that fit, and why the others were dropped; none left is an error."""
    data = render_pairs(tok, as_groups(pairs), max_len)
    why = f"after dropping {data.why_dropped(max_len)}"
    if len(data) == 0:
        raise DataError(cfg.data or "the preference pairs", None, None, f"no pair is left {why}")
    if len(data) < cfg.batch_size:
        print(f"warning: only {len(data)} preference pairs ({why}), fewer than one batch of --batch-size "
              f"{cfg.batch_size}: every step sees all of them", file=sys.stderr)
    return data, why


def finish(ckpt: Checkpoint, state: dict, metrics: dict, final_evaluation, out_dir: str) -> dict:
    """Rank 0: the final evaluation (`final_evaluation()` -> metrics), figure, metrics.json and last checkpoint;
    every rank returns rank 0's metrics."""
    if distributed.is_main():
        metrics.update(final_evaluation())
        plot_dpo_training(state["history"], os.path.join(out_dir, "dpo_training.png"))
        write_json(os.path.join(out_dir, "metrics.json"), metrics)
        ckpt.save(state, done=True, metrics=metrics)
    distributed.barrier()                  # the other ranks wait for the checkpoint
    return distributed.broadcast_object(metrics if distributed.is_main() else None)


def global_metrics(m: dict, weight: float) -> dict:
    """The whole batch's means from this rank's means `m` over its slice (one process: `m`)."""
    if distributed.world_size() == 1:
        return m
    return distributed.all_reduce_mean({k: v * weight for k, v in m.items()})


def same_pairs(ckpt: Checkpoint, n_pairs: int) -> dict | None:
    """The saved checkpoint, refused when a partial run was trained on other pairs (its pi_ref log-probs,
    computed once, belong to them)."""
    saved = ckpt.saved()
    if saved is not None and not saved.get("done") and saved["ref_logps"].shape[0] != n_pairs:
        raise CheckpointError(f"checkpoint {ckpt.path} was trained on {saved['ref_logps'].shape[0]} "
                              f"pairs, this run has {n_pairs}: use another output folder, or delete "
                              f"the checkpoint to start over")
    return saved


def final_evaluation(final: dict, ref, tok, eval_prompts, cfg: DPOConfig, judge, reference_eval,
                     seed: int) -> dict:
    """pi_theta's and pi_ref's evaluation on the held-out prompts, and pi_theta's win rate over pi_ref."""
    base = reference_eval or evaluate_policy(ref, None, tok, eval_prompts, judge=judge,
                                             n_samples=cfg.eval_samples,
                                             max_new_tokens=cfg.max_new_tokens, seed=seed)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("scores", "groups")}  # noqa: E731
    return {"eval": strip(final), "eval_reference": strip(base),
            "win_rate_vs_reference": compare(final, base)}


def summarize_run(history: dict, cfg: DPOConfig, n_pairs: int, dropped: int, n_steps: int) -> dict:
    """Final metrics: the last 10% of steps averaged, the first step, and the time per step
    (forward, backward and optimizer step only: evaluations and checkpoints excluded)."""
    rows = history["step"]
    tail = rows[-max(1, len(rows) // 10):]
    names = [k for k in rows[0] if k not in ("step", "seconds")]
    last = {k: float(np.mean([r[k] for r in tail])) for k in names}
    first = {k: rows[0][k] for k in names}
    seconds = [r["seconds"] for r in rows]
    return {"final": last, "first_step": first, "steps": n_steps, "pairs": n_pairs,
            "pairs_dropped": dropped, "train_seconds": float(np.sum(seconds)),
            "seconds_per_step": float(np.median(seconds)), "config": asdict(cfg),
            "eval_history": history["eval"], "history": rows}


