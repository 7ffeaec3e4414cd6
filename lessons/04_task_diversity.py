"""Lesson 04: task and prompt diversity -- more tasks, more templates, mixtures, and the base model.

Slides (deck 002):
- T0 "Adding Diversity via Task Prompts" and "Effect of Prompt Variations": the same example,
  phrased with several prompt templates (a T0-style template is one fixed wording of a task with
  slots that an instance's fields fill: "Translate to French: {phrase}"); "increasing the number
  of paraphrasing prompts generally leads to better performance" on held-out tasks.
- T0 "Effects of More Training Datasets" and Natural Instructions "Number of Training Tasks":
  "generalization to unseen tasks improves with more observed tasks".
- "Comparing Instruction Datasets": "there is not a single best instruction tuning dataset across
  all tasks; combining datasets results in the best overall performance".
- "Impact of Base Model": "base model quality is extremely important for downstream task
  performance" (LLaMA, pretrained on more tokens, beats OPT and Pythia after the same tuning).

What it does. Every *arm* fine-tunes a copy of the pretrained base (`<out>/pretrain`) with
`sft.train_sft` on a different instruction mixture from the embedded world, then answers
held-out prompts greedily (`sft.evaluate_sft`). All arms take the SAME number of optimizer steps
on the SAME number of training examples: only *what* the examples are changes, never how much
compute or data the arm gets (T0 also added data along with datasets; we hold the total fixed to
isolate diversity).
1. #families sweep: the first k seen families of `world.SEEN_ORDER` (a mix of categories for
   every k), all their training templates. Scored on the 9 held-out families.
2. #templates sweep: all seen families, 1, 2 or 4 prompt templates each. Scored on held-out
   templates of the seen families (T0's prompt variations) and on held-out families.
3. Mixtures by category (the "Comparing Instruction Datasets" table): qa-only, rewriting-only,
   classification-only, and the three combined; each scored per category on held-out instances.
4. Base model: the same SFT from a base pretrained for only a few steps (fewer tokens; trained
   here once and cached) vs the full base.

Three scores per split. Exact match on *unseen* task families can stay near 0 for a
~1M-parameter model trained for seconds (the slides' models have billions of parameters), so the
lesson also reports two graded measures:
- task score: `evaluate_sft`'s exact match (tasks with answers) or the oracle's correctness grade
  (open tasks) of the greedy answer; the strictest of the three;
- gold reward: the oracle's total grade of the greedy answer (correct, harmless, follows the
  format, on topic, fluent, concise, ends well) in [0, 1];
- answer NLL: -log pi_theta(y | x) per token of the reference answer y (teacher forced, no
  sampling; `sft.heldout_loss`), lower is better. It can move before the greedy answer becomes
  exactly right. It is akin to the rank classification T0 used on its held-out tasks: for a task
  with a fixed set of answer options, score each option by the model's likelihood and pick the
  most likely one, so nothing is generated.
Every comparison is paired family by family (both arms answer the same held-out prompts); the
printed change is the mean over task families with its standard error over families, and a
change within two standard errors is called no measurable change.

Deviations, said plainly: the arms train on one-line T0 templates only (`--ni-fraction` adds
Natural Instructions prompts, as the NI paper trained on, at about twice the compute); every arm
is a short run (120 steps at a learning rate of 4e-3, higher than the SFT stage's, so that it
learns something in seconds); the "weaker base" is a fresh pretraining run of the same model
for 100 steps, standing in for the slide's Pythia/OPT vs LLaMA.

Part 5, with --parts schema (not in the default run, to keep it under 5 minutes): the Natural
Instructions schema ablation (Mishra et al. 2022, Table 4). The same families and number of examples
rendered with more or fewer of the schema's elements (the definition; emphasis and things to avoid;
positive examples; negative examples), each arm tested on unseen families rendered the same way.

Part 6, with --parts size (not in the default run either): model size (slide 002 "Impact of Model Size":
smaller models benefit more from instruction tuning). Narrower models (--widths, default 32 and 64 against
the pipeline's 128) are pretrained like the pipeline's base (cached in the lesson folder), then get the same
SFT; the gain over each base, paired over task families, smallest against largest.

Things to try: --parts schema (about 3 minutes: which instruction elements help on unseen tasks?);
--parts size (about 3 minutes the first time: does the smallest model gain the most?);
--ni-fraction 0.5 (half the training prompts in the Natural Instructions schema); --family-counts 2,26
--template-counts 1,4 (only the end points, faster).

Outputs in <out>/lessons/04_task_diversity/: families.png, templates.png, mixtures.png,
base_model.png, schema.png (--parts schema), model_size.png (--parts size), metrics.json. Reuses
<out>/{tokenizer,pretrain}; caches the weaker base in <out>/lessons/04_task_diversity/early_base_<steps>/
and the narrower ones in .../width_<w>/.
Run time: about 1.5 minutes on a quiet 2-core CPU (85 s measured, including the 100-step
pretraining of the weaker base, which later runs reuse; about 3 minutes on one core).
Builds first, if missing: the tokenizer and the pretrained model (`train.py pretrain`, about 2.5
minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass, replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.config import (ConfigError, add_dataclass_args, cli_main, from_args, read_json,  # noqa: E402
                              write_json)
from minialign.pipeline import (add_run_args, corpus, ensure_pretrained, load_model,  # noqa: E402
                                make_run, model_config, pretrain_config)
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.pretrain import pretrain, tokens_of  # noqa: E402
from minialign.model import GPT  # noqa: E402
from minialign.evaluation import clear_sign, evaluate_sft, paired_mean_difference  # noqa: E402
from minialign.sft import SFTConfig, heldout_loss, render_examples, train_sft  # noqa: E402
from minialign.world import instruction_data, task_families  # noqa: E402

NAME = "04_task_diversity"
SPLITS = ("test", "unseen_template", "unseen_family")
SPLIT_NAMES = {"test": "seen tasks, new inputs", "unseen_template": "seen tasks, new templates",
               "unseen_family": "unseen tasks"}
MIXTURES = ("qa", "rewriting", "classification")   # the "datasets" of the mixture comparison
PARTS = ("families", "templates", "mixtures", "base", "schema", "size")   # the comparisons, in order
# 5. The Natural Instructions schema ablation (slide 002 "Natural Instructions"; Mishra et al. 2022,
# Table 4): which elements of the instruction help on unseen tasks. Each arm trains and is tested on
# prompts with the same elements.
SCHEMAS = {"definition only": ("definition",),
           "+ emphasis and things to avoid": ("definition", "emphasis", "avoid"),
           "+ positive examples": ("definition", "emphasis", "avoid", "positive"),
           "full schema (+ negative examples)": ("definition", "emphasis", "avoid", "positive", "negative"),
           "positive examples only": ("positive",)}


# ----------------------------------------------------------------------------------------------
# Settings and the shared SFT recipe of every arm
@dataclass
class LessonConfig:
    """Lesson 04's settings: the SFT recipe every arm shares, and what the comparisons sweep (the
    shared run flags --quick, --out, --device, --seed, --preset come from `pipeline.add_run_args`)."""

    steps: int = 120
    """Optimizer steps of EVERY arm (--quick: 3). Range: steps >= 1."""
    examples: int = 2400
    """Training examples of every arm, split evenly over its families (--quick: 52).
    Range: examples >= 1."""
    batch_size: int = 32
    """Examples per optimizer step. Range: batch_size >= 1."""
    lr: float = 4e-3
    """Peak learning rate of every arm. Range: lr > 0."""
    eval_per_family: int = 6
    """Held-out prompts per family and split (--quick: 1). Range: eval_per_family >= 1."""
    max_new_tokens: int = 16
    """Generation budget per answer. Range: max_new_tokens >= 1."""
    family_counts: str = "2,6,12,26"
    """Numbers of training families to sweep, comma-separated (the first k of world.SEEN_ORDER; a k
    above the number of seen families means all of them). Each a whole number >= 1."""
    template_counts: str = "1,2,4"
    """Numbers of prompt templates per family to sweep, comma-separated (4 = all training templates).
    Each a whole number >= 1."""
    early_steps: int = 100
    """Pretraining steps of the weaker base model (--quick: 4). Range: early_steps >= 1."""
    ni_fraction: float = 0.0
    """Fraction of each arm's examples in the Natural Instructions schema (the NI paper trained on
    it; default 0: its prompts are ~2x longer, so ~2x the compute). Range: 0 <= ni_fraction <= 1."""
    parts: str = ",".join(PARTS[:4])
    """Which comparisons to run: a comma-separated subset of families, templates, mixtures, base, schema, size
    (the default leaves out schema, the Natural Instructions ablation, and size, the model widths: about 3
    more minutes each)."""
    widths: str = "32,64"
    """Narrower models for the size part (--parts size), each pretrained like the pipeline's base (cached in
    the lesson folder) and compared with it. Each must be a multiple of the preset's head count."""

    def check(self) -> None:
        for flag, text, example in (("--family-counts", self.family_counts, "2,6,12,26"),
                                    ("--template-counts", self.template_counts, "1,2,4")):
            if not all(k.strip().isdecimal() and int(k) >= 1 for k in text.split(",")):
                raise ConfigError(f"{flag} must be comma-separated whole numbers >= 1 (e.g. {example}), "
                                  f"got {text!r}")
        if not all(w.strip().isdecimal() and int(w) >= 1 for w in self.widths.split(",")):
            raise ConfigError(f"--widths must be comma-separated whole numbers >= 1 (e.g. 32,64), got {self.widths!r}")
        unknown = [p for p in self.parts.split(",") if p not in PARTS]
        if unknown:
            raise ConfigError(f"--parts must be a comma-separated subset of {','.join(PARTS)}, "
                              f"got {self.parts!r} ({', '.join(map(repr, unknown))} unknown)")


