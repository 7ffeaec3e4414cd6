"""Lesson 06: LIMA -- quality and diversity before quantity.

Slides (deck 002): "LIMA: Less is More for Alignment" (both), "Important Factors" and
"Quality vs. Quantity vs. Diversity" (Zhou et al. 2023):
  "Scaling up training data does not necessarily improve the model response quality.
   Quality and diversity are important before quantity."
  Filtered Stack Exchange: diverse and high quality; Unfiltered Stack Exchange: diverse but low
  quality; wikiHow: high quality but low diversity.

What it does. `world.lima_sets` builds the slide's three training sets from the embedded world:
- "curated" (~100 examples): one example per seen task family and training template, each answer
  checked by the oracle (gold reward >= 0.95) -- LIMA's 1,000 hand-picked examples, in small;
- "noisy" (2,000): diverse (every family and template), answered by the world's flawed
  demonstrators (world/demonstrators.py: filler, hedging, unsafe compliance, a rude or off-topic
  sentence, the wrong format, authoritative padding, each at its documented rate) -- "unfiltered
  Stack Exchange";
- "low diversity" (2,000): perfect answers, but only 3 task families with one template each --
  "wikiHow";
plus a control, "noisy, same size": a random subset of the noisy set as small as the curated set
(quality at equal quantity). Every arm fine-tunes a copy of the base (`<out>/pretrain`) with
`sft.train_sft` for the SAME number of optimizer steps of the same batch size (same compute; the
small sets are simply seen for more epochs, as LIMA trained 15 epochs on its 1,000 examples).
Each model then answers held-out prompts greedily: new instances of the seen families, and the
held-out families. The oracle grades each answer (`sft.score_answer`): the task score (exact
match where the task has answers, else the oracle's correctness grade) and the gold reward (the
oracle's overall response quality, which LIMA's human raters stand for), plus the share of
answers showing each of the demonstrators' flaws (evaluation.flaw_rates). Every arm answers the
same prompts, so the comparisons are paired differences with their standard errors; the verdict
on LIMA's claim is computed from them, and says so when the toy result differs from the slide.

Things to try: --steps 1000 (more compute for every arm: does the 2,000-example flawed set catch up
with the curated one once the small set is over-fitted?); --no-subset (skip the equal-size control).

Time: about a minute on a 2-core CPU once the pretrained model is cached; a first run builds
the tokenizer and the pretrained model first (about 2.5 minutes).

Last, LIMA's format constraint (slide 002 "Format Constraint Impact on Response"): the curated set
trained again without its few format-constrained examples (answers in all capitals); the oracle's
`follow` grade on held-out prompts that ask for a format, with and without them.

Outputs in <out>/lessons/06_lima/: lima.png (the bar chart), metrics.json.
Reuses <out>/{tokenizer,pretrain} (and builds them first if they are missing).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass
from random import Random

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.config import add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.pipeline import add_run_args, ensure_pretrained, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.evaluation import (clear_sign, flaw_rates, generate_answers, paired_mean_difference,  # noqa: E402
                                  score_answer)
from minialign.sft import SFTConfig, train_sft  # noqa: E402
from minialign.world import gold_reward, instruction_data, lima_sets  # noqa: E402

NAME = "06_lima"
ARMS = {"curated": "curated (small, diverse, good)",
        "noisy": "noisy (large, diverse, demonstrators' flaws)",
        "low_diversity": "low diversity (large, good, 3 tasks)",
        "noisy_subset": "noisy, same size as curated"}
GROUPS = {"test": "seen tasks, new inputs", "unseen_family": "unseen tasks"}


@dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK."""

    steps: int = 300
    """Optimizer steps of EVERY arm (same compute for each; --quick: 2). Range: steps >= 1."""
    batch_size: int = 16
    """Examples per optimizer step. Range: batch_size >= 1."""
    lr: float = 3e-3
    """Peak learning rate. Range: lr > 0."""
    n_large: int = 2000
    """Size of the noisy and the low-diversity sets (--quick: 64). Range: n_large >= 1."""
    eval_per_family: int = 10
    """Held-out prompts per task family (--quick: 1). Range: eval_per_family >= 1."""
    max_new_tokens: int = 24
    """Answer budget in evaluation (tokens). Range: max_new_tokens >= 1."""
    format_per_family: int = 40
    """Held-out prompts per format-constrained family for the format-constraint comparison (--quick: 2).
    Range: format_per_family >= 1."""
    subset: bool = True
    """Also train the control arm: a random noisy subset as small as the curated set (--no-subset skips it)."""


# --quick: a seconds-long smoke run.
LESSON_QUICK = dict(steps=2, n_large=64, eval_per_family=1, format_per_family=2)


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


