"""Fine-grained RLHF: a reward after every segment, from several reward models (Wu et al. 2023).

Slides 002 "Fine-grained Human Feedback", "Multiple Reward Functions", "Example: Detoxification" and
"Customizing LLM Behavior". One score per response does not say which part was bad. Here K reward models, one
per feedback type (toxicity, irrelevance, factual errors), score every segment (a sentence), and PPO optimises,
per response token t (Wu et al. 2023, Eq. 1; docs/finegrained.md, section 1):

    r_t = sum_k sum_j 1(t = T_j^k) w_k R_phi_k(x, y, j)  -  beta * log( pi_theta(a_t|s_t) / pi_init(a_t|s_t) )

T_j^k is the last token of segment j for reward model k, w_k the weight of feedback type k. This file builds the
first sum, as a `reward_fn(rollout)` for `ppo.train_ppo`; the KL term and the update are ppo.py's, unchanged.
The holistic baseline is the same PPO with only the sequence-level reward, on the last token. In file order:
1. Segments and T_j (`segment_response`): sentences (`world.split_sentences`) or sub-sentences, with T_j found
   from the GENERATED ids decoded one token at a time, never re-tokenised (docs/finegrained.md, pitfalls 1-2).
2. Per-token rewards (`combine_rewards`): w_k R_k at each T_j^k, plus w_seq times the sequence-level reward,
   once, on the last valid token (pitfall 3).
3. Segment reward models (`SegmentRewardModel`): the SFT trunk + a scalar head read at each T_j, one forward per
   response, a binary cross-entropy per segment on the oracle's labels (`world.label_sentences`).
4. `FineGrainedReward`: steps 1-3 on a rollout; the sequence-level reward is the holistic PPO stage's own
   (`pipeline.holistic_reward`: the same normalisation, missing-<|end|> penalty and score position).
5. Detoxification (`ToxicityReward`), the world's toxicity score standing in for the Perspective API: holistic
   1 - Tox(y) on the last token, fine-grained -(Tox(y_<=j) - Tox(y_<j)) on sentence j, Tox(empty) = 0
   (docs/finegrained.md, section 4 and pitfall 7).
6. `train_text_ppo`: the same PPO on raw-text prompts, for detoxification and for lesson 09's "Customizing LLM
   Behavior" (the weight w_rel of a relevance RM trained on the base model's continuations is the knob).

Deviations from the paper and the FineGrainedRLHF code, said plainly:
- Segment rewards are penalties: -w_k for a segment the RM calls bad, 0 for a fine one. The paper also gives +w_k
  to every fine segment (`reward_form="sign"`); with rare errors that acts as a per-sentence bonus and the policy
  writes ever more sentences (docs/finegrained.md, pitfall 8). `reward_form="prob"` gives 2 P(fine) - 1.
- Sentences from a . ! ? splitter, not spaCy; sub-sentences (`segment="subsentence"`) inherit the oracle label of
  their sentence, except toxicity, scored per piece.
- The segment RMs are a causal GPT read at each segment's last token, not a Longformer classifier over "</s>"
  separators; a label may depend on what came before (a repeated sentence is irrelevant), which it sees.
- Log-probs use the sampling temperature on both sides (FineGrainedRLHF: T=1, sampling at 0.7 with top-k;
  docs/finegrained.md, section 5 and pitfall 5); whitening divides by the std, not its root (pitfall 6; ppo.whiten).
- Detoxification trains the pretrained base model on raw text (the paper: GPT-2 without SFT, RealToxicityPrompts),
  as the world's SFT model is already polite on these prompts: `train_ppo(chat=False)`, up to <|endoftext|>.
"""

from __future__ import annotations

import codecs
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batching import pad_batch
from .chat import render, response_text_ids
from .config import ConfigError, autocast
from .evaluation import prompt_text
from .model import GPT, new_scalar_head, scalar_head, trunk_copy
from .ppo import QUICK as PPO_QUICK
from .ppo import PPOConfig, Rollout, ValueModel, place_scores, train_ppo
from .training import adamw, linear_decay, optimizer_step, set_lr
from .world import label_sentences, split_sentences, toxicity
from .world.text import words

