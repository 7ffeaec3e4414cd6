"""Instruction tuning (SFT): slides 000/002 "Instruction Tuning", InstructGPT "Step 1".

"Continue training the model on the instructions using the same language modeling objective used
to train the original model: next-word prediction" (slide 000 "Finetuning an LLM to follow
instructions") -- but supervise only the response:

    L_SFT(theta) = - (1/B) sum_b [ sum_t m[b,t+1] log pi_theta(x[b,t+1] | x[b,<=t]) / sum_t m[b,t+1] ]

m[b,t+1] = 1 when token t+1 of example b is a response token or the answer's closing <|end|>;
0 on the prompt, the chat headers and the pads (docs/sft.md, section 1).

The steps, as the code runs them (`pipeline.ensure_sft` -> `train_sft` -> `evaluate_sft`):
1. Data (slide "Instruction Tuning: fine-tune on many tasks at once"): `n_per_family` examples of
   every seen task family of the world, each phrased with one of the family's T0-style templates
   (slide "Adding Diversity via Task Prompts"), a fraction `ni_fraction` in the Natural
   Instructions schema (slide "Proposed Data Schema"); or an Alpaca-style file (`--data`).
2. Render `<|user|> prompt <|end|> <|assistant|> response <|end|>` (`chat.render`, which also builds
   the loss mask); <|end|> is trained, so the model learns to stop. Examples longer than the
   context are dropped and counted, never cut.
3. Right-pad (`batching.pad_batch`); each epoch is shuffled, then sorted by length within chunks of
   `bucket_batches` batches, so a batch holds similar lengths (`--bucket-batches 1`: plain shuffle).
4. The loss through the shared kernel (`batching.sequence_token_logprobs`, the one place that
   shifts); AdamW, linear warmup + cosine decay, clipped gradient norm.
5. Greedy answers on held-out inputs, held-out templates and unseen families (the slide's
   "generalize to unseen tasks"), scored by exact match or by the oracle (docs/sft.md, section 5).

Deviations, said plainly:
- The loss is a mean per response, then over responses (`loss_average="sequence"`), so every example
  of the balanced mixture weighs the same; TRL and Hugging Face average over all response tokens of
  the batch, which `--loss-average token` restores (docs/sft.md, section 2).
- InstructGPT's SFT ran 16 epochs with dropout 0.2 and picked the checkpoint by reward-model score;
  we train a dropout-free tiny model for a few epochs and keep the final checkpoint.

Under torchrun every rank trains on its slice of the same batch through DDP, its loss weighted by
its share of the batch's examples ("sequence") or response tokens ("token"), so the averaged
gradient is the whole batch's; rank 0 alone evaluates and writes checkpoints, metrics and figures.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from . import distributed
from .batching import Batch, pad_batch, sequence_token_logprobs
from .chat import Rendered, render
from .config import ConfigError, autocast, write_json
from .evaluation import EVAL_SPLITS, evaluate_sft, example_field, example_pair
from .loaders import DataError, load_alpaca
from .logprobs import IGNORE_INDEX
from .model import GPT
from .plotting import plot_sft_loss, plot_sft_scores
from .pretrain import lr_at
from .training import Checkpoint, adamw, optimizer_step, set_lr, steps, stopped_early
from .world import DemonstratorFlaws, demonstrations, instruction_data


@dataclass
class SFTConfig:
    """Instruction tuning: the data mixture, the optimisation and the evaluation."""

    # --- 1. data -------------------------------------------------------------------------------
    n_per_family: int = 200
    """Training examples per seen task family (the mixture is balanced across families). Range: n_per_family >= 1."""
    families: str = ""
    """Training families: "" = all seen families, "k" = the first k of world.SEEN_ORDER (a diverse
    set for every k), or a comma-separated list of names."""
    n_templates: int = 0
    """Prompt templates per family used for training (0 = all of its training templates); fewer
    templates = less prompt diversity (T0). Range: n_templates >= 0."""
    ni_fraction: float = 0.1
    """Fraction of each family's training examples written in the Natural Instructions schema
    instead of a one-line T0 template. Range: 0 <= ni_fraction <= 1."""
    demonstrators: str = "flawed"
    """Who wrote the world's answers: 'flawed' demonstrators, who pad, hedge, go along with harmful requests,
    add rude or off-topic sentences and break formats at the rates of world.DemonstratorFlaws (InstructGPT's
    labelers were imperfect too), or 'perfect' ones, whose answers are the reference answers.
    Range: demonstrators in ('flawed', 'perfect')."""
    data: str = ""
    """An Alpaca-style JSON/JSONL file (instruction, input, output) to train on instead of the world."""
    # --- 2-4. optimisation ---------------------------------------------------------------------
    epochs: int = 4
    """Passes over the training mixture (used when `steps` is 0). Range: epochs >= 1."""
    steps: int = 0
    """Optimizer steps; 0 = `epochs` passes over the data. Range: steps >= 0."""
    batch_size: int = 32
    """Examples per batch (B). Range: batch_size >= 1."""
    lr: float = 1e-3
    """Peak learning rate (the tiny model tolerates large rates; GPT-2 scale wants ~2e-5). Range: lr > 0."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to lr * min_lr_ratio. Range: 0 <= min_lr_ratio <= 1."""
    warmup_steps: int = 20
    """Linear warmup from 0 to lr. Range: warmup_steps >= 0."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay on weight matrices (0: fine-tuning stays near the base model).
    Range: weight_decay >= 0."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables). Range: grad_clip >= 0."""
    loss_average: str = "sequence"
    """"sequence": mean NLL per response, then over the batch (each example weighs the same);
    "token": mean over all response tokens of the batch (TRL/HF). See the module docstring.
    Range: loss_average in ('sequence', 'token')."""
    bucket_batches: int = 8
    """Bucketing: sort chunks of this many batches by length before cutting batches (1 = off).
    Range: bucket_batches >= 1."""
    ckpt_every: int = 100
    """Checkpoint every this many steps (and at the end). Range: ckpt_every >= 1."""
    eval_loss_every: int = 50
    """Held-out loss (teacher forced, response tokens) per split every this many steps (0 = off).
    Range: eval_loss_every >= 0."""
    # --- 5. evaluation -------------------------------------------------------------------------
    eval_per_family: int = 12
    """Evaluation examples per family and split (test, unseen_template, unseen_family). Range: eval_per_family >= 1."""
    eval_batch_size: int = 64
    """Prompts per generation batch. Range: eval_batch_size >= 1."""
    max_new_tokens: int = 40
    """Generation budget per answer (answers in the world are one or two sentences). Range: max_new_tokens >= 1."""


