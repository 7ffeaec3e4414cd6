"""The reward model r_phi(x, y): InstructGPT step 2, "Collect comparison data and train a reward model".

Slides: 000/002 "Step 2" and 002 "Reward Model Training"; 000 "Human judgments are noisy and
miscalibrated" (why labelers compare instead of rating). A labeler ranks K responses to a prompt x;
every ordered pair (y_w preferred to y_l) is a comparison, and r_phi learns to score y_w higher
(Bradley-Terry; InstructGPT, Ouyang et al. 2022, Eq. 1):

    L_R(r_phi) = - 1/C(K, 2) E_{(x, y_w, y_l) ~ D} [ log sigma( r_phi(x, y_w) - r_phi(x, y_l) ) ]

The model (docs/reward_model.md, section 2): the SFT model's trunk reads the chat-rendered
conversation; a linear head (lm-human-preferences init) maps the hidden state of the last real
token, found in ONE place for any padding (`last_token_index`), to one number.

The steps, as the code runs them (`train_reward_model`, then `fit_normalization`):
1. Render every response once; drop groups with a response longer than the context.
2. Batches of `batch_prompts` prompts, all K responses of a prompt in the same batch (`batches_of`).
3. r_phi of each response, forwarded once; the loss over the C(K, 2) pairs, each prompt weighing
   the same (`pair_indices`, `bradley_terry_loss`); optional margin m (Llama 2, `--margin`) and
   centering c (Eisenstein et al. 2023, `--center-coef`).
4. AdamW, learning rate decaying linearly to 0, clipped gradient norm; held-out accuracy every
   `eval_every` steps; a resumable checkpoint every `ckpt_every`.
5. Normalise: gain and bias such that samples of pi^SFT (PPO's start) score mean 0, std 1
   (OpenAI's `normalize_after`), so that PPO's beta means the same for every RM
   (docs/reward_model.md, section 3).

Deviations, said plainly:
- No normalisation *before* training (OpenAI's `normalize_before`): the BT loss ignores the bias,
  and a tiny model's initial scale is already O(1).
- 1 epoch, linear decay to 0, no warmup (OpenAI); InstructGPT's RM overfits after one epoch.
  Dropout is off (the trunk runs in eval mode).
- Ties in a ranking give no pair (FineGrainedRLHF). Best-of-K (Ziegler et al. 2019) is not
  implemented: the BT loss above is InstructGPT's.
- Two kinds of comparisons, ranked by the same annotators: the world's (its reference answer and
  flawed copies of it, world/flaws.py) and the slide's (K samples of pi^SFT on PPO's prompts,
  `policy_sample_prompts`, `rl_prompt_kind`). The world's alone do not carry over to the policy's
  answers, and PPO hacks such an RM (docs/reward_model.md, section 6); `--policy-sample-prompts 0`
  trains on them alone. metrics["sft_samples"] tests the RM on held-out policy samples.

Metrics (`evaluate_reward_model`, docs/reward_model.md, section 4): strict accuracy against the
annotators and the oracle, correlation with the gold reward, calibration of sigma(r_i - r_j).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed
from .batching import pad_batch
from .chat import render
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import autocast
from .generate import sample_batches
from .model import GPT, GPTConfig, new_scalar_head, scalar_head, trunk_copy
from .evaluation import (finite_or_none, calibration, label_agreement_with_oracle, oracle_accuracy, pairwise_accuracy,
                         pearson, spearman)
from .preferences import PreferenceGroup
from .training import Checkpoint, adamw, linear_decay, optimizer_step, set_lr, steps, stopped_early


# ----------------------------------------------------------------------------------------------
# Configuration
@dataclass
class RMConfig:
    """Training of the reward model r_phi (docs/reward_model.md, section 5)."""

    epochs: int = 1
    """Passes over the comparisons. InstructGPT and OpenAI use 1: the RM overfits after one epoch.
    Range: epochs >= 1."""
    lr: float = 1e-4
    """Peak learning rate of AdamW, decayed linearly to 0 over the run (OpenAI books). Range: lr > 0."""
    batch_prompts: int = 8
    """Prompts per batch; all K responses (all C(K, 2) pairs) of a prompt go in the same batch.
    Range: batch_prompts >= 1."""
    weight_decay: float = 0.0
    """AdamW weight decay on weight matrices. Range: weight_decay >= 0."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables). Range: grad_clip >= 0."""
    margin: float = 0.0
    """Margin m in -log sigma(r_w - r_l - m) (Llama 2 style); 0 is the plain Bradley-Terry loss. Range: margin >= 0."""
    center_coef: float = 0.0
    """Centering coefficient c of + c * (r_w + r_l)^2 (Eisenstein et al. 2023; TRL suggests 0.01).
    Range: center_coef >= 0."""
    n_train_prompts: int = 2000
    """Prompts of the world's preference data used for training (each with K ranked responses).
    Range: n_train_prompts >= 1."""
    n_eval_prompts: int = 300
    """Held-out prompts for the accuracy, correlation and calibration metrics. Range: n_eval_prompts >= 1."""
    k: int = 4
    """Responses ranked per prompt (InstructGPT: 4 to 9).
    Range: k >= 2 (a ranking of one response holds no comparison)."""
    annotator_noise: float = -1.0
    """Bradley-Terry noise temperature of the simulated annotators; negative: the world's default.
    Range: annotator_noise >= -1 (negative: the world's default)."""
    annotator_bias: bool = True
    """The world's annotators are biased (world.AnnotatorBias): they like answers that sound sure and long,
    and check the facts only some of the time; --no-annotator-bias makes them judge the gold reward itself
    (noise aside). Range: annotator_bias in (True, False)."""
    normalize_samples: int = 256
    """Responses sampled from the SFT policy to set the reward's gain and bias (OpenAI: 256).
    Range: normalize_samples >= 2 (a standard deviation needs two)."""
    max_new_tokens: int = 48
    """Length limit of those samples. Range: max_new_tokens >= 1."""
    eval_every: int = 100
    """Held-out accuracy every this many steps (for the curve in accuracy.png). Range: eval_every >= 1."""
    ckpt_every: int = 200
    """Checkpoint every this many steps (a killed run resumes from it). Range: ckpt_every >= 1."""
    data: str | None = None
    """A preference JSONL file (prompt, chosen, rejected; or prompt + ranked responses) to train on
    instead of the world's preference data. Its last `eval_fraction` is held out."""
    eval_fraction: float = 0.1
    """With `data`: the fraction of prompts held out for evaluation. Range: 0 < eval_fraction < 1."""
    rl_prompt_kind: str = "instruction"
    """The world's RL prompts that PPO trains on (keep it equal to PPOConfig.prompt_kind): the SFT
    samples below are drawn on prompts of this kind.
    Range: rl_prompt_kind in ('instruction', 'sentiment', 'toxic', 'story')."""
    policy_sample_prompts: int = 1000
    """RL prompts (train split) whose K samples from pi^SFT, ranked by the annotators, join the world's
    comparisons (the slide's recipe); without them the RM never sees the policy's kind of answers and
    PPO hacks it (docs/reward_model.md, section 6). 0 = world pairs only.
    Range: policy_sample_prompts >= 0."""
    sft_sample_prompts: int = 200
    """Held-out RL prompts whose K samples from the SFT policy (ranked by the annotators) test the RM
    on what PPO will show it (metrics["sft_samples"]); 0 skips it. Range: sft_sample_prompts >= 0."""
    sft_sample_temperature: float = 0.7
    """Sampling temperature of the policy samples, for training and testing (PPOConfig.temperature).
    Range: sft_sample_temperature > 0."""