FEEDBACK_TYPES = ("toxicity", "relevance", "factuality")
# The oracle's label that marks an error for each feedback type (world.SentenceLabel fields).
ERROR_LABEL = {"toxicity": "toxic", "relevance": "irrelevant", "factuality": "wrong"}
SEGMENT_KINDS = ("sentence", "subsentence")
SUBSENTENCE_CUTS = ",;:"
# The config fields that change the segment RMs' training data: a cached set is retrained when one differs.
RM_DATA_FIELDS = ("segment", "rm_prompts", "rm_policy_samples", "rm_rl_prompts", "rm_eval_prompts",
                  "rm_epochs", "rm_batch_size", "rm_lr")
MIN_SUBSENTENCE_WORDS = 5


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class FineGrainedConfig:
    """Fine-grained RLHF of the SFT policy: segment reward models, their weights, and the PPO run."""

    rewards: str = "toxicity,relevance,factuality"
    """Segment reward models to train and use (comma-separated, from: toxicity, relevance, factuality)."""
    w_toxicity: float = 0.5
    """w_k of the toxicity RM: -w for a sentence it calls toxic (and +w for a clean one with reward_form=sign).
    Range: w_toxicity >= 0."""
    w_relevance: float = 0.3
    """w_k of the relevance RM (paper, QA-Feedback: 0.3): -w per irrelevant segment (+w per relevant one: sign).
    Range: w_relevance >= 0."""
    w_factuality: float = 0.5
    """w_k of the factuality RM (paper: 0.5): -w per wrong sentence (+w per correct one: sign).
    Range: w_factuality >= 0."""
    w_sequence: float = 1.0
    """Weight of the sequence-level reward, the holistic PPO's own (`pipeline.holistic_reward`): 1 makes this run
    the holistic one plus segment penalties (the paper's completeness RM: 0.3). Range: w_sequence >= 0."""
    segment: str = "sentence"
    """Segments of the relevance RM: 'sentence', or 'subsentence' (cut after , ; : with >= 5 words, as
    FineGrainedRLHF's relevance RM). Toxicity and factuality are always per sentence.
    Range: segment in ('sentence', 'subsentence')."""
    reward_form: str = "penalty"
    """R_phi_k(x, y, j): 'penalty' = -1 for a segment the RM calls bad, else 0; 'sign' = +1 / -1 (the paper's
    +-w); 'prob' = 2 P(no error) - 1. See the module docstring for why 'sign' is not the default here.
    Range: reward_form in ('penalty', 'sign', 'prob')."""
    # --- segment reward models ---------------------------------------------------------------------------------
    rm_prompts: int = 1200
    """Instruction prompts whose responses (reference, flawed variants, SFT samples) label the segment RMs.
    Range: rm_prompts >= 1."""
    rm_policy_samples: int = 1
    """Responses sampled from the SFT policy per prompt, added to the world's K ranked responses.
    Range: rm_policy_samples >= 0."""
    rm_rl_prompts: int = 800
    """RL prompts (half instruction, half of prompt_kind) answered once by the SFT policy and labelled by the oracle:
    feedback on the distribution PPO trains on. Range: rm_rl_prompts >= 0."""
    rm_eval_prompts: int = 150
    """Held-out prompts (test split) for the segment RMs' accuracy (plus a quarter as many held-out RL prompts).
    Range: rm_eval_prompts >= 1."""
    rm_epochs: int = 1
    """Passes over the labelled responses. Range: rm_epochs >= 1."""
    rm_batch_size: int = 32
    """Responses per segment-RM batch (every segment of a response is read from its one forward).
    Range: rm_batch_size >= 1."""
    rm_lr: float = 3e-4
    """Peak AdamW learning rate of the segment RMs, decayed linearly to 0. Range: rm_lr > 0."""
    # --- PPO: defaults are ppo.PPOConfig's, so the holistic `ppo` stage is the baseline at equal steps -----------
    iterations: int = PPOConfig.iterations
    """PPO iterations. Range: iterations >= 1."""
    batch_size: int = PPOConfig.batch_size
    """Episodes per PPO rollout batch. Range: batch_size >= 1."""
    beta: float = PPOConfig.beta
    """KL coefficient of the per-token penalty: the holistic run's, for a simple comparison (the paper uses 0.3 for
    its denser fine-grained rewards, 0.2 holistic). Range: beta >= 0 (the KL coefficient; 0 turns the penalty off)."""
    lr: float = PPOConfig.lr
    """Adam learning rate of the policy and the value model. Range: lr > 0."""
    max_new_tokens: int = PPOConfig.max_new_tokens
    """Response budget of the rollouts and of the evaluation. Range: max_new_tokens >= 1."""
    temperature: float = PPOConfig.temperature
    """Sampling temperature of the rollouts (log-probs use the same). Range: temperature > 0."""
    n_prompts: int = PPOConfig.n_prompts
    """RL prompts (world.rl_prompts(prompt_kind, split='train')). Range: n_prompts >= 1."""
    prompt_kind: str = PPOConfig.prompt_kind
    """The world's RL prompt set, as the holistic PPO stage's (its RM was trained on answers to these); its
    held-out prompts evaluate the run. Range: prompt_kind in ('instruction', 'sentiment', 'toxic', 'story')."""
    holistic_baseline: bool = False
    """Also train a holistic baseline here (only the sequence-level RM, weight 1, same PPO settings). Without it
    the `ppo` stage's policy, when built, is evaluated beside (same RM, prompts and PPO defaults)."""
    n_eval_prompts: int = 128
    """Held-out prompts (test split) for the final evaluation (gold reward, KL, sentence error rates).
    Range: n_eval_prompts >= 1."""

    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        reward_names(self)