# --quick: seconds. The model is too small and too briefly trained to show the effect.
QUICK = dict(n_per_family=8, epochs=1, batch_size=16, warmup_steps=2, eval_per_family=2,
             max_new_tokens=12, ckpt_every=10, eval_loss_every=5)


@dataclass
class ReasoningSFTConfig:
    """SFT on the world's verifiable problems in one demonstration form (the `sft_reasoning` stage, GRPO's start):
    deck 002 "Current Developments", "additional tokens to give the model time to think" (world/reasoning.py)."""

    form: str = "worked"
    """Demonstrations: 'worked' (steps after "Let me think.", then "The answer is X.") or 'answer' (only
    "The answer is X."); the same problems either way. Range: form in ('worked', 'answer')."""
    n_per_family: int = 500
    """Training problems per family, from the train pool (world.reasoning_data). Range: n_per_family >= 1."""
    families: str = "count"
    """Comma-separated families (add, count, sort, people); empty: all four. The default budget teaches the tiny
    model the worked steps of counting; those of addition, sorting and the people counts need more (README)."""
    steps: int = 500
    """Optimizer steps (the budget: both forms get the same steps of the same batch size). Range: steps >= 1."""
    batch_size: int = 32
    """Demonstrations per step. Range: batch_size >= 1."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warmup, cosine decay to a tenth). Range: lr > 0."""
    warmup_steps: int = 20
    """Linear warmup steps. Range: warmup_steps >= 0."""
    eval_per_family: int = 150
    """Held-out problems per family of the test split, and half as many of the harder band, answered greedily
    after training. Range: eval_per_family >= 1."""
    max_new_tokens: int = 128
    """Answer budget of that evaluation (a worked answer of the hard band takes up to ~115 tokens); an answer
    cut here is wrong. Range: max_new_tokens >= 1."""
    ckpt_every: int = 100
    """Checkpoint every this many steps. Range: ckpt_every >= 1."""

    def sft_config(self) -> SFTConfig:
        """The SFTConfig that `train_sft` runs: these steps, batch and learning rate; no held-out loss curve."""
        return SFTConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                         ckpt_every=self.ckpt_every, eval_loss_every=0, max_new_tokens=self.max_new_tokens)

    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        from .world.reasoning import family_names
        try:
            family_names(self.families)
        except ValueError as e:
            raise ConfigError(f"--families: {e}") from None


# --quick: a few steps on a few problems.
REASONING_QUICK = dict(n_per_family=12, steps=6, batch_size=8, warmup_steps=2, eval_per_family=2,
                       max_new_tokens=96, ckpt_every=10)


