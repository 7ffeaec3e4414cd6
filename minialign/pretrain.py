"""Pretraining: next-token prediction on a text stream (slide 002 "Recap: Pre-training Decoder-only").

    L_LM(theta) = - sum_i log p_theta(x_i | x_<i)

the negative of GPT's language-modelling objective (Radford et al. 2018, Eq. 1) with a context of T
tokens, averaged over the tokens of a batch. The log-probs come from the shared kernel
(`minialign.logprobs.token_logprobs`), which fuses the output projection with the log-softmax, so
the (B, T, V) logits never exist; docs/logprobs.md, section 1, explains the shift.

The steps, as `pretrain` runs them:
1. take a batch of B windows of T+1 tokens at random offsets of the token stream (the offsets are
   drawn from a generator seeded with (seed, step), so a resumed run sees the same batches);
2. loss = mean over the B*T positions of -log p(x_{t+1} | x_<=t);
3. AdamW step with warmup + cosine learning rate, gradient norm clipped;
4. every `eval_every` steps: validation loss on held-out windows; every `ckpt_every` steps: an
   atomic checkpoint (model, optimizer, step) from which a killed run resumes exactly.

Choices, said plainly: the optimiser defaults are GPT-3's (Brown et al. 2020, Appendix B: Adam with
betas (0.9, 0.95), weight decay 0.1, gradient norm clipped at 1, linear warmup, then cosine decay to
10% of the peak rate), the decay decoupled (AdamW) and applied to weight matrices only
(`training.adamw`). Documents are joined into one stream with end-of-text between them, and windows
may span two documents (no attention mask at the boundary). bf16 autocast on GPUs only
(`config.autocast`); on CPU everything is float32.

Under torchrun (`minialign.distributed`): every rank draws the same B windows and trains on its
slice of them, through DDP, with its loss weighted so that the averaged gradient is the one of the
whole batch; rank 0 alone evaluates, writes the checkpoint, metrics.json and loss.png.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import distributed
from .config import autocast, write_json
from .logprobs import IGNORE_INDEX, token_logprobs
from .model import GPT
from .plotting import plot_curves
from .training import Checkpoint, adamw, optimizer_step, set_lr, steps, stopped_early, warmup_cosine


@dataclass
class PretrainConfig:
    """Optimisation of the next-token loss."""

    steps: int = 600
    """Optimizer steps. Range: steps >= 1 (0 would save an untrained model)."""
    batch_size: int = 16
    """Windows per batch (B). Range: batch_size >= 1."""
    seq_len: int = 128
    """Tokens per window (T); at most the model's block_size. Range: seq_len >= 1."""
    lr: float = 3e-3
    """Peak learning rate (small models tolerate large rates). Range: lr > 0."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to lr * min_lr_ratio. Range: 0 <= min_lr_ratio <= 1."""
    warmup_steps: int = 50
    """Linear warmup from 0 to lr. Range: warmup_steps >= 0."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, on weight matrices only (see training.adamw). Range: weight_decay >= 0."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables). Range: grad_clip >= 0."""
    eval_every: int = 100
    """Validation loss every this many steps. Range: eval_every >= 1."""
    ckpt_every: int = 200
    """Checkpoint every this many steps (and at the end). Range: ckpt_every >= 1."""
    val_fraction: float = 0.05
    """Fraction of the token stream held out for validation. Range: 0 < val_fraction < 1."""


def lm_loss(model: GPT, x: torch.Tensor, y: torch.Tensor,
            attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token negative log-likelihood over the positions whose target is not ignored.

    x: (B, T) inputs, y: (B, T) targets (x shifted by one; IGNORE_INDEX where no loss is wanted).
    """
    h = model(x, attention_mask=attention_mask)                   # (B, T, C)
    logp = token_logprobs(h, model.output_weight, y)              # (B, T), 0 where ignored
    n = (y != IGNORE_INDEX).sum().clamp(min=1)
    return -logp.sum() / n


def tokens_of(docs: list[str], tokenizer) -> np.ndarray:
    """Encode documents into one stream, each followed by end-of-text: (N,) int32."""
    ids = []
    for doc_ids in tokenizer.encode_batch(docs):
        ids.extend(doc_ids)
        ids.append(tokenizer.eot_id)
    return np.asarray(ids, dtype=np.int32)


def get_batch(stream: np.ndarray, batch_size: int, seq_len: int, generator: torch.Generator):
    """B random windows: x = stream[o : o+T], y = stream[o+1 : o+T+1]. Both (B, T) long."""
    if len(stream) <= seq_len + 1:
        raise ValueError(f"token stream of {len(stream)} tokens is shorter than one window "
                         f"of seq_len={seq_len}; give more text or a smaller --seq-len")
    offsets = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator)
    win = np.stack([stream[o:o + seq_len + 1] for o in offsets.tolist()])
    win = torch.from_numpy(win.astype(np.int64))
    return win[:, :-1], win[:, 1:]


def lr_at(step: int, cfg) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio at the last step (pretraining and SFT)."""
    return warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)