# --quick: tiny settings for tests and CI; too small to show anything.
QUICK = dict(rm_prompts=24, rm_rl_prompts=16, rm_eval_prompts=8, rm_batch_size=16, n_eval_prompts=8,
             **{k: PPO_QUICK[k] for k in ("iterations", "batch_size", "max_new_tokens", "n_prompts", "lr")})


def ppo_config(cfg: FineGrainedConfig, **overrides) -> PPOConfig:
    """The PPOConfig of a fine-grained run: PPO's defaults with this config's overrides."""
    base = dict(iterations=cfg.iterations, batch_size=cfg.batch_size, beta=cfg.beta, lr=cfg.lr,
                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, n_prompts=cfg.n_prompts)
    return PPOConfig(**{**base, **overrides})


def reward_names(cfg: FineGrainedConfig) -> list[str]:
    names = [n.strip() for n in cfg.rewards.split(",") if n.strip()]
    bad = [n for n in names if n not in FEEDBACK_TYPES]
    if bad or not names:
        raise ConfigError(f"--rewards must name one or more of {', '.join(FEEDBACK_TYPES)} (comma-separated), "
                          f"got {cfg.rewards!r}")
    return names


def weights_of(cfg: FineGrainedConfig) -> dict[str, float]:
    """{feedback type: w_k} of the segment RMs in use."""
    return {n: getattr(cfg, f"w_{n}") for n in reward_names(cfg)}


# ----------------------------------------------------------------------------------------------------------------
# 1. Segments and the token T_j where each ends
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Segment:
    """One segment of a response: `text[start:end]`, ending at response token `token_end` (T_j)."""

    start: int
    end: int
    token_end: int


