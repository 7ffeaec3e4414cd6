"""Lesson 12: reasoning with verifiable rewards: "time to think", GRPO, and pass@k before and after.

Slides: 002 "Current Developments": reasoning LLMs, chain of thought brought into training, "additional tokens
to give the model time to think", and RL on domains "where the correct answer can be programmatically derived".
Read `minialign/world/reasoning.py` (the problems, both demonstration forms, the checker) and `minialign/grpo.py`
(DeepSeekMath Eq. 3-4, step by step) beside it; docs/grpo.md has the metric glossary and the pitfalls.

What it builds first (all cached in the run folder, so `python train.py` before it saves their time): the base
model (`pretrain`), the pipeline's `sft_reasoning` model (SFT on worked steps) and its `grpo` policy. Then:
(a) the same SFT on answer-only demonstrations of the same problems, at the same budget (steps x batch): held-out
    accuracy (greedy, exact answers) of both forms on the same problems, the difference paired by problem;
(b) GRPO from the worked-steps model (the `grpo` stage): held-out pass@1 over training, and pass@k for k = 1..16
    before and after (RL sharpens the distribution: pass@1 rises toward the SFT model's pass@k);
(c) the response length and the share of groups whose G rewards are all equal, over training;
(d) PPO with a learned critic (ppo.train_ppo, a ValueModel from the SFT model, GAE) on the same verifiable reward,
    against GRPO with as many samples per iteration and iterations: held-out pass@1 per sample and per second;
(e) GRPO with beta = 0 (no KL term, as DAPO) against the stage's beta: held-out pass@1 and the KL to pi_ref.
Parts (d) and (e) train their three policies (GRPO at both betas, PPO) at a third of the stage's problems per
iteration and half its iterations (--compare-prompts-per-iteration, --compare-iterations; 0 and 0: three runs of
the stage's size), so that the lesson fits in 5 minutes.
Every verdict is computed from the numbers and their standard errors over problems.

Run:    python lessons/12_reasoning_rl.py [--quick] [--out DIR]
Writes: <out>/lessons/12_reasoning_rl/{metrics.json, time_to_think.png, pass_at_k.png, training.png,
        grpo_vs_ppo.png}, the PPO run in <out>/lessons/12_reasoning_rl/ppo_8x30/, and the stages
        <out>/sft_reasoning_answer/, <out>/grpo_8x30/ and <out>/grpo_8x30_beta0/ (reused by a second run; the
        names carry the budget of parts (d) and (e)).
Run time: about 3.5 minutes (199 s measured) on a quiet 2-core CPU with the pipeline's pretrain, sft_reasoning
and grpo stages cached: the answer-only SFT and the three runs of parts (d) and (e). A first run builds the
tokenizer, the pretrained model and the two stages first (about 6 minutes more on a quiet machine).
--quick: about 20 s. The numbers it measured are in the README ("Measured on the default run").

Things to try: python train.py grpo --iterations 150 (more GRPO: does pass@1 keep rising? here it
plateaus); --beta-variant 0.2 (part (e) against a strong KL term instead of none).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign import grpo, sft  # noqa: E402
from minialign.config import add_dataclass_args, cli_main, from_args, read_json, write_json  # noqa: E402
from minialign.evaluation import clear_sign, evaluate_reasoning, paired_difference, paired_mean_difference  # noqa: E402
from minialign.pipeline import (add_run_args, ensure_grpo, ensure_sft_reasoning, grpo_problems, make_run,  # noqa: E402
                                reasoning_held_out)
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.ppo import PPOConfig, ValueModel, place_scores, train_ppo  # noqa: E402
from minialign.world import verifiable_reward  # noqa: E402
from minialign.world.reasoning import family_names  # noqa: E402

LESSON = "12_reasoning_rl"


@dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). The SFT and GRPO settings are the pipeline's (ReasoningSFTConfig, GRPOConfig)."""

    beta_variant: float = 0.0
    """The KL weight of part (e)'s second GRPO run, beside the stage's own beta (GRPOConfig.beta).
    Range: beta_variant >= 0."""
    ppo_vf_coef: float = 0.1
    """PPO's value-loss weight in part (d) (ppo.py's default). Range: ppo_vf_coef >= 0."""
    ppo_lam: float = 0.95
    """GAE lambda of part (d)'s PPO (ppo.py's default). Range: 0 <= ppo_lam <= 1."""
    n_shown: int = 3
    """Held-out problems whose answers are printed before and after GRPO (--quick: 1). Range: n_shown >= 0."""
    compare_prompts_per_iteration: int = 8
    """Parts (d) and (e) train three policies from the same SFT model (GRPO at the stage's beta, GRPO at
    beta_variant, PPO) with this many problems per iteration, a third of the stage's, so that the lesson fits in
    5 minutes; 0: the stage's own settings (the stage's run is then reused).
    Range: compare_prompts_per_iteration >= 0."""
    compare_iterations: int = 30
    """Iterations of the three runs of parts (d) and (e); 0: the stage's. Range: compare_iterations >= 0."""