# --quick: the settings that change (from_args: defaults < QUICK < the flags given).
QUICK = dict(steps=3, examples=52, eval_per_family=1, early_steps=4)


def parse_args(argv=None) -> tuple:
    """(the run flags, the validated LessonConfig): a bad setting stops here, before any model loads."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(QUICK if args.quick else {}))


def sft_recipe(settings: LessonConfig, quick: bool) -> SFTConfig:
    """The one SFT configuration all arms share: same steps, batch, learning rate."""
    return SFTConfig(steps=settings.steps, batch_size=settings.batch_size,
                     lr=settings.lr, warmup_steps=2 if quick else 15, ni_fraction=0.0,
                     eval_loss_every=0, ckpt_every=10**9, max_new_tokens=settings.max_new_tokens,
                     eval_batch_size=128)


def mixture(families: list[str], n_templates: int | None, total: int, seed: int,
            ni_fraction: float = 0.0) -> list:
    """`total` training examples spread evenly over `families`: T0-style templates, and a fraction
    `ni_fraction` in the Natural Instructions schema (definition, emphasis, examples)."""
    per_family = max(1, total // len(families))
    n_ni = round(per_family * ni_fraction)
    examples = instruction_data(seed=seed, n_per_family=per_family - n_ni, splits="train",
                                families=families, n_templates=n_templates)
    if n_ni:   # another seed, so that the NI instances are not the template ones again
        examples += instruction_data(seed=seed + 1, n_per_family=n_ni, splits="train",
                                     families=families, natural_instructions=True)
    return examples


# ----------------------------------------------------------------------------------------------
# Scoring: evaluate_sft (exact match / oracle) and the answer NLL (teacher forced)
def answer_nll(model: GPT, tok, examples: list, cfg: SFTConfig, device) -> float:
    """-log pi_theta(reference answer | prompt) per answer token (and <|end|>), averaged over the
    answer tokens of `examples`: how likely the model finds the right answer, without sampling."""
    rendered, _ = render_examples(tok, examples, model.config.block_size)
    return heldout_loss(model, tok, rendered, cfg, device)


def evaluate(model: GPT, tok, eval_set: list, cfg: SFTConfig, device) -> dict:
    """Per split and per family: task score, gold reward (greedy answers), answer NLL."""
    ev = evaluate_sft(model, tok, eval_set, max_new_tokens=cfg.max_new_tokens,
                      batch_size=cfg.eval_batch_size, n_samples=2)
    groups: dict = {}
    for ex in eval_set:
        groups.setdefault(ex.split, {}).setdefault(ex.family, []).append(ex)
    out = {"splits": {}, "families": {}, "samples": ev["samples"]}
    for split, fams in ev["families"].items():
        out["families"][split] = {
            f: {"score": s["score"], "gold": s["gold"],
                "nll": answer_nll(model, tok, groups[split][f], cfg, device)}
            for f, s in fams.items()}
        s = ev["splits"][split]
        out["splits"][split] = {"score": s["score"], "gold": s["gold"],
                                "nll": answer_nll(model, tok, [ex for exs in groups[split].values()
                                                               for ex in exs], cfg, device)}
    return out


def by_category(result: dict, split: str = "test") -> dict:
    """Mean of each metric over the families of each category (one split)."""
    category = {f.name: f.category for f in task_families()}
    groups: dict = {}
    for fam, s in result["families"][split].items():
        groups.setdefault(category[fam], []).append(s)
    return {c: {k: float(np.mean([s[k] for s in rows])) for k in ("score", "gold", "nll")}
            for c, rows in sorted(groups.items())}


# ----------------------------------------------------------------------------------------------
# One arm: copy the base, fine-tune, evaluate
def run_arm(name: str, base: GPT, tok, examples: list, cfg: SFTConfig, eval_set: list,
            run) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    model = copy.deepcopy(base)     # every arm starts from the same weights
    torch.manual_seed(run.seed)
    model, metrics = train_sft(model, tok, examples, cfg, device=run.device, seed=run.seed, desc=name)
    t1 = time.process_time()
    result = evaluate(model, tok, eval_set, cfg, run.device)
    result.update(name=name, n_examples=len(examples), steps=cfg.steps,
                  train_families=sorted({ex.family for ex in examples}),
                  final_train_loss=metrics["final_train_loss"],
                  seconds=round(time.perf_counter() - t0, 1),
                  cpu_seconds={"train": round(t1 - c0, 1), "eval": round(time.process_time() - t1, 1)})
    s = result["splits"]
    print(f"  [{name}] " + "  ".join(
        f"{SPLIT_NAMES[k]}: score {s[k]['score']:.2f} gold {s[k]['gold']:.2f} "
        f"answer NLL {s[k]['nll']:.2f}" for k in SPLITS if k in s))
    return result


# ----------------------------------------------------------------------------------------------
# 4. The weaker base: pretrained on fewer tokens (a few steps), cached in the lesson folder
def ensure_early_base(run, tok, steps: int, out_dir: str) -> tuple[GPT, dict]:
    """A base model with the same shape as the full one, pretrained for only `steps` steps."""
    cfg = replace(pretrain_config(run), steps=steps, warmup_steps=max(1, min(10, steps // 5)),
                  eval_every=steps, ckpt_every=steps)
    ckpt = os.path.join(out_dir, "ckpt.pt")
    if not os.path.exists(os.path.join(out_dir, "metrics.json")):
        print(f"[early base] pretraining a fresh model for {steps} steps "
              f"({steps * cfg.batch_size * cfg.seq_len:,} tokens) -> {out_dir}")
        torch.manual_seed(run.seed)
        model = GPT(model_config(run, tok))
        pretrain(model, tokens_of(corpus(run), tok), cfg, out_dir=out_dir, device=run.device,
                 seed=run.seed)
    return load_model(ckpt, run.device), read_json(os.path.join(out_dir, "metrics.json"))


# ----------------------------------------------------------------------------------------------
# Figures
METRICS = (("score", "task score (exact match / oracle)"), ("gold", "gold reward (oracle)"),
           ("nll", "answer NLL (lower is better)"))


def plot_sweep(path: str, xs: list, arms: list[dict], splits: list[str], xlabel: str,
               title: str) -> str:
    """One panel per metric: the metric of each split vs the swept quantity."""
    fig, axes = new_figure(ncols=3, width=4.4, height=3.6)
    for ax, (key, label) in zip(axes[0], METRICS):
        for i, split in enumerate(splits):
            ax.plot(xs, [a["splits"][split][key] for a in arms], marker="o", color=f"C{i}",
                    label=SPLIT_NAMES[split])
        ax.set(xlabel=xlabel, ylabel=label, xticks=xs)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_mixtures(path: str, arms: list[dict], categories: list[str]) -> str:
    """Per category (held-out instances), one bar per mixture; the last group is the average."""
    fig, axes = new_figure(ncols=3, width=4.6, height=3.8)
    cols = categories + ["average"]
    x = np.arange(len(cols))
    w = 0.8 / len(arms)
    for ax, (key, label) in zip(axes[0], METRICS):
        for k, arm in enumerate(arms):
            vals = [arm["categories"][c][key] for c in categories]
            vals.append(float(np.mean(vals)))
            ax.bar(x + (k - (len(arms) - 1) / 2) * w, vals, w, label=arm["name"], color=f"C{k}")
        ax.set_xticks(x, cols, fontsize=8)
        ax.set(xlabel="task category (held-out instances)", ylabel=label,
               title=label.split(" (")[0] + " per category")
        if key == "gold":   # zoom in, but never hide a bar below the axis
            lowest = min(a["categories"][c]["gold"] for a in arms for c in categories)
            ax.set_ylim(min(0.4, lowest - 0.05), 1.0)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7, title="trained on", title_fontsize=7)
    fig.suptitle("Comparing instruction datasets: each training mixture's scores per task category "
                 "(held-out instances)", fontsize=10)
    return save_figure(fig, path)


def plot_base(path: str, early: dict, full: dict, labels: tuple[str, str]) -> str:
    fig, axes = new_figure(ncols=3, width=4.2, height=3.6)
    x = np.arange(len(SPLITS))
    for ax, (key, label) in zip(axes[0], METRICS):
        for k, (arm, lab) in enumerate(((early, labels[0]), (full, labels[1]))):
            bars = ax.bar(x + (k - 0.5) * 0.38, [arm["splits"][s][key] for s in SPLITS], 0.38,
                          label=lab, color=f"C{k + 3}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(x, [SPLIT_NAMES[s].replace(", ", ",\n") for s in SPLITS], fontsize=7)
        ax.set(xlabel="held-out split", ylabel=label)
        if key != "nll":
            ax.set_ylim(0, 1.05)
    axes[0][0].legend(fontsize=7, title="SFT from", title_fontsize=7)
    fig.suptitle("Base model: the same SFT from a base pretrained for fewer steps and from the full "
                 "base", fontsize=10)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# The four comparisons. `arm(name, families, n_templates=None, model=None)` trains and scores one
# arm (cached: the all-families arm serves three comparisons).
def sweep_families(arm, seen: list[str], settings: LessonConfig, out_dir: str):
    """1. More training tasks (T0 "more datasets", NI "number of training tasks")."""
    counts = [min(int(k), len(seen)) for k in settings.family_counts.split(",")]
    print(f"\n== 1. number of training families: {counts} ==")
    arms = [arm(f"{k} families", seen[:k]) for k in counts]
    part = {"counts": counts, "arms": arms,
            "unseen_family": {k: a["splits"]["unseen_family"] for k, a in zip(counts, arms)}}
    fig = plot_sweep(os.path.join(out_dir, "families.png"), counts, arms, ["unseen_family"],
                     "training task families", "Unseen task families, by the number of training "
                     "families (T0, Natural Instructions)")
    return part, fig


def sweep_templates(arm, seen: list[str], settings: LessonConfig, out_dir: str):
    """2. More prompt templates per family (T0 "effect of prompt variations")."""
    counts = [int(k) for k in settings.template_counts.split(",")]
    print(f"\n== 2. prompt templates per family: {counts} ==")
    n_all = min(len(f.seen_templates) for f in task_families() if f.seen)
    arms = [arm(f"{k} templates" if k < n_all else f"{len(seen)} families", seen,
                k if k < n_all else None) for k in counts]
    part = {"counts": counts, "arms": arms,
            "unseen_template": {k: a["splits"]["unseen_template"] for k, a in zip(counts, arms)},
            "unseen_family": {k: a["splits"]["unseen_family"] for k, a in zip(counts, arms)}}
    fig = plot_sweep(os.path.join(out_dir, "templates.png"), counts, arms,
                     ["unseen_template", "unseen_family"], "prompt templates per family",
                     "Held-out phrasings and families, by the templates per training family (T0)")
    return part, fig


def compare_mixtures(arm, out_dir: str):
    """3. Mixtures by category: no single best, the combination does well everywhere."""
    print(f"\n== 3. mixtures by category: {', '.join(MIXTURES)}, combined ==")
    groups = {c: [f.name for f in task_families() if f.seen and f.category == c] for c in MIXTURES}
    arms = [arm(f"{c} only", groups[c]) for c in MIXTURES]
    arms.append(arm("combined", [f for c in MIXTURES for f in groups[c]]))
    for a in arms:
        a["categories"] = by_category(a)
    part = {"categories": list(MIXTURES), "arms": arms,
            "table": {a["name"]: a["categories"] for a in arms}}
    return part, plot_mixtures(os.path.join(out_dir, "mixtures.png"), arms, list(MIXTURES))


def compare_bases(arm, seen: list[str], run, tok, settings: LessonConfig, out_dir: str):
    """4. The base model: weaker (fewer pretraining tokens) vs the full base, the same SFT."""
    steps = settings.early_steps
    early, early_pre = ensure_early_base(run, tok, steps, os.path.join(out_dir, f"early_base_{steps}"))
    full_path = os.path.join(run.stage_dir("pretrain"), "metrics.json")
    full_pre = read_json(full_path) if os.path.exists(full_path) else {"steps": None,
                                                                        "final_val_loss": None}
    print(f"\n== 4. base model: pretrained {early_pre['steps']} steps (val loss "
          f"{early_pre['final_val_loss']:.2f}) vs the full base ({full_pre['steps']} steps, val "
          f"loss {full_pre['final_val_loss'] or float('nan'):.2f}) ==")
    weak = arm(f"early base ({early_pre['steps']} steps)", seen, model=early)
    strong = arm(f"{len(seen)} families", seen)
    part = {"early": {"pretrain_steps": early_pre["steps"], "val_loss": early_pre["final_val_loss"],
                      "sft": weak},
            "full": {"pretrain_steps": full_pre["steps"], "val_loss": full_pre["final_val_loss"],
                     "sft": strong}}
    labels = tuple(f"base after {p['steps']} steps\n(val loss {p['final_val_loss'] or float('nan'):.2f})"
                   for p in (early_pre, full_pre))
    return part, plot_base(os.path.join(out_dir, "base_model.png"), weak, strong, labels)


def schema_ablation(run, base, tok, seen: list[str], settings: LessonConfig, cfg: SFTConfig, out_dir: str):
    """5. The Natural Instructions schema: the same families and number of examples, rendered with more or
    fewer of the schema's elements; each arm is tested on unseen families rendered the same way."""
    print(f"\n== 5. Natural Instructions schema elements: {', '.join(SCHEMAS)} ==")
    per_family = max(1, settings.examples // len(seen))
    arms = {}
    for name, elements in SCHEMAS.items():
        train = instruction_data(seed=run.seed, n_per_family=per_family, splits="train", families=seen,
                                 natural_instructions=True, ni_elements=elements)
        held = instruction_data(seed=run.seed, n_per_family=settings.eval_per_family,
                                splits=("test", "unseen_family"), natural_instructions=True, ni_elements=elements)
        # a schema prompt with examples can outgrow the context: such prompts are left out of the test
        # (and render_examples leaves them out of training), the same way for every arm
        room = base.config.block_size - cfg.max_new_tokens - 8        # 8: the chat template's tokens
        held = [ex for ex in held if len(tok.encode(ex.prompt)) <= room]
        arms[name] = run_arm(f"NI: {name}", base, tok, train, cfg, held, run)
        arms[name]["n_test_prompts"] = len(held)
    part = {"schemas": {k: list(v) for k, v in SCHEMAS.items()}, "arms": arms}
    return part, plot_schema(os.path.join(out_dir, "schema.png"), arms)


def plot_schema(path: str, arms: dict) -> str:
    """Unseen families: task score, gold reward and answer NLL per schema arm."""
    fig, axes = new_figure(ncols=len(METRICS), width=4.4, height=3.6)
    names = list(arms)
    for ax, (key, label) in zip(axes[0], METRICS):
        vals = [arms[n]["splits"]["unseen_family"][key] for n in names]
        ax.barh(range(len(names)), vals, color=[f"C{k}" for k in range(len(names))])
        ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [""] * len(names), fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel=label, ylabel="instruction elements" if ax is axes[0][0] else "", title=label)
        ax.title.set_fontsize(9)
    fig.suptitle("Unseen task families, by the Natural Instructions elements in training and test prompts")
    return save_figure(fig, path)


