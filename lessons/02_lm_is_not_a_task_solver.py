"""Lesson 02: a language model is not a task solver -- until instruction tuning.

Slides: 000 "Why we need post-training to align with human preferences and instructions" and
002 "Language Modeling != Solving Tasks". The slide's failures of early GPT-3:

    Prompt: Explain the moon landing to a six year old in a few sentences.
    Output: Explain the theory of gravity to a 6 year old.
    Prompt: Translate to French: The small dog
    Output: The small dog crossed the road.

"The LLM ignores the intent of the request and relies instead on its natural inclination to
autoregressively generate continuations consistent with its context."

What it does, in our world: the same instructions go to
- the base model (`<out>/pretrain`), as plain text, the way one prompts a base model. Its corpus
  has lists of questions and tasks without answers (like the web), so one likely continuation
  of an instruction is... another instruction;
- the SFT model (`<out>/sft`), in the chat template.
Both answer greedily (the base model's answer: the first line it writes). The world's oracle
grades every answer: "task solved" is its correctness grade in [0, 1], "gold reward" its overall
score (correct, harmless, on topic, fluent, concise, well formed). Besides the slide's two
prompts, held-out instances of every task family are asked, and we count how often a model's
continuation contains another task prompt of the world (a line the oracle parses as a task):
"it wrote another question instead of answering". The verdict at the end compares the two
models on these numbers, each difference with its standard error over the prompts.

Outputs in <out>/lessons/02_lm_is_not_a_task_solver/: base_vs_sft.png, metrics.json.
Run time: about 5 seconds on a 2-core CPU (measured on one core) once the stages exist.
Builds first, if missing: the tokenizer, the pretrained model and the SFT model (`train.py
pretrain` and `train.py sft`, about 2.5 + 1.5 minutes on a 2-core CPU).

Things to try: --per-family 10 (more prompts per task family: tighter error bars on the base-vs-SFT
differences, which at the default 2 per family are often within noise).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402

from minialign.config import add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.evaluation import generate_answers, mean_and_se  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, ensure_sft, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.world import gold_reward, instruction_data, parse_prompt  # noqa: E402

NAME = "02_lm_is_not_a_task_solver"
# The slide's two prompts, in the words of our world's task families.
SLIDE_PROMPTS = ["Explain the moon to a six year old.", "Translate to French: the small dog"]


@dataclass
class LessonConfig:
    """Lesson 02's settings (the shared run flags --quick, --out, --device, --seed, --preset come from
    `pipeline.add_run_args`)."""

    per_family: int = 2
    """Held-out prompts per task family, seen and unseen (--quick: 1). Range: per_family >= 1."""
    max_new_tokens: int = 40
    """Generation budget per answer, base and SFT model alike. Range: max_new_tokens >= 1."""


# --quick: the settings that change (from_args: defaults < QUICK < the flags given).
QUICK = dict(per_family=1)


def parse_args(argv=None) -> tuple:
    """(the run flags, the validated LessonConfig): a bad setting stops here, before any model loads."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(QUICK if args.quick else {}))


def writes_a_task(text: str) -> bool:
    """Does the text contain another instruction of the world instead of an answer? True when one
    of its lines (list numbers stripped) parses as a task prompt, or opens a Natural Instructions
    task ("Task: ...")."""
    for line in text.split("\n"):
        line = re.sub(r"^\s*\d+\.\s*", "", line).strip()
        if line.startswith("Task: ") or (line and parse_prompt(line) is not None):
            return True
    return False