# --quick: a seconds-long smoke run (parts (d) and (e) at the quick stage's own size).
LESSON_QUICK = dict(n_shown=1, compare_prompts_per_iteration=0, compare_iterations=0)


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


# ----------------------------------------------------------------------------------------------------------------
# Verdicts: computed from the numbers, never written in advance
def two_se(se: float) -> float:
    """The margin a difference must clear to count as more than noise: two standard errors."""
    return 2.0 * se


def verdict_time_to_think(answer: dict, worked: dict, split: str = "test") -> dict:
    """(a) Worked steps against answer-only on the same held-out problems (greedy accuracy): the paired difference
    and its standard error; the issue's bar is 10 points."""
    a, w = answer["splits"][split], worked["splits"][split]
    idx = [i for i, s in enumerate(answer["problem_splits"]) if s == split]
    diff, se = paired_difference([answer["correct_counts"][i] for i in idx],
                                 [worked["correct_counts"][i] for i in idx], 1, 1)
    return {"split": split, "answer": a["pass@1"], "answer_se": a["pass@1_se"], "worked": w["pass@1"],
            "worked_se": w["pass@1_se"], "difference": diff, "difference_se": se,
            "worked_better": bool(diff > two_se(se)), "by_10_points": bool(diff >= 0.10),
            "answer_better": bool(diff < -two_se(se))}


def verdict_grpo(before: dict, after: dict, gain: float, gain_se: float, ks: list[int]) -> dict:
    """(b) GRPO's held-out pass@1 gain over its SFT start (paired), against the issue's bar: 10 points or half the
    SFT model's pass@1 -> pass@8 gap, whichever is smaller; and whether the top-k pass rate moved."""
    k8 = 8 if 8 in ks else ks[-1]
    gap = before[f"pass@{k8}"] - before["pass@1"]
    bar = min(0.10, gap / 2)
    top = ks[-1]
    return {"gain": gain, "gain_se": gain_se, "sft_pass1": before["pass@1"], "grpo_pass1": after["pass@1"],
            f"sft_pass{k8}": before[f"pass@{k8}"], "gap": gap, "bar": bar,
            "meets_bar": bool(gain >= bar and gain > two_se(gain_se)), "significant": bool(gain > two_se(gain_se)),
            "k_top": top, "sft_pass_top": before[f"pass@{top}"], "grpo_pass_top": after[f"pass@{top}"],
            "top_change": after[f"pass@{top}"] - before[f"pass@{top}"],
            "top_change_se": float(np.hypot(before[f"pass@{top}_se"], after[f"pass@{top}_se"]))}