@torch.no_grad()
def evaluate(model: GPT, stream: np.ndarray, cfg: PretrainConfig, device, n_batches: int = 4) -> float:
    """Mean loss over fixed validation windows (the same every call)."""
    model.eval()
    g = torch.Generator().manual_seed(1234)
    losses = []
    for _ in range(n_batches):
        x, y = get_batch(stream, cfg.batch_size, min(cfg.seq_len, len(stream) - 2), g)
        with autocast(device):
            losses.append(lm_loss(model, x.to(device), y.to(device)).item())
    model.train()
    return float(np.mean(losses))


def pretrain(model: GPT, stream: np.ndarray, cfg: PretrainConfig, *, out_dir: str, device,
             seed: int = 0, extra_state: dict | None = None, max_steps: int | None = None) -> dict:
    """Train `model` on the token stream, resuming from `out_dir/ckpt.pt` if it exists.

    Writes ckpt.pt (atomically), metrics.json and loss.png in `out_dir`. `max_steps` stops early
    (to simulate an interruption in tests). Returns the metrics dict. Under torchrun: the same on
    every rank, and returns once rank 0 has written the checkpoint.
    """
    os.makedirs(out_dir, exist_ok=True)
    n_val = max(int(len(stream) * cfg.val_fraction), cfg.seq_len + 2)
    train_stream, val_stream = stream[:-n_val], stream[-n_val:]
    model.to(device).train()
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    ckpt = Checkpoint(os.path.join(out_dir, "ckpt.pt"), {"model": model}, opt, model_config=model.config.to_dict(),
                      pretrain_config=asdict(cfg), **(extra_state or {}))
    state = ckpt.resume({"step": 0, "history": {"step": [], "loss": [], "val_step": [], "val_loss": [],
                                                "tokens_per_s": []}, "torch_rng": None}, "pretraining")
    if state["done"]:
        return state["metrics"]
    rng = state.pop("torch_rng")
    if rng is not None:                              # the dropout masks go on as if never interrupted
        torch.set_rng_state(rng)
    history = state["history"]
    loss_of = distributed.wrap(model, lm_loss)   # lm_loss(model, x, y), through DDP under torchrun
    t_last, tokens_since = time.perf_counter(), 0
    bar = steps(state, cfg.steps, desc="pretrain", max_steps=max_steps)
    for step in bar:
        # 1. a batch whose offsets depend only on (seed, step): resuming replays the same data;
        #    under torchrun every rank draws the same batch and keeps its rows (all windows hold T
        #    targets, so the rows' share is the tokens' share)
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x, y = get_batch(train_stream, cfg.batch_size, cfg.seq_len, g)
        tokens_since += x.numel()
        rows, weight = distributed.shard(range(len(x)))
        x, y = x[rows].to(device), y[rows].to(device)
        # 2. next-token loss through the shared log-prob kernel
        set_lr(opt, lr_at(step, cfg))
        with autocast(device):
            loss = loss_of(x, y) * weight
        # 3. AdamW step with a clipped gradient norm
        optimizer_step(opt, loss, model.parameters(), cfg.grad_clip)
        history["step"].append(step)
        history["loss"].append(distributed.all_reduce_mean(loss.item()))   # the whole batch's loss
        # 4. evaluate (rank 0) and checkpoint now and then
        if distributed.is_main() and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            history["val_step"].append(step + 1)
            history["val_loss"].append(evaluate(model, val_stream, cfg, device))
        now = time.perf_counter()
        if now - t_last > 1.0:
            history["tokens_per_s"].append(tokens_since / (now - t_last))
            t_last, tokens_since = now, 0
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", lr=f"{lr_at(step, cfg):.1e}",
                        tok_s=f"{history['tokens_per_s'][-1]:.0f}" if history["tokens_per_s"] else "-")
        state["step"] = step + 1
        ckpt.save_every(state, cfg.ckpt_every, cfg.steps, torch_rng=torch.get_rng_state())
    bar.close()
    if stopped_early(ckpt, state, cfg.steps, torch_rng=torch.get_rng_state()):
        return {}
    metrics = None
    if distributed.is_main():
        metrics = finish(model, history, cfg, out_dir, len(train_stream), len(val_stream))
        ckpt.save(state, done=True, metrics=metrics, torch_rng=torch.get_rng_state())
    distributed.barrier()   # the other ranks wait for the checkpoint, which the caller loads next
    return distributed.broadcast_object(metrics)


def finish(model: GPT, history: dict, cfg: PretrainConfig, out_dir: str, n_train: int,
           n_val: int) -> dict:
    """After the last step: the final metrics, loss.png and metrics.json."""
    metrics = {
        "final_train_loss": float(np.mean(history["loss"][-20:])),
        "final_val_loss": history["val_loss"][-1] if history["val_loss"] else None,
        "val_perplexity": math.exp(history["val_loss"][-1]) if history["val_loss"] else None,
        "tokens_per_s_median": float(np.median(history["tokens_per_s"])) if history["tokens_per_s"] else None,
        "steps": cfg.steps, "tokens_seen": cfg.steps * cfg.batch_size * cfg.seq_len,
        "train_tokens": int(n_train), "val_tokens": int(n_val),
        "n_params": model.num_params(),
    }
    plot_curves(os.path.join(out_dir, "loss.png"),
                {"train loss": (history["step"], history["loss"]),
                 "validation loss": (history["val_step"], history["val_loss"])},
                smooth_window=0)
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