def schema_verdict(arms: dict) -> str:
    """Part 5 in words: each richer schema against the definition alone, paired over unseen families."""
    base = arms["definition only"]["families"]["unseen_family"]
    lines = []
    for name, a in arms.items():
        if name == "definition only":
            continue
        ch = changes(base, a["families"]["unseen_family"])
        lines.append(f"{name} vs definition only: {describe(ch)} ({gain_words(ch)})")
    return ("on unseen task families, paired family by family:\n  " + "\n  ".join(lines)
            + "\n  (Mishra et al. 2022 found positive examples the most useful element and negative examples of"
              " little use.)")


def ensure_sized_base(run, tok, width: int, out_dir: str) -> tuple[GPT, dict]:
    """A base model `width` wide (the preset's depth and heads), pretrained like the pipeline's base."""
    cfg = pretrain_config(run)
    model_cfg = replace(model_config(run, tok), n_embd=width)
    if width % model_cfg.n_head:
        raise ConfigError(f"--widths: {width} is not a multiple of the {model_cfg.n_head} attention heads")
    if not os.path.exists(os.path.join(out_dir, "metrics.json")):
        print(f"[size] pretraining a {width}-wide model for {cfg.steps} steps -> {out_dir}")
        torch.manual_seed(run.seed)
        pretrain(GPT(model_cfg), tokens_of(corpus(run), tok), cfg, out_dir=out_dir, device=run.device, seed=run.seed)
    return load_model(os.path.join(out_dir, "ckpt.pt"), run.device), read_json(os.path.join(out_dir, "metrics.json"))


