"""Lesson 07: the reward model r_phi(x, y), and why we ask people for comparisons.

Slides: 000/002 "Step 2: Collect comparison data and train a reward model", 002 "Reward Model
Training" (L_R = -E log sigma(r_phi(x, y_w) - r_phi(x, y_l)), initialised from pi^SFT), and 000
"Human judgments are noisy and miscalibrated" ("instead of asking for direct ratings, ask for
pairwise comparisons, which can be more reliable").

What it shows, on the embedded world (its oracle's gold reward plays the role of the truth that
the simulated annotators see through noise):
1. The slide's R(x, y1) = 8.0 vs R(x, y2) = 1.2 on our own examples: a held-out prompt, its
   responses, r_phi and the gold reward of each (the RM of `python train.py rm`, reused); and,
   per kind of flaw (rude, verbose, wrong, no final period, ...), how often r_phi prefers the
   reference answer to its flawed copy: what the reward model has learned to see.
2. Accuracy against the number of comparisons: fresh reward models trained from pi^SFT on more and
   more ranked prompts, evaluated against the oracle's ordering on held-out prompts.
3. Comparisons vs ratings: the same prompts and the same K responses are either *ranked* by one
   annotator (K-choose-2 comparisons, Bradley-Terry loss) or each *rated* 1..7 by one of several
   miscalibrated annotators (regression, MSE). Same model, same annotator effort (K responses judged
   per prompt); which reward model orders held-out responses better?
   Each reward model gets at least `--min-steps` updates: a small training set is passed over
   several times (the pipeline's RM, on 2000 prompts, uses InstructGPT's single epoch). The
   labels themselves are compared too: how often a comparison, and how often two ratings of the
   same prompt, order a pair like the oracle.
4. Calibration: when r_phi says P(y_i > y_j) = sigma(r_i - r_j) = 0.8, do labelers agree 80% of
   the time?

Things to try: --budgets 25 50 100 200 400 800 (a finer accuracy-vs-comparisons curve: where does it
flatten against the annotators' own ceiling?); --min-steps 0 (one epoch per budget: small budgets then get
very few updates).

Time: about 1 minute (55 s measured) on a quiet 2-core CPU with the pipeline's stages cached; a first run builds
the tokenizer, the pretrained model, SFT and the reward model first (about 4.5 minutes more).

Outputs in <out>/lessons/07_reward_model/: accuracy_vs_comparisons.png, calibration.png,
metrics.json. Reuses <out>/{tokenizer,pretrain,sft,rm} (building them when missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.config import add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.evaluation import clear_sign, gold_pairs, paired_mean_difference  # noqa: E402
from minialign.pipeline import add_run_args, make_run  # noqa: E402
from minialign.plotting import new_figure, plot_calibration, save_figure  # noqa: E402
from minialign.preferences import as_groups  # noqa: E402
from minialign.pipeline import ensure_rm, ensure_sft, noise_ceiling, rating_groups, world_noise  # noqa: E402
from minialign.reward import (QUICK, RMConfig, RewardModel, encode_groups, evaluate_reward_model,  # noqa: E402
                              rewards_of, train_reward_model)
from minialign.world import (agreement, preference_data, preference_pairs, rating_data,  # noqa: E402
                             ratings_to_pairs)

NAME = "07_reward_model"


@dataclasses.dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK."""

    budgets: list[int] = dataclasses.field(default_factory=lambda: [50, 200, 800])
    """Numbers of labelled prompts (K = 4 responses judged each) of the curves, e.g. --budgets 50 200 800
    (--quick: 8 16). Range: budgets >= 1."""
    eval_prompts: int = 200
    """Held-out prompts for the curves (--quick: 16). Range: eval_prompts >= 1."""
    min_steps: int = 40
    """Small training sets are repeated for at least this many steps (--quick: 2).
    Range: min_steps >= 0 (0: one epoch)."""


# --quick: a seconds-long smoke run.
LESSON_QUICK = dict(budgets=[8, 16], eval_prompts=16, min_steps=2)


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


def show_examples(rm: RewardModel, tok, held, n: int = 2) -> list[dict]:
    """Slide 000: R(x, y1) = 8.0 vs R(x, y2) = 1.2 -- our RM's scores of held-out responses."""
    print("\n== 1. r_phi(x, y) on held-out prompts (slide: R(x, y1) = 8.0, R(x, y2) = 1.2) ==")
    shown = []
    for g in held:
        if len(shown) == n:
            break
        if max(g.gold) - min(g.gold) < 0.3:          # pick prompts with a clear good and bad answer
            continue
        scores = rm.score(tok, [g.prompt] * len(g.responses), g.responses)
        print(f"\nx = {g.prompt!r}")
        for i in np.argsort(scores)[::-1]:
            print(f"   r_phi = {scores[i]:+6.2f}   gold = {g.gold[i]:.2f}   y = {g.responses[i]!r}")
        best, worst = int(np.argmax(g.gold)), int(np.argmin(g.gold))
        shown.append({"prompt": g.prompt, "responses": g.responses, "r_phi": scores, "gold": g.gold,
                      "best_by_gold": best, "worst_by_gold": worst,
                      "rm_agrees": bool(scores[best] > scores[worst])})
    print("\n(r_phi is normalised: responses sampled from the SFT model score mean 0, std 1.)")
    return shown


