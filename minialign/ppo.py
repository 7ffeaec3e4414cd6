"""PPO with a per-token KL penalty: InstructGPT step 3, "Optimize a policy against the reward model using RL".

Slides 000 "Step 3" and 002 "RLHF: Proximal Policy Optimization". The policy pi_theta answers prompts x, the frozen
reward model r_phi scores each (x, y), and a KL penalty keeps pi_theta near the frozen SFT model pi_ref. The
slide's r = r_phi - beta KL, per response token t (Ouyang et al. 2022, Eq. 2; docs/ppo.md, section 1):

    r_t = - beta * (log pi_theta(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))   (+ r_phi(x, y) at the last token)

The sections follow one iteration, in the order of lm-human-preferences, lmhpd and TRL (docs/ppo.md, section 2):
  1. sample y ~ pi_theta(. | x) at temperature T, pure sampling (top_k=0, top_p=1), stopping at <|end|>;
  2. score: r_phi(x, y) at the last real token, normalised; a penalty when <|end|> never came (`missing_end`). Any
     `reward_fn(rollout)` -> per-token task rewards (B, N) can replace it (finegrained.py does);
  3. log-probs of pi_old and pi_ref (both at T, by the training forward) and the values V(s_t);
  4. the per-token KL (k1) and the shaped reward r_t = task_t - beta * KL_t;
  5. whitening: optionally the rewards (scale only) before GAE, the advantages after it;
  6. GAE advantages and returns;
  7. PPO epochs over shuffled minibatches: clipped surrogate + vf_coef * clipped value loss;
  8. the KL controller: beta fixed, or adapted (Ziegler et al. 2019).
Then `ppo_update` (steps 5-7), `ppo_iteration` (steps 1-7) and, last, the loop `train_ppo` (step 8). Under torchrun
each process runs steps 1-3 on its share of the prompts, then all gather the whole batch (distributed.py).

Deviations / choices, said plainly (the flags give the other references' behaviour):
- Score on the last real token (textbook MDP, OpenRLHF, old TRL); `score_position="after_end"` puts it one slot
  later (TRL >= 0.12, summarize-from-feedback-details; docs/ppo.md, pitfall 6).
- Value model: a separate trunk + head copied from the reward model (summarize-from-feedback-details, TRL), not
  OpenAI's zero-initialised head (docs/ppo.md, section 7); one Adam on L_pg + vf_coef * L_vf, as in TRL.
- RM scores normalised to mean 0, std 1 on samples of the initial policy (OpenAI `normalize_before`), so beta and
  the -1 penalty mean the same for any reward model; `normalize_score=False` turns it off.
- Whitening: advantages over the rollout (lmhpd, TRL; OpenAI: `whiten_advantages="minibatch"`); rewards left as
  they are (TRL; OpenAI, lmhpd: `whiten_rewards=True`); population variances, divided by n (OpenAI, lmhpd; TRL's
  Bessel n-1: `unbiased_variance=True`).
- Losses are means over the response tokens of a minibatch (TRL's masked_mean), not per sequence; rows that do
  not fill a last minibatch are dropped in that epoch.
- Precision: on a GPU, sampling, old/reference log-probs and the update share one bf16 autocast (the sampler is
  the pi_old of the ratio); log-probs accumulate and scalar heads run in float32. On a CPU, all is float32.
- Dropout off in every model, pi_ref and r_phi frozen in eval mode, pad token != <|end|> (checked): otherwise the
  first ratio is not 1 (docs/ppo.md, section 6) or pads hide real end tokens (pitfall 3).
- PyTorch's Adam (eps 1e-5), not lmhpd's TF-style one; lr above the references' 1e-5 (models of ~1M, not 124M+).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from . import distributed
from .batching import pad_batch, sequence_token_logprobs
from .chat import end_id as chat_end_id
from .chat import parse_response, prompt_ids as chat_prompt_ids
from .checkpoint import check_compatible
from .config import ConfigError, autocast, write_json
from .evaluation import gold_stats, prompt_text, sample_and_score
from .generate import generate
from .model import GPT, disable_dropout, freeze, scalar_head
from .plotting import plot_ppo_history
from .training import (Checkpoint, Clock, append_history, linear_decay, optimizer_step, record_eval, set_lr,
                       steps)
from .world import gold_reward


@dataclass
class PPOConfig:
    """PPO against a reward model with a per-token KL penalty (defaults sized for a ~1M-parameter model on a CPU)."""

    iterations: int = 60
    """PPO iterations: each samples `batch_size` responses and updates on them. Range: iterations >= 1."""
    batch_size: int = 32
    """Episodes (prompt, response) per rollout batch (OpenAI, lmhpd: 512; a ~1M-parameter CPU run: 32).
    Range: batch_size >= 1."""
    n_minibatches: int = 2
    """Minibatches per PPO epoch (OpenAI, lmhpd and TRL use 1 with 512-episode batches). Range: n_minibatches >= 1."""
    ppo_epochs: int = 4
    """Passes over each rollout batch (OpenAI, lmhpd, TRL: 4; InstructGPT: 1). Range: ppo_epochs >= 1."""
    n_prompts: int = 1024
    """RL prompts drawn from the world (`rl_prompts`); each iteration samples from them. Range: n_prompts >= 1."""
    prompt_kind: str = "instruction"
    """The world's RL prompt set (`world.rl_prompts`); keep RMConfig.rl_prompt_kind equal. Default 'instruction' (the
    world's instruction prompts, train split): where the demonstrators' flaws are, and what the final table measures.
    Range: prompt_kind in ('instruction', 'sentiment', 'toxic', 'story')."""
    prompt_split: str = "train"
    """Split of those prompts: 'train' (the held-out 'test' prompts are for evaluation).
    Range: prompt_split in ('train', 'test')."""
    temperature: float = 0.7
    """Sampling temperature T; every log-prob (policy, old policy, reference) uses logits / T too.
    Range: temperature > 0."""
    max_new_tokens: int = 32
    """Response budget; responses without <|end|> by then get the missing-end penalty. Range: max_new_tokens >= 1."""
    beta: float = 0.1
    """KL coefficient beta of r_t = -beta (log pi_theta - log pi_ref): the initial value if adaptive.
    Range: beta >= 0 (the KL coefficient; 0 turns the penalty off)."""
    adaptive_kl: bool = False
    """Adapt beta towards `kl_target` (Ziegler et al. 2019); off: beta stays fixed (TRL, InstructGPT)."""
    kl_target: float = 4.0
    """Target sequence KL (nats) of the adaptive controller (OpenAI: 6 for 24-token responses). Range: kl_target > 0."""
    kl_horizon: int = 2000
    """Horizon of the adaptive controller: beta *= 1 + e * batch_size / horizon (OpenAI: 10000).
    Range: kl_horizon >= 1."""
    kl_estimator: str = "k1"
    """Per-token KL penalty: k1 = log pi_theta - log pi_ref (OpenAI, lmhpd, TRL default) or k3.
    Range: kl_estimator in ('k1', 'k3')."""
    score_position: str = "end"
    """Where the score goes: 'end' = the last real response token (OpenRLHF, old TRL, OpenAI); 'after_end' = one
    slot later (TRL >= 0.12, summarize-from-feedback-details). Range: score_position in ('end', 'after_end')."""
    missing_end: str = "replace"
    """Responses without <|end|>: 'replace' the score by -missing_end_penalty (OpenAI's code, lmhpd,
    summarize-from-feedback-details), 'subtract' the penalty from it (TRL missing_eos_penalty), or 'none'.
    Range: missing_end in ('replace', 'subtract', 'none')."""
    missing_end_penalty: float = 1.0
    """Size of the missing-end penalty, in normalised score units. Range: missing_end_penalty >= 0."""
    normalize_score: bool = True
    """Normalise RM scores to mean 0 / std 1 on samples of the initial policy at temperature T (OpenAI
    normalize_before). reward.py already normalises on SFT samples at T=1; this re-measures at PPO's T."""
    norm_samples: int = 256
    """Responses sampled from the initial policy to measure that mean and std.
    Range: norm_samples >= 2 (a standard deviation needs two)."""
    whiten_rewards: bool = False
    """Whiten per-token rewards (shift_mean=False) before GAE: OpenAI/lmhpd yes, TRL/summarize no."""
    gamma: float = 1.0
    """Discount of GAE (all references: 1). Range: 0 <= gamma <= 1."""
    lam: float = 0.95
    """GAE lambda (all references: 0.95). Range: 0 <= lam <= 1."""
    whiten_advantages: str = "batch"
    """Advantage whitening over the whole 'batch' (lmhpd, TRL), per 'minibatch' (OpenAI) or 'none'.
    Range: whiten_advantages in ('batch', 'minibatch', 'none')."""
    unbiased_variance: bool = False
    """Whitening variance with Bessel's n-1 (TRL) instead of the population variance (OpenAI, lmhpd)."""
    cliprange: float = 0.2
    """PPO clip epsilon of the ratio pi_theta / pi_old. Range: 0 < cliprange < 1."""
    cliprange_value: float = 0.2
    """Clip of the value update around the rollout's values. Range: cliprange_value > 0."""
    vf_coef: float = 0.1
    """Weight of the value loss in L_pg + vf_coef * L_vf (all references: 0.1). Range: vf_coef >= 0."""
    ent_coef: float = 0.0
    """Entropy bonus weight (0: none, as OpenAI, lmhpd and TRL). Range: ent_coef >= 0."""
    lr: float = 1e-4
    """Adam learning rate of the policy and the value model (references: 1e-5 to 3e-6 for 124M+ models).
    Range: lr > 0."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the iterations (OpenAI, lmhpd)."""
    adam_eps: float = 1e-5
    """Adam epsilon (lmhpd: 1e-5; PyTorch default 1e-8). Range: adam_eps > 0."""
    max_grad_norm: float = 0.0
    """Clip the gradient norm to this value; 0: no clipping (OpenAI, lmhpd; TRL clips at 1).
    Range: max_grad_norm >= 0."""
    ckpt_every: int = 10
    """Checkpoint every this many iterations (and at the end). Range: ckpt_every >= 1."""
    n_samples_shown: int = 4
    """Prompts answered before and after PPO (in metrics.json). Range: n_samples_shown >= 0."""


    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        if self.n_minibatches > self.batch_size:
            raise ConfigError(f"--n-minibatches ({self.n_minibatches}) must be at most --batch-size "
                              f"({self.batch_size}): each minibatch needs at least one episode")