def verdict_speed(curves: dict, before: dict, after: dict) -> dict:
    """(d) GRPO against PPO from the same start, at equal samples: the held-out pass@1 gain (each run's final
    evaluation, the same problems and sampling seed as the start's), per 1000 samples and per minute of training
    (sampling + scoring + log-probs + updates; evaluations excluded). before, after["GRPO"], after["PPO"]:
    evaluations with per-problem `correct_counts` of `n_samples`. Each comparison is paired by problem, with its
    standard error: per sample, the difference of the final pass@1s (equal samples); per minute, of each problem's
    gain divided by its run's minutes."""
    pass1 = lambda ev: np.asarray(ev["correct_counts"]) / ev["n_samples"]   # per problem  # noqa: E731
    start = pass1(before)
    final = {name: pass1(after[name]) for name in curves}
    minutes = {name: max(c["seconds"][-1], 1e-9) / 60 for name, c in curves.items()}
    out = {}
    for name, c in curves.items():
        gain = paired_mean_difference(final[name], start)
        out[name] = {"gain": gain["mean"], "gain_se": gain["se"], "samples": c["samples"][-1],
                     "seconds": c["seconds"][-1], "gain_per_1000_samples": 1000 * gain["mean"] / max(c["samples"][-1], 1),
                     "gain_per_minute": gain["mean"] / minutes[name],
                     "seconds_per_iteration": c["seconds"][-1] / max(c["iteration"][-1], 1)}
    g, p = out["GRPO"], out["PPO"]
    sample_diff = paired_mean_difference(final["GRPO"], final["PPO"])
    minute_diff = paired_mean_difference((final["GRPO"] - start) / minutes["GRPO"],
                                         (final["PPO"] - start) / minutes["PPO"])
    words = {1: "more than", -1: "less than", 0: "as much as (within two standard errors)"}
    out["per_sample"], out["per_sample_difference"] = words[clear_sign(sample_diff)], sample_diff
    out["per_second"], out["per_minute_difference"] = words[clear_sign(minute_diff)], minute_diff
    out["grpo_cheaper_per_iteration"] = bool(g["seconds_per_iteration"] < p["seconds_per_iteration"])
    return out


def verdict_beta(with_kl: dict, without: dict) -> dict:
    """(e) beta > 0 against beta = 0: the paired difference in held-out pass@1 and the KL each policy drifted."""
    diff, se = paired_difference(with_kl["after"]["correct_counts"], without["after"]["correct_counts"],
                                 with_kl["after"]["n_samples"], without["after"]["n_samples"])
    return {"beta": with_kl["beta"], "beta_variant": without["beta"], "pass1": with_kl["after"]["pass@1"],
            "pass1_variant": without["after"]["pass@1"], "difference": diff, "difference_se": se,
            "kl": with_kl["kl"], "kl_variant": without["kl"],
            "variant_drifts_further": bool(without["kl"] > with_kl["kl"]),
            "accuracy_differs": bool(abs(diff) > two_se(se))}


# ----------------------------------------------------------------------------------------------------------------
# (a) SFT on both forms
def sft_forms(run) -> dict:
    """The pipeline's worked-steps model and the same SFT on answer-only demonstrations (its own stage folder);
    each stage's metrics.json holds its greedy held-out evaluation."""
    cfg = sft.ReasoningSFTConfig(**(sft.REASONING_QUICK if run.quick else {}))
    worked, tok = ensure_sft_reasoning(run, cfg)
    ensure_sft_reasoning(run, replace(cfg, form="answer"), stage="sft_reasoning_answer")
    held = reasoning_held_out(run, cfg.eval_per_family, family_names(cfg.families))
    evals = {}
    for form, stage in (("answer", "sft_reasoning_answer"), ("worked", "sft_reasoning")):
        evals[form] = read_json(os.path.join(run.stage_dir(stage), "metrics.json"))["eval"]
        evals[form]["problem_splits"] = [ex.split for ex in held]
    return {"models": worked, "tok": tok, "evals": evals, "config": cfg}


# ----------------------------------------------------------------------------------------------------------------
# (d) PPO with a learned critic on the verifiable reward
def verifiable_reward_fn(problems: list):
    """PPO's reward_fn: r = 1 on the last response token when the response ended and its answer is exact."""
    by_prompt = {p.prompt: p for p in problems}

    def reward_fn(r):
        scores = torch.tensor([verifiable_reward(by_prompt[p], t, e)
                               for p, t, e in zip(r.prompts, r.responses, r.ended.tolist())])
        return place_scores(scores, r.mask, "end"), {"correct": scores}
    return reward_fn


def compare_config(g: grpo.GRPOConfig, settings: LessonConfig) -> grpo.GRPOConfig:
    """The GRPO settings of parts (d) and (e): the stage's, with the lesson's smaller budget."""
    return replace(g, prompts_per_iteration=settings.compare_prompts_per_iteration or g.prompts_per_iteration,
                   iterations=settings.compare_iterations or g.iterations)


