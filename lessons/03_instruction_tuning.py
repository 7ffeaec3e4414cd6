"""Lesson 03: instruction tuning -- fine-tune on many tasks at once, then test on tasks never seen.

Slides: 000 "Finetuning an LLM to follow instructions" / "IT is a form of supervised finetuning",
002 "Instruction Tuning" ("fine-tune on many tasks at once ... so that it can perform well on
downstream tasks and even generalize to unseen tasks") and "Summary: Instruction Tuning".

What it shows: the SFT stage (`python train.py sft`, reused from <out>/sft) fine-tuned the base
model on a mixture of the world's seen task families, each phrased with several T0-style
templates (T0's idea: each task has several fixed wordings -- "Translate to French: {phrase}",
"{phrase}\nTranslate this into French." -- and an instance's fields are filled into one of them)
and some in the Natural Instructions schema (a task definition, emphasis, things to avoid,
positive and negative examples, then the input), with the loss on the response tokens only.
Here both models answer held-out prompts greedily, scored per family:
- "seen families (new inputs)": trained families and templates, instances never trained on;
- "seen families (new templates)": trained families, phrasings held out of training (T0);
- "unseen families": task families held out of training altogether (the slide's point).
A task is scored by exact match when it has reference answers, else by the oracle's correctness
grade (stories, reviews, explanations). The base model is asked in plain text and its first line
counts as its answer (the most generous reading of a continuation). Each printed change (SFT -
base) is paired family by family: the mean over task families with its standard error over
families, and a change within two standard errors is called no measurable change.

Outputs in <out>/lessons/03_instruction_tuning/: scores.png (per split and per family, before and
after), oracle_grades.png (the oracle's grades -- correct, follows the format, on topic, concise,
ends properly -- on seen and unseen families, before and after), metrics.json.
Run time: about 10 seconds on a 2-core CPU (measured on one core) once the stages exist.
Builds first, if missing: the tokenizer, the pretrained model and the SFT model (`train.py
pretrain` and `train.py sft`, about 2.5 + 1.5 minutes on a 2-core CPU).

Things to try: --per-family 20 (more held-out prompts per family: do the small transfer effects on
unseen families come out of the noise?).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402

from minialign.config import add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, ensure_sft, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.sft import QUICK as SFT_QUICK  # noqa: E402
from minialign.evaluation import EVAL_SPLITS, SPLIT_LABELS, evaluate_sft, mean_and_se  # noqa: E402
from minialign.plotting import plot_sft_scores  # noqa: E402
from minialign.sft import SFTConfig  # noqa: E402
from minialign.world import instruction_data  # noqa: E402

NAME = "03_instruction_tuning"


@dataclass
class LessonConfig:
    """Lesson 03's settings (the shared run flags --quick, --out, --device, --seed, --preset come from
    `pipeline.add_run_args`)."""

    per_family: int = 20
    """Held-out prompts per task family and split (--quick: 2). Range: per_family >= 1."""
    max_new_tokens: int = SFTConfig.max_new_tokens
    """Generation budget per answer: by default the SFT stage's own (its --quick value with --quick).
    Range: max_new_tokens >= 1."""


# --quick: the settings that change (from_args: defaults < QUICK < the flags given).
QUICK = dict(per_family=2, max_new_tokens=SFTConfig(**SFT_QUICK).max_new_tokens)


def parse_args(argv=None) -> tuple:
    """(the run flags, the validated LessonConfig): a bad setting stops here, before any model loads."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(QUICK if args.quick else {}))


def table(base: dict, sft: dict) -> list[dict]:
    """One row per (split, family): base and SFT task scores."""
    rows = []
    for split in EVAL_SPLITS:
        for fam, s in sft["families"].get(split, {}).items():
            b = base["families"].get(split, {}).get(fam, {})
            rows.append({"split": split, "family": fam, "base": b.get("score"), "sft": s["score"],
                         "metric": "exact match" if s["n_exact"] else "oracle correct"})
    return rows


def print_table(rows: list[dict]) -> None:
    for split in EVAL_SPLITS:
        part = [r for r in rows if r["split"] == split]
        if not part:
            continue
        print(f"\n  {SPLIT_LABELS[split].replace(chr(10), ' ')}:")
        for r in sorted(part, key=lambda r: -r["sft"]):
            print(f"    {r['family']:18s} {r['base']:.2f} -> {r['sft']:.2f}   ({r['metric']})")