def compare_sizes(arm, seen: list[str], run, base, tok, settings: LessonConfig, eval_set: list, cfg: SFTConfig,
                  out_dir: str):
    """6. Model size (slide 002 "Impact of Model Size"): the same SFT on narrower bases; the gain over each base."""
    widths = sorted({int(w) for w in settings.widths.split(",")} | {base.config.n_embd})
    print(f"\n== 6. model size: widths {widths}, the same pretraining and SFT ==")
    out = {}
    for w in widths:
        if w == base.config.n_embd:
            model, pre = base, read_json(os.path.join(run.stage_dir("pretrain"), "metrics.json"))
        else:
            model, pre = ensure_sized_base(run, tok, w, os.path.join(out_dir, f"width_{w}"))
        before = evaluate(model, tok, eval_set, cfg, run.device)
        after = arm(f"{len(seen)} families", seen, model=None if model is base else model)
        out[w] = {"parameters": model.num_params(), "val_loss": pre.get("final_val_loss"), "base": before,
                  "sft": after}
        print(f"  [width {w}: {model.num_params() / 1e6:.2f}M parameters] gold on seen tasks, new inputs: base "
              f"{before['splits']['test']['gold']:.2f} -> SFT {after['splits']['test']['gold']:.2f}")
    part = {"widths": widths, "models": out}
    return part, plot_sizes(os.path.join(out_dir, "model_size.png"), out)