def compare_stage(stage: grpo.GRPOConfig, g: grpo.GRPOConfig, beta: float) -> str:
    """The stage folder of a part (d)/(e) GRPO run at `beta`: `grpo` itself when it is the stage's run, else named by
    its budget (problems x iterations), so that a run with other settings is never mistaken for it."""
    if g == stage and beta == stage.beta:
        return "grpo"
    budget = "" if g == stage else f"_{g.prompts_per_iteration}x{g.iterations}"
    return f"grpo{budget}" + ("" if beta == stage.beta else f"_beta{beta:g}")


def ppo_config(g: grpo.GRPOConfig) -> PPOConfig:
    """PPO sized like GRPO: the same samples per iteration (prompts x G), iterations, epochs, minibatches, learning
    rate, temperature, budget and KL weight (in the reward, per token, as PPO puts it); the raw 0/1 reward."""
    return PPOConfig(iterations=g.iterations, batch_size=g.prompts_per_iteration * g.group_size,
                     n_minibatches=g.n_minibatches, ppo_epochs=g.ppo_epochs, lr=g.lr, temperature=g.temperature,
                     max_new_tokens=g.max_new_tokens, beta=g.beta, missing_end="none", normalize_score=False,
                     max_grad_norm=g.max_grad_norm, ckpt_every=g.iterations, n_samples_shown=0)


def run_ppo(run, start, tok, problems: list, held: list, g: grpo.GRPOConfig, settings: LessonConfig,
            out_dir: str) -> dict:
    """PPO from the SFT model, V initialised from the SFT model's trunk with a zero head; held-out pass@1 (2 samples
    per problem, as the grpo stage measures it) every g.eval_every iterations, and at the end the grpo stage's final
    evaluation (g.eval_samples per problem, the same seed): metrics["heldout_after"]."""
    cfg = replace(ppo_config(g), vf_coef=settings.ppo_vf_coef, lam=settings.ppo_lam)
    policy, ref = copy.deepcopy(start), copy.deepcopy(start)
    value = ValueModel(copy.deepcopy(start))
    eval_fn = lambda m: {"pass@1": evaluate_reasoning(m, tok, held, n_samples=2, temperature=g.temperature,  # noqa
                                                      max_new_tokens=g.max_new_tokens, seed=run.seed + 2)["pass@1"]}
    m = train_ppo(policy, ref, None, value, tok, problems, cfg, out_dir, run.device,
                  reward_fn=verifiable_reward_fn(problems), gold_fn=lambda p, t: verifiable_reward(p, t),
                  seed=run.seed, eval_fn=eval_fn, eval_every=g.eval_every, desc="ppo (critic)")
    # the final evaluation the grpo stage makes of its policy: the same problems, samples per problem and seed
    m["heldout_after"] = evaluate_reasoning(policy.eval(), tok, held, n_samples=g.eval_samples, ks=[1],
                                            temperature=g.temperature, max_new_tokens=g.max_new_tokens,
                                            seed=run.seed + 1)
    return m


def curve(history: dict, samples_per_iteration: int) -> dict:
    """Held-out pass@1 at each evaluation, with the samples drawn and the training seconds spent before it."""
    per_it = np.sum([history[k] for k in history if k.startswith("t_")], axis=0)
    cum = np.concatenate([[0.0], np.cumsum(per_it)])
    its = history["eval"]["iteration"]
    return {"iteration": its, "pass@1": history["eval"]["pass@1"],
            "samples": [i * samples_per_iteration for i in its], "seconds": [float(cum[i]) for i in its]}