# --quick: a handful of tiny iterations, for tests and CI.
QUICK = dict(iterations=3, batch_size=8, n_minibatches=2, ppo_epochs=2, n_prompts=32, max_new_tokens=16,
             norm_samples=16, ckpt_every=2, lr=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# Setup: the value model V, dropout off, the reference pi_ref and the reward model r_phi frozen, one optimizer
# ----------------------------------------------------------------------------------------------------------------


class ValueModel(nn.Module):
    """V(s_t): a GPT trunk and a linear head giving one scalar per position.

    forward(ids (B, T), attention_mask (B, T)) -> values (B, T) float32; values[:, t] is the value of the
    state that has seen ids[:, :t+1], so the value before response token i is column P-1+i.
    """

    def __init__(self, trunk: GPT, head: nn.Linear | None = None):
        super().__init__()
        self.trunk = trunk
        if head is None:  # zero-initialised head (OpenAI, lmhpd): V = 0 everywhere at the start
            head = nn.Linear(trunk.config.n_embd, 1)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.head = head

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.trunk(ids, attention_mask=attention_mask)                  # (B, T, C)
        return scalar_head(self.head, h)                                    # (B, T) float32

    @classmethod
    def from_reward_model(cls, reward_model) -> "ValueModel":
        """A deep copy of the reward model's trunk and head, read out at every position instead of the last.

        Any scalar gain/bias the reward model applies after its head is folded into the copied head,
        so at the start V(s_t) at the last token equals the reward model's score.
        """
        trunk = copy.deepcopy(reward_model.trunk)
        w, b = _reward_head_affine(reward_model)
        head = nn.Linear(trunk.config.n_embd, 1)
        with torch.no_grad():
            head.weight.copy_(w.reshape(1, -1))
            head.bias.copy_(b.reshape(1))
        model = cls(trunk, head)
        model.requires_grad_(True)
        return model

    @torch.no_grad()
    def rescale_(self, mean: float, std: float) -> None:
        """Make the head predict (v - mean) / std: used when the scores it learned are normalised."""
        self.head.weight.div_(std)
        self.head.bias.sub_(mean).div_(std)


def _reward_head_affine(reward_model) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (C,), bias ()) of score = weight . h + bias, folding a gain/bias after the head if any."""
    head = getattr(reward_model, "head", None)
    if not isinstance(head, nn.Linear) or head.out_features != 1:
        raise TypeError(f"{type(reward_model).__name__}.head must be an nn.Linear(C, 1)")
    w = head.weight.detach().reshape(-1).clone()
    b = head.bias.detach().reshape(()).clone() if head.bias is not None else torch.zeros(())
    gain, bias = getattr(reward_model, "gain", None), getattr(reward_model, "bias", None)
    if isinstance(gain, torch.Tensor):
        w, b = w * gain.detach().reshape(()), b * gain.detach().reshape(())
    if isinstance(bias, torch.Tensor):
        b = b + bias.detach().reshape(())
    return w, b


def prepare_models(policy, ref, reward_model, value_model, device):
    """Dropout off everywhere; reference and reward model frozen in eval mode; all on `device`."""
    if ref is policy:
        raise ValueError("the reference model must be a frozen copy of the policy, not the policy itself")
    disable_dropout(policy).to(device).eval()           # eval(): dropout off; gradients still flow
    disable_dropout(value_model).to(device).eval()
    freeze(ref).to(device)
    if reward_model is not None:
        freeze(reward_model).to(device)


def make_optimizer(policy: GPT, value_model: ValueModel, cfg: PPOConfig) -> torch.optim.Adam:
    """One Adam over the policy and the value model, which are trained on L_pg + vf_coef * L_vf (TRL)."""
    params = [p for p in list(policy.parameters()) + list(value_model.parameters()) if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)


# ----------------------------------------------------------------------------------------------------------------
# 1. Sample y ~ pi_theta(. | x)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A batch of episodes in generate()'s layout: prompts LEFT-padded to P columns, responses RIGHT-padded.

    Full-width tensors are (B, P+N). Per-token ones are response-aligned (B, N): column i is response token i,
    whose log-prob and the value of the state before it are read at full-width column P-1+i.
    """

    tokens: torch.Tensor             # (B, P+N) prompt left-padded, response right-padded
    attention_mask: torch.Tensor     # (B, P+N) 1 on real tokens
    response_mask: torch.Tensor      # (B, P+N) 1 on response tokens (the <|end|> token included)
    prompt_len: int                  # P
    prompt_ids: list[list[int]]      # per row, the prompt's ids (no pads)
    response_ids: list[list[int]]    # per row, the response's ids (<|end|> included when emitted)
    ended: torch.Tensor              # (B,) bool: the response emitted <|end|>
    mask: torch.Tensor               # (B, N) float: 1 on real response tokens
    logprobs: torch.Tensor | None = None      # (B, N) log pi_old(y_i | x, y_<i) at temperature T
    ref_logprobs: torch.Tensor | None = None  # (B, N) log pi_ref(y_i | x, y_<i) at temperature T
    values: torch.Tensor | None = None        # (B, N) V(s before y_i)
    entropy: torch.Tensor | None = None       # (B, N) entropy of pi_old's next-token distribution at T
    prompts: list[str] | None = None          # prompt texts, as decoded (when a tokenizer is at hand)
    responses: list[str] | None = None        # response texts, up to <|end|>

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of response tokens (the <|end|> token included)."""
        return self.mask.sum(1).long()


def rollout_from_generation(gen, prompt_ids: list[list[int]], pad_id: int,
                            width: int | None = None) -> Rollout:
    """Wrap generate()'s output; `width` pads the response part with pad columns to a fixed N (TRL layout)."""
    tokens, attn, resp = gen.tokens, gen.attention_mask, gen.response_mask
    P = gen.prompt_len
    extra = 0 if width is None else max(0, width - (tokens.size(1) - P))
    if extra:
        B = tokens.size(0)
        tokens = torch.cat([tokens, tokens.new_full((B, extra), pad_id)], dim=1)
        attn = torch.cat([attn, attn.new_zeros(B, extra)], dim=1)
        resp = torch.cat([resp, resp.new_zeros(B, extra)], dim=1)
    return Rollout(tokens=tokens, attention_mask=attn, response_mask=resp, prompt_len=P,
                   prompt_ids=[list(p) for p in prompt_ids], response_ids=gen.response_ids,
                   ended=gen.ended, mask=resp[:, P:].float())