def split_subsentences(text: str, min_words: int = MIN_SUBSENTENCE_WORDS) -> list[tuple[int, int]]:
    """Character spans of sub-sentences: each sentence cut after , ; or :, pieces of < min_words merged.

    A short piece is merged into the next piece of its sentence (the last one into the previous), so every
    sub-sentence lies inside one sentence and the spans of a sentence cover it exactly.
    """
    spans = []
    for s, e in split_sentences(text):
        cuts = [i + 1 for i in range(s, e - 1) if text[i] in SUBSENTENCE_CUTS]
        pieces = list(zip([s] + cuts, cuts + [e]))
        merged: list[list[int]] = []
        for a, b in pieces:
            if merged and len(words(text[merged[-1][0]:merged[-1][1]])) < min_words:
                merged[-1][1] = b                          # the previous piece was too short: extend it
            else:
                merged.append([a, b])
        if len(merged) > 1 and len(words(text[merged[-1][0]:merged[-1][1]])) < min_words:
            last = merged.pop()                            # a short last piece joins the previous one
            merged[-1][1] = last[1]
        for a, b in merged:
            while text[a].isspace():
                a += 1
            spans.append((a, b))
    return spans


def segment_spans(text: str, kind: str = "sentence") -> list[tuple[int, int]]:
    """Character spans (start, end) of the segments of `text`: sentences or sub-sentences."""
    if kind == "sentence":
        return split_sentences(text)
    if kind == "subsentence":
        return split_subsentences(text)
    raise ValueError(f"segment kind must be one of {SEGMENT_KINDS}, got {kind!r}")


def token_char_ends(tok, ids: list[int]) -> tuple[str, list[int]]:
    """Decode `ids` one token at a time: (text, ends) with ends[i] = len(text after token i).

    An incremental UTF-8 decoder emits a character only once its last byte has arrived, so a character whose
    bytes span two tokens belongs to the token that completes it. `text` equals tok.decode(ids).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces, ends, n = [], [], 0
    for i, t in enumerate(ids):
        piece = decoder.decode(tok.token_bytes(int(t)), final=(i == len(ids) - 1))
        pieces.append(piece)
        n += len(piece)
        ends.append(n)
    return "".join(pieces), ends


def segment_response(tok, response_ids: list[int], kind: str = "sentence",
                     n_valid: int | None = None) -> tuple[str, list[Segment]]:
    """The text of generated ids and its segments with T_j, from the ids themselves (never re-tokenised).

    T_j = the index (in `response_ids`) of the token holding the segment's last character, clipped to the
    last valid token `n_valid - 1` (default: len(response_ids) - 1).
    """
    ids = response_text_ids(tok, response_ids)
    text, ends = token_char_ends(tok, ids)
    last_valid = (len(response_ids) if n_valid is None else n_valid) - 1
    segments = []
    for start, end in segment_spans(text, kind):
        t_j = bisect_left(ends, end)            # the first token whose text reaches character end - 1
        segments.append(Segment(start, end, max(0, min(t_j, last_valid))))
    return text, segments


# ----------------------------------------------------------------------------------------------------------------
# 2. Per-token rewards from per-segment rewards
# ----------------------------------------------------------------------------------------------------------------
def place_segment_rewards(token_ends: list[list[int]], values: list[list[float]], mask: torch.Tensor) -> torch.Tensor:
    """sum_j 1(t = T_j) R_j for every row: token_ends[b][j] = T_j, values[b][j] = R_j -> (B, N) float32.

    Each T_j is clipped to the row's last valid token (mask (B, N) is 1 on the response tokens); two segments
    ending on the same token both count.
    """
    B, N = mask.shape
    out = torch.zeros(B, N, dtype=torch.float32)
    last = (mask.sum(1).long() - 1).clamp(min=0).cpu()
    for b in range(B):
        for t_j, r_j in zip(token_ends[b], values[b]):
            out[b, min(max(int(t_j), 0), int(last[b]))] += float(r_j)
    return out.to(mask.device)


def combine_rewards(segment_parts: dict, weights: dict, mask: torch.Tensor, sequence: torch.Tensor | None = None,
                    w_sequence: float = 0.0) -> torch.Tensor:
    """The task part of the slide's r_t: sum_k w_k sum_j 1(t = T_j^k) R_k(x, y, j) (+ w_seq R_seq on the end).

    segment_parts: {k: (token_ends, values)} per feedback type, as for `place_segment_rewards`; weights: {k: w_k};
    sequence: (B,) sequence-level rewards, placed once per response on its last valid token (ppo.place_scores).
    Returns (B, N); the KL term is added by ppo.ppo_iteration.
    """
    total = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for k, (ends, values) in segment_parts.items():
        total = total + weights[k] * place_segment_rewards(ends, values, mask)
    if sequence is not None and w_sequence:
        total = total + w_sequence * place_scores(sequence.float(), mask, "end")
    return total


# ----------------------------------------------------------------------------------------------------------------
# 3. Segment reward models
# ----------------------------------------------------------------------------------------------------------------
class SegmentRewardModel(nn.Module):
    """R_phi_k(x, y, j): a GPT trunk (the SFT model's copy) and a scalar head read at each segment's last token.

    forward(ids, attention_mask, rows, cols) -> logits (S,) of P(segment is fine), one per (row, col) pair:
    ONE forward of the whole batch, then the hidden states at the segments' last tokens. Any padding works
    (positions come from the attention mask), so a PPO rollout is read in its own left-padded layout.
    """

    def __init__(self, trunk: GPT, name: str = ""):
        super().__init__()
        self.trunk, self.name = trunk, name
        self.head = new_scalar_head(trunk.config.n_embd)

    @classmethod
    def from_sft(cls, sft_model: GPT, name: str = "") -> "SegmentRewardModel":
        """A trunk copied from the SFT model (dropout off), as the holistic RM's."""
        return cls(trunk_copy(sft_model), name)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                cols: torch.Tensor) -> torch.Tensor:
        h = self.trunk(ids, attention_mask=attention_mask)                  # (B, T, C)
        return scalar_head(self.head, h[rows, cols])                         # (S,) float32