COMPONENTS = ("correct", "follow", "relevant", "concise", "ends")
FORM = ("follow", "relevant", "concise", "ends")     # the oracle's grades of an answer's form


def plot_components(path: str, base_eval: dict, sft_eval: dict) -> str:
    """The oracle's grades (gold reward components) before and after SFT, seen vs unseen families:
    the form of an answer (follow, relevant, concise, ends) beside its content (correct)."""
    fig, axes = new_figure(ncols=2, width=5.0, height=3.8)
    for ax, split in zip(axes[0], ("test", "unseen_family")):
        x = np.arange(len(COMPONENTS))
        for k, (label, ev) in enumerate((("base model", base_eval), ("after SFT", sft_eval))):
            comp = ev["splits"][split].get("components", {})
            bars = ax.bar(x + (k - 0.5) * 0.38, [comp.get(c) or 0.0 for c in COMPONENTS], 0.38,
                          label=label, color=f"C{k}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(x, COMPONENTS, fontsize=8)
        ax.set(ylim=(0, 1.1), xlabel="the oracle's criterion", ylabel="oracle's grade (mean)",
               title=SPLIT_LABELS[split].replace("\n", " "))
        ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path)


def show_samples(base: dict, sft: dict, split: str = "unseen_family") -> None:
    print(f"\n  answers on {SPLIT_LABELS[split].replace(chr(10), ' ')}:")
    for b, s in zip(base["samples"].get(split, []), sft["samples"].get(split, [])):
        print(f"    [{s['family']}] {s['prompt']!r}\n      base: {b['response']!r}\n"
              f"      SFT:  {s['response']!r}   (reference: {s['reference']!r})")


def family_change(base_eval: dict, sft_eval: dict, split: str, value) -> dict:
    """SFT - base of `value(family summary)` per task family of a split: the mean difference and its
    standard error over the families (the units that generalization is about), paired family by
    family. Families where either value is missing are left out."""
    diffs = []
    for fam, s in sft_eval["families"].get(split, {}).items():
        b = base_eval["families"].get(split, {}).get(fam)
        if b is not None and value(b) is not None and value(s) is not None:
            diffs.append(value(s) - value(b))
    diff, se = mean_and_se(diffs)
    return {"diff": diff, "se": se, "n_families": len(diffs)}


def form_grade(summary: dict):
    """Mean of the oracle's form grades (follow, relevant, concise, ends) of a family's answers."""
    comp = [summary["components"].get(k) for k in FORM]
    comp = [c for c in comp if c is not None]
    return float(np.mean(comp)) if comp else None


def measure(summary: dict, base_eval: dict, sft_eval: dict) -> dict:
    """The numbers the verdict reads: per split the task scores and their change (SE over families),
    and on unseen families the change of the form grades and of the correctness grade."""
    out = {"splits": {}}
    for split in EVAL_SPLITS:
        ch = family_change(base_eval, sft_eval, split, lambda f: f["score"])
        out["splits"][split] = {**summary[split], **ch}
    out["form"] = family_change(base_eval, sft_eval, "unseen_family", form_grade)
    out["content"] = family_change(base_eval, sft_eval, "unseen_family", lambda f: f["correct"])
    return out


def moved(c: dict) -> str:
    """'up', 'down' or 'flat': a change beyond two standard errors (SE over task families)."""
    if c["diff"] > 2 * c["se"] and c["diff"] > 0:
        return "up"
    if c["diff"] < -2 * c["se"] and c["diff"] < 0:
        return "down"
    return "flat"


WORDS = {"up": "rises", "down": "falls", "flat": "does not change by more than two standard errors"}