@torch.no_grad()
def sample_rollout(policy: GPT, prompt_ids: list[list[int]], cfg: PPOConfig, *, end_id: int, pad_id: int,
                   generator: torch.Generator, rows: range | None = None) -> Rollout:
    """Step 1: y ~ pi_theta(. | x) by pure sampling at temperature T (top_k=0, top_p=1), stopping at <|end|>.

    rows: under torchrun, this process's rows of the batch (distributed.rows_of); the rollout holds those.
    """
    if pad_id == end_id:
        raise ValueError("the pad id equals the end id: masks built from pads would hide real end tokens "
                         "(docs/ppo.md, pitfall 3); give the tokenizer a separate <|pad|> token")
    gen = generate(policy, prompt_ids, max_new_tokens=cfg.max_new_tokens, stop_ids=[end_id], pad_id=pad_id,
                   temperature=cfg.temperature, top_k=0, top_p=1.0, generator=generator, rows=rows)
    width = None
    if cfg.score_position == "after_end":  # TRL's fixed response width, so the slot after <|end|> exists
        width = min(cfg.max_new_tokens, policy.config.block_size - gen.prompt_len)
    r = rollout_from_generation(gen, prompt_ids[rows.start:rows.stop] if rows else prompt_ids, pad_id, width)
    r.mask = r.mask.to(policy.output_weight.device)
    return r


# ----------------------------------------------------------------------------------------------------------------
# 2. Score: r_phi(x, y), normalised, on one token
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def reward_model_scores(reward_model, prompt_ids: list[list[int]], response_ids: list[list[int]],
                        pad_id: int, device, batch_size: int = 64) -> torch.Tensor:
    """r_phi(x, y) of each (prompt, response): (B,) float32.

    The pairs are re-packed RIGHT-padded (the layout the reward model was trained on), so its score is read at
    the last real token, the <|end|> of an ended response, whatever padding convention its read-out assumes
    (TRL #2778: a left-padded rollout fed to a right-padding read-out scores pads).
    """
    scores = []
    for s in range(0, len(prompt_ids), batch_size):
        seqs = [p + r for p, r in zip(prompt_ids[s:s + batch_size], response_ids[s:s + batch_size])]
        batch = pad_batch(seqs, [[1] * len(q) for q in seqs], pad_id).to(device)
        with autocast(device):
            scores.append(reward_model(batch.ids, batch.attention_mask).float().reshape(-1))
    return torch.cat(scores)