def ask_both(base, sft, tok, prompts, max_new_tokens: int) -> list[dict]:
    """The base model (plain text) and the SFT model (chat template) answer the same prompts."""
    base_ans = generate_answers(base, tok, prompts, chat=False, max_new_tokens=max_new_tokens)
    sft_ans = generate_answers(sft, tok, prompts, chat=True, max_new_tokens=max_new_tokens)
    rows = []
    for prompt, b, s in zip(prompts, base_ans, sft_ans):
        gb, gs = gold_reward(prompt, b["text"]), gold_reward(prompt, s["text"])
        rows.append({"prompt": prompt, "base_continuation": b["full"], "base_answer": b["text"],
                     "base_gold": gb.total, "base_correct": gb.components.get("correct", 0.0),
                     "base_writes_a_task": writes_a_task(b["full"]),
                     "sft_answer": s["text"], "sft_gold": gs.total,
                     "sft_correct": gs.components.get("correct", 0.0),
                     "sft_writes_a_task": writes_a_task(s["text"]), "sft_ended": s["ended"]})
    return rows


def show(rows: list[dict]) -> None:
    for r in rows:
        lines = r["base_continuation"].strip().split("\n")
        cont = ("\n" + " " * 22).join(lines[:3] + (["..."] if len(lines) > 3 else []))
        print(f"\nPrompt: {r['prompt']!r}")
        print(f"  base model (text) -> {cont}")
        print(f"      solved {r['base_correct']:.2f}, gold reward {r['base_gold']:.2f}"
              + ("   <- it wrote another task, not an answer" if r["base_writes_a_task"] else ""))
        print(f"  SFT model (chat)  -> {r['sft_answer']}")
        print(f"      solved {r['sft_correct']:.2f}, gold reward {r['sft_gold']:.2f}")


def summarize(rows: list[dict]) -> dict:
    """Means over the prompts, and each SFT - base difference with its standard error over prompts
    (paired: both models answer the same prompts)."""
    summary = {"n": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in (
        "base_correct", "sft_correct", "base_gold", "sft_gold", "base_writes_a_task",
        "sft_writes_a_task", "sft_ended")}}
    for k in ("correct", "gold", "writes_a_task"):
        for who in ("base", "sft"):
            _, summary[f"{who}_{k}_se"] = mean_and_se([float(r[f"{who}_{k}"]) for r in rows])
        summary[f"{k}_diff"], summary[f"{k}_diff_se"] = mean_and_se(
            [float(r[f"sft_{k}"]) - float(r[f"base_{k}"]) for r in rows])
    return summary


def change(diff: float, se: float, fmt: str = "{:+.2f}") -> str:
    """'rises', 'falls' or 'does not change ...', by a difference and twice its standard error."""
    sized = f"{fmt.format(diff)} +- {fmt.format(se).lstrip('+')}"
    if diff > 2 * se and diff > 0:
        return f"rises ({sized})"
    if diff < -2 * se and diff < 0:
        return f"falls ({sized})"
    return f"does not change by more than two standard errors ({sized})"


def verdict(summary: dict) -> str:
    """What this run shows, in words, from its numbers (the slide: a base model continues, an
    instruction-tuned one answers)."""
    s = summary
    writes = s["base_writes_a_task"]
    if writes >= 0.5:
        base = (f"Asked an instruction as plain text, the base model mostly continues it instead of "
                f"answering: {writes:.0%} +- {s['base_writes_a_task_se']:.0%} of its continuations "
                f"contain another task, as the web-like lists in its corpus do (the slide's failure).")
    else:
        base = (f"Asked an instruction as plain text, the base model writes another task in only "
                f"{writes:.0%} +- {s['base_writes_a_task_se']:.0%} of its continuations: here, unlike "
                f"on the slide, continuing with another question is not its usual failure.")
    solved = change(s["correct_diff"], s["correct_diff_se"])
    gold = change(s["gold_diff"], s["gold_diff_se"])
    lines = [base, f"After instruction tuning (the same weights, a few minutes of supervised "
             f"(prompt, response) pairs, the chat template) it writes another task in "
             f"{s['sft_writes_a_task']:.0%} of its answers; the share of tasks the oracle grades "
             f"solved {solved}: {s['base_correct']:.0%} -> {s['sft_correct']:.0%}; the overall gold "
             f"reward {gold}: {s['base_gold']:.2f} -> {s['sft_gold']:.2f} ({s['n']} held-out prompts)."]
    if s["correct_diff"] > 2 * s["correct_diff_se"] and s["correct_diff"] > 0:
        lines.append("Instruction tuning turned a text continuer into something that answers, as the "
                     "slide says.")
    else:
        lines.append(f"In this run instruction tuning did not raise the share of tasks solved by more "
                     f"than two standard errors: the model answers in the assistant's turn, but on "
                     f"{s['n']} prompts its answers are not measurably more often right (a larger "
                     f"--per-family narrows the error; lesson 03 looks at form and content separately).")
    if s["sft_correct"] < 0.5:
        lines.append(f"Most tasks stay unsolved ({1 - s['sft_correct']:.0%}): a ~1M-parameter model "
                     f"trained for minutes is far from the slide's GPT-3.")
    return " ".join(lines)


