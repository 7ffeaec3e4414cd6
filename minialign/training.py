"""What every trainer does around its algorithm, written once: start or resume from a checkpoint, save it
atomically, the step loop with its progress bar, an early stop that leaves a resumable checkpoint, the
learning-rate schedules, the per-iteration history, and the distributed bookkeeping (rank 0 writes, the others wait).

A trainer (pretrain, sft, reward, dpo, ppo) keeps only its algorithm; its plumbing is one line each:

    ckpt = Checkpoint(path, {"model": model}, optimizer, model_config=..., dpo_config=asdict(cfg))
    state = ckpt.resume({"step": 0, "history": {...}}, desc="dpo")   # the saved state, or this fresh one
    if state["done"]:
        return state["metrics"]
    for step in steps(state, total, desc="dpo", max_steps=max_steps):
        set_lr(optimizer, warmup_constant(step, cfg.lr, cfg.warmup_steps))
        ...                                                            # the algorithm's step
        state["step"] = step + 1
        ckpt.save_every(state, cfg.ckpt_every, total)
    if stopped_early(ckpt, state, total):
        return {}

The state is a plain dict of what a resume needs (the step, the history, and whatever else the trainer
keeps: PPO's beta, DPO's reference log-probs); the checkpoint file holds it beside the weights, the
optimizer and the run's configuration (see checkpoint.py for the atomic write).
"""

from __future__ import annotations

import math
import os
import time

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint


class Checkpoint:
    """One trainer's checkpoint file: its modules (saved under the given keys), its optimizer, and the entries
    that never change during the run (configs). `path=None` keeps nothing (a trainer run without an output)."""

    def __init__(self, path: str | None, modules: dict[str, nn.Module], optimizer=None, **constant):
        self.path, self.modules, self.optimizer, self.constant = path, modules, optimizer, constant

    def saved(self) -> dict | None:
        """The checkpoint's contents, or None when there is none."""
        return load_checkpoint(self.path) if self.path and os.path.exists(self.path) else None

    def resume(self, fresh: dict, desc: str, *, saved: dict | None = None, key: str = "step") -> dict:
        """The state to continue from: `fresh` (with done=False) when there is no checkpoint; else the saved
        one, after loading the modules' weights and, for an unfinished run, the optimizer's state.

        Returns a dict with `fresh`'s keys plus "done" and "metrics".
        """
        saved = saved if saved is not None else self.saved()
        if saved is None:
            return {**fresh, "done": False, "metrics": None}
        for name, module in self.modules.items():
            module.load_state_dict(saved[name])
        state = {k: saved.get(k, v) for k, v in fresh.items()}
        state.update(done=bool(saved.get("done")), metrics=saved.get("metrics"))
        if not state["done"]:
            if self.optimizer is not None:
                self.optimizer.load_state_dict(saved["optimizer"])
            print(f"resuming {desc} from {key} {state[key]} ({self.path})")
        return state

    def save(self, state: dict, *, done: bool = False, metrics: dict | None = None, **now) -> None:
        """Write the weights, the optimizer, the constant entries, `state` and `now` (entries of this moment,
        e.g. an RNG state) atomically; rank 0 only (every rank holds the same weights)."""
        if not self.path or not distributed.is_main():
            return
        entries = {k: v for k, v in state.items() if k not in ("done", "metrics")}
        save_checkpoint(self.path, **{k: m.state_dict() for k, m in self.modules.items()},
                        **({"optimizer": self.optimizer.state_dict()} if self.optimizer is not None else {}),
                        **self.constant, **entries, **now, done=done, metrics=metrics)

    def save_every(self, state: dict, every: int, total: int, key: str = "step", **now) -> None:
        """A resumable checkpoint every `every` steps, except after the last one (the trainer saves it, done)."""
        if state[key] % every == 0 and state[key] < total:
            self.save(state, **now)


def steps(state: dict, total: int, *, desc: str, unit: str = "step", max_steps: int | None = None,
          key: str = "step"):
    """The remaining steps, range(state[key], stop), under a tqdm bar (shown by rank 0). `max_steps` stops the
    run early on purpose (tests simulate an interruption with it)."""
    stop = total if max_steps is None else min(total, max_steps)
    return tqdm(range(state[key], stop), initial=state[key], total=total, desc=desc, unit=unit,
                disable=not distributed.is_main())


def stopped_early(ckpt: Checkpoint, state: dict, total: int, key: str = "step", **now) -> bool:
    """After the loop: when it stopped before `total`, save a resumable checkpoint, let the ranks meet, and
    say so (the trainer then returns without finishing)."""
    if state[key] >= total:
        return False
    ckpt.save(state, **now)
    distributed.barrier()
    return True


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (betas 0.9, 0.95) with weight decay on 2-D weight matrices only (not biases, LayerNorm gains or
    embeddings): pretraining, SFT and the reward models."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() == 2 and "wte" not in name and "wpe" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))



def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, grad_clip: float) -> None:
    """Backward, clip the global gradient norm of `params` to `grad_clip` (0: no clipping), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


# ----------------------------------------------------------------------------------------------------------------
# History: one list per logged number, and the time of each phase
def append_history(history: dict, iteration: int, stats: dict) -> None:
    """Append one iteration's numbers to `history`, a dict of equal-length lists keyed "iteration" and by name."""
    history.setdefault("iteration", []).append(iteration)
    for k, v in stats.items():
        history.setdefault(k, []).append(float(v))


def record_eval(history: dict, iteration: int, values: dict) -> None:
    """Append an evaluation's numbers to history["eval"] (lists keyed "iteration" and by name)."""
    evals = history.setdefault("eval", {"iteration": []})
    evals["iteration"].append(iteration)
    for k, v in values.items():
        evals.setdefault(k, []).append(v)


class Clock:
    """Wall time of consecutive phases: lap(name) records the seconds since the previous lap in `laps`."""

    def __init__(self):
        self.laps, self.t = {}, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.t = now - self.t, now


# ----------------------------------------------------------------------------------------------------------------
# Learning-rate schedules
def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def warmup_cosine(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup from lr / warmup to lr, then cosine decay to lr * min_ratio at the last step (GPT-2 style)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr * (min_ratio + (1 - min_ratio) * cosine)


def linear_decay(step: int, total: int, lr: float) -> float:
    """From lr at step 0 linearly to 0 after the last step (OpenAI's reward models and PPO: "annealed")."""
    return lr * (1.0 - step / max(1, total))


def warmup_constant(step: int, lr: float, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then constant (the DPO reference's schedule)."""
    return lr * min(1.0, (step + 1) / max(1, warmup))