def verdict(m: dict) -> str:
    """The lesson in words, from this run's numbers `m` (see `measure`)."""
    def split_text(split: str) -> str:
        c = m["splits"][split]
        return (f"{WORDS[moved(c)]} ({c['base']:.2f} -> {c['sft']:.2f}, {c['diff']:+.2f} +- "
                f"{c['se']:.2f} over {c['n_families']} families)")
    seen, tpl, unseen = (moved(m["splits"][s]) for s in ("test", "unseen_template", "unseen_family"))
    lines = [f"after fine-tuning on many tasks at once (the loss on the answers only), the task score "
             f"on trained families with new inputs {split_text('test')}, with phrasings never trained on "
             f"(T0's held-out templates) {split_text('unseen_template')}, and on task families never "
             f"seen {split_text('unseen_family')}."]
    if unseen == "up":
        lines.append("The model generalizes to unseen tasks, the slide's point.")
    else:
        lines.append("It does not measurably generalize to unseen tasks, unlike the slide: strong "
                     "generalization to unseen tasks is what the slides call an emergent ability of "
                     "large models (002 'Emergent Abilities of LLMs'), and this is a ~1M-parameter model "
                     "trained for minutes.")
    form, content = moved(m["form"]), moved(m["content"])
    grades = (f"on unseen families the oracle's form grades (follows the format, on topic, concise, "
              f"ends) change by {m['form']['diff']:+.2f} +- {m['form']['se']:.2f}, its correctness "
              f"grade by {m['content']['diff']:+.2f} +- {m['content']['se']:.2f}")
    if form == "up" and content != "up":
        lines.append(f"What transfers to unseen tasks is the form of an answer, not its content: {grades}.")
    elif form == "up" and content == "up":
        lines.append(f"Both the form and the content of the answers transfer to unseen tasks: {grades}.")
    elif content == "up":
        lines.append(f"The content transfers to unseen tasks but the form does not: {grades}.")
    else:
        lines.append(f"Neither the form nor the content of the answers measurably improves on unseen "
                     f"tasks: {grades}.")
    if seen != "up" or tpl != "up":
        lines.append("Even on the trained families the gain is not beyond two standard errors on every "
                     "split: with most families near zero before and after, this SFT run's gains are "
                     "small against the spread between families.")
    return "What this shows: " + " ".join(lines)


def stuck_families(rows: list[dict], floor: float = 0.1) -> str:
    """A sentence naming the seen families still near zero after SFT ('' when there are none)."""
    stuck = [r["family"] for r in rows if r["split"] == "test" and r["sft"] < floor]
    if not stuck:
        return ""
    return (f"Seen families still below {floor} after SFT: {', '.join(stuck)}. LIMA's reading (002 "
            f"'LIMA: Less is More for Alignment') is that knowledge comes from pretraining and SFT "
            f"teaches the format; this run alone cannot tell that apart from too little SFT.")


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    cfg = SFTConfig(**(SFT_QUICK if run.quick else {}))
    per_family = settings.per_family
    max_new = settings.max_new_tokens
    t0 = time.perf_counter()
    print("Lesson 03 -- slides 000/002 'Instruction Tuning' and 002 'Summary: Instruction Tuning'.")
    base, tok = ensure_pretrained(run)
    sft, _ = ensure_sft(run)

    held = instruction_data(seed=run.seed, n_per_family=per_family, splits=EVAL_SPLITS)
    print(f"\nanswering {len(held)} held-out prompts with the base model and the SFT model ...")
    kw = dict(max_new_tokens=max_new, batch_size=cfg.eval_batch_size, n_samples=6)
    base_eval = evaluate_sft(base, tok, held, chat=False, **kw)
    sft_eval = evaluate_sft(sft, tok, held, chat=True, **kw)
    rows = table(base_eval, sft_eval)

    print("\n== task score per split (exact match, or the oracle's correctness for open tasks) ==")
    for split in EVAL_SPLITS:
        b, s = base_eval["splits"][split], sft_eval["splits"][split]
        print(f"  {SPLIT_LABELS[split].replace(chr(10), ' '):32s} base {b['score']:.2f} -> SFT "
              f"{s['score']:.2f}   (gold reward {b['gold']:.2f} -> {s['gold']:.2f})")
    print("\n== per family (base -> SFT) ==")
    print_table(rows)
    show_samples(base_eval, sft_eval)

    figs = [plot_sft_scores(os.path.join(out_dir, "scores.png"), sft_eval, base_eval),
            plot_components(os.path.join(out_dir, "oracle_grades.png"), base_eval, sft_eval)]
    summary = {s: {"base": base_eval["splits"][s]["score"], "sft": sft_eval["splits"][s]["score"]}
               for s in EVAL_SPLITS}
    write_json(os.path.join(out_dir, "metrics.json"),
               {"summary": summary, "families": rows, "base_eval": base_eval, "sft_eval": sft_eval,
                "verdict_numbers": measure(summary, base_eval, sft_eval),
                "per_family": per_family, "seconds": round(time.perf_counter() - t0, 1)})
    numbers = measure(summary, base_eval, sft_eval)
    print("\n" + verdict(numbers))
    if stuck_families(rows):
        print(stuck_families(rows))
    print("Figures: " + ", ".join(figs))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
