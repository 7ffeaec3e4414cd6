"""Lesson 01: pretraining the tiny GPT on next-token prediction.

Slide 002 "Recap: Pre-training Decoder-only": a decoder-only transformer reads the text left to
right and is trained to predict each next token,

    L_LM(theta) = - sum_i log p_theta(x_i | x_<i).

This lesson trains the `tiny` GPT (~1M parameters) on the embedded world's corpus (or reuses the
pipeline's pretrained model from runs/default), then shows:
1. the loss curve, against log(V) (a uniform guess over the vocabulary);
2. samples from the same prompts before training (random tokens) and after (the world's English);
3. whether pretraining taught it to follow an instruction: the base model continues the
   slide's "Translate to French: the small dog" and held-out translation prompts greedily, and the
   world's oracle grades each continuation's first line (exact match on the French).

    python lessons/01_pretraining.py            # about 5 seconds on a 2-core CPU (measured on one core)
    python lessons/01_pretraining.py --quick    # seconds, toy scale

Builds first, if missing: the tokenizer and the pretrained model (`train.py pretrain`, about 2.5
minutes on a 2-core CPU).

Things to try: --temperature 0.3 and --temperature 1.5 (the same model, more or less adventurous
samples); --translations 100 (a tighter interval on the base model's translation rate).
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
from minialign.evaluation import generate_answers  # noqa: E402
from minialign.generate import generate  # noqa: E402
from minialign.model import GPT  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, make_run, model_config  # noqa: E402
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402
from minialign.world import gold_reward, instruction_data  # noqa: E402

PROMPTS = ["Once upon a time", "Mia lives in", "The capital of", "Translate to French: the small dog"]


@dataclass
class LessonConfig:
    """Lesson 01's settings: how the samples before and after pretraining are drawn (the shared run
    flags --quick, --out, --device, --seed, --preset come from `pipeline.add_run_args`)."""

    sample_tokens: int = 30
    """Tokens sampled after each prompt. Range: sample_tokens >= 1."""
    temperature: float = 0.8
    """Sampling temperature of the samples. Range: temperature >= 0 (0 = greedy decoding)."""
    translations: int = 20
    """Held-out translation prompts the base model is checked on, besides the slide's (--quick: 4).
    Range: translations >= 1."""


# --quick: the settings that change (from_args: defaults < QUICK < the flags given).
QUICK = dict(translations=4)


def samples(model, tok, seed: int, n_tokens: int = 30, temperature: float = 0.8) -> list[str]:
    out = generate(model, [tok.encode(p) for p in PROMPTS], max_new_tokens=n_tokens,
                   stop_ids=[tok.eot_id], pad_id=tok.pad_id, temperature=temperature,
                   generator=torch.Generator().manual_seed(seed))
    return [tok.decode([i for i in ids if i != tok.eot_id]) for ids in out.response_ids]


def translation_check(model, tok, seed: int, n: int) -> dict:
    """Does the base model translate? Greedy continuations of the slide's prompt and of `n`
    held-out prompts of the world's translate_french family, as plain text; the oracle grades
    each continuation's first line (its `correct` component: exact match on the French)."""
    held = instruction_data(seed=seed, n_per_family=n, splits="test", families=["translate_french"])
    prompts = [PROMPTS[-1]] + [ex.prompt for ex in held]
    answers = generate_answers(model, tok, prompts, chat=False, max_new_tokens=24)
    correct = [gold_reward(p, a["text"]).components.get("correct", 0.0) for p, a in zip(prompts, answers)]
    k = sum(c >= 0.5 for c in correct[1:])
    low, high = wilson_interval(k, len(held))
    return {"slide_prompt": prompts[0], "slide_answer": answers[0]["text"], "slide_correct": correct[0],
            "n": len(held), "correct_rate": k / max(len(held), 1), "interval_95": [low, high],
            "examples": [{"prompt": p, "answer": a["text"], "correct": c}
                         for p, a, c in list(zip(prompts, answers, correct))[1:4]]}


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (sensible at 0/n, where the standard error is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def loss_verdict(uniform: float, val_loss: float) -> str:
    """The first point in words: did pretraining move the loss below a uniform guess?"""
    if val_loss < uniform:
        return (f"Pretraining lowered the validation loss from about log V = {uniform:.2f} (a uniform "
                f"guess) to {val_loss:.2f} nats per token: the model learned the corpus's statistics.")
    return (f"The validation loss ({val_loss:.2f}) is NOT below the uniform guess log V = {uniform:.2f}: "
            f"this pretraining run learned nothing usable (too few steps?).")


def translation_verdict(check: dict) -> str:
    """The third point in words, from the oracle's grades of the base model's continuations."""
    slide = ("translates it correctly" if check["slide_correct"] >= 0.5 else
             f"does not translate it (it writes {check['slide_answer']!r})")
    rate = (f"On {check['n']} held-out translation prompts the oracle grades "
            f"{check['correct_rate']:.0%} of its continuations correct (95% interval "
            f"{check['interval_95'][0]:.0%}-{check['interval_95'][1]:.0%})")
    if check["correct_rate"] < 0.2:
        return (f"Given the slide's instruction {check['slide_prompt']!r}, the base model {slide}. {rate}: "
                f"as on the slide, the pretrained model continues an instruction rather than following it. "
                f"Lesson 02 shows what post-training changes.")
    how = "sometimes" if check["correct_rate"] < 0.5 else "often"
    return (f"Given the slide's instruction {check['slide_prompt']!r}, the base model {slide}. {rate}: "
            f"unlike the slide's GPT-3 example, this base model {how} follows the instruction. "
            f"Lesson 02 measures this on every task family, before and after post-training.")


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
    return args, from_args(LessonConfig, args, **(QUICK if args.quick else {}))


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
    check = translation_check(model, tok, run.seed, settings.translations)
    print("\nGreedy continuations of held-out translation prompts (oracle: correct or not):")
    for e in check["examples"]:
        print(f"  {e['prompt']!r} -> {e['answer']!r}   correct {e['correct']:.0f}")
    print("\nWhat this shows: " + loss_verdict(math.log(tok.vocab_size), pre["final_val_loss"]) + " "
          + translation_verdict(check))

    metrics = {"n_params": model.num_params(), "vocab_size": tok.vocab_size,
               "uniform_loss": math.log(tok.vocab_size), **pre,
               "samples_before": dict(zip(PROMPTS, before)),
               "samples_after": dict(zip(PROMPTS, after)), "translation_check": check}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    loss_png = plot_loss(os.path.join(out_dir, "loss.png"), run, tok.vocab_size)
    print(f"\nLoss curve: {loss_png}\nMetrics: {os.path.join(out_dir, 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
