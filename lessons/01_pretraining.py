"""Lesson 01: pretraining the tiny GPT on next-token prediction.

Slide 002 "Recap: Pre-training Decoder-only": a decoder-only transformer reads the text left to
right and is trained to predict each next token,

    L_LM(theta) = - sum_i log p_theta(x_i | x_<i).

This lesson trains the `tiny` GPT (~1M parameters) on the embedded world's corpus (or reuses the
pipeline's pretrained model from runs/default), then shows:
1. the loss falling from log(V) (a uniform guess over the vocabulary) towards the corpus entropy;
2. samples from the same prompts before training (random tokens) and after (the world's English);
3. what pretraining did *not* teach: given an instruction, the base model continues the text
   (lesson 02 takes this up).

    python lessons/01_pretraining.py            # ~3 minutes on a 2-core CPU (reuses runs/default)
    python lessons/01_pretraining.py --quick    # seconds, toy scale
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from minialign.checkpoint import load_checkpoint  # noqa: E402
from minialign.config import add_dataclass_args, cli_main, from_args, read_json, write_json  # noqa: E402
from minialign.generate import generate  # noqa: E402
from minialign.model import GPT  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, make_run, model_config  # noqa: E402
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402

PROMPTS = ["Once upon a time", "Mia lives in", "The capital of", "Translate to French: the small dog"]


@dataclass
class LessonConfig:
    """Lesson 01's settings: how the samples before and after pretraining are drawn (the shared run
    flags --quick, --out, --device, --seed, --preset come from `pipeline.add_run_args`)."""

    sample_tokens: int = 30
    """Tokens sampled after each prompt. Range: sample_tokens >= 1."""
    temperature: float = 0.8
    """Sampling temperature of the samples. Range: temperature >= 0 (0 = greedy decoding)."""


def samples(model, tok, seed: int, n_tokens: int = 30, temperature: float = 0.8) -> list[str]:
    out = generate(model, [tok.encode(p) for p in PROMPTS], max_new_tokens=n_tokens,
                   stop_ids=[tok.eot_id], pad_id=tok.pad_id, temperature=temperature,
                   generator=torch.Generator().manual_seed(seed))
    return [tok.decode([i for i in ids if i != tok.eot_id]) for ids in out.response_ids]


def plot_loss(path: str, run, vocab_size: int) -> str:
    """Training and validation loss against the uniform-guess line log V."""
    history = load_checkpoint(os.path.join(run.stage_dir("pretrain"), "ckpt.pt"))["history"]
    fig, axes = new_figure()
    ax = axes[0][0]
    ax.plot(history["step"], history["loss"], alpha=0.3, color="C0")
    ax.plot(history["step"], smooth(history["loss"], 20), color="C0", label="train (smoothed)")
    ax.plot(history["val_step"], history["val_loss"], "o-", color="C1", label="validation")
    ax.axhline(math.log(vocab_size), color="gray", ls="--", label="uniform guess, log V")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("Pretraining: L_LM = -sum log p(x_i | x_<i)")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def parse_args(argv=None) -> tuple:
    """(the run flags, the validated LessonConfig): a bad setting stops here, before any model loads."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    add_dataclass_args(parser, LessonConfig)
    args = parser.parse_args(argv)
    return args, from_args(LessonConfig, args)


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", "01_pretraining")
    print(__doc__.split("\n\n")[1])

    # 1. the untrained model: uniform-ish predictions, loss ~ log V
    model, tok = ensure_pretrained(run)
    torch.manual_seed(run.seed)
    untrained = GPT(model_config(run, tok)).to(run.device)
    before = samples(untrained, tok, run.seed, settings.sample_tokens, settings.temperature)
    after = samples(model, tok, run.seed, settings.sample_tokens, settings.temperature)
    pre = read_json(os.path.join(run.stage_dir("pretrain"), "metrics.json"))

    print(f"\nModel: {model.num_params() / 1e6:.2f}M parameters; vocabulary V = {tok.vocab_size}.")
    print(f"A uniform guess has loss log V = {math.log(tok.vocab_size):.2f} nats per token.")
    print(f"After {pre['steps']} steps ({pre['tokens_seen']:,} tokens seen, "
          f"{pre['train_tokens']:,} distinct training tokens): validation loss "
          f"{pre['final_val_loss']:.2f} nats (perplexity {pre['val_perplexity']:.1f}).")
    if pre.get("tokens_per_s_median"):
        print(f"Training speed on {run.device}: {pre['tokens_per_s_median']:,.0f} tokens/s (median).")
    print(f"\nSamples (temperature {settings.temperature}), before -> after pretraining:")
    for p, b, a in zip(PROMPTS, before, after):
        print(f"\n  prompt: {p!r}\n   before: {b!r}\n   after:  {a!r}")
    print("\nThe trained model writes the world's English. Note the last prompt: it is an "
          "instruction, and the base model does not translate it — it continues the text. "
          "Lesson 02 shows why post-training is needed for that.")

    metrics = {"n_params": model.num_params(), "vocab_size": tok.vocab_size,
               "uniform_loss": math.log(tok.vocab_size), **pre,
               "samples_before": dict(zip(PROMPTS, before)),
               "samples_after": dict(zip(PROMPTS, after))}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    loss_png = plot_loss(os.path.join(out_dir, "loss.png"), run, tok.vocab_size)
    print(f"\nLoss curve: {loss_png}\nMetrics: {os.path.join(out_dir, 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
