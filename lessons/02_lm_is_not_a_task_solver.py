"""Lesson 02: a language model is not a task solver -- until instruction tuning.

Slides: 000 "Why we need post-training to align with human preferences and instructions" and
002 "Language Modeling != Solving Tasks". The slide's failures of early GPT-3:

    Prompt: Explain the moon landing to a six year old in a few sentences.
    Output: Explain the theory of gravity to a 6 year old.
    Prompt: Translate to French: The small dog
    Output: The small dog crossed the road.

"The LLM ignores the intent of the request and relies instead on its natural inclination to
autoregressively generate continuations consistent with its context."

What it shows, in our world: the same instructions go to
- the base model (`<out>/pretrain`), as plain text, the way one prompts a base model: it continues
  the text. Its corpus has lists of questions and tasks without answers (like the web), so the
  most likely continuation of an instruction is... another instruction;
- the SFT model (`<out>/sft`), in the chat template: it answers.
Both answer greedily; the world's oracle grades every answer (gold reward in [0, 1]). Besides the
slide's two prompts, one held-out instance of every task family is asked, and we count how often
the base model's answer is itself a task prompt of the world (the oracle can parse it as one):
"it wrote another question instead of answering".

Outputs in <out>/lessons/02_lm_is_not_a_task_solver/: base_vs_sft.png, metrics.json.
Reuses <out>/{tokenizer,pretrain,sft} (building them when missing).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402

from minialign.config import write_json  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.sft import ensure_sft, generate_answers  # noqa: E402
from minialign.world import gold_reward, instruction_data, parse_prompt  # noqa: E402

NAME = "02_lm_is_not_a_task_solver"
# The slide's two prompts, in the words of our world's task families.
SLIDE_PROMPTS = ["Explain the moon to a six year old.", "Translate to French: the small dog"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--per-family", type=int, default=None,
                   help="held-out prompts per task family (default 2; --quick: 1)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="generation budget per answer")
    return p.parse_args(argv)


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
        rows.append({"prompt": prompt,
                     "base_continuation": b["full"], "base_answer": b["text"],
                     "base_gold": gold_reward(prompt, b["text"]).total,
                     "base_writes_a_task": writes_a_task(b["full"]),
                     "sft_answer": s["text"], "sft_gold": gold_reward(prompt, s["text"]).total,
                     "sft_writes_a_task": writes_a_task(s["text"]), "sft_ended": s["ended"]})
    return rows


def show(rows: list[dict]) -> None:
    for r in rows:
        cont = r["base_continuation"].strip().replace("\n", "\n" + " " * 22)
        print(f"\nPrompt: {r['prompt']!r}")
        print(f"  base model (text) -> {cont}")
        print(f"      gold {r['base_gold']:.2f}"
              + ("   <- it wrote another task, not an answer" if r["base_writes_a_task"] else ""))
        print(f"  SFT model (chat)  -> {r['sft_answer']}")
        print(f"      gold {r['sft_gold']:.2f}")


def plot(path: str, slide_rows: list[dict], summary: dict) -> str:
    fig, axes = new_figure(ncols=2, width=5.5, height=4.0)
    ax = axes[0][0]
    labels = ["gold reward\n(mean)", "answer is another\ntask prompt"]
    base = [summary["base_gold"], summary["base_writes_a_task"]]
    sft = [summary["sft_gold"], summary["sft_writes_a_task"]]
    x = np.arange(2)
    for k, (name, vals) in enumerate([("base model (text)", base), ("SFT model (chat)", sft)]):
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=name, color=f"C{k}")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set(ylim=(0, 1.05), title=f"{summary['n']} held-out instructions, all task families")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    y = np.arange(len(slide_rows))
    ax.barh(y - 0.2, [r["base_gold"] for r in slide_rows], 0.4, label="base model", color="C0")
    ax.barh(y + 0.2, [r["sft_gold"] for r in slide_rows], 0.4, label="SFT model", color="C1")
    ax.set_yticks(y, [r["prompt"][:38] for r in slide_rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.05), xlabel="gold reward", title="the slide's prompts, in our world")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    per_family = args.per_family or (1 if run.quick else 2)
    t0 = time.perf_counter()
    print("Lesson 02 -- slides 000 'Why we need post-training' and 002 'Language Modeling != "
          "Solving Tasks'.")
    base, tok = ensure_pretrained(run)
    sft, _ = ensure_sft(run)
    base.eval()

    print("\n== 1. the slide's prompts ==")
    slide_rows = ask_both(base, sft, tok, SLIDE_PROMPTS, args.max_new_tokens)
    show(slide_rows)

    held = instruction_data(seed=run.seed, n_per_family=per_family,
                            splits=("test", "unseen_family"))
    rows = ask_both(base, sft, tok, [ex.prompt for ex in held], args.max_new_tokens)
    summary = {"n": len(rows),
               "base_gold": float(np.mean([r["base_gold"] for r in rows])),
               "sft_gold": float(np.mean([r["sft_gold"] for r in rows])),
               "base_writes_a_task": float(np.mean([r["base_writes_a_task"] for r in rows])),
               "sft_writes_a_task": float(np.mean([r["sft_writes_a_task"] for r in rows])),
               "sft_ended": float(np.mean([r["sft_ended"] for r in rows]))}
    print(f"\n== 2. {len(rows)} held-out instructions ({per_family} per task family, seen and "
          f"unseen) ==")
    show(rows[:4])
    print(f"\n  mean gold reward:     base {summary['base_gold']:.2f}   SFT {summary['sft_gold']:.2f}")
    print(f"  answer is a new task: base {summary['base_writes_a_task']:.0%}   "
          f"SFT {summary['sft_writes_a_task']:.0%}")

    fig = plot(os.path.join(out_dir, "base_vs_sft.png"), slide_rows, summary)
    write_json(os.path.join(out_dir, "metrics.json"),
               {"slide_prompts": slide_rows, "summary": summary, "examples": rows[:12],
                "seconds": round(time.perf_counter() - t0, 1)})
    print("\nWhat this shows: next-token prediction learned to continue text like its corpus. "
          "Asked a question as plain text, the base model continues it -- often with another "
          "question or task, as the web-like lists in its corpus do -- instead of answering "
          f"({summary['base_writes_a_task']:.0%} of its answers are themselves task prompts). "
          "After instruction tuning, the same weights plus a few minutes of supervised "
          "(prompt, response) pairs answer in the assistant's turn and stop, and the oracle's "
          f"gold reward rises from {summary['base_gold']:.2f} to {summary['sft_gold']:.2f}.")
    print(f"Figure: {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