@torch.no_grad()
def measure_score_norm(policy: GPT, reward_model, prompt_ids: list[list[int]], cfg: PPOConfig, *, end_id: int,
                       pad_id: int, seed: int) -> tuple[float, float]:
    """Mean and std of r_phi on `cfg.norm_samples` responses of the initial policy (OpenAI normalize_before);
    (0, 1) when `cfg.normalize_score` is off.

    The one normalisation of the holistic score: the `ppo` stage and the sequence-level part of the fine-grained
    reward both use it, so beta and the missing-end penalty mean the same in both. Only ended responses count:
    unended ones receive the fixed penalty, not the RM score.
    """
    if not cfg.normalize_score:
        return 0.0, 1.0
    g = torch.Generator().manual_seed(seed + 999_983)
    scores = []
    for s in range(0, cfg.norm_samples, cfg.batch_size):
        pick = torch.randint(len(prompt_ids), (min(cfg.batch_size, cfg.norm_samples - s),), generator=g)
        batch = [prompt_ids[i] for i in pick.tolist()]
        gen = generate(policy, batch, max_new_tokens=cfg.max_new_tokens, stop_ids=[end_id], pad_id=pad_id,
                       temperature=cfg.temperature, generator=g)
        raw = reward_model_scores(reward_model, batch, gen.response_ids, pad_id, policy.output_weight.device)
        scores.append(raw[gen.ended.to(raw.device)] if bool(gen.ended.any()) else raw)
    scores = torch.cat(scores)
    return scores.mean().item(), max(scores.std().item() if len(scores) > 1 else 1.0, 1e-3)


def apply_missing_end(scores: torch.Tensor, ended: torch.Tensor, mode: str, penalty: float) -> torch.Tensor:
    """The score of responses that never emitted <|end|>: (B,) -> (B,).

    'replace': score := -penalty (OpenAI penalty_reward_value, lmhpd, summarize details: -1);
    'subtract': score - penalty (TRL missing_eos_penalty); 'none': unchanged.
    """
    ended = ended.to(scores.device)
    if mode == "replace":
        return torch.where(ended, scores, torch.full_like(scores, -penalty))
    if mode == "subtract":
        return torch.where(ended, scores, scores - penalty)
    if mode == "none":
        return scores
    raise ValueError(f"missing_end must be 'replace', 'subtract' or 'none', got {mode!r}")


def place_scores(scores: torch.Tensor, mask: torch.Tensor, position: str = "end") -> torch.Tensor:
    """Put one score per sequence on one response token: scores (B,), mask (B, N) -> (B, N).

    'end': on the last real response token, seq_len = mask.sum - 1 (the <|end|> token when emitted).
    'after_end': on seq_len + 1, or on seq_len when the response fills all N columns (TRL >= 0.12).
    """
    B, N = mask.shape
    seq_len = mask.sum(1).long() - 1                                       # (B,) index of the last real token
    if position == "end":
        idx = seq_len
    elif position == "after_end":
        idx = torch.where(seq_len + 1 < N, seq_len + 1, seq_len)
    else:
        raise ValueError(f"score_position must be 'end' or 'after_end', got {position!r}")
    out = torch.zeros(B, N, dtype=scores.dtype, device=mask.device)
    out[torch.arange(B, device=mask.device), idx.clamp(min=0)] = scores.to(mask.device)
    return out


def rm_reward_fn(reward_model, cfg: PPOConfig, pad_id: int, score_mean: float = 0.0, score_std: float = 1.0):
    """The holistic reward of InstructGPT: the normalised RM score on one token, penalised when no <|end|>.

    Returns f(rollout) -> (task rewards (B, N), per-row info {name: (B,) tensor}) for `ppo_iteration`.
    """
    def reward_fn(r: Rollout):
        device = r.mask.device
        raw = reward_model_scores(reward_model, r.prompt_ids, r.response_ids, pad_id, device)  # r_phi(x, y)
        score = (raw - score_mean) / score_std                                 # normalised (OpenAI)
        score = apply_missing_end(score, r.ended, cfg.missing_end, cfg.missing_end_penalty)
        return place_scores(score, r.mask, cfg.score_position), {"rm_score_raw": raw, "score": score}
    return reward_fn


# ----------------------------------------------------------------------------------------------------------------
# 3. Log-probs of pi_old and pi_ref, and the values V(s_t), by the training forward
# ----------------------------------------------------------------------------------------------------------------


def response_logprobs(model: GPT, tokens, attention_mask, response_mask, prompt_len: int,
                      temperature: float, return_entropy: bool = False):
    """log pi(y_i | x, y_<i) of every response token: (B, N) [, entropy (B, N)], 0 off the response.

    The shared kernel gives logp[:, t] = log pi(ids[t+1] | ids[<=t]); response token i is ids[P+i], so its
    log-prob sits at column P-1+i: the slice [P-1 : -1] (docs/logprobs.md, section 2).
    """
    out = sequence_token_logprobs(model, tokens, attention_mask, response_mask, temperature=temperature,
                                  return_entropy=return_entropy)
    sl = slice(prompt_len - 1, -1)
    if return_entropy:
        return out[0][:, sl], out[1][:, sl]
    return out[:, sl]


def response_values(value_model: ValueModel, tokens, attention_mask, prompt_len: int) -> torch.Tensor:
    """V of the state before each response token: (B, N), read at columns P-1 .. P+N-2."""
    return value_model(tokens, attention_mask)[:, prompt_len - 1:-1]


@torch.no_grad()
def add_logprobs_and_values(r: Rollout, policy: GPT, ref: GPT, value_model: ValueModel, cfg: PPOConfig) -> Rollout:
    """Step 3: log pi_theta_old and log pi_ref (both at temperature T), entropy and V, on the rollout's layout.

    The log-probs are recomputed by the same forward the update uses (not taken from the sampler), so on the
    first minibatch the ratio pi_theta / pi_old is exactly 1.
    """
    device = r.mask.device
    with autocast(device):
        r.logprobs, r.entropy = response_logprobs(policy, r.tokens, r.attention_mask, r.response_mask,
                                                  r.prompt_len, cfg.temperature, return_entropy=True)
        r.ref_logprobs = response_logprobs(ref, r.tokens, r.attention_mask, r.response_mask, r.prompt_len,
                                           cfg.temperature)
        # V is kept where a reward can land: the response, plus the slot after it for 'after_end' (TRL keeps
        # V there, in GAE and in the value clip; zeroing it would bootstrap the score against V = 0)
        vmask = value_mask(r.mask, cfg.score_position)
        r.values = response_values(value_model, r.tokens, r.attention_mask, r.prompt_len) * vmask
    return r