def training_sets(seed: int, n_large: int, subset: bool) -> dict:
    """The LIMA sets, and the random noisy subset as large as the curated set."""
    sets = lima_sets(seed=seed, n_large=n_large)
    if subset:
        size = min(len(sets["curated"]), len(sets["noisy"]))
        sets["noisy_subset"] = Random(f"lima-subset|{seed}").sample(sets["noisy"], size)
    return sets


def describe(name: str, examples: list) -> dict:
    """Size, number of task families and templates, and the oracle's mean grade of the answers."""
    gold = [gold_reward(ex.prompt, ex.response).total for ex in examples]
    return {"n": len(examples), "families": len({ex.family for ex in examples}),
            "templates": len({(ex.family, ex.template_id) for ex in examples}),
            "flawed": float(np.mean(["flaw" in ex.meta for ex in examples])),
            "data_gold": float(np.mean(gold))}


def fine_tune(base, tok, examples, cfg: SFTConfig, run, desc: str):
    model = copy.deepcopy(base)           # every arm starts from the same base weights
    torch.manual_seed(run.seed)
    model, metrics = train_sft(model, tok, examples, cfg, device=run.device, seed=run.seed, desc=desc)
    return model.eval(), metrics


# The demonstrators' flaws a model can copy as style. "off_topic" is left out of "flawed": the detector
# cannot tell a sentence about something else from a wrong answer (Zoe's town for Ana's), which every
# weak model writes whatever its data; its rate is still in "flaws".
STYLE_FLAWS = ("filler", "hedge", "unsafe", "rude", "format", "authoritative")