def plot_sizes(path: str, models: dict) -> str:
    """Gold reward and task score on seen tasks (new inputs), base and after SFT, per model width."""
    fig, axes = new_figure(ncols=2, width=4.6, height=3.6)
    ws = list(models)
    x = np.arange(len(ws))
    for ax, (key, label) in zip(axes[0], METRICS[:2]):
        for k, when in enumerate(("base", "sft")):
            ax.bar(x + (k - 0.5) * 0.38, [models[w][when]["splits"]["test"][key] for w in ws], 0.38,
                   label="base" if when == "base" else "after SFT", color=f"C{k}")
        ax.set_xticks(x, [f"{w} wide\n{models[w]['parameters'] / 1e6:.2f}M" for w in ws], fontsize=8)
        ax.set(xlabel="model width (parameters)", ylabel=label, title=label)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.suptitle("The same SFT on bases of three sizes: seen tasks, new inputs")
    return save_figure(fig, path)


def size_verdict(models: dict) -> str:
    """Part 6 in words: the gain of SFT over its base per width (paired over families), smallest vs largest."""
    gains = {w: changes(m["base"]["families"]["test"], m["sft"]["families"]["test"]) for w, m in models.items()}
    lines = [f"width {w}: gold reward {g['gold']['mean']:+.2f} +- {g['gold']['se']:.2f}, task score "
             f"{g['score']['mean']:+.2f} +- {g['score']['se']:.2f} over its base" for w, g in gains.items()]
    ws = sorted(models)
    small, large = models[ws[0]], models[ws[-1]]
    fams = small["base"]["families"]["test"]
    # the gain of the smallest minus the gain of the largest, paired over families
    common = [f for f in fams if f in large["base"]["families"]["test"]]
    gain = lambda m, f: m["sft"]["families"]["test"][f]["gold"] - m["base"]["families"]["test"][f]["gold"]  # noqa
    d = paired_mean_difference([gain(small, f) for f in common], [gain(large, f) for f in common])
    diff, se = d["mean"], d["se"]
    clear = abs(diff) > max(2 * se, 1e-9)          # 1e-9: rounding, when every family's difference is the same
    word = ("the smallest model gains MORE from the same SFT, as on the slide" if clear and diff > 0 else
            "the smallest model gains LESS, unlike the slide (a model too small to learn the tasks gains little)"
            if clear else "the gains do not differ beyond two standard errors")
    return ("SFT's gain over each base, on seen tasks with new inputs (paired over families):\n  " + "\n  ".join(lines)
            + f"\n  smallest minus largest gain in gold reward {diff:+.2f} +- {se:.2f}: {word}.")


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    parts = set(settings.parts.split(","))
    total = settings.examples
    per_family_eval = settings.eval_per_family
    t_start = time.perf_counter()
    print("Lesson 04 -- slides 002 T0 'Adding Diversity via Task Prompts', 'Effect of Prompt "
          "Variations', 'Effects of More Training Datasets'; Natural Instructions 'Number of "
          "Training Tasks'; 'Comparing Instruction Datasets'; 'Impact of Base Model'.")
    if run.quick:
        print("(--quick: a seconds-long smoke run; the models are too small to show the effects)")
    base, tok = ensure_pretrained(run)
    cfg = sft_recipe(settings, run.quick)
    print(f"Every arm: {cfg.steps} optimizer steps of {cfg.batch_size} examples, lr {cfg.lr}, "
          f"{total} training examples split evenly over its families "
          f"({settings.ni_fraction:.0%} in the Natural Instructions schema).")
    eval_set = instruction_data(seed=run.seed, n_per_family=per_family_eval, splits=SPLITS)
    seen = [f.name for f in task_families() if f.seen]
    metrics: dict = {"config": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                "examples_per_arm": total, "ni_fraction": settings.ni_fraction,
                                "eval_per_family": per_family_eval}}
    figures, cache = [], {}

    def arm(name, families, n_templates=None, model=None):
        key = (tuple(families), n_templates, id(model or base))
        if key not in cache:
            examples = mixture(families, n_templates, total, run.seed, settings.ni_fraction)
            cache[key] = run_arm(name, model or base, tok, examples, cfg, eval_set, run)
        return cache[key]

    steps = {"families": lambda: sweep_families(arm, seen, settings, out_dir),
             "templates": lambda: sweep_templates(arm, seen, settings, out_dir),
             "mixtures": lambda: compare_mixtures(arm, out_dir),
             "base": lambda: compare_bases(arm, seen, run, tok, settings, out_dir),
             "schema": lambda: schema_ablation(run, base, tok, seen, settings, cfg, out_dir),
             "size": lambda: compare_sizes(arm, seen, run, base, tok, settings, eval_set, cfg, out_dir)}
    for name, step in steps.items():
        if name in parts:
            metrics["base_model" if name == "base" else name], fig = step()
            figures.append(fig)
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    explain(metrics)
    print("Figures: " + ", ".join(figures))
    return 0