def segment_reward(logits: torch.Tensor, form: str = "penalty") -> torch.Tensor:
    """R_phi_k from the classifier's logits of P(no error).

    'penalty': -1 for a segment predicted bad, 0 otherwise; 'sign': +1 / -1 (the paper's +-w); 'prob': 2 p - 1.
    """
    if form == "penalty":
        return torch.where(logits > 0, 0.0, -1.0)
    if form == "sign":
        return torch.where(logits > 0, 1.0, -1.0)
    if form == "prob":
        return 2 * torch.sigmoid(logits) - 1
    raise ValueError(f"reward_form must be 'penalty', 'sign' or 'prob', got {form!r}")


@dataclass
class LabelledResponse:
    """One rendered (prompt, response) with its segments: ids (L,), the segments' last-token columns, labels.

    labels[k][j] = 1 when segment j of feedback type k has no error (the oracle), 0 otherwise.
    """

    ids: list[int]
    cols: dict                 # {feedback type: [column of T_j in ids]}
    labels: dict               # {feedback type: [0/1]}


def segment_kind_of(name: str, cfg: FineGrainedConfig) -> str:
    """Relevance may use sub-sentences (cfg.segment); toxicity and factuality are per sentence."""
    return cfg.segment if name == "relevance" else "sentence"


def oracle_segment_labels(prompt, text: str, spans: list[tuple[int, int]], name: str) -> list[int]:
    """1 (fine) / 0 (error) per span, from the world's oracle.

    Toxicity is scored on the span itself (world.toxicity > 0); relevance and factuality take the label of the
    oracle's sentence that contains the span (world.label_sentences labels sentences).
    """
    if name == "toxicity":
        return [int(toxicity(text[s:e]) == 0) for s, e in spans]
    sentences = label_sentences(prompt, text)
    out = []
    for s, e in spans:
        owner = next((lab for lab in sentences if lab.start <= s < lab.end), None)
        bad = owner is not None and getattr(owner, ERROR_LABEL[name])
        out.append(int(not bad))
    return out