def plot(path: str, slide_rows: list[dict], summary: dict) -> str:
    fig, axes = new_figure(ncols=2, width=5.5, height=4.0)
    ax = axes[0][0]
    labels = ["task solved\n(oracle)", "gold reward\n(all criteria)", "writes another\ntask"]
    keys = ("correct", "gold", "writes_a_task")
    x = np.arange(3)
    for k, (name, who) in enumerate([("base model (text)", "base"), ("SFT model (chat)", "sft")]):
        bars = ax.bar(x + (k - 0.5) * 0.38, [summary[f"{who}_{m}"] for m in keys], 0.38, label=name,
                      color=f"C{k}", yerr=[summary[f"{who}_{m}_se"] for m in keys], capsize=3)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set(ylim=(0, 1.05), xlabel="measure (error bars: standard error over prompts)",
           ylabel="mean over prompts (grade or share)",
           title=f"{summary['n']} held-out instructions, all task families")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    y = np.arange(len(slide_rows))
    for k, (who, dy) in enumerate((("base", -0.2), ("sft", 0.2))):
        bars = ax.barh(y + dy, [r[f"{who}_correct"] for r in slide_rows], 0.4, color=f"C{k}",
                       label="base model (text)" if who == "base" else "SFT model (chat)")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_yticks(y, [r["prompt"][:38] for r in slide_rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.05), xlabel="task solved (oracle)", ylabel="prompt",
           title="the slide's prompts, in our world")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    per_family = settings.per_family
    t0 = time.perf_counter()
    print("Lesson 02 -- slides 000 'Why we need post-training' and 002 'Language Modeling != "
          "Solving Tasks'.")
    base, tok = ensure_pretrained(run)
    sft, _ = ensure_sft(run)
    base.eval()

    print("\n== 1. the slide's prompts ==")
    slide_rows = ask_both(base, sft, tok, SLIDE_PROMPTS, settings.max_new_tokens)
    show(slide_rows)

    held = instruction_data(seed=run.seed, n_per_family=per_family,
                            splits=("test", "unseen_family"))
    rows = ask_both(base, sft, tok, [ex.prompt for ex in held], settings.max_new_tokens)
    summary = summarize(rows)
    print(f"\n== 2. {len(rows)} held-out instructions ({per_family} per task family, seen and "
          f"unseen) ==")
    show(rows[::per_family][:3] + [r for r, ex in zip(rows, held) if ex.split == "unseen_family"][:1])
    print(f"\n  task solved (oracle's grade):    base {summary['base_correct']:.2f}   "
          f"SFT {summary['sft_correct']:.2f}")
    print(f"  gold reward (all its criteria): base {summary['base_gold']:.2f}   "
          f"SFT {summary['sft_gold']:.2f}")
    print(f"  writes another task instead:    base {summary['base_writes_a_task']:.0%}    "
          f"SFT {summary['sft_writes_a_task']:.0%}")

    fig = plot(os.path.join(out_dir, "base_vs_sft.png"), slide_rows, summary)
    write_json(os.path.join(out_dir, "metrics.json"),
               {"slide_prompts": slide_rows, "summary": summary, "examples": rows[:12],
                "seconds": round(time.perf_counter() - t0, 1)})
    print("\nWhat this shows: " + verdict(summary))
    print(f"Figure: {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