def arrow(values, fmt: str = "{:.2f}") -> str:
    return " -> ".join(fmt.format(v) for v in values)


def paired_change(fams_a: dict, fams_b: dict, key: str, only=None) -> dict:
    """B - A of one metric, paired family by family ({family: {metric: value}} of one split, e.g.
    an arm's result["families"]["unseen_family"]): the mean over the common families (those in
    `only`, if given) and its standard error over families."""
    common = [f for f in fams_a if f in fams_b and (only is None or f in only)]
    return paired_mean_difference([fams_b[f][key] for f in common], [fams_a[f][key] for f in common])


def changes(fams_a: dict, fams_b: dict, only=None) -> dict:
    """paired_change of the three metrics (score, gold, nll)."""
    return {k: paired_change(fams_a, fams_b, k, only) for k, _ in METRICS}


def direction(c: dict, lower: bool = False) -> str:
    """'better', 'worse' or 'flat': a change beyond two standard errors (lower=True: lower is better)."""
    return {1: "better", -1: "worse", 0: "flat"}[clear_sign(c) * (-1 if lower else 1)]


def describe(ch: dict) -> str:
    """'answer NLL -0.76 +- 0.21, gold reward +0.01 +- 0.02, task score +0.00 +- 0.01' for changes()."""
    names = {"nll": "answer NLL", "gold": "gold reward", "score": "task score"}
    return ", ".join(f"{names[k]} {ch[k]['mean']:+.2f} +- {ch[k]['se']:.2f}"
                     for k in ("nll", "gold", "score"))