def label_text_response(tok, prompt_ids: list[int], response_ids: list[int], prompt, names: list[str],
                        cfg: FineGrainedConfig) -> LabelledResponse | None:
    """ids = prompt ids + response ids (as generated), with every feedback type's segment columns P + T_j and the
    oracle's labels; `prompt` is what the oracle grades against. For a raw-text continuation (a base model)."""
    P = len(prompt_ids)
    cols, labels = {}, {}
    for name in names:
        text, segments = segment_response(tok, response_ids, segment_kind_of(name, cfg))
        cols[name] = [P + s.token_end for s in segments]
        labels[name] = oracle_segment_labels(prompt, text, [(s.start, s.end) for s in segments], name)
    if not any(cols.values()):
        return None
    return LabelledResponse(list(prompt_ids) + list(response_ids), cols, labels)


def label_response(tok, prompt, response: str, names: list[str], cfg: FineGrainedConfig) -> LabelledResponse | None:
    """Render (prompt, response) with the chat template and attach every feedback type's segment labels."""
    rendered = render(tok, prompt_text(prompt), response)
    P = rendered.prompt_len
    return label_text_response(tok, rendered.ids[:P], rendered.ids[P:], prompt, names, cfg)


def segment_batch(items: list[LabelledResponse], name: str, pad_id: int, device):
    """Right-padded ids and mask (B, T), and the (rows, cols, labels) of all segments of type `name`."""
    batch = pad_batch([x.ids for x in items], [[1] * len(x.ids) for x in items], pad_id)
    rows = [b for b, x in enumerate(items) for _ in x.cols[name]]
    cols = [c for x in items for c in x.cols[name]]
    labels = [y for x in items for y in x.labels[name]]
    t = lambda v, dt=torch.long: torch.tensor(v, dtype=dt, device=device)
    return (batch.ids.to(device), batch.attention_mask.to(device), t(rows), t(cols), t(labels, torch.float32))


def segment_loss(model: SegmentRewardModel, items, name: str, pad_id: int, device):
    """Binary cross-entropy per segment (label 1 = no error), averaged over the batch's segments."""
    ids, attn, rows, cols, labels = segment_batch(items, name, pad_id, device)
    if len(rows) == 0:
        return None, None
    with autocast(device):
        logits = model(ids, attn, rows, cols)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    return loss, ((logits > 0).float() == labels).float().mean().item()


@torch.no_grad()
def evaluate_segment_rm(model: SegmentRewardModel, items, name: str, pad_id: int, device, batch_size: int = 64) -> dict:
    """Accuracy, balanced accuracy and the error class's recall of a segment RM on labelled responses; the share
    of segments it calls errors (its view) beside the share the oracle does (`error_fraction`)."""
    model.eval()
    preds, labels = [], []
    for s in range(0, len(items), batch_size):
        ids, attn, rows, cols, y = segment_batch(items[s:s + batch_size], name, pad_id, device)
        if len(rows):
            with autocast(device):
                preds.append((model(ids, attn, rows, cols) > 0).float().cpu())
            labels.append(y.cpu())
    if not preds:
        return {"n_segments": 0}
    p, y = torch.cat(preds), torch.cat(labels)
    recall = lambda cls: float(((p == cls) & (y == cls)).sum() / (y == cls).sum()) if (y == cls).any() else None
    fine, err = recall(1.0), recall(0.0)
    both = [r for r in (fine, err) if r is not None]
    return {"accuracy": float((p == y).float().mean()), "balanced_accuracy": float(np.mean(both)),
            "error_recall": err, "fine_recall": fine, "error_fraction": float((y == 0).float().mean()),
            "predicted_error_fraction": float((p == 0).float().mean()), "n_segments": int(len(y))}