# ----------------------------------------------------------------------------------------------
# 1. Data


def parse_families(spec: str):
    """The `families` knob as world.instruction_data takes it: None, an int k, or a list of names."""
    spec = (spec or "").strip()
    if not spec:
        return None
    if spec.isdigit():
        return int(spec)
    return [name.strip() for name in spec.split(",") if name.strip()]


def world_mixture(cfg: SFTConfig, seed: int) -> list:
    """The training mixture: per seen family, T0-template examples plus Natural Instructions ones."""
    families = parse_families(cfg.families)
    n_templates = cfg.n_templates or None
    n_ni = round(cfg.n_per_family * cfg.ni_fraction)
    flaws = DemonstratorFlaws() if cfg.demonstrators == "flawed" else DemonstratorFlaws.none()
    examples = demonstrations(seed=seed, n_per_family=cfg.n_per_family - n_ni, splits="train",
                              families=families, n_templates=n_templates, flaws=flaws)
    if n_ni:
        # another seed for the NI part, so that its instances are not the template part's again
        examples += demonstrations(seed=seed + 1, n_per_family=n_ni, splits="train",
                                   families=families, natural_instructions=True, flaws=flaws)
    return examples


def world_eval_set(cfg: SFTConfig, seed: int) -> list:
    """Held-out examples: new inputs, new templates, and new families (see EVAL_SPLITS)."""
    return instruction_data(seed=seed, n_per_family=cfg.eval_per_family, splits=EVAL_SPLITS,
                            families=parse_families(cfg.families))


def alpaca_data(path: str, seed: int, n_eval: int) -> tuple[list, list]:
    """Examples of an Alpaca-style file, split into (train, held-out eval) with a seeded shuffle."""
    examples = list(load_alpaca(path))
    order = np.random.default_rng(seed).permutation(len(examples))
    n_eval = min(n_eval, len(examples) // 10)
    held = []
    for i in order[:n_eval]:
        prompt, response = example_pair(examples[i])
        held.append({"prompt": prompt, "response": response, "answers": [response],
                     "family": "alpaca", "split": "custom"})
    return [examples[i] for i in order[n_eval:]], held


def sft_data(cfg: SFTConfig, seed: int) -> tuple[list, list]:
    """(training examples, evaluation examples) for the config: the world's, or a file's."""
    if cfg.data:
        return alpaca_data(cfg.data, seed, n_eval=8 * cfg.eval_per_family)
    return world_mixture(cfg, seed), world_eval_set(cfg, seed)


# ----------------------------------------------------------------------------------------------
# 2-3. Render with the chat template, batch by padding
def render_examples(tok, examples, max_len: int) -> tuple[list[Rendered], int]:
    """Render every example with the chat template; drop (and count) those longer than `max_len`."""
    rendered, dropped = [], 0
    for ex in examples:
        r = render(tok, *example_pair(ex))
        if len(r.ids) > max_len:
            dropped += 1
            continue
        rendered.append(r)
    return rendered, dropped


def epoch_batches(lengths: list[int], batch_size: int, bucket_batches: int,
                  generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches (lists of example indices): shuffle, sort chunks by length, shuffle batches.

    Every example appears exactly once; with `bucket_batches` = 1 this is a plain shuffle.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * max(1, bucket_batches)
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])  # similar lengths together
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def collate(rendered: list[Rendered], pad_id: int) -> Batch:
    """Right-padded Batch of rendered examples (ids, attention mask, loss mask, shifted targets)."""
    return pad_batch([r.ids for r in rendered], [r.loss_mask for r in rendered], pad_id)


# ----------------------------------------------------------------------------------------------
# 4. The loss
def sft_loss(model: GPT, batch: Batch, average: str = "sequence") -> torch.Tensor:
    """Negative log-likelihood of the response tokens (and <|end|>) of a right-padded batch.

    average="sequence": -mean_b ( sum_t logp[b,t] / #trained tokens of row b )      (the default)
    average="token":    -sum_{b,t} logp[b,t] / #trained tokens in the batch         (TRL / HF)
    logp[b, t] = log pi_theta(ids[b, t+1] | ids[b, <=t]) on trained positions, 0 elsewhere.
    """
    logp = sequence_token_logprobs(model, batch.ids, batch.attention_mask, batch.loss_mask)  # (B, T)
    trained = (batch.targets != IGNORE_INDEX).float()                                          # (B, T)
    if average == "token":
        return -logp.sum() / trained.sum().clamp(min=1)
    if average == "sequence":
        return -(logp.sum(-1) / trained.sum(-1).clamp(min=1)).mean()
    raise ValueError(f"loss_average must be 'token' or 'sequence', not {average!r}")