def gain_words(ch: dict) -> str:
    """Which measures improved, got worse or stayed within two standard errors."""
    dirs = {"answer NLL": direction(ch["nll"], lower=True), "gold reward": direction(ch["gold"]),
            "task score": direction(ch["score"])}
    better = [k for k, v in dirs.items() if v == "better"]
    worse = [k for k, v in dirs.items() if v == "worse"]
    if not better and not worse:
        return "no measurable change in any measure"
    parts = ([f"better on {', '.join(better)}"] if better else []) + \
            ([f"worse on {', '.join(worse)}"] if worse else [])
    return "; ".join(parts)


def agreement(ch: dict) -> str:
    """How a change (changes()) reads: 'yes' (better, nothing worse), 'likelihood' (only the answer
    NLL better), 'mixed', 'worse' or 'none' (nothing beyond two standard errors)."""
    dirs = {"nll": direction(ch["nll"], lower=True), "gold": direction(ch["gold"]),
            "score": direction(ch["score"])}
    better = [k for k, v in dirs.items() if v == "better"]
    worse = [k for k, v in dirs.items() if v == "worse"]
    if better and worse:
        return "mixed"
    if worse:
        return "worse"
    if better == ["nll"]:
        return "likelihood"
    return "yes" if better else "none"


def read_claim(ch: dict, claim: str, where: str) -> str:
    """The slide's `claim` held against a change measured `where`."""
    return {"yes": f"As on the slide, {claim}.",
            "likelihood": f"In part as on the slide: the right answers {where} become more likely (answer "
                          f"NLL), but the greedy answers are not measurably better.",
            "mixed": f"Mixed: some measures improve and others get worse {where}, so the slide's claim "
                     f"({claim}) holds only in part.",
            "worse": f"Unlike the slide ({claim}), the answers {where} get worse.",
            "none": f"Unlike the slide ({claim}), no measurable change {where} at this scale.",
            }[agreement(ch)]


def families_verdict(ch: dict, k_first: int, k_last: int, n_unseen: int) -> str:
    """Part 1 in words: unseen families, the most vs the fewest training families."""
    return (f"from {k_first} to {k_last} training families, on {n_unseen} unseen task families: "
            f"{describe(ch)} ({gain_words(ch)}). "
            + read_claim(ch, "more training tasks help on unseen tasks (T0, Natural Instructions)",
                         "to unseen tasks"))


def templates_verdict(ch_tpl: dict, ch_unseen: dict, n_first: int, n_last: int) -> str:
    """Part 2 in words: held-out phrasings of trained tasks, the most vs the fewest templates."""
    return (f"from {n_first} to {n_last} templates per family, on held-out phrasings of the trained "
            f"tasks: {describe(ch_tpl)} ({gain_words(ch_tpl)}); on unseen task families: "
            f"{describe(ch_unseen)} ({gain_words(ch_unseen)}). "
            + read_claim(ch_tpl, "more prompt variations help on new phrasings (T0)", "to new phrasings"))


def mixtures_verdict(table: dict, own: dict, combined: dict) -> str:
    """Part 3 in words. table: {mixture: {category: {"gold": ...}}}; own: {category: {"mixture":
    the mixture trained on it, "rival": the best other mixture, "mean", "se", "n"}} (gold reward, own -
    rival, SE over the category's families); combined: {single mixture: paired_change of the gold
    reward, combined - single, over the held-out families of the categories}."""
    cats = list(own)
    wins = [c for c in cats if direction(own[c]) == "better"]
    ties = [c for c in cats if direction(own[c]) == "flat"]
    lines = ["each single mixture against the best other mixture on its own category (gold reward): "
             + ", ".join(f"{own[c]['mixture']} {own[c]['mean']:+.2f} +- {own[c]['se']:.2f} vs "
                         f"{own[c]['rival']}" for c in cats) + "."]
    if len(wins) == len(cats):
        lines.append("Each mixture is best on its own category, as on the slide.")
    elif wins:
        lines.append(f"Only on {', '.join(wins)} is the own mixture measurably best"
                     + (f" (on {', '.join(ties)} within two standard errors)" if ties else "") + ".")
    else:
        lines.append("No single mixture is measurably best on its own category: unlike the slide, "
                     "the categories do not separate at this scale.")
    worst = {n: min(cat[c]["gold"] for c in cats) for n, cat in table.items()}
    avg = {n: float(np.mean([cat[c]["gold"] for c in cats])) for n, cat in table.items()}
    if "combined" in table:
        singles = [n for n in table if n != "combined"]
        lines.append(f"The combined mixture's weakest category scores {worst['combined']:.2f} (the single "
                     f"mixtures' {', '.join(f'{worst[n]:.2f}' for n in singles)}), its average "
                     f"{avg['combined']:.2f} (theirs {', '.join(f'{avg[n]:.2f}' for n in singles)}); "
                     f"combined minus each single mixture, over the held-out families of these categories: "
                     + ", ".join(f"{combined[n]['mean']:+.2f} +- {combined[n]['se']:.2f} vs {n}"
                                 for n in combined)
                     + ".")
        dirs = [direction(c) for c in combined.values()]
        if all(d == "better" for d in dirs):
            lines.append("As on the slide, combining the datasets gives the best overall performance.")
        elif "worse" in dirs:
            lines.append("Unlike the slide, a single mixture beats the combination overall here.")
        else:
            lines.append("The combination is not measurably better than every single mixture overall: "
                         "the slide's claim is not confirmed at this scale.")
    return " ".join(lines)