def train_segment_rm(model: SegmentRewardModel, items: list[LabelledResponse], name: str, cfg: FineGrainedConfig,
                     pad_id: int, device, seed: int = 0) -> dict:
    """AdamW on the per-segment BCE, linear decay to 0, gradient norm clipped at 1; returns the loss history."""
    items = [x for x in items if x.cols[name]]
    g = torch.Generator().manual_seed(seed)
    order = [i for _ in range(cfg.rm_epochs) for i in torch.randperm(len(items), generator=g).tolist()]
    batches = [order[s:s + cfg.rm_batch_size] for s in range(0, len(order), cfg.rm_batch_size)]
    model.to(device).eval()                                  # eval: no dropout; gradients still flow
    opt = adamw(model, cfg.rm_lr, 0.0)
    hist = {"loss": [], "accuracy": []}
    bar = tqdm(batches, desc=f"segment rm {name}", unit="step")
    for step, idx in enumerate(bar):
        set_lr(opt, linear_decay(step, len(batches), cfg.rm_lr))
        loss, acc = segment_loss(model, [items[i] for i in idx], name, pad_id, device)
        if loss is None:
            continue
        optimizer_step(opt, loss, model.parameters(), 1.0)
        hist["loss"].append(loss.item())
        hist["accuracy"].append(acc)
        bar.set_postfix(loss=f"{np.mean(hist['loss'][-20:]):.3f}", acc=f"{np.mean(hist['accuracy'][-20:]):.3f}")
    return hist


# ----------------------------------------------------------------------------------------------------------------
# 4. reward_fn(rollout) for ppo.train_ppo
# ----------------------------------------------------------------------------------------------------------------
class FineGrainedReward:
    """reward_fn(rollout) -> (task rewards (B, N), per-row info): the first part of the slide's r_t.

    For each segment RM k: the rollout's segments (from its generated ids), ONE forward of the rollout in its
    own layout, R_k at each T_j, times w_k; plus w_seq times the holistic PPO's own per-token reward
    `sequence_reward` (ppo.rm_reward_fn: the same normalised RM score, missing-<|end|> penalty and score
    position). The KL term is added by ppo.ppo_iteration.
    """

    def __init__(self, tok, segment_rms: dict, weights: dict, *, sequence_reward=None, w_sequence: float = 0.0,
                 reward_form: str = "penalty", kinds: dict | None = None):
        self.tok, self.rms, self.weights = tok, segment_rms, weights
        self.sequence_reward, self.w_sequence = sequence_reward, w_sequence
        self.form, self.kinds = reward_form, kinds or {}

    @torch.no_grad()
    def segment_scores(self, name: str, r: Rollout) -> tuple[list[list[int]], list[list[float]]]:
        """(T_j, R_k(x, y, j)) of every segment of every response, for feedback type `name`.

        The segments come from the generated ids; the RM reads the rollout as it is (prompt left-padded,
        response right-padded) in one forward, at columns P + T_j.
        """
        P, device = r.prompt_len, r.mask.device
        kind = self.kinds.get(name, "sentence")
        ends = [[s.token_end for s in segment_response(self.tok, ids, kind, n)[1]]
                for ids, n in zip(r.response_ids, r.lengths.tolist())]
        rows = torch.tensor([b for b, e in enumerate(ends) for _ in e], dtype=torch.long, device=device)
        cols = torch.tensor([P + t for e in ends for t in e], dtype=torch.long, device=device)
        values: list[list[float]] = [[] for _ in ends]
        if len(rows):
            with autocast(device):
                logits = self.rms[name](r.tokens, r.attention_mask, rows, cols)
            for b, v in zip(rows.tolist(), segment_reward(logits, self.form).cpu().tolist()):
                values[b].append(v)
        return ends, values

    @torch.no_grad()
    def __call__(self, r: Rollout):
        parts, info = {}, {}
        for name in self.rms:                                   # 1. segment rewards R_k(x, y, j) at T_j^k
            ends, values = parts[name] = self.segment_scores(name, r)
            info[f"{name}_reward"] = torch.tensor([sum(v) for v in values])
            info[f"{name}_errors"] = torch.tensor([sum(x < 0 for x in v) / max(1, len(v)) for v in values])
        rewards = combine_rewards(parts, self.weights, r.mask)              # 2. sum_k w_k R_k at the segment ends
        if self.sequence_reward is not None and self.w_sequence:    # 3. + w_seq x the holistic reward, as PPO's
            sequence, seq_info = self.sequence_reward(r)
            rewards = rewards + self.w_sequence * sequence.to(rewards.device)
            info["sequence_score"] = seq_info["score"]
        return rewards, info