def flaw_accuracy(rm: RewardModel, tok, rankings) -> dict:
    """Per kind of flaw: how often r_phi scores the reference answer above its flawed version.

    The world's candidates are the reference answer and flawed copies of it (world/flaws.py), so
    this says which mistakes the reward model has learned to see, and which it has not.
    """
    groups = as_groups(rankings)
    enc = encode_groups(tok, groups, rm.trunk.config.block_size)
    by_id = {id(g): rk for g, rk in zip(groups, rankings)}
    hits: dict[str, list[float]] = {}
    for e, r in zip(enc, rewards_of(rm, enc, tok.pad_id, next(rm.parameters()).device)):
        rk = by_id[id(e.group)]
        if not rk.flaws or "reference" not in rk.flaws:
            continue
        ref = rk.flaws.index("reference")
        for i, flaw in enumerate(rk.flaws):
            if i != ref and rk.gold[ref] > rk.gold[i]:
                hits.setdefault(flaw, []).append(float(r[ref] > r[i]))
    return {f: {"accuracy": float(np.mean(v)), "pairs": len(v)} for f, v in sorted(hits.items())}


def print_flaws(flaws: dict, rankings) -> None:
    print("\n   which flaws does r_phi see? P(r_phi(reference) > r_phi(flawed copy)):")
    examples = {}
    for rk in rankings:
        for resp, flaw in zip(rk.responses, rk.flaws or []):
            examples.setdefault(flaw, resp)
    for flaw, v in flaws.items():
        print(f"   {flaw:12s} {v['accuracy']:6.1%}  (n = {v['pairs']:3d})   e.g. {examples.get(flaw, '')!r}")


def train_fresh(sft, tok, groups, objective: str, cfg: RMConfig, run, held_enc, held, desc: str) -> dict:
    """A reward model trained from pi^SFT on `groups` with `objective`; its held-out metrics."""
    torch.manual_seed(run.seed)
    rm = RewardModel.from_sft(sft).to(run.device)
    train_reward_model(rm, tok, groups, cfg, device=run.device, objective=objective, seed=run.seed,
                       desc=desc)
    m = evaluate_reward_model(rm, tok, held, run.device, encoded=held_enc)
    return {**{k: m[k] for k in ("accuracy_vs_oracle", "accuracy_vs_annotators", "spearman_vs_gold")},
            "oracle_hits": oracle_hits_per_prompt(rm, tok, held_enc, run.device)}


def oracle_hits_per_prompt(rm, tok, held_enc, device) -> list[float]:
    """Per held-out prompt, the share of its response pairs (different gold) that r_phi orders like the oracle:
    the items of a paired comparison of two reward models on the same prompts."""
    r = rewards_of(rm, held_enc, tok.pad_id, device, normalized=False)
    hits: dict[int, list[float]] = {}
    for gi, better, worse in gold_pairs([e.group for e in held_enc]):
        hits.setdefault(gi, []).append(float(r[gi][better] > r[gi][worse]))
    return [round(float(np.mean(hits[gi])), 4) for gi in sorted(hits)]