# --quick: a handful of steps on a few prompts, seconds on a CPU.
QUICK: dict = dict(n_train_prompts=64, n_eval_prompts=32, batch_prompts=8, normalize_samples=32,
                   max_new_tokens=16, eval_every=4, ckpt_every=4, sft_sample_prompts=16,
                   policy_sample_prompts=16)


# ----------------------------------------------------------------------------------------------
# Data: PreferenceGroups (preferences.py), flattened into pairs of rows of a batch
def pair_indices(groups: list[PreferenceGroup]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten a batch's pairs into indices of the flat list of its responses, with weights.

    The responses of group g occupy rows offset_g .. offset_g + K_g - 1 of the batch. Returns
    winners (P,), losers (P,) long and weights (P,) float64 with weight 1 / (#pairs of its group) /
    (#groups with pairs): each prompt counts the same, then the mean over prompts (InstructGPT).
    """
    w_idx, l_idx, weight = [], [], []
    offset = 0
    n_groups = sum(1 for g in groups if g.pairs)
    for g in groups:
        for w, l in g.pairs:
            w_idx.append(offset + w)
            l_idx.append(offset + l)
            weight.append(1.0 / (len(g.pairs) * n_groups))
        offset += len(g.responses)
    return (torch.tensor(w_idx, dtype=torch.long), torch.tensor(l_idx, dtype=torch.long),
            torch.tensor(weight, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# The model
def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B,) column of the last real token. THE one place the read-out is located.

    Right padding [a b c pad] -> 2; left padding [pad a b c] -> 3; a rollout [pad a b | c d pad] -> 4.
    """
    T = attention_mask.size(1)
    cols = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)    # (B, T)
    return torch.where(attention_mask.bool(), cols, torch.full_like(cols, -1)).max(dim=1).values


class RewardModel(nn.Module):
    """r_phi(x, y) = gain * (w . h_last + b) + bias: a GPT trunk and a scalar head.

    `trunk` is a GPT (the SFT model, copied by `from_sft`); `head` = Linear(d_model, 1);
    `gain` and `bias` are the normalisation (buffers: set by `fit_normalization`, not trained).
    """

    def __init__(self, trunk: GPT):
        super().__init__()
        self.trunk = trunk
        self.head = new_scalar_head(trunk.config.n_embd)
        self.register_buffer("gain", torch.tensor(1.0))
        self.register_buffer("bias", torch.tensor(0.0))

    @classmethod
    def from_sft(cls, sft_model: GPT) -> "RewardModel":
        """A fresh RM whose trunk is a copy of the SFT model (slide: "initialized from pi^SFT").

        The copy is built with dropout 0: dropout stays off for RM training and scoring
        (docs/reward_model.md, pitfall 5).
        """
        return cls(trunk_copy(sft_model))

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                normalized: bool = True) -> torch.Tensor:
        """ids, attention_mask (B, T), any padding -> rewards (B,) float32.

        `normalized=False` gives the raw head output (used while training and when fitting the
        normalisation).
        """
        h = self.trunk(ids, attention_mask=attention_mask)                 # (B, T, C)
        last = last_token_index(attention_mask)                            # (B,)
        h_last = h[torch.arange(h.size(0), device=h.device), last]         # (B, C)
        r = scalar_head(self.head, h_last)                                 # (B,) float32
        return self.gain * r + self.bias if normalized else r

    @torch.no_grad()
    def score(self, tok, prompts: list[str], responses: list[str], *, batch_size: int = 64,
              normalized: bool = True) -> list[float]:
        """r_phi(x, y) for each (prompt, response) pair, batched, in eval mode, without gradients."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out: list[float] = []
        for i in range(0, len(prompts), batch_size):
            rendered = [render(tok, p, r) for p, r in zip(prompts[i:i + batch_size],
                                                        responses[i:i + batch_size])]
            batch = pad_batch([x.ids for x in rendered], [x.loss_mask for x in rendered],
                              tok.pad_id, max_len=self.trunk.config.block_size)
            with autocast(device):
                r = self(batch.ids.to(device), batch.attention_mask.to(device), normalized=normalized)
            out.extend(r.float().cpu().tolist())
        self.train(was_training)
        return out

    def set_normalization(self, gain: float, bias: float) -> None:
        self.gain.fill_(gain)
        self.bias.fill_(bias)


# ----------------------------------------------------------------------------------------------
# Losses
def bradley_terry_loss(rewards: torch.Tensor, winners: torch.Tensor, losers: torch.Tensor,
                    weights: torch.Tensor, *, margin: float = 0.0,
                    center_coef: float = 0.0) -> torch.Tensor:
    """Bradley-Terry loss of a batch (slide 002 "Reward Model Training"; docs/reward_model.md, section 1).

    rewards (N,): r_phi of the batch's N responses (each forwarded once); winners, losers (P,): pair
    indices into `rewards`; weights (P,): 1 / C(K, 2) / n_prompts each (see `pair_indices`). Returns

        sum_p weight_p * [ -log sigma(r_w - r_l - m) + c * (r_w + r_l)^2 ]
    """
    r_w, r_l = rewards[winners], rewards[losers]                         # (P,), (P,)
    per_pair = -F.logsigmoid(r_w - r_l - margin)                         # -log sigma(r_w - r_l - m)
    if center_coef:
        per_pair = per_pair + center_coef * (r_w + r_l) ** 2
    return (weights.to(per_pair.dtype) * per_pair).sum()


def rating_loss(rewards: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """The ratings variant: regress r_phi(x, y) onto absolute ratings, mean squared error."""
    return F.mse_loss(rewards, ratings)


# ----------------------------------------------------------------------------------------------
# Batches
@dataclass
class _Encoded:
    """A group with its responses already rendered to ids (done once, before training)."""

    group: PreferenceGroup
    ids: list[list[int]]
    loss_masks: list[list[int]]


def encode_groups(tok, groups: list[PreferenceGroup], max_len: int) -> list[_Encoded]:
    """Render every (prompt, response) once; drop groups with a response longer than `max_len`.

    Dropping rather than truncating: a reward read at a truncated position is meaningless
    (docs/reward_model.md, pitfall 6).
    """
    out = []
    for g in groups:
        rendered = [render(tok, g.prompt, r) for r in g.responses]
        if max(len(x.ids) for x in rendered) <= max_len:
            out.append(_Encoded(g, [x.ids for x in rendered], [x.loss_mask for x in rendered]))
    return out


def make_batch(encoded: list[_Encoded], pad_id: int):
    """Right-padded ids and mask of all responses of the groups, in group order: (N, T) each."""
    ids = [s for e in encoded for s in e.ids]
    masks = [m for e in encoded for m in e.loss_masks]
    b = pad_batch(ids, masks, pad_id)
    return b.ids, b.attention_mask


@torch.no_grad()
def rewards_of(model: RewardModel, encoded: list[_Encoded], pad_id: int, device,
               batch_prompts: int = 32, normalized: bool = True) -> list[np.ndarray]:
    """r_phi of every response of every group: one (K_g,) array per group."""
    device = torch.device(device)
    model.eval()
    out = []
    for i in range(0, len(encoded), batch_prompts):
        chunk = encoded[i:i + batch_prompts]
        ids, mask = make_batch(chunk, pad_id)
        with autocast(device):
            r = model(ids.to(device), mask.to(device), normalized=normalized).float().cpu().numpy()
        start = 0
        for e in chunk:
            out.append(r[start:start + len(e.ids)])
            start += len(e.ids)
    return out


# ----------------------------------------------------------------------------------------------
# Metrics on held-out groups (the statistics themselves are in evaluation.py)


def evaluate_reward_model(model: RewardModel, tok, groups: list[PreferenceGroup], device,
                          encoded: list[_Encoded] | None = None) -> dict:
    """Held-out metrics of a reward model (module docstring).

    Accuracies and correlations do not depend on the normalisation; calibration uses the raw
    (trained) scale, on which sigma(r_i - r_j) is the model's predicted probability; the reward
    mean and std are reported normalised (the units PPO sees).
    """
    encoded = encoded if encoded is not None else encode_groups(tok, groups,
                                                                model.trunk.config.block_size)
    kept = [e.group for e in encoded]
    r = rewards_of(model, encoded, tok.pad_id, device, normalized=False)
    m = {"accuracy_vs_annotators": finite_or_none(pairwise_accuracy(r, kept)),
         "accuracy_vs_oracle": finite_or_none(oracle_accuracy(r, kept)),   # None without gold rewards
         "n_eval_prompts": len(kept),
         "n_eval_pairs": sum(len(g.pairs) for g in kept)}
    with_gold = [(ri, g) for ri, g in zip(r, kept) if g.gold is not None]
    if with_gold:
        flat_r = np.concatenate([ri for ri, _ in with_gold])
        flat_g = np.concatenate([np.asarray(g.gold, dtype=np.float64) for _, g in with_gold])
        m["pearson_vs_gold"] = pearson(flat_r, flat_g)
        m["spearman_vs_gold"] = spearman(flat_r, flat_g)
        m["annotators_vs_oracle"] = label_agreement_with_oracle(kept)
    m["calibration"] = calibration(r, kept)          # on the trained (raw) scale: BT's own P(y_i > y_j)
    flat = np.concatenate(r) * float(model.gain) + float(model.bias) if r else np.array([np.nan])
    m["heldout_reward_mean"], m["heldout_reward_std"] = float(flat.mean()), float(flat.std())
    return m


# ----------------------------------------------------------------------------------------------
# Training
def batches_of(encoded: list[_Encoded], batch_prompts: int, epochs: int, seed: int):
    """The training batches, in a fixed order drawn from `seed`: a list of lists of groups.

    The groups of one prompt are never split across batches (docs/reward_model.md, pitfall 3). Each epoch is
    a fresh permutation; the order depends only on `seed`, so a resumed run replays it exactly.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(len(encoded), generator=g).tolist()
        for i in range(0, len(order), batch_prompts):
            out.append([encoded[j] for j in order[i:i + batch_prompts]])
    return out


def batch_loss(model: RewardModel, chunk: list[_Encoded], pad_id: int, device, cfg: RMConfig,
               objective: str, rating_stats: tuple[float, float] = (0.0, 1.0)):
    """The loss of one batch: every response of its groups forwarded once, then BT or MSE.

    Returns (loss, accuracy of the batch's pairs or nan).
    """
    ids, mask = make_batch(chunk, pad_id)
    with autocast(device):
        r = model(ids.to(device), mask.to(device), normalized=False)                # (N,)
    if objective == "bt":
        winners, losers, weights = pair_indices([e.group for e in chunk])
        winners, losers, weights = winners.to(device), losers.to(device), weights.to(device)
        loss = bradley_terry_loss(r, winners, losers, weights, margin=cfg.margin,
                               center_coef=cfg.center_coef)
        acc = (r[winners] > r[losers]).float().mean().item() if len(winners) else float("nan")
        return loss, acc
    # ratings: standardised targets (see `training_set`)
    mean, std = rating_stats
    target = torch.tensor([(x - mean) / std for e in chunk for x in e.group.ratings],
                          dtype=torch.float32, device=device)
    return rating_loss(r, target), float("nan")


def training_set(tok, groups: list[PreferenceGroup], objective: str, max_len: int):
    """The usable groups, rendered, and (mean, std) of the ratings for the "mse" objective.

    Ratings are regressed standardised (a positive linear map leaves every ordering unchanged, and
    a 1..7 scale would otherwise take the head's bias many steps to reach).
    """
    if objective not in ("bt", "mse"):
        raise ValueError(f"objective must be 'bt' or 'mse', not {objective!r}")
    encoded = [e for e in encode_groups(tok, groups, max_len)
               if (e.group.pairs if objective == "bt" else e.group.ratings)]
    if not encoded:
        raise ValueError(f"no usable training groups for objective {objective!r} (no pairs / "
                         f"ratings, or every response longer than the context of {max_len})")
    rating_stats = (0.0, 1.0)
    if objective == "mse":
        all_r = np.array([x for e in encoded for x in e.group.ratings], dtype=np.float64)
        rating_stats = (float(all_r.mean()), float(all_r.std()) or 1.0)
    return encoded, rating_stats


def train_reward_model(model: RewardModel, tok, groups: list[PreferenceGroup], cfg: RMConfig, *,
                       device, eval_groups: list[PreferenceGroup] | None = None,
                       objective: str = "bt", seed: int = 0, ckpt_path: str | None = None,
                       extra_state: dict | None = None, desc: str = "rm",
                       max_steps: int | None = None) -> dict:
    """Train r_phi on labelled groups; returns the training history.

    objective: "bt" = Bradley-Terry on each group's pairs (the slide's loss; groups without pairs are
    skipped); "mse" = regression onto each response's absolute rating (the ratings variant of lesson 07).
    `max_steps` stops early, leaving a resumable checkpoint (tests simulate an interruption with it).
    Under torchrun every rank trains on its slice of each batch through DDP, its loss weighted by its
    share of the batch's prompts ("bt") or responses ("mse"); rank 0 alone evaluates and writes.
    """

    device = torch.device(device)
    max_len = model.trunk.config.block_size
    encoded, rating_stats = training_set(tok, groups, objective, max_len)
    eval_enc = encode_groups(tok, eval_groups, max_len) if eval_groups and distributed.is_main() else []
    batches = batches_of(encoded, cfg.batch_prompts, cfg.epochs, seed)
    total = len(batches)
    model.to(device).eval()   # eval mode: no dropout anywhere; gradients still flow
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    # the finished model is saved by the caller (save_reward_model); this checkpoint is for resuming
    ckpt = Checkpoint(ckpt_path, {"model": model.trunk, "head": model.head}, opt,
                      model_config=model.trunk.config.to_dict(), rm_config=asdict(cfg), **(extra_state or {}))
    saved = ckpt.saved()
    fresh = {"step": 0, "history": {"step": [], "loss": [], "batch_accuracy": [], "eval_step": [],
                                    "eval_accuracy_vs_annotators": [], "eval_accuracy_vs_oracle": []}}
    state = ckpt.resume(fresh, desc, saved=saved if saved and not saved.get("done") and "optimizer" in saved else None)
    hist = state["history"]

    def evaluate_now(at_step):
        r = rewards_of(model, eval_enc, tok.pad_id, device, normalized=False)
        kept = [e.group for e in eval_enc]
        hist["eval_step"].append(at_step)
        hist["eval_accuracy_vs_annotators"].append(pairwise_accuracy(r, kept))
        hist["eval_accuracy_vs_oracle"].append(oracle_accuracy(r, kept))

    if eval_enc and state["step"] == 0:
        evaluate_now(0)
    loss_of = distributed.wrap(model, batch_loss)   # batch_loss(model, ...), DDP under torchrun
    # what the loss averages over: prompts with pairs ("bt"), responses ("mse")
    count = (lambda e: 1 if e.group.pairs else 0) if objective == "bt" else (lambda e: len(e.ids))
    bar = steps(state, total, desc=desc, max_steps=max_steps)
    for step in bar:
        # 1. the next batch of prompts, all K responses of each (the order is fixed by the seed)
        mine, weight = distributed.shard(batches[step], count)   # all of it in one process
        # 2-3. r_phi of every response, forwarded once; the loss; AdamW, clipped, linearly decaying rate
        set_lr(opt, linear_decay(step, total, cfg.lr))
        loss, acc = loss_of(mine, tok.pad_id, device, cfg, objective, rating_stats)
        loss = loss * weight
        optimizer_step(opt, loss, model.parameters(), cfg.grad_clip)
        hist["step"].append(step)
        hist["loss"].append(distributed.all_reduce_mean(loss.item()))   # the whole batch's loss
        hist["batch_accuracy"].append(batch_accuracy(acc, mine, batches[step], weight))
        state["step"] = step + 1
        # 4. now and then: held-out accuracy against the annotators and the oracle, a checkpoint
        if eval_enc and (state["step"] % cfg.eval_every == 0 or state["step"] == total):
            evaluate_now(state["step"])
        post = {"loss": f"{np.mean(hist['loss'][-20:]):.3f}"}
        if hist["eval_step"]:
            post["acc_oracle"] = f"{hist['eval_accuracy_vs_oracle'][-1]:.3f}"
        bar.set_postfix(post)
        ckpt.save_every(state, cfg.ckpt_every, total)
    bar.close()
    if not stopped_early(ckpt, state, total):
        distributed.barrier()           # the other ranks wait for rank 0
    return distributed.broadcast_object(hist)


def batch_accuracy(acc: float, mine: list[_Encoded], batch: list[_Encoded], weight: float) -> float:
    """The fraction of the whole batch's pairs that r_phi orders right, from this rank's `acc` over
    the pairs of its slice `mine` (one process: `acc` itself)."""
    if distributed.world_size() == 1:
        return acc
    n_mine = sum(len(e.group.pairs) for e in mine) if weight else 0   # weight 0: a stand-in slice
    n_all = sum(len(e.group.pairs) for e in batch)
    if n_all == 0:
        return float("nan")
    share = distributed.mean_weight(n_mine, n_all)
    return distributed.all_reduce_mean(acc * share if n_mine else 0.0)


# ----------------------------------------------------------------------------------------------
# Normalisation: responses from the SFT policy score mean 0, std 1
def normalization_from_rewards(raw: np.ndarray) -> tuple[float, float]:
    """(gain, bias) with gain * raw + bias of mean 0 and std 1 (population std, ddof=0)."""
    raw = np.asarray(raw, dtype=np.float64)
    std = float(raw.std())
    gain = 1.0 / std if std > 0 else 1.0
    return gain, -float(raw.mean()) * gain


@torch.no_grad()
def fit_normalization(model: RewardModel, policy: GPT, tok, prompts: list[str], *,
                      max_new_tokens: int, seed: int = 0) -> dict:
    """Set the RM's gain and bias so that responses sampled from `policy` score mean 0, std 1.

    The samples are scored as token ids straight from the generator (prompt left-padded, response
    right-padded): exactly the form PPO's rollouts will have. Returns the raw mean and std.
    """
    device = next(model.parameters()).device
    model.eval()
    raw = []
    for b in sample_batches(policy, tok, prompts, max_new_tokens=max_new_tokens, seed=seed):
        with autocast(device):
            raw.append(model(b.gen.tokens.to(device), b.gen.attention_mask.to(device),
                             normalized=False).float().cpu().numpy())
    raw = np.concatenate(raw)
    gain, bias = normalization_from_rewards(raw)
    model.set_normalization(gain, bias)
    return {"raw_mean": float(raw.mean()), "raw_std": float(raw.std()), "gain": gain, "bias": bias,
            "n_samples": int(len(raw))}


# ----------------------------------------------------------------------------------------------
# Saving and loading
def save_reward_model(path: str, model: RewardModel, **extra) -> None:
    """Atomic checkpoint: `model` holds the trunk's GPT weights (so `pipeline.load_model` reads the
    trunk as a plain GPT, e.g. to initialise PPO's value model), `head` the scalar head, and
    `reward_gain` / `reward_bias` the normalisation."""
    save_checkpoint(path, model=model.trunk.state_dict(), head=model.head.state_dict(),
                    reward_gain=float(model.gain), reward_bias=float(model.bias),
                    model_config=model.trunk.config.to_dict(), **extra)


def load_reward_model(path: str, device="cpu") -> RewardModel:
    """A RewardModel from a checkpoint written by `save_reward_model` / `ensure_rm`, in eval mode."""
    state = load_checkpoint(path)
    if "head" not in state:
        raise CheckpointError(f"checkpoint {path} has no reward head: it is not a reward model "
                              f"(written by `python train.py rm`)")
    model = RewardModel(GPT(GPTConfig(**state["model_config"])))
    model.trunk.load_state_dict(state["model"])
    model.head.load_state_dict(state["head"])
    model.set_normalization(state.get("reward_gain", 1.0), state.get("reward_bias", 0.0))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------
# Figures: `plotting.plot_rm_training`, `plot_calibration` and `plot_reward_vs_gold`.