# ----------------------------------------------------------------------------------------------------------------
# 5. Detoxification rewards (the world's toxicity score in place of the Perspective API)
# ----------------------------------------------------------------------------------------------------------------
def toxicity_rewards(text: str, segments: list[Segment], mode: str = "finegrained",
                     tox=None) -> list[tuple[int, float]]:
    """(token, reward) pairs of one response (slide "Example: Detoxification").

    'holistic':     [(last token, 1 - Tox(y))]
    'finegrained':  [(T_j, -(Tox(y_<=j) - Tox(y_<j))) for each sentence j], Tox(empty) = 0, where y_<=j is the
                    text up to the end of sentence j. The rewards sum to -Tox(y_<=J).
    The last token of an empty response gets 1 (holistic) or nothing (fine-grained): no text, no toxicity.
    """
    tox = tox or toxicity
    if mode == "holistic":
        return [(-1, 1.0 - tox(text))]
    if mode != "finegrained":
        raise ValueError(f"toxicity reward mode must be 'holistic' or 'finegrained', got {mode!r}")
    out, before = [], 0.0                                   # Tox(empty) := 0
    for s in segments:
        now = tox(text[:s.end])
        out.append((s.token_end, -(now - before)))
        before = now
    return out


class ToxicityReward:
    """reward_fn(rollout) for detoxification: holistic 1 - Tox(y) at the end, or fine-grained -dTox per sentence."""

    def __init__(self, tok, mode: str = "finegrained", kind: str = "sentence"):
        self.tok, self.mode, self.kind = tok, mode, kind

    def segment_scores(self, r: Rollout) -> tuple[list[list[int]], list[list[float]], list[float]]:
        """(token indices, rewards) of every response of the rollout, and each response's Tox(y)."""
        ends, values, tox = [], [], []
        for ids, n in zip(r.response_ids, r.lengths.tolist()):
            text, segments = segment_response(self.tok, ids, self.kind, n)
            pairs = toxicity_rewards(text, segments, self.mode)
            ends.append([n - 1 if t < 0 else t for t, _ in pairs])
            values.append([v for _, v in pairs])
            tox.append(toxicity(text))
        return ends, values, tox

    @torch.no_grad()
    def __call__(self, r: Rollout):
        ends, values, tox = self.segment_scores(r)
        rewards = place_segment_rewards(ends, values, r.mask)
        return rewards, {"toxicity": torch.tensor(tox), "toxic": torch.tensor([float(t > 0) for t in tox])}


# ----------------------------------------------------------------------------------------------------------------
# 6. PPO on raw-text prompts (the detoxification experiment: a base model continuing text)
# ----------------------------------------------------------------------------------------------------------------
def train_text_ppo(policy: GPT, ref: GPT, value_model: ValueModel, reward_fn, prompt_ids: list[list[int]],
                   cfg: PPOConfig, *, tok, device, seed: int = 0, desc: str = "ppo", eval_fn=None,
                   eval_every: int = 0) -> dict:
    """ppo.train_ppo on raw prompt ids continued up to <|endoftext|> (no chat template, no checkpoint).

    eval_fn(policy) -> {name: float} is called before training and every `eval_every` iterations (the sample-
    efficiency curve). Returns the history {name: [per iteration]}, "eval" {name: [...], "iteration": [...]} and
    "episodes_per_iteration".
    """
    m = train_ppo(policy, ref, None, value_model, tok, prompt_ids, cfg, None, device, reward_fn=reward_fn,
                  seed=seed, desc=desc, chat=False, eval_fn=eval_fn, eval_every=eval_every)
    history = m["history"]
    return {**{k: v for k, v in history.items() if k != "eval"}, "eval": history.get("eval", {"iteration": []}),
            "episodes_per_iteration": cfg.batch_size}


# The evaluation (the detoxification table of docs/evaluation.md, section 3, and the sentence error rates) is in
# evaluation.py; the figures are in plotting.py.