def evaluate(model, tok, held: list, settings: LessonConfig, device) -> dict:
    """Greedy answers to held-out prompts, graded by the oracle; means per group.

    Besides the task score and the gold reward, the share of answers showing each of the
    demonstrators' flaws (evaluation.flaw_rates: filler, hedging, unsafe compliance, a rude or
    off-topic sentence, the wrong format, authoritative padding) and "flawed", the share with any
    of the STYLE_FLAWS.
    "all" also keeps each prompt's gold reward, in `held`'s order, for paired comparisons.
    """
    answers = generate_answers(model, tok, [ex.prompt for ex in held], chat=True,
                               max_new_tokens=settings.max_new_tokens, batch_size=128)
    groups: dict = {}
    for ex, ans in zip(held, answers):
        row = score_answer(ex, ans["text"])
        row["example"] = {"prompt": ex.prompt, "answer": ans["text"], "reference": ex.response}
        for g in (ex.split, "all"):
            groups.setdefault(g, []).append((ex, row))
    out = {}
    for g, pairs in groups.items():
        rows = [r for _, r in pairs]
        em = [r["exact_match"] for r in rows if r["exact_match"] is not None]
        answers = [r["example"]["answer"] for r in rows]
        flaws = flaw_rates([ex.prompt for ex, _ in pairs], answers)
        flaws.pop("any")
        style = flaw_rates([ex.prompt for ex, _ in pairs], answers, names=STYLE_FLAWS)["any"]
        out[g] = {"n": len(rows), "score": float(np.mean([r["score"] for r in rows])),
                  "exact_match": float(np.mean(em)) if em else None,
                  "gold": float(np.mean([r["gold"] for r in rows])), "flawed": style, "flaws": flaws}
    out["all"]["gold_per_prompt"] = [r["gold"] for _, r in groups["all"]]
    test = [r for _, r in groups["test"]]
    out["samples"] = [r["example"] for r in test[:: max(1, len(test) // 4)][:4]]
    return out


def paired_gold(results: dict, a: str, b: str) -> dict:
    """Gold reward of arm a minus arm b on the same held-out prompts (greedy answers): mean and its
    standard error over prompts."""
    return paired_mean_difference(results[a]["all"]["gold_per_prompt"], results[b]["all"]["gold_per_prompt"])


def plot(path: str, results: dict, data: dict) -> str:
    """Bars per arm: gold reward, task score (seen and unseen tasks), answers with a style flaw."""
    names = list(results)
    labels = [f"{ARMS[n]}\n(n={data[n]['n']}, {data[n]['families']} tasks)" for n in names]
    fig, axes = new_figure(ncols=3, width=4.6, height=4.4)
    panels = (("gold", "gold reward (oracle)", list(GROUPS)),
              ("score", "task score (exact match / oracle)", list(GROUPS)),
              ("flawed", "answers with a demonstrator's flaw\n(filler, hedge, rude, unsafe, format, padding)",
               ["all"]))
    y = np.arange(len(names))
    for ax, (key, title, groups) in zip(axes[0], panels):
        h = 0.8 / len(groups)
        for k, g in enumerate(groups):
            vals = [results[n][g][key] for n in names]
            bars = ax.barh(y + (k - (len(groups) - 1) / 2) * h, vals, h,
                           color="C3" if key == "flawed" else f"C{k}",
                           label=GROUPS.get(g, "all held-out prompts"))
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_yticks(y, labels if ax is axes[0][0] else [""] * len(names), fontsize=7)
        ax.invert_yaxis()
        top = max(results[n][g][key] for n in names for g in groups)
        ax.set(title=title, xlabel="share of answers" if key == "flawed" else "mean over held-out prompts",
               xlim=(0, max(0.2, 1.25 * top) if key == "flawed" else 1.1))
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("LIMA: quality vs quantity vs diversity (same compute for every arm)", fontsize=10)
    return save_figure(fig, path)


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    steps, n_large, per_family = settings.steps, settings.n_large, settings.eval_per_family
    t0 = time.perf_counter()
    print("Lesson 06 -- slides 002 'LIMA: Less is More for Alignment', 'Important Factors', "
          "'Quality vs. Quantity vs. Diversity'.")
    if run.quick:
        print("(--quick: a seconds-long smoke run; the models are too small to show the effects)")
    base, tok = ensure_pretrained(run)
    sets = training_sets(run.seed, n_large, subset=settings.subset)
    data = {name: describe(name, examples) for name, examples in sets.items()}
    print("\nthe training sets:")
    for name, d in data.items():
        print(f"  {ARMS[name]:38s} {d['n']:5d} examples, {d['families']:2d} task families, "
              f"{d['templates']:3d} templates, {d['flawed']:.0%} flawed answers "
              f"(oracle's mean grade of the answers {d['data_gold']:.2f})")
    cfg = SFTConfig(steps=steps, batch_size=settings.batch_size, lr=settings.lr, warmup_steps=min(10, steps),
                    ni_fraction=0.0, eval_loss_every=0, ckpt_every=10**9,
                    max_new_tokens=settings.max_new_tokens)
    print(f"\nevery arm: {steps} optimizer steps of {settings.batch_size} examples "
          f"({steps * settings.batch_size} examples seen), lr {settings.lr}")
    held = instruction_data(seed=run.seed, n_per_family=per_family, splits=tuple(GROUPS))
    results, losses = {}, {}
    format_held = format_prompts(run.seed, settings.format_per_family)
    follow = {}
    for name, examples in sets.items():
        model, m = fine_tune(base, tok, examples, cfg, run, name)
        results[name] = evaluate(model, tok, held, settings, run.device)
        if name == "curated":
            follow["curated"] = format_follow(model, tok, format_held, settings)
        losses[name] = m["final_train_loss"]
        r = results[name]
        print(f"  [{name}] gold reward: seen {r['test']['gold']:.2f}, unseen {r['unseen_family']['gold']:.2f}; "
              f"task score: seen {r['test']['score']:.2f}, unseen {r['unseen_family']['score']:.2f}; "
              f"answers with a demonstrator's flaw {r['all']['flawed']:.0%}")
    no_format = [ex for ex in sets["curated"] if ex.family not in FORMAT_FAMILIES]
    model, _ = fine_tune(base, tok, no_format, cfg, run, "curated_no_format")
    follow["curated_no_format"] = format_follow(model, tok, format_held, settings)
    fig = plot(os.path.join(out_dir, "lima.png"), results, data)
    shown = explain(results, data)
    fmt = format_constraint(follow, len(sets["curated"]) - len(no_format))
    write_json(os.path.join(out_dir, "metrics.json"), {
        "steps": steps, "batch_size": settings.batch_size, "data": data, "results": results,
        "verdict": shown, "format_constraint": fmt, "final_train_loss": losses,
        "seconds": round(time.perf_counter() - t0, 1)})
    print(f"Figure: {fig}")
    return 0


# ----------------------------------------------------------------------------------------------
# LIMA's format constraint (slide 002 "Format Constraint Impact on Response"): the same curated set with and
# without its handful of format-constrained examples; the oracle's `follow` grade on held-out prompts that
# ask for a format (all capitals; a list of three, a family no arm trains on).
FORMAT_FAMILIES = ("uppercase", "name_three")


def format_prompts(seed: int, per_family: int) -> list:
    """Held-out prompts of the format-constrained families: new inputs of the seen one, and the unseen one."""
    return (instruction_data(seed=seed + 2, n_per_family=per_family, splits="test", families=["uppercase"])
            + instruction_data(seed=seed + 2, n_per_family=per_family, splits="unseen_family",
                               families=["name_three"]))


def format_follow(model, tok, examples: list, settings: LessonConfig) -> dict:
    """Per family, the oracle's `follow` grade of each greedy answer (does it keep the asked-for format)."""
    answers = generate_answers(model, tok, [ex.prompt for ex in examples], chat=True,
                               max_new_tokens=settings.max_new_tokens, batch_size=128)
    out: dict = {}
    for ex, a in zip(examples, answers):
        out.setdefault(ex.family, []).append(gold_reward(ex.prompt, a["text"]).components.get("follow", 0.0))
    return out


def format_constraint(follow: dict, n_format: int) -> dict:
    """The paired change in `follow` per format family when the curated set keeps its format examples."""
    print(f"\nFormat constraint (slide 'Format Constraint Impact on Response'): the curated set with and without "
          f"its {n_format} format-constrained examples (all capitals); the oracle's `follow` grade on held-out "
          f"prompts that ask for a format:")
    out = {}
    for family in follow["curated"]:
        with_f, without = np.asarray(follow["curated"][family]), np.asarray(follow["curated_no_format"][family])
        d = paired_mean_difference(with_f, without)
        trained = "trained on in the curated set" if family == "uppercase" else "in no training set"
        out[family] = {"with": float(with_f.mean()), "without": float(without.mean()), "difference": d}
        print(f"  {family} ({trained}): follow {without.mean():.2f} without -> {with_f.mean():.2f} with, paired "
              f"{d['mean']:+.2f} +- {d['se']:.2f}: " + {1: "the handful of examples teaches the format.",
                                                         0: "no clear change.",
                                                         -1: "WORSE with them."}[clear_sign(d)])
    return out


def explain(results: dict, data: dict) -> dict:
    """What the numbers show, in words, read off this run's paired differences (never assumed)."""
    g = {n: r["all"]["gold"] for n, r in results.items()}
    f = {n: r["all"]["flawed"] for n, r in results.items()}
    print("\nsample answers of the curated model (held-out prompts):")
    for s in results["curated"]["samples"]:
        print(f"  {s['prompt']!r} -> {s['answer']!r}   (reference {s['reference']!r})")
    print("\nWhat this shows (the oracle's gold reward on all held-out prompts, LIMA's 'response "
          "quality'): " + ", ".join(f"{n} {v:.3f}" for n, v in g.items()) + ".")
    print("Paired over the same held-out prompts, with the standard error of the difference:")
    diffs = {"quantity": paired_gold(results, "curated", "noisy"),
             "diversity": paired_gold(results, "curated", "low_diversity")}
    if "noisy_subset" in results:
        diffs["quality"] = paired_gold(results, "curated", "noisy_subset")
    words = {1: "curated better", -1: "curated WORSE", 0: "no clear difference (within 2 standard errors)"}
    nc = data["curated"]["n"]
    lines = {"quantity": f"{nc} curated vs {data['noisy']['n']} flawed examples (quality vs quantity)",
             "quality": f"{nc} curated vs {data.get('noisy_subset', {}).get('n', 0)} flawed examples "
                        "(quality at equal size)",
             "diversity": f"{nc} curated vs {data['low_diversity']['n']} flaw-free examples of "
                          f"{data['low_diversity']['families']} tasks (diversity)"}
    for k, d in diffs.items():
        print(f"- {lines[k]}: gold difference {d['mean']:+.3f} +- {d['se']:.3f}: {words[clear_sign(d)]}.")
    print(f"- answers with a demonstrator's flaw: curated {f['curated']:.0%}, flawed set {f['noisy']:.0%}"
          + (" (the model copies the flaws it was shown)." if f["noisy"] > f["curated"] else "."))
    return verdict(diffs)


def verdict(diffs: dict) -> dict:
    """LIMA's claim, "quality and diversity before quantity", against this run's paired differences."""
    q = clear_sign(diffs["quantity"])
    if q >= 0:
        print("LIMA's point reproduces at toy scale: the large flawed set did not beat the small curated one"
              + (" (the curated one is better)." if q > 0 else " (no clear difference)."))
    else:
        print("Here quantity still pays: the large flawed set beats the small curated one on gold reward. The\n"
              "tiny model learns its tasks from more distinct examples, and most of what the demonstrators got\n"
              "wrong is style, which costs less gold than a task the model never learned. This differs from the\n"
              "slide (LIMA's 65B model already knew its tasks from pretraining; ours learns them in SFT).")
    for k, claim in (("quality", "quality at equal size"), ("diversity", "diversity at equal quality")):
        if k in diffs:
            print(f"  {claim}: " + {1: "matters here (the curated set is better).",
                                     -1: "does not show here (the curated set is worse).",
                                     0: "not shown here (no clear difference)."}[clear_sign(diffs[k])])
    return {"differences": diffs, "lima_reproduces": q >= 0,
            **{f"{k}_matters": clear_sign(d) > 0 for k, d in diffs.items() if k != "quantity"}}


if __name__ == "__main__":
    sys.exit(cli_main(main))