def base_verdict(ch: dict, early_steps: int, full_steps: int) -> str:
    """Part 4 in words. ch: {split: changes()} of the full-base SFT minus the early-base SFT."""
    seen = ch["test"]
    text = (f"the same SFT from the full base ({full_steps} pretraining steps) minus from the early "
            f"base ({early_steps} steps), on seen tasks with new inputs: {describe(seen)} "
            f"({gain_words(seen)}); on unseen tasks: {describe(ch['unseen_family'])}.")
    return text + " " + read_claim(seen, "the better-pretrained base gives the better instruction-"
                                         "tuned model", "to seen tasks")


def explain(m: dict) -> None:
    """What the numbers show, in words (read off the results, not assumed)."""
    print(f"\nWhat this shows (every arm: {m['config']['steps']} optimizer steps on "
          f"{m['config']['examples_per_arm']} examples; only the mixture changes; changes are means over "
          f"task families +- their standard error):")
    if "families" in m:
        arms, ks = m["families"]["arms"], m["families"]["counts"]
        u = [a["splits"]["unseen_family"] for a in arms]
        print(f"- More training tasks (T0 'Effects of More Training Datasets', NI 'Number of Training "
              f"Tasks'), unseen families with {', '.join(map(str, ks))} training families: answer NLL "
              f"{arrow(a['nll'] for a in u)}, gold reward {arrow(a['gold'] for a in u)}, task score "
              f"{arrow(a['score'] for a in u)}.")
        ch = changes(arms[0]["families"]["unseen_family"], arms[-1]["families"]["unseen_family"])
        print("  " + families_verdict(ch, ks[0], ks[-1], ch["nll"]["n"]))
    if "templates" in m:
        arms, ks = m["templates"]["arms"], m["templates"]["counts"]
        t = [a["splits"]["unseen_template"] for a in arms]
        print(f"- More prompt templates (T0 'Effect of Prompt Variations'), held-out phrasings with "
              f"{', '.join(map(str, ks))} templates per family: task score {arrow(a['score'] for a in t)}, "
              f"gold reward {arrow(a['gold'] for a in t)}, answer NLL {arrow(a['nll'] for a in t)}.")
        print("  " + templates_verdict(
            changes(arms[0]["families"]["unseen_template"], arms[-1]["families"]["unseen_template"]),
            changes(arms[0]["families"]["unseen_family"], arms[-1]["families"]["unseen_family"]),
            ks[0], ks[-1]))
    if "mixtures" in m:
        cats, table = m["mixtures"]["categories"], m["mixtures"]["table"]
        print("- Mixtures ('Comparing Instruction Datasets'), gold reward (task score) on held-out "
              "instances per category:")
        for name, cat in table.items():
            print(f"    {name:22s} " + "  ".join(f"{c} {cat[c]['gold']:.2f} ({cat[c]['score']:.2f})"
                                                 for c in cats)
                  + f"   average {np.mean([cat[c]['gold'] for c in cats]):.2f} "
                    f"({np.mean([cat[c]['score'] for c in cats]):.2f})")
        arms = m["mixtures"]["arms"]
        comb = next(a for a in arms if a["name"] == "combined")
        category = {f.name: f.category for f in task_families()}
        fams = {f for f in comb["families"]["test"] if category.get(f) in cats}
        vs = {a["name"]: paired_change(a["families"]["test"], comb["families"]["test"], "gold", only=fams)
              for a in arms if a is not comb}
        print("  " + mixtures_verdict(table, own_category_margins(arms, cats), vs))
    if "base_model" in m:
        e, f = m["base_model"]["early"], m["base_model"]["full"]
        ch = {s: changes(e["sft"]["families"][s], f["sft"]["families"][s]) for s in SPLITS}
        print(f"- Base model ('Impact of Base Model'): val loss of the bases {e['val_loss']:.2f} "
              f"({e['pretrain_steps']} steps) and {f['val_loss']:.2f} ({f['pretrain_steps']} steps).")
        print("  " + base_verdict(ch, e["pretrain_steps"], f["pretrain_steps"]))
    if "size" in m:
        print("- Model size ('Impact of Model Size'), " + size_verdict(m["size"]["models"]))
    if "schema" in m:
        print("- Natural Instructions schema (which instruction elements help), " + schema_verdict(m["schema"]["arms"]))


def own_category_margins(arms: list[dict], categories: list[str]) -> dict:
    """For each category: the gold reward of the mixture trained on it minus the best other single
    or combined mixture, paired over the category's held-out families (split "test")."""
    category = {f.name: f.category for f in task_families()}
    by_name = {a["name"]: a for a in arms}
    out = {}
    for c in categories:
        own = by_name[f"{c} only"]
        fams = {f for f in own["families"]["test"] if category.get(f) == c}
        rival = max((a for a in arms if a is not own), key=lambda a: a["categories"][c]["gold"])
        ch = paired_change(rival["families"]["test"], own["families"]["test"], "gold", only=fams)
        out[c] = {"mixture": own["name"], "rival": rival["name"], **ch}
    return out


if __name__ == "__main__":
    sys.exit(cli_main(main))