# ----------------------------------------------------------------------------------------------------------------
# Figures
def plot_time_to_think(evals: dict, path: str) -> str:
    """Held-out accuracy per family and split, answer-only beside worked steps, with standard errors."""
    groups = [("split", s) for s in evals["worked"]["splits"]] + [("family", f) for f in evals["worked"]["families"]]
    fig, axes = new_figure(width=1.0 * len(groups) + 2.5, height=3.6)
    ax = axes[0, 0]
    x = np.arange(len(groups))
    for i, form in enumerate(("answer", "worked")):
        vals = [evals[form]["splits" if kind == "split" else "families"][name] for kind, name in groups]
        ax.bar(x + (i - 0.5) * 0.4, [v["pass@1"] for v in vals], 0.4, yerr=[v["pass@1_se"] for v in vals],
               capsize=3, color=f"C{i}", label={"answer": "answer only", "worked": "worked steps"}[form])
    ax.set_xticks(x)
    ax.set_xticklabels([name for _, name in groups])
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_ylim(0, 1)
    ax.set_title("time to think: the same problems, the same SFT budget")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_pass_at_k(runs: dict, ks: list[int], path: str) -> str:
    """pass@k against k for the SFT start and each GRPO policy (one standard error over problems)."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    for i, (name, ev) in enumerate(runs.items()):
        ax.errorbar(ks, [ev[f"pass@{k}"] for k in ks], yerr=[ev[f"pass@{k}_se"] for k in ks], marker="o", capsize=3,
                    color="black" if i == 0 else f"C{i - 1}", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("held-out pass@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_training(histories: dict, path: str) -> str:
    """Held-out pass@1, response length, the all-equal-group share and KL over the iterations, per run."""
    panels = [("pass@1", "held-out pass@1"), ("response_length", "response length (tokens)"),
              ("frac_equal_groups", "groups with all-equal rewards"), ("kl", "KL(pi_theta || pi_ref), nats")]
    fig, axes = new_figure(ncols=4, width=3.6, height=3.0)
    for ax, (key, title) in zip(axes[0], panels):
        for i, (name, h) in enumerate(histories.items()):
            if key == "pass@1":
                ax.plot(h["eval"]["iteration"], h["eval"]["pass@1"], marker="o", color=f"C{i}", label=name)
            elif key in h:
                ax.plot(h["iteration"], h[key], color=f"C{i}", label=name, alpha=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def plot_speed(curves: dict, path: str) -> str:
    """Held-out pass@1 against samples drawn and against training seconds, GRPO and PPO."""
    fig, axes = new_figure(ncols=2, width=4.4)
    for i, (name, c) in enumerate(curves.items()):
        for ax, key in zip(axes[0], ("samples", "seconds")):
            ax.plot(c[key], c["pass@1"], marker="o", color=f"C{i}", label=name)
    for ax, label in zip(axes[0], ("samples drawn", "training seconds (evaluation excluded)")):
        ax.set_xlabel(label)
        ax.set_ylabel("held-out pass@1")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Printing the verdicts
def say_time_to_think(v: dict) -> None:
    print(f"\n=== (a) time to think: held-out accuracy, same problems, same SFT budget ({v['split']} split) ===")
    print(f"  answer only  {v['answer']:.3f} ± {v['answer_se']:.3f}\n  worked steps {v['worked']:.3f} ± "
          f"{v['worked_se']:.3f}\n  difference   {v['difference']:+.3f} ± {v['difference_se']:.3f} (paired by problem)")
    if v["worked_better"]:
        print("  Worked steps beat answer-only beyond two standard errors" +
              (", by at least 10 points." if v["by_10_points"] else ", by less than 10 points."))
    elif v["answer_better"]:
        print("  Answer-only beat worked steps here: at this budget the tiny model did not learn the steps well "
              "enough for them to pay.")
    else:
        print("  No difference beyond two standard errors at this budget.")


def say_grpo(v: dict) -> None:
    print(f"\n=== (b) GRPO from the worked-steps model: held-out pass@1 {v['sft_pass1']:.3f} -> {v['grpo_pass1']:.3f} "
          f"({v['gain']:+.3f} ± {v['gain_se']:.3f}, paired) ===")
    print(f"  the bar: min(10 points, half the SFT model's pass@1 -> pass@8 gap of {v['gap']:.3f}) = {v['bar']:.3f}: "
          + ("met." if v["meets_bar"] else "not met" + (" (the gain is not beyond two standard errors)."
                                                          if not v["significant"] else ".")))
    sharpened = v["significant"] and abs(v["top_change"]) <= two_se(v["top_change_se"])
    print(f"  pass@{v['k_top']}: {v['sft_pass_top']:.3f} -> {v['grpo_pass_top']:.3f} ({v['top_change']:+.3f} ± "
          f"{v['top_change_se']:.3f}): " + ("RL sharpened what the SFT model could already do: pass@1 rose, the "
                                            "ceiling of many tries did not move beyond two standard errors."
                                            if sharpened else "compare with pass@1 above."))


def say_speed(v: dict, budget: str = "") -> None:
    print("\n=== (d) GRPO (group baseline) against PPO (learned critic), same reward, samples and iterations ===")
    if budget:
        print(f"  both at {budget}")
    for name in ("GRPO", "PPO"):
        s = v[name]
        print(f"  {name:4s}: held-out pass@1 gain {s['gain']:+.3f} ± {s['gain_se']:.3f} after {s['samples']} samples "
              f"and {s['seconds']:.0f}s of training ({s['seconds_per_iteration']:.2f} s/iteration): "
              f"{s['gain_per_1000_samples']:+.3f} per 1000 samples, {s['gain_per_minute']:+.3f} per minute")
    ds, dm = v["per_sample_difference"], v["per_minute_difference"]
    print(f"  GRPO gains {v['per_sample']} PPO per sample (GRPO - PPO at equal samples {ds['mean']:+.3f} ± "
          f"{ds['se']:.3f}) and {v['per_second']} PPO per second ({dm['mean']:+.3f} ± {dm['se']:.3f} per minute), "
          f"paired over {ds['n']} problems; a GRPO iteration costs {'less' if v['grpo_cheaper_per_iteration'] else 'more'} "
          f"than a PPO one, which also runs and trains the value model.\n  Seconds are each run's own, timed when it "
          f"was built: on a shared machine, compare them only when both ran alone.")


def say_beta(v: dict, budget: str = "") -> None:
    print(f"\n=== (e) beta = {v['beta']:g} against beta = {v['beta_variant']:g} ===")
    if budget:
        print(f"  both at {budget}")
    print(f"  held-out pass@1 {v['pass1']:.3f} vs {v['pass1_variant']:.3f} ({v['difference']:+.3f} ± "
          f"{v['difference_se']:.3f}); KL to pi_ref (last iterations) {v['kl']:.2f} vs {v['kl_variant']:.2f} nats")
    print("  " + ("Without the KL term the policy drifted further from pi_ref" if v["variant_drifts_further"] else
                  "The KL term did not keep the policy closer here") +
          ("; the accuracies differ beyond two standard errors." if v["accuracy_differs"] else
           "; the accuracies do not differ beyond two standard errors."))


def print_answers(metrics: dict, n: int) -> None:
    s = metrics.get("samples", {})
    for before, after in list(zip(s.get("before", []), s.get("after", [])))[:n]:
        print(f"  {before['prompt']!r}\n    SFT  ({before['reward']:.0f}): {before['response']!r}\n"
              f"    GRPO ({after['reward']:.0f}): {after['response']!r}")


# ----------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", LESSON)
    os.makedirs(out_dir, exist_ok=True)
    t_start = time.perf_counter()
    # (a) both forms of SFT at the same budget
    a = sft_forms(run)
    time_to_think = verdict_time_to_think(a["evals"]["answer"], a["evals"]["worked"])
    # (b), (c) the pipeline's GRPO
    gcfg = grpo.GRPOConfig(**(grpo.QUICK if run.quick else {}))
    ensure_grpo(run, gcfg)
    g = read_json(os.path.join(run.stage_dir("grpo"), "metrics.json"))
    h = g["heldout"]
    grpo_verdict = verdict_grpo(h["sft"], h["grpo"], h["pass@1_gain"], h["pass@1_gain_se"], h["ks"])
    # (d), (e) at the lesson's budget: GRPO at the stage's beta and at beta_variant, and PPO with a critic
    t0 = time.perf_counter()
    ccfg = compare_config(gcfg, settings)
    stages = {b: compare_stage(gcfg, ccfg, b) for b in (gcfg.beta, settings.beta_variant)}
    for b, stage in stages.items():
        ensure_grpo(run, replace(ccfg, beta=b), stage=stage)
    gc, gc0 = (read_json(os.path.join(run.stage_dir(stages[b]), "metrics.json"))
               for b in (gcfg.beta, settings.beta_variant))
    start, tok = a["models"], a["tok"]
    held = reasoning_held_out(run, ccfg.eval_problems, family_names(ccfg.families), hard=False)
    ppo_dir = os.path.join(out_dir, "ppo" if ccfg == gcfg else f"ppo_{ccfg.prompts_per_iteration}x{ccfg.iterations}")
    ppo_m = run_ppo(run, start, tok, grpo_problems(run, ccfg), held, ccfg, settings, ppo_dir)
    t_compare = time.perf_counter() - t0
    per_it = ccfg.prompts_per_iteration * ccfg.group_size
    curves = {"GRPO": curve(gc["history"], per_it), "PPO": curve(ppo_m["history"], per_it)}
    speed = verdict_speed(curves, gc["heldout"]["sft"], {"GRPO": gc["heldout"]["grpo"], "PPO": ppo_m["heldout_after"]})
    beta = verdict_beta({"beta": gcfg.beta, "after": gc["heldout"]["grpo"], "kl": gc["kl"]},
                        {"beta": settings.beta_variant, "after": gc0["heldout"]["grpo"], "kl": gc0["kl"]})

    say_time_to_think(time_to_think)
    say_grpo(grpo_verdict)
    print_answers(g, settings.n_shown)
    print(f"\n=== (c) over training: response length {g['initial']['response_length']:.1f} -> "
          f"{g['response_length']:.1f} tokens; groups with all-equal rewards (no gradient) "
          f"{g['history']['frac_equal_groups'][0]:.2f} -> {g['frac_equal_groups']:.2f} (mean of the last five) ===")
    budget = (f"{ccfg.prompts_per_iteration} problems x {ccfg.group_size} samples per iteration, {ccfg.iterations} "
              f"iterations" + ("" if ccfg == gcfg else f" (the stage: {gcfg.prompts_per_iteration} problems, "
                                                         f"{gcfg.iterations} iterations)"))
    say_speed(speed, budget)
    say_beta(beta, budget)

    paths = [plot_time_to_think(a["evals"], os.path.join(out_dir, "time_to_think.png")),
             plot_pass_at_k({"SFT (worked steps)": h["sft"], "GRPO (the stage)": h["grpo"],
                             f"GRPO beta={gcfg.beta:g} ({stages[gcfg.beta]})": gc["heldout"]["grpo"],
                             f"GRPO beta={settings.beta_variant:g} ({stages[settings.beta_variant]})":
                                 gc0["heldout"]["grpo"]}, h["ks"], os.path.join(out_dir, "pass_at_k.png")),
             plot_training({"GRPO (the stage)": g["history"],
                            f"GRPO beta={gcfg.beta:g} ({stages[gcfg.beta]})": gc["history"],
                            f"GRPO beta={settings.beta_variant:g} ({stages[settings.beta_variant]})": gc0["history"],
                            "PPO (critic)": {**ppo_m["history"], "kl": ppo_m["history"].get("kl", [])}},
                           os.path.join(out_dir, "training.png")),
             plot_speed(curves, os.path.join(out_dir, "grpo_vs_ppo.png"))]
    metrics = {"time_to_think": time_to_think, "grpo": grpo_verdict, "grpo_vs_ppo": speed, "beta": beta,
               "curves": curves, "pass_at_k": {"ks": h["ks"], "sft": {k: h["sft"][k] for k in h["sft"]
                                                                       if k.startswith("pass@")},
                                               "grpo": {k: h["grpo"][k] for k in h["grpo"] if k.startswith("pass@")}},
               "over_training": {k: g["history"][k] for k in ("iteration", "response_length", "frac_equal_groups")},
               "sft_config": asdict(a["config"]), "grpo_config": asdict(gcfg), "compare_config": asdict(ccfg),
               "compare_stages": stages, "settings": asdict(settings),
               "seconds": {"compare": round(t_compare, 1), "total": round(time.perf_counter() - t_start, 1)}}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(f"\nfigures: {', '.join(paths)}\nlesson done in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