def curves(sft, tok, run, budgets, held, rm_cfg: RMConfig, min_steps: int) -> dict:
    """Sections 2 and 3: comparisons and ratings, each at every budget of labelled prompts."""
    held_enc = encode_groups(tok, held, sft.config.block_size)
    noise = world_noise(rm_cfg)
    rankings_raw = preference_data(seed=run.seed, n_prompts=max(budgets), K=rm_cfg.k, noise=noise,
                                   split="train")
    # raters perceive the gold as well as rankers do: Gaussian noise with the sd of the rankers'
    # Gumbel noise, T pi / sqrt(6) (the world's default); only miscalibration and rounding differ
    ratings_raw = rating_data(seed=run.seed, n_prompts=max(budgets), K=rm_cfg.k,
                              noise=noise * math.pi / math.sqrt(6), split="train")
    rankings, ratings = as_groups(rankings_raw), rating_groups(ratings_raw, rm_cfg.k)
    # the labels themselves: how often does each kind of label order a pair like the oracle?
    labels = {"comparisons_agree_with_oracle": agreement(preference_pairs(rankings_raw)),
              "rating_pairs_agree_with_oracle": agreement(ratings_to_pairs(ratings_raw))}
    print(f"  the labels: a comparison agrees with the oracle "
          f"{labels['comparisons_agree_with_oracle']:.1%} of the time; two ratings of the same "
          f"prompt (by different annotators, ties dropped) {labels['rating_pairs_agree_with_oracle']:.1%}")
    out = {"budgets": budgets, "comparisons": [], "ratings": [], "labels": labels}
    for n in budgets:
        # small sets are passed over several times, so that every point gets >= min_steps updates
        epochs = max(1, math.ceil(min_steps * rm_cfg.batch_prompts / n))
        cfg = dataclasses.replace(rm_cfg, epochs=epochs)
        bt = train_fresh(sft, tok, rankings[:n], "bt", cfg, run, held_enc, held, f"BT {n} prompts")
        mse = train_fresh(sft, tok, ratings[:n], "mse", cfg, run, held_enc, held, f"ratings {n} prompts")
        bt.update(prompts=n, labels=sum(len(g.pairs) for g in rankings[:n]), epochs=epochs)
        mse.update(prompts=n, labels=sum(len(g.ratings) for g in ratings[:n]), epochs=epochs)
        out["comparisons"].append(bt)
        out["ratings"].append(mse)
        print(f"  {n:5d} prompts: accuracy vs oracle  comparisons {bt['accuracy_vs_oracle']:.3f}   "
              f"ratings {mse['accuracy_vs_oracle']:.3f}")
    return out


