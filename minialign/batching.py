"""Padding, target shifting and per-token log-probs of given sequences: written once, used by all.

The one padding convention for training is RIGHT padding (positions then need no fix; left padding
is for generation only, see generate.py). The one place that turns a loss mask into targets is
`shift_targets`: a causal LM's hidden state at position t predicts token t+1, so

    targets[:, t] = ids[:, t+1]   where loss_mask[:, t+1] == 1,   IGNORE_INDEX elsewhere
    targets[:, -1] = IGNORE_INDEX                                  (nothing follows the last token)

and `sequence_token_logprobs` returns logp[:, t] = log pi(ids[t+1] | ids[<=t]) on those positions
(0 elsewhere), from the shared kernel. SFT's loss, DPO's summed log-probs and PPO's per-token
log-probs of a rollout are all this one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .logprobs import IGNORE_INDEX, token_logprobs


@dataclass
class Batch:
    """Right-padded sequences. All tensors (B, T); `targets` already shifted (see module doc)."""

    ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    targets: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.ids, self.attention_mask, self.loss_mask,
                                               self.targets)))


def shift_targets(ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) ids and 0/1 loss mask -> (B, T) next-token targets with IGNORE_INDEX off the mask."""
    targets = torch.full_like(ids, IGNORE_INDEX)
    targets[:, :-1] = torch.where(loss_mask[:, 1:].bool(), ids[:, 1:],
                                  torch.full_like(ids[:, 1:], IGNORE_INDEX))
    return targets


def pad_batch(seqs: list[list[int]], loss_masks: list[list[int]], pad_id: int,
              max_len: int | None = None) -> Batch:
    """Right-pad token lists (and their loss masks) into a Batch.

    Sequences longer than `max_len` raise: silently cutting a response would train on a
    truncated answer without its end token (docs/sft.md, pitfall 6); callers filter instead.
    """
    T = max(len(s) for s in seqs)
    if max_len is not None and T > max_len:
        raise ValueError(f"a sequence has {T} tokens, more than the context of {max_len}; "
                         f"filter long examples before batching")
    B = len(seqs)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    lmask = torch.zeros((B, T), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, loss_masks)):
        if len(s) != len(m):
            raise ValueError(f"sequence {i}: {len(s)} ids but a loss mask of {len(m)}")
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, :len(s)] = 1
        lmask[i, :len(s)] = torch.tensor(m, dtype=torch.long)
    return Batch(ids=ids, attention_mask=attn, loss_mask=lmask, targets=shift_targets(ids, lmask))


def sequence_token_logprobs(model, ids: torch.Tensor, attention_mask: torch.Tensor,
                            loss_mask: torch.Tensor, *, temperature: float = 1.0,
                            return_entropy: bool = False):
    """Per-token log-probs of the masked tokens of given sequences, through the shared kernel.

    ids, attention_mask, loss_mask: (B, T). Returns logp (B, T) float32 with
    logp[:, t] = log pi(ids[:, t+1] | ids[:, <=t]) / at `temperature` where loss_mask[:, t+1] == 1,
    else 0 (and entropy (B, T) of the same next-token distributions when asked).
    Works for right padding (training) and left padding (rollouts): positions come from the mask.
    """
    h = model(ids, attention_mask=attention_mask)                          # (B, T, C)
    targets = shift_targets(ids, loss_mask)                                # (B, T)
    return token_logprobs(h, model.output_weight, targets, temperature=temperature,
                          return_entropy=return_entropy)


def sequence_logprob_sums(model, batch: Batch, *, average: bool = False) -> torch.Tensor:
    """log pi(y | x) summed over each sequence's trained tokens: (B,). `average` divides by their count."""
    logp = sequence_token_logprobs(model, batch.ids, batch.attention_mask, batch.loss_mask)
    total = logp.sum(-1)
    if average:
        total = total / batch.loss_mask[:, 1:].sum(-1).clamp(min=1)
    return total