def collect_rollout(policy: GPT, ref: GPT, value_model: ValueModel, prompt_ids: list[list[int]],
                    cfg: PPOConfig, *, end_id: int, pad_id: int, generator: torch.Generator) -> Rollout:
    """Steps 1 and 3 together: a sampled rollout with its log-probs and values."""
    r = sample_rollout(policy, prompt_ids, cfg, end_id=end_id, pad_id=pad_id, generator=generator)
    return add_logprobs_and_values(r, policy, ref, value_model, cfg)


# ----------------------------------------------------------------------------------------------------------------
# 4. The per-token KL penalty (the shaped reward r_t = task_t - beta KL_t is built in ppo_iteration)
# ----------------------------------------------------------------------------------------------------------------


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                 estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(pi_theta || pi_ref) estimate on sampled tokens, 0 off the mask: (B, N).

    k1 = log pi_theta - log pi_ref (unbiased, can be negative per token); k3 = (r - 1) - log r with
    r = pi_ref / pi_theta (unbiased, >= 0). Schulman, "Approximating KL divergence"; docs/kl.md, section 1.
    """
    log_ratio = logprobs - ref_logprobs                                   # log pi_theta - log pi_ref
    if estimator == "k1":
        kl = log_ratio
    elif estimator == "k3":
        kl = torch.expm1(-log_ratio) + log_ratio
    else:
        raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {estimator!r}")
    return kl * mask


# ----------------------------------------------------------------------------------------------------------------
# 5. Whitening
# ----------------------------------------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the entries where mask is 1 (a scalar)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Variance over the masked entries: population (divide by n) or, with `unbiased`, Bessel (n - 1)."""
    n = mask.sum()
    var = masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    if unbiased:
        if n < 2:
            raise ValueError("an unbiased variance needs at least 2 masked entries")
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, unbiased: bool = False) -> torch.Tensor:
    """(x - mu) / sqrt(var + 1e-8) over the masked entries; `shift_mean=False` adds mu back (docs/ppo.md, section 3).

    Divides by the standard deviation (not its square root, FineGrainedRLHF's bug). Entries off the mask are
    returned transformed too; callers multiply by the mask.
    """
    if mask.sum() == 0:
        raise ValueError("whiten: the mask selects no entries")
    mu, var = masked_mean(x, mask), masked_var(x, mask, unbiased)
    out = (x - mu) * torch.rsqrt(var + 1e-8)
    return out + mu if not shift_mean else out


# ----------------------------------------------------------------------------------------------------------------
# 6. GAE: advantages and returns
# ----------------------------------------------------------------------------------------------------------------


def value_mask(mask: torch.Tensor, score_position: str) -> torch.Tensor:
    """Tokens that carry a reward and a value target: the response, plus the slot after it for 'after_end'."""
    if score_position != "after_end":
        return mask
    p1 = mask.clone()
    p1[:, 1:] = torch.maximum(mask[:, 1:], mask[:, :-1])                  # TRL's padding_mask_p1
    return p1


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), backwards over the response tokens.

        delta_t = r_t + gamma V_{t+1} - V_t        (V = 0 after the last token: the episode ends)
        A_t     = delta_t + gamma lambda A_{t+1}
        R_t     = A_t + V_t                        (returns from the raw advantages, before whitening)

    rewards, values, mask: (B, N), mask a prefix of 1s per row. Returns (advantages, returns), 0 off the mask.
    """
    rewards, values = rewards * mask, values * mask
    N = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(N)):
        next_value = values[:, t + 1] if t + 1 < N else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    returns = advantages + values
    return advantages * mask, returns * mask


# ----------------------------------------------------------------------------------------------------------------
# 7. The clipped policy loss and the clipped value loss
# ----------------------------------------------------------------------------------------------------------------


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise, averaged over tokens:

        rho = exp(log pi_theta - log pi_old)
        L_pg = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))

    Also returns clipfrac (share of tokens where the clipped term is the larger), approxkl = 0.5 mean(dlogp^2)
    (k2 of old vs new, a diagnostic) and the ratio's mean and largest deviation from 1.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(pg1, pg2), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((pg2 > pg1).float(), mask).item(),
                 "approxkl": 0.5 * masked_mean(log_ratio ** 2, mask).item(),
                 "ratio": masked_mean(ratio, mask).item(),
                 "ratio_maxdev": ((ratio - 1).abs() * mask).max().item()}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, dict]:
    """The clipped value loss of OpenAI/lmhpd/TRL:

        V_clip = V_old + clip(V - V_old, -eps_v, eps_v)
        L_vf = 1/2 mean_t max((V - R)^2, (V_clip - R)^2)
    """
    v_clip = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf1, vf2 = (values - returns) ** 2, (v_clip - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(vf1, vf2), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((vf2 > vf1).float(), mask).item()}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over the masked tokens: 1 = perfect values, 0 = no better than a constant."""
    var_r = masked_var(returns, mask)
    return float("nan") if var_r.item() == 0 else (1 - masked_var(returns - values, mask) / var_r).item()


# ----------------------------------------------------------------------------------------------------------------
# 8. The KL controller
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class KLController:
    """beta of the KL penalty: fixed (target None) or adaptive (Ziegler et al. 2019, OpenAI AdaptiveKLController):

        e = clip(KL / target - 1, -0.2, 0.2)
        beta <- beta * (1 + e * n_steps / horizon)

    where KL is the mean over the batch of the summed per-token k1, and n_steps the episodes in the batch.
    """

    beta: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl: float, n_steps: int) -> float:
        if self.target is not None:
            e = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.beta = self.beta * (1.0 + e * n_steps / self.horizon)
        return self.beta


# ----------------------------------------------------------------------------------------------------------------
# Steps 5-7 on one rollout: whiten, GAE, PPO epochs over minibatches
# ----------------------------------------------------------------------------------------------------------------