@torch.no_grad()
def heldout_loss(model: GPT, tok, rendered: list[Rendered], cfg: SFTConfig, device) -> float:
    """Per-token response NLL of held-out examples (teacher forcing), in batches."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(rendered), cfg.eval_batch_size):
        batch = collate(rendered[start:start + cfg.eval_batch_size], tok.pad_id).to(device)
        with autocast(device):
            logp = sequence_token_logprobs(model, batch.ids, batch.attention_mask, batch.loss_mask)
        total += -logp.sum().item()
        n += int((batch.targets != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(n, 1)


def sft_step(model: GPT, opt, batch: Batch, lr: float, cfg: SFTConfig, device, *,
             loss_of=None, weight: float = 1.0) -> float:
    """One AdamW step on the SFT loss of a batch, gradient norm clipped; returns the batch's loss.

    Under torchrun `batch` is this rank's slice of the global batch, `loss_of` is
    `distributed.wrap(model, sft_loss)` (DDP) and `weight` the slice's share from
    `distributed.shard`; the returned loss is then the global batch's.
    """
    loss_of = loss_of or distributed.wrap(model, sft_loss)
    set_lr(opt, lr)
    with autocast(device):
        loss = loss_of(batch, cfg.loss_average) * weight
    optimizer_step(opt, loss, model.parameters(), cfg.grad_clip)
    return distributed.all_reduce_mean(loss.item())


def record_heldout_loss(model, tok, heldout: dict, cfg: SFTConfig, device, history: dict,
                        step: int) -> None:
    history["eval_step"].append(step)
    for split, rendered in heldout.items():
        history["eval_loss"][split].append(heldout_loss(model, tok, rendered, cfg, device))


# ----------------------------------------------------------------------------------------------
# The training loop
def total_steps(cfg: SFTConfig, n_examples: int) -> int:
    return cfg.steps or cfg.epochs * math.ceil(n_examples / cfg.batch_size)


def batch_for_step(step: int, lengths: list[int], cfg: SFTConfig, seed: int) -> list[int]:
    """The example indices of optimizer step `step`: a function of (seed, epoch) only, so resuming
    replays exactly the batches an uninterrupted run would have seen."""
    per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return epoch_batches(lengths, cfg.batch_size, cfg.bucket_batches, g)[i]


def trained_tokens(r: Rendered) -> int:
    """Positions of a rendered example that `sft_loss` trains on: those whose next token is on
    the loss mask (the count of its targets that are not IGNORE_INDEX)."""
    return sum(r.loss_mask[1:])


def _heldout_sets(tok, eval_examples, max_len: int) -> dict[str, list[Rendered]]:
    """Rendered held-out examples per split (for the held-out loss curves): at most 64 per split,
    taken at an even stride so that every family is represented."""
    by_split: dict[str, list] = {}
    for ex in eval_examples or []:
        by_split.setdefault(example_field(ex, "split", "custom"), []).append(ex)
    return {s: render_examples(tok, exs[::max(1, len(exs) // 64)][:64], max_len)[0]
            for s, exs in by_split.items()}


def train_sft(model: GPT, tok, examples, cfg: SFTConfig, *, out_dir: str | None = None,
              device=None, eval_examples=None, base_eval: dict | None = None, seed: int = 0,
              extra_state: dict | None = None, max_steps: int | None = None,
              desc: str = "sft") -> tuple[GPT, dict]:
    """Fine-tune `model` in place on (prompt, response) examples; returns (model, metrics).

    examples: world Examples, {"prompt", "response"} dicts or (prompt, response) pairs.
    eval_examples: held out (world Examples, or dicts with prompt, response, answers, family,
      split); after training they are answered greedily and scored (`evaluate_sft`), and their
      teacher-forced loss is tracked during training.
    base_eval: `evaluate_sft` of the model before training, drawn beside the result in scores.png.
    out_dir: where ckpt.pt (atomic, resumable), metrics.json, loss.png and scores.png go; None
      writes nothing. A finished checkpoint there is loaded instead of training again.
    max_steps: stop early and leave a resumable checkpoint (to simulate an interruption).
    """
    device = torch.device(device) if device is not None else model.output_weight.device
    model.to(device).train()
    rendered, dropped = render_examples(tok, examples, model.config.block_size)
    why = f"after dropping {dropped} of {len(examples)} longer than the context of {model.config.block_size} tokens"
    if not rendered:
        raise DataError(cfg.data or "the training examples", None, None, f"no example is left {why}")
    if len(rendered) < cfg.batch_size:
        print(f"warning: only {len(rendered)} training examples ({why}), fewer than one batch of "
              f"--batch-size {cfg.batch_size}: every step sees all of them", file=sys.stderr)
    lengths = [len(r.ids) for r in rendered]
    cfg = replace(cfg, steps=total_steps(cfg, len(rendered)))   # resolved, for lr_at and the logs
    heldout = _heldout_sets(tok, eval_examples, model.config.block_size)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    ckpt = Checkpoint(os.path.join(out_dir, "ckpt.pt") if out_dir else None, {"model": model}, opt,
                      model_config=model.config.to_dict(), sft_config=asdict(cfg), **(extra_state or {}))
    state = ckpt.resume({"step": 0, "history": {"step": [], "loss": [], "lr": [], "eval_step": [],
                                                "eval_loss": {s: [] for s in heldout}}}, desc)
    if state["done"]:
        return model, state["metrics"]
    history = state["history"]
    print(f"[{desc}] {len(rendered)} examples ({dropped} longer than the context dropped), "
          f"{cfg.steps} steps of {cfg.batch_size}")
    evaluating = bool(heldout and cfg.eval_loss_every and distributed.is_main())
    if state["step"] == 0 and evaluating:                   # the starting point of the curves
        record_heldout_loss(model, tok, heldout, cfg, device, history, 0)
    loss_of = distributed.wrap(model, sft_loss)   # sft_loss(model, ...), through DDP under torchrun
    count = (lambda i: trained_tokens(rendered[i])) if cfg.loss_average == "token" else None
    bar = steps(state, cfg.steps, desc=desc, max_steps=max_steps)
    for step in bar:
        # 1. this step's batch (bucketed by length), right-padded, targets off the mask ignored;
        #    under torchrun every rank draws the same indices and keeps its slice of them
        mine, weight = distributed.shard(batch_for_step(step, lengths, cfg, seed), count)
        batch = collate([rendered[i] for i in mine], tok.pad_id).to(device)
        # 2-3. response-only NLL through the shared kernel; AdamW step, clipped gradient norm
        lr = lr_at(step, cfg)
        loss = sft_step(model, opt, batch, lr, cfg, device, loss_of=loss_of, weight=weight)
        history["step"].append(step)
        history["loss"].append(loss)
        history["lr"].append(lr)
        # 4. now and then: held-out loss per split (rank 0), checkpoint
        if evaluating and ((step + 1) % cfg.eval_loss_every == 0 or step + 1 == cfg.steps):
            record_heldout_loss(model, tok, heldout, cfg, device, history, step + 1)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
        state["step"] = step + 1
        ckpt.save_every(state, cfg.ckpt_every, cfg.steps)
    bar.close()
    if stopped_early(ckpt, state, cfg.steps):
        return model, {}
    metrics = None
    if distributed.is_main():   # evaluation by generation, figures, the final checkpoint
        metrics = finish(model, tok, cfg, history, eval_examples, base_eval, out_dir, device,
                         n_examples=len(rendered), n_dropped=dropped)
        ckpt.save(state, done=True, metrics=metrics)
    distributed.barrier()       # the other ranks wait for the checkpoint, which later stages load
    return model, distributed.broadcast_object(metrics)


def finish(model, tok, cfg, history, eval_examples, base_eval, out_dir, device, *,
           n_examples: int, n_dropped: int) -> dict:
    """After the last step: evaluate by generation, draw the figures, write metrics.json."""
    metrics = {"config": asdict(cfg), "final_train_loss": float(np.mean(history["loss"][-20:])),
               "steps": cfg.steps, "n_examples": n_examples, "n_dropped_too_long": n_dropped,
               "heldout_loss": {s: v[-1] for s, v in history["eval_loss"].items() if v},
               "heldout_loss_curve": {"step": history["eval_step"], **history["eval_loss"]}}
    if eval_examples:
        t0 = time.perf_counter()
        metrics["eval"] = evaluate_sft(model, tok, eval_examples,
                                       max_new_tokens=cfg.max_new_tokens,
                                       batch_size=cfg.eval_batch_size)
        metrics["eval_seconds"] = round(time.perf_counter() - t0, 1)
    if base_eval is not None:
        metrics["base_eval"] = base_eval
    if out_dir:
        plot_sft_loss(os.path.join(out_dir, "loss.png"), history)
        if "eval" in metrics:
            plot_sft_scores(os.path.join(out_dir, "scores.png"), metrics["eval"], base_eval)
        write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


# ----------------------------------------------------------------------------------------------
# 5. Evaluation (greedy answers, exact match or the oracle, per family and per split) is
#    `evaluation.evaluate_sft`; the figures are `plotting.plot_sft_loss` and `plot_sft_scores`.