def plot_curves(path: str, res: dict, ceiling: float, main_rm: dict | None) -> str:
    fig, axes = new_figure()
    ax = axes[0][0]
    xs = [c["prompts"] for c in res["comparisons"]]
    ax.plot(xs, [c["accuracy_vs_oracle"] for c in res["comparisons"]], marker="o",
            label="ranked comparisons (Bradley-Terry)")
    ax.plot(xs, [c["accuracy_vs_oracle"] for c in res["ratings"]], marker="s",
            label="absolute ratings 1-7 (MSE)")
    if main_rm:
        ax.scatter([main_rm["prompts"]], [main_rm["accuracy_vs_oracle"]], marker="*", s=150,
                   color="C0", label="the pipeline's RM (train.py rm)")
    ax.axhline(ceiling, color="gray", ls="--", label="annotators vs oracle")
    ax.axhline(0.5, color="gray", ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("labelled prompts (K = 4 responses judged each)")
    ax.set_ylabel("held-out accuracy vs the oracle")
    ax.set_title("reward model accuracy vs amount of feedback", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", NAME)
    t0 = time.perf_counter()
    budgets, n_eval, min_steps = settings.budgets, settings.eval_prompts, settings.min_steps
    rm_cfg = RMConfig(**(QUICK if run.quick else {}))

    print("Lesson 07 -- slides 000/002 'Step 2: Collect comparison data and train a reward model',\n"
          "002 'Reward Model Training', 000 'Human judgments are noisy and miscalibrated'.")
    sft, tok = ensure_sft(run)
    rm, _ = ensure_rm(run)
    rm_metrics = _read_json(os.path.join(run.stage_dir("rm"), "metrics.json"))
    held_rankings = preference_data(seed=run.seed, n_prompts=n_eval, K=rm_cfg.k,
                                    noise=world_noise(rm_cfg), split="test")
    held = as_groups(held_rankings)
    examples = show_examples(rm, tok, held)
    flaws = flaw_accuracy(rm, tok, held_rankings)
    print_flaws(flaws, held_rankings)
    full = evaluate_reward_model(rm, tok, held, run.device)   # the pipeline's RM on this held-out set
    main_rm = None
    if rm_metrics and rm_metrics.get("data") == "world":
        main_rm = {"prompts": rm_metrics["n_train_prompts"], "accuracy_vs_oracle": full["accuracy_vs_oracle"]}

    print(f"\n== 2-3. accuracy vs number of labelled prompts: comparisons vs ratings "
          f"({len(held)} held-out prompts) ==")
    res = curves(sft, tok, run, budgets, held, rm_cfg, min_steps)
    ceiling = noise_ceiling(held, world_noise(rm_cfg))
    plot_curves(os.path.join(out_dir, "accuracy_vs_comparisons.png"), res,
                ceiling["annotators_vs_oracle"], main_rm)

    print("\n== 4. calibration of the pipeline's reward model ==")
    plot_calibration(os.path.join(out_dir, "calibration.png"), full["calibration"],
                     title="reward model calibration (held-out annotator labels)")
    for b in full["calibration"]["bins"]:
        print(f"  predicted {b['predicted']:.2f} -> labelers agreed {b['observed']:.2f}  (n = {b['count']})")

    metrics = {"examples": examples, "flaws": flaws, "curves": res, "noise_ceiling": ceiling, "pipeline_rm": full,
               "pipeline_rm_train_prompts": main_rm["prompts"] if main_rm else None,
               "seconds": round(time.perf_counter() - t0, 1)}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    conclude(res, ceiling, full, main_rm, flaws)
    print(f"\nfigures and metrics.json in {out_dir} ({metrics['seconds']:.0f}s)")
    return 0


def conclude(res: dict, ceiling: dict, full: dict, main_rm: dict | None, flaws: dict) -> None:
    """The lesson's findings in plain words (each sentence follows the numbers, not the slide)."""
    bt, rt, first = res["comparisons"][-1], res["ratings"][-1], res["comparisons"][0]
    n = bt["prompts"]
    print("\n== What this shows ==")
    print(f"- The annotators are noisy: their own labels agree with the oracle on "
          f"{ceiling['annotators_vs_oracle']:.1%} of held-out pairs (Bradley-Terry predicts "
          f"{ceiling['noise_ceiling_expected']:.1%} at noise T = {ceiling['annotator_noise']}). "
          f"A reward model that knew the gold reward would score about that against their labels.")
    if main_rm:
        print(f"- The pipeline's reward model ({main_rm['prompts']} ranked prompts) orders held-out "
              f"pairs like the oracle {full['accuracy_vs_oracle']:.1%} of the time and like the "
              f"annotators {full['accuracy_vs_annotators']:.1%}; Spearman correlation with the gold "
              f"reward {full['spearman_vs_gold']:.2f}."
              + (" It orders pairs like the oracle MORE often than its own annotators do: training "
                 "on many comparisons averages their noise away."
                 if full["accuracy_vs_oracle"] > ceiling["annotators_vs_oracle"] else ""))
    seen = [f for f, v in flaws.items() if v["accuracy"] >= 0.8]
    missed = [f for f, v in flaws.items() if v["accuracy"] < 0.6]
    if seen or missed:
        print(f"- It reliably prefers the reference to a copy that is {', '.join(seen) or '(none)'}; "
              f"it does not see {', '.join(missed) or '(nothing: every flaw above 60%)'}"
              + (" -- a blind spot, or a shortcut it learned from the data, that PPO can exploit "
                 "(lesson 08)." if missed else "."))
    pad = flaws.get("authoritative")
    if pad and pad["accuracy"] < 0.5:
        print(f"- It scores the copy padded with confident claims (\"Everyone knows this.\") ABOVE the reference "
              f"in {1 - pad['accuracy']:.0%} of pairs, though the oracle ranks it lower: the annotators' bias "
              f"(world.AnnotatorBias: they like answers that sound sure), learned from their comparisons. "
              f"This is what PPO exploits in lesson 08.")
    trend = "More comparisons, a better reward model" if bt["accuracy_vs_oracle"] > \
        first["accuracy_vs_oracle"] else "Here more comparisons did NOT help"
    print(f"- {trend}: {first['prompts']} ranked prompts ({first['labels']} comparisons) give "
          f"{first['accuracy_vs_oracle']:.1%} accuracy vs the oracle, {n} prompts "
          f"({bt['labels']} comparisons) give {bt['accuracy_vs_oracle']:.1%}.")
    lab = res["labels"]
    why = ("each annotator's offset and scale leak into ratings; a comparison cancels them"
           if lab["comparisons_agree_with_oracle"] > lab["rating_pairs_agree_with_oracle"]
           else "on this sample the ratings were the more reliable labels")
    print(f"- Comparisons vs ratings. The labels: a comparison orders a pair like the oracle "
          f"{lab['comparisons_agree_with_oracle']:.1%} of the time, two ratings by different, "
          f"differently calibrated annotators {lab['rating_pairs_agree_with_oracle']:.1%}: {why}.")
    d = paired_mean_difference(bt["oracle_hits"], rt["oracle_hits"])
    verdict = {1: "comparisons win", -1: "ratings win",
               0: "no clear difference: within two standard errors"}[clear_sign(d)]
    wins = sum(b["accuracy_vs_oracle"] > r["accuracy_vs_oracle"]
               for b, r in zip(res["comparisons"], res["ratings"]))
    print(f"  The reward models ({n} prompts, the same K responses judged): ranking them gives "
          f"{bt['accuracy_vs_oracle']:.1%} vs the oracle, rating them 1-7 gives "
          f"{rt['accuracy_vs_oracle']:.1%}; per held-out prompt {100 * d['mean']:+.1f} ± {100 * d['se']:.1f} "
          f"points over {d['n']} prompts ({verdict}; comparisons ahead at {wins} of "
          f"{len(res['comparisons'])} budgets).")
    print(f"- Calibration: expected calibration error {full['calibration']['ece']:.3f} "
          f"(0 = when r_phi says 80%, labelers agree 80% of the time).")


def _read_json(path: str):
    import json
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


if __name__ == "__main__":
    sys.exit(cli_main(main))