def ppo_update(policy: GPT, value_model: ValueModel, rollout: Rollout, rewards: torch.Tensor, cfg: PPOConfig,
               optimizer: torch.optim.Optimizer, generator: torch.Generator, loss_of=None) -> dict:
    """Steps 5-7 on one rollout whose per-token rewards (B, N) are given (KL term included).

    loss_of: `ppo_loss` of the policy and the value model (`ppo_loss_of`; built here when not given).
    Returns the mean of each minibatch statistic, plus `first_*` statistics of the very first minibatch
    (where the ratio must be 1 and approxkl 0) and explained variance of the rollout values.
    """
    loss_of = loss_of or ppo_loss_of(policy, value_model)
    mask = rollout.mask
    vmask = value_mask(mask, cfg.score_position)
    rewards = rewards.detach()                              # rewards never carry gradients (docs/ppo.md, pitfall 10)
    # 5. optional reward whitening: scale only, the mean (the sign of the reward) stays
    if cfg.whiten_rewards:
        rewards = whiten(rewards, vmask, shift_mean=False, unbiased=cfg.unbiased_variance) * vmask
    # 6. GAE, returns from the raw advantages, then advantage whitening over the batch
    advantages, returns = compute_gae(rewards, rollout.values, vmask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages == "batch":
        advantages = whiten(advantages, mask, unbiased=cfg.unbiased_variance) * mask
    elif cfg.whiten_advantages not in ("minibatch", "none"):
        raise ValueError(f"whiten_advantages must be 'batch', 'minibatch' or 'none', got {cfg.whiten_advantages!r}")
    # 7. PPO epochs over shuffled minibatches
    B = mask.size(0)
    mb_size = max(1, B // cfg.n_minibatches)
    per_mb: list[dict] = []
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(B, generator=generator).to(mask.device)
        for start in range(0, B - mb_size + 1, mb_size):
            idx = order[start:start + mb_size]
            per_mb.append(ppo_minibatch_step(loss_of, rollout, idx, advantages, returns, vmask, cfg, optimizer))
    stats = {k: float(np.mean([s[k] for s in per_mb])) for k in per_mb[0]}
    stats.update({f"first_{k}": per_mb[0][k] for k in ("ratio", "ratio_maxdev", "approxkl", "clipfrac")})
    stats["explained_variance"] = explained_variance(rollout.values, returns, vmask)
    return stats


def ppo_minibatch_step(loss_of, rollout: Rollout, idx, advantages, returns, vmask, cfg: PPOConfig,
                       optimizer) -> dict:
    """One gradient step on the minibatch `idx` (rows of the rollout): L = L_pg + vf_coef * L_vf (- ent_coef * H).

    Under torchrun every process holds the whole rollout and the same idx, and forwards its share of the
    minibatch, each loss weighted by that share's part of the minibatch's tokens: DDP's average of the
    processes' gradients is then the gradient of the whole minibatch's loss (distributed.py). One process: all
    of it, weights 1.
    """
    mask, adv = rollout.mask[idx], advantages[idx]
    if cfg.whiten_advantages == "minibatch":              # over the whole minibatch, as one process would
        adv = whiten(adv, mask, unbiased=cfg.unbiased_variance) * mask
    n_tokens, n_vtokens = mask.sum(1).tolist(), vmask[idx].sum(1).tolist()
    mine, w = distributed.shard(range(len(idx)), count=lambda i: n_tokens[i])     # L_pg, H: means over tokens
    _, w_v = distributed.shard(range(len(idx)), count=lambda i: n_vtokens[i])     # L_vf: over the value tokens
    loss, stats = loss_of(rollout, idx[mine], adv[mine], returns, vmask, cfg, w, w_v)
    optimizer_step(optimizer, loss, [p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
    largest = stats.pop("ratio_maxdev")                   # a max over the ranks' rows, not a weighted mean
    maxima = distributed.all_reduce_max({"ratio_maxdev": largest if w > 0 else 0.0})   # an empty share: none
    return {**distributed.all_reduce_mean(stats), **maxima}


def ppo_loss(models: nn.ModuleDict, rollout: Rollout, rows, adv, returns, vmask, cfg: PPOConfig,
             w: float = 1.0, w_v: float = 1.0) -> tuple[torch.Tensor, dict]:
    """w (L_pg - ent_coef H) + vf_coef w_v L_vf on the rollout's `rows`, and its statistics, each times the weight
    of its mean (their mean over processes is the minibatch's). adv: the advantages of `rows` (whitened over the
    whole minibatch when whiten_advantages='minibatch'); returns and vmask: the whole rollout's, like its fields."""
    P, mask = rollout.prompt_len, rollout.mask[rows]
    tokens, attn, resp = rollout.tokens[rows], rollout.attention_mask[rows], rollout.response_mask[rows]
    with autocast(mask.device):
        out = response_logprobs(models["policy"], tokens, attn, resp, P, cfg.temperature,
                                return_entropy=cfg.ent_coef > 0)
        new_values = response_values(models["value"], tokens, attn, P)
    logp, entropy = out if cfg.ent_coef > 0 else (out, None)
    pg_loss, pg_stats = policy_loss(logp, rollout.logprobs[rows], adv, mask, cfg.cliprange)
    vf_loss, vf_stats = value_loss(new_values, rollout.values[rows], returns[rows], vmask[rows], cfg.cliprange_value)
    loss = w * pg_loss + cfg.vf_coef * w_v * vf_loss
    if entropy is not None:
        loss = loss - w * cfg.ent_coef * masked_mean(entropy, mask)
    stats = {"policy_loss": w * pg_loss.item(), "value_loss": w_v * vf_loss.item(),
             **{k: v if k == "ratio_maxdev" else w * v for k, v in pg_stats.items()},
             **{k: w_v * v for k, v in vf_stats.items()}}
    return loss, stats


def ppo_loss_of(policy: GPT, value_model: ValueModel):
    """`ppo_loss` of the policy and the value model as a function of the batch: under torchrun the forward of a
    DistributedDataParallel module, so that backward averages both models' gradients over the processes."""
    return distributed.wrap(nn.ModuleDict({"policy": policy, "value": value_model}), ppo_loss)


# ----------------------------------------------------------------------------------------------------------------
# One iteration, in order (steps 1-7; the loop runs step 8)
# ----------------------------------------------------------------------------------------------------------------


def ppo_iteration(policy: GPT, ref: GPT, value_model: ValueModel, reward_fn, prompt_ids: list[list[int]],
                  cfg: PPOConfig, beta: float, optimizer, *, end_id: int, pad_id: int,
                  generator: torch.Generator, decode=None, loss_of=None) -> tuple[Rollout, dict, dict]:
    """Steps 1-7 of one PPO iteration (the caller runs step 8, the KL controller).

    reward_fn(rollout) -> (task rewards (B, N) without the KL term, {name: (B,) per-row info}), row by row.
    decode(rollout, rows) fills rollout.prompts / rollout.responses (texts) of the batch's `rows` before scoring.
    loss_of: see ppo_update. Under torchrun, steps 1-3 run on this process's rows of the batch; then every process
    gathers the whole batch (distributed.gather_rows), so steps 4-7 and the KL controller see what one process does.
    Returns the rollout, the iteration's scalar statistics, and the per-row info (for gold scoring and samples).
    """
    clock = Clock()
    rows = distributed.rows_of(len(prompt_ids))            # all of them in one process
    # 1. sample y ~ pi_theta(. | x)
    rollout = sample_rollout(policy, prompt_ids, cfg, end_id=end_id, pad_id=pad_id, generator=generator, rows=rows)
    if decode is not None:
        decode(rollout, rows)
    clock.lap("t_generate")
    # 2. score: task rewards per token, e.g. the reward model's score r_phi(x, y) on the last token
    with torch.no_grad():
        task_rewards, info = reward_fn(rollout)
    clock.lap("t_score")
    # 3. log pi_theta_old, log pi_ref (at T) and values V(s_t), by the training forward
    add_logprobs_and_values(rollout, policy, ref, value_model, cfg)
    rollout, task_rewards, info = distributed.gather_rows((rollout, task_rewards, info))   # the whole batch
    clock.lap("t_logprobs")
    # 4. per-token reward r_t = task_t - beta * KL_t (k1 by default), no gradient
    kl = kl_per_token(rollout.logprobs, rollout.ref_logprobs, rollout.mask, cfg.kl_estimator)
    rewards = task_rewards.to(kl.device) - beta * kl
    # 5-7. whiten, GAE, PPO epochs
    stats = ppo_update(policy, value_model, rollout, rewards, cfg, optimizer, generator, loss_of=loss_of)
    clock.lap("t_update")
    k1 = kl_per_token(rollout.logprobs, rollout.ref_logprobs, rollout.mask, "k1")
    stats.update({
        "proxy_reward": task_rewards.sum(1).mean().item(),                     # what PPO maximises (no KL)
        "kl": k1.sum(1).mean().item(),                                         # objective/kl: mean of summed k1
        "non_score_reward": (-beta * kl).sum(1).mean().item(),
        "entropy": masked_mean(rollout.entropy, rollout.mask).item(),
        "response_length": rollout.lengths.float().mean().item(),
        "frac_ended": rollout.ended.float().mean().item(),
        "beta": beta,
        **{k: v.float().mean().item() for k, v in info.items() if torch.is_tensor(v)},
        **clock.laps,
    })
    return rollout, stats, {"kl_per_row": k1.sum(1), "task_reward_per_row": task_rewards.sum(1), **info}


# ----------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------


def train_ppo(policy: GPT, ref: GPT, reward_model, value_model: ValueModel, tok, prompts: list,
              cfg: PPOConfig, out_dir: str | None, device, reward_fn=None, *, gold_fn=None, seed: int = 0,
              score_norm: tuple[float, float] | None = None, max_iterations: int | None = None,
              desc: str = "ppo", sample_prompts: list[str] | None = None, chat: bool = True,
              eval_fn=None, eval_every: int = 0) -> dict:
    """Train `policy` with PPO on `prompts`, resuming from `out_dir/ckpt.pt` when it is there.

    prompts: with `chat` (default), strs or world prompt objects, rendered in the chat template (the oracle
      receives them as given) and answered up to <|end|>; with `chat=False`, token id lists continued as raw
      text up to <|endoftext|> (the detoxification experiment: a base model continuing story openings).
    reward_fn: f(rollout) -> (task rewards (B, N), {name: (B,) info}); default `rm_reward_fn(reward_model)`,
      normalised on samples of the initial policy (or by `score_norm=(mean, std)`), the value head with it.
    gold_fn: f(prompt, response text) -> the oracle's score (a float, or an object with `.total` and
      `.components`); default: the world's gold reward for chat prompts, none for raw text. Logged, never
      optimised. eval_fn(policy) -> {name: float}, when given, runs before training and every `eval_every`
      iterations (history["eval"]).
    Writes ckpt.pt (resumable; `model` = the policy), metrics.json (the history; at the end the final numbers
    and answers before and after) and ppo_curves.png. Returns the metrics with the history; {} when
    `max_iterations` stopped it early (tests).
    """
    if cfg.batch_size < distributed.world_size():
        raise ConfigError(f"--batch-size {cfg.batch_size}: each of the {distributed.world_size()} processes samples a "
                          f"share of the prompts, so the batch needs at least {distributed.world_size()}")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    prepare_models(policy, ref, reward_model, value_model, device)
    end_id, pad_id = (chat_end_id(tok), tok.pad_id) if chat else (tok.eot_id, tok.pad_id)
    all_prompt_ids = [chat_prompt_ids(tok, prompt_text(p)) for p in prompts] if chat else prompts
    gold_fn = gold_fn if gold_fn is not None or not chat else gold_reward
    shown = [prompt_text(p) for p in (sample_prompts or prompts)[:cfg.n_samples_shown]] if chat else []
    optimizer = make_optimizer(policy, value_model, cfg)
    ckpt, state = start_or_resume(out_dir, policy, value_model, optimizer, cfg)
    if state["done"]:
        return {**state["metrics"], "history": state["history"]}
    main = distributed.is_main()             # under torchrun rank 0 alone samples answers to show and evaluates
    if state["samples_before"] is None and main:
        state["samples_before"] = shown_answers(policy, tok, shown, cfg, seed)
    if reward_fn is None:
        if state["score_norm"] is None:  # the scale of r_phi on the initial policy; the value head (r_phi's) follows
            state["score_norm"] = score_norm or distributed.broadcast_object(
                measure_score_norm(ref, reward_model, all_prompt_ids, cfg, end_id=end_id, pad_id=pad_id, seed=seed)
                if main else None)
            value_model.rescale_(*state["score_norm"])
        reward_fn = rm_reward_fn(reward_model, cfg, pad_id, *state["score_norm"])
    kl_ctl = KLController(state["beta"], cfg.kl_target if cfg.adaptive_kl else None, cfg.kl_horizon)
    evaluate = lambda it: record_eval(state["history"], it, eval_fn(policy)) if eval_fn is not None and main else None
    if state["iteration"] == 0:
        evaluate(0)
    loss_of = ppo_loss_of(policy, value_model)              # DDP under torchrun

    bar = steps(state, cfg.iterations, desc=desc, unit="it", max_steps=max_iterations, key="iteration")
    for it in bar:
        g = torch.Generator().manual_seed(seed * 1_000_003 + it)      # resuming replays the same prompts/samples
        pick = torch.randint(len(all_prompt_ids), (cfg.batch_size,), generator=g).tolist()
        set_lr(optimizer, linear_decay(it, cfg.iterations, cfg.lr) if cfg.anneal_lr else cfg.lr)
        decode = (lambda r, rows: _decode(tok, r, [prompt_text(prompts[pick[i]]) for i in rows])) if chat else None
        rollout, stats, _ = ppo_iteration(policy, ref, value_model, reward_fn, [all_prompt_ids[i] for i in pick],
                                          cfg, kl_ctl.beta, optimizer, end_id=end_id, pad_id=pad_id, generator=g,
                                          decode=decode, loss_of=loss_of)
        if gold_fn is not None:                                        # logged, never optimised
            stats.update(timed("t_gold", gold_stats, gold_fn, [prompts[i] for i in pick], rollout.responses))
        state["beta"] = kl_ctl.update(stats["kl"], cfg.batch_size)     # 8. adapt beta (no-op when fixed)
        append_history(state["history"], it, stats)
        bar.set_postfix({k: f"{stats[k]:.2f}" for k in ("proxy_reward", "gold_reward", "toxicity", "kl",
                                                         "response_length", "clipfrac") if k in stats})
        state["iteration"] = it + 1
        if eval_every and state["iteration"] % eval_every == 0:
            evaluate(state["iteration"])
        if state["iteration"] % cfg.ckpt_every == 0 and state["iteration"] < cfg.iterations:
            save_progress(ckpt, state, cfg, out_dir)
    bar.close()
    if state["iteration"] < cfg.iterations:                            # stopped early on purpose
        save_progress(ckpt, state, cfg, out_dir)
        distributed.barrier()
        return {}
    if eval_fn is not None and main and state["history"]["eval"]["iteration"][-1] != cfg.iterations:
        evaluate(cfg.iterations)
    return finish(ckpt, state, cfg, out_dir, desc, shown_answers(policy, tok, shown, cfg, seed) if main else [])


def finish(ckpt: Checkpoint, state: dict, cfg: PPOConfig, out_dir: str | None, desc: str, after: list) -> dict:
    """The finished run: final numbers, answers before and `after`, the figure and the last checkpoint (rank 0
    writes; under torchrun every rank returns rank 0's metrics)."""
    if distributed.is_main():
        metrics = {**final_metrics(state["history"], cfg),
                   "samples": {"before": state["samples_before"], "after": after}}
        if out_dir:
            plot_ppo_history(state["history"], os.path.join(out_dir, "ppo_curves.png"), title=desc)
        save_progress(ckpt, state, cfg, out_dir, metrics)
    distributed.barrier()                          # the other ranks wait for the checkpoint
    metrics, history = distributed.broadcast_object((metrics, state["history"]) if distributed.is_main() else None)
    return {**metrics, "history": history}


def timed(name: str, fn, *args) -> dict:
    """fn(*args), a dict of numbers, with its wall time under `name`."""
    t0 = time.perf_counter()
    out = fn(*args)
    return {**out, name: time.perf_counter() - t0}


def start_or_resume(out_dir: str | None, policy: GPT, value_model: ValueModel, optimizer,
                    cfg: PPOConfig) -> tuple[Checkpoint, dict]:
    """The run's checkpoint and its state: fresh, or the saved one (a resume must replay the same settings)."""
    ckpt = Checkpoint(out_dir and os.path.join(out_dir, "ckpt.pt"), {"model": policy, "value_model": value_model},
                      optimizer, model_config=policy.config.to_dict(),
                      value_config=value_model.trunk.config.to_dict(), ppo_config=asdict(cfg))
    state = ckpt.resume({"iteration": 0, "history": {}, "beta": cfg.beta, "score_norm": None,
                         "samples_before": None}, "PPO", saved=same_config(ckpt, cfg), key="iteration")
    return ckpt, state


def same_config(ckpt: Checkpoint, cfg: PPOConfig) -> dict | None:
    """The saved checkpoint, refused when it was written with other PPO settings (a resume must replay them)."""
    saved = ckpt.saved()
    if saved is not None:
        keys = [k for k in asdict(cfg) if k not in ("ckpt_every", "n_samples_shown")]
        check_compatible(ckpt.path, saved.get("ppo_config", {}), asdict(cfg), keys)
    return saved


def save_progress(ckpt: Checkpoint, state: dict, cfg: PPOConfig, out_dir: str | None, metrics: dict | None = None):
    """The checkpoint (`model` is the policy: pipeline.load_model reads it), and the history so far in
    metrics.json; with the final `metrics`, the finished run. Nothing without an `out_dir`."""
    if not out_dir or not distributed.is_main():
        return
    ckpt.save(state, done=metrics is not None, metrics=metrics)
    write_json(os.path.join(out_dir, "metrics.json"), {**(metrics or {"iteration": state["iteration"]}),
                                                       "config": asdict(cfg), "history": state["history"]})


def _decode(tok, rollout: Rollout, prompt_texts: list[str]) -> None:
    """The rollout's texts: the plain prompts (no chat tokens, as the oracle and text rewards expect) and the
    responses up to <|end|>."""
    rollout.prompts = list(prompt_texts)
    rollout.responses = [parse_response(tok, r)[0] for r in rollout.response_ids]


def final_metrics(history: dict, cfg: PPOConfig, last: int = 5) -> dict:
    """The mean of the last few iterations of each logged number, and the run's time per iteration."""
    keys = [k for k in history if k not in ("iteration", "eval")]
    out = {k: float(np.mean(history[k][-last:])) for k in keys}
    out["initial"] = {k: history[k][0] for k in ("proxy_reward", "gold_reward", "kl", "response_length")
                      if k in history}
    phases = [k for k in history if k.startswith("t_")]
    out["seconds_per_iteration"] = float(np.mean([sum(x) for x in zip(*(history[k] for k in phases))]))
    out["iterations"] = cfg.iterations
    return out


def shown_answers(model: GPT, tok, prompts: list[str], cfg: PPOConfig, seed: int) -> list[dict]:
    """Answers of `model` to `prompts` at the PPO temperature, for metrics.json: [{prompt, response, ended}]."""
    s = sample_and_score(model, None, tok, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                         seed=seed + 7)
    return [{"prompt": prompts[i], "response": r, "ended": e} for i, r, e in zip(s.prompt_index, s.responses, s.ended)]
