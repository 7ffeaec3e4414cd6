"""Lesson 10: DPO against PPO on the reward-KL frontier, and win rates against the SFT model.

Slides: 000 "Direct Preference Optimization" and "Most LLMs are now post-trained using DPO rather
than RLHF"; 002 "Direct Preference Optimization", "DPO versus Baselines" and "Comparison between PPO
and DPO". Read `minialign/dpo.py` and `minialign/evaluation.py` beside it.

The DPO paper's controlled-sentiment experiment (its Figure 2, left), reproduced in our world:
1. x: the world's "sentiment" prompts (review and story requests; `--prompts instruction` uses the
   instruction prompts instead). The oracle's gold reward prefers positive, on-topic, well-formed
   answers: it plays the paper's sentiment classifier.
2. pi_ref = the SFT model (reused from <out>/sft). Preference pairs are built as in the paper: sample
   K responses per training prompt from pi_ref and label every pair by the gold reward (y_w = the
   response with the higher gold).
3. DPO, one run per beta (`dpo.train_dpo`), evaluated every few steps.
4. PPO, one run per KL coefficient (`ppo.train_ppo`), rewarded by the gold reward itself: the paper's
   "PPO-GT", PPO's best case (no reward-model error; online samples). Evaluated every few iterations.
5. Every evaluation: mean gold reward and KL(pi || pi_ref) (mean summed token k1) of samples on
   held-out prompts. Plotted against each other, they are the reward-KL frontier: a method is better
   when it reaches more reward for the same KL ("DPO provides higher expected reward compared to PPO").
6. The win rate of each final policy against the SFT model on the held-out prompts, judged by the
   oracle, ties counting half, with a bootstrap 95% interval (the slide's right panel, with the
   oracle in GPT-4's place).
7. DPO's implicit reward margins beta * [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)] during training.

Things to try: --prompts instruction (the pipeline's harder prompts, where correctness needs knowledge
no preference supplies); --betas 0.01 0.05 0.1 0.5 1 2 (how far each beta moves in the same steps).

Time: about 1.5 minutes on a quiet 2-core CPU once the SFT model is cached; a first run builds the
tokenizer, the pretrained model and SFT first (about 3.5 minutes).

Run:    python lessons/10_dpo.py [--quick] [--out DIR] [--betas 0.05 0.1 0.5 1] [--kl-coefs 0.05 0.2]
Writes: <out>/lessons/10_dpo/{frontier.png, win_rates.png, dpo_margins.png, metrics.json} and
        <out>/lessons/10_dpo/runs/ (one folder per training run: checkpoint, curves; redone each time).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.chat import parse_response, prompt_ids  # noqa: E402
from minialign.config import ConfigError, add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.dpo import DPOConfig, train_dpo  # noqa: E402
from minialign.preferences import rank_policy_samples  # noqa: E402
from minialign.evaluation import compare, evaluate_policy  # noqa: E402
from minialign.pipeline import add_run_args, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402
from minialign.ppo import PPOConfig, ValueModel, apply_missing_end, place_scores, train_ppo  # noqa: E402
from minialign.pipeline import ensure_sft  # noqa: E402
from minialign.world import AnnotatorBias, gold_reward, rl_prompts  # noqa: E402

# Sizes per scale. Default: under 5 minutes on a 2-core CPU once the SFT model is cached.
SCALE = {
    "quick": dict(train_prompts=16, K=2, eval_prompts=8, eval_samples=1, max_new_tokens=16,
                  dpo_steps=4, dpo_batch=8, dpo_lr=3e-5, dpo_eval_every=2, ppo_iterations=2, ppo_batch=8,
                  ppo_eval_every=1),
    "default": dict(train_prompts=400, K=6, eval_prompts=40, eval_samples=5, max_new_tokens=40,
                    dpo_steps=60, dpo_batch=16, dpo_lr=3e-5, dpo_eval_every=15, ppo_iterations=20, ppo_batch=32,
                    ppo_eval_every=5),
}


@dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK. The sizes that are
    not flags are in SCALE."""

    prompts: str = "sentiment"
    """The world's RL prompt set to train and evaluate on. Range: prompts in ('sentiment', 'instruction')."""
    betas: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.5, 1.0])
    """DPO betas, one run each, e.g. --betas 0.05 0.1 0.5 1 (--quick: 0.1 1).
    Range: betas > 0 (at beta = 0 the DPO loss is the constant log 2: nothing would train)."""
    kl_coefs: list[float] = field(default_factory=lambda: [0.05, 0.2])
    """PPO-GT KL coefficients, one run each, e.g. --kl-coefs 0.05 0.2 (--quick: 0.1).
    Range: kl_coefs >= 0 (the KL coefficient; 0 turns the penalty off)."""

    def check(self) -> None:
        """Rules between values (config.validate runs them after the ranges)."""
        for flag, values in (("--betas", self.betas), ("--kl-coefs", self.kl_coefs)):
            if len(set(values)) < len(values):
                raise ConfigError(f"{flag} must be distinct values (each names one run), got {values}")


# --quick: a seconds-long smoke run.
LESSON_QUICK = dict(betas=[0.1, 1.0], kl_coefs=[0.1])


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


# ----------------------------------------------------------------------------------------------
# 1-2. Prompts and preference pairs sampled from pi_ref, labelled by the gold reward
def prompt_sets(kind: str, n_train: int, n_eval: int, seed: int):
    """Distinct prompts of one kind, split into held-out (the first n_eval) and training ones.

    The world's prompt sets repeat prompts (the sentiment set has ~130 distinct ones), so the split
    is made on distinct texts: no held-out prompt is ever trained on.
    """
    split = {"split": "test"} if kind == "instruction" else {}
    distinct = list({e.prompt: e for e in rl_prompts(kind, 20 * (n_train + n_eval), seed, **split)}.values())
    return distinct[n_eval:n_eval + n_train], distinct[:n_eval]


# ----------------------------------------------------------------------------------------------
# 3. DPO runs
def run_dpo(sft, tok, groups, beta, S, eval_prompts, sft_eval, folder, seed, device):
    cfg = DPOConfig(beta=beta, lr=S["dpo_lr"], max_steps=S["dpo_steps"], epochs=100,
                    batch_size=S["dpo_batch"], warmup_steps=max(1, S["dpo_steps"] // 10),
                    eval_every=S["dpo_eval_every"], eval_prompts=S["eval_prompts"],
                    eval_samples=S["eval_samples"], max_new_tokens=S["max_new_tokens"],
                    ckpt_every=10_000)
    policy = copy.deepcopy(sft)
    m = train_dpo(policy, sft, tok, groups, cfg, folder, device, seed=seed, eval_prompts=eval_prompts,
                  reference_eval=sft_eval, quiet=True)
    points = [(e["kl"], e["gold_reward"], e["step"]) for e in m["eval_history"]]
    return {"beta": beta, "points": points, "final_gold": m["eval"]["gold_reward"],
            "final_kl": m["eval"]["kl"], "win_rate_vs_sft": m["win_rate_vs_reference"],
            "seconds_per_step": m["seconds_per_step"], "history": m["history"],
            "final": m["final"]}


# ----------------------------------------------------------------------------------------------
# 4. PPO runs on the gold reward (PPO-GT)
def gold_reward_fn(tok, prompts, cfg: PPOConfig, mean: float, std: float):
    """PPO's task reward: the gold reward of (x, y), normalised by pi_ref's sample mean and std (as
    ppo.py normalises reward-model scores), on the last response token; missing <|end|> penalised."""
    text_of = {tuple(prompt_ids(tok, p)): p for p in prompts}

    def reward_fn(r):
        gold = [gold_reward(text_of[tuple(p)], parse_response(tok, y)[0]).total
                for p, y in zip(r.prompt_ids, r.response_ids)]
        score = (torch.tensor(gold) - mean) / std
        score = apply_missing_end(score, r.ended.cpu(), cfg.missing_end, cfg.missing_end_penalty)
        return place_scores(score, r.mask, cfg.score_position), {"score": score}
    return reward_fn


def run_ppo(sft, tok, train_prompts, kl_coef, S, eval_prompts, sft_eval, folder, seed, device,
            gold_mean, gold_std):
    cfg = PPOConfig(iterations=S["ppo_iterations"], batch_size=S["ppo_batch"], beta=kl_coef,
                    temperature=1.0, max_new_tokens=S["max_new_tokens"], ckpt_every=10_000,
                    n_samples_shown=2)
    texts = [e.prompt for e in train_prompts]
    policy, ref = copy.deepcopy(sft).requires_grad_(True), copy.deepcopy(sft)
    value_model = ValueModel(copy.deepcopy(sft).requires_grad_(True))   # zero head: V = 0 at the start
    reward_fn = gold_reward_fn(tok, texts, cfg, gold_mean, gold_std)
    # PPO logs the gold reward of its rollouts, which it knows as decoded chat text: map that back
    # to the prompt text the oracle parses (logged only; the frontier uses evaluate_policy below).
    plain = {tok.decode(prompt_ids(tok, t)): t for t in texts}
    gold_fn = lambda p, r: gold_reward(plain.get(p, p), r)   # noqa: E731
    points, seconds, ev = [(0.0, sft_eval["gold_reward"], 0)], [], None
    for stop in range(S["ppo_eval_every"], cfg.iterations + 1, S["ppo_eval_every"]):
        m = train_ppo(policy, ref, None, value_model, tok, texts, cfg, folder, device, reward_fn,
                      gold_fn=gold_fn, seed=seed, max_iterations=stop, desc=f"ppo kl={kl_coef:g}")
        if stop == cfg.iterations:
            seconds.append(m["seconds_per_iteration"])
        ev = evaluate_policy(policy, ref, tok, eval_prompts, n_samples=S["eval_samples"],
                             max_new_tokens=S["max_new_tokens"], seed=seed)
        points.append((ev["kl"], ev["gold_reward"], stop))
    return {"kl_coef": kl_coef, "points": points, "final_gold": ev["gold_reward"],
            "final_kl": ev["kl"], "win_rate_vs_sft": compare(ev, sft_eval),
            "seconds_per_iteration": seconds[-1]}


# ----------------------------------------------------------------------------------------------
# 5-7. Figures and words
def plot_frontier(dpo_runs, ppo_runs, sft_eval, path):
    fig, axes = new_figure(width=6.5, height=4.6)
    ax = axes[0][0]
    for i, r in enumerate(dpo_runs):
        kl, gold, _ = zip(*r["points"])
        ax.plot(kl, gold, "-o", color="C0", alpha=0.35 + 0.65 * (i + 1) / len(dpo_runs), ms=5,
                label=f"DPO beta={r['beta']:g}")
    for i, r in enumerate(ppo_runs):
        kl, gold, _ = zip(*r["points"])
        ax.plot(kl, gold, "-s", color="C3", alpha=0.35 + 0.65 * (i + 1) / len(ppo_runs), ms=5,
                label=f"PPO-GT kl_coef={r['kl_coef']:g}")
    ax.plot([0], [sft_eval["gold_reward"]], "k*", ms=14, label="SFT (pi_ref)")
    ax.set_xlabel("KL(pi || pi_ref), nats per response")
    ax.set_ylabel("gold reward (oracle)")
    ax.set_title("reward vs KL frontier (DPO paper, Fig. 2 left)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_win_rates(rows, path):
    fig, axes = new_figure(width=6.0, height=0.5 + 0.45 * len(rows))
    ax = axes[0][0]
    names = [n for n, _ in rows]
    rates = [w["win_rate"] for _, w in rows]
    err = [[w["win_rate"] - w["ci_low"] for _, w in rows],
           [w["ci_high"] - w["win_rate"] for _, w in rows]]
    colors = ["C0" if n.startswith("DPO") else "C3" for n in names]
    ax.barh(range(len(rows)), rates, xerr=err, color=colors, alpha=0.8, capsize=3)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate against SFT (oracle judge, ties = 1/2), 95% bootstrap CI")
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)


def plot_margins(dpo_runs, path):
    """Per beta: the implicit reward margin, the accuracy, and how far log pi_theta has moved from
    log pi_ref on y_w and on y_l (the implicit rewards divided by beta), by DPO step."""
    fig, axes = new_figure(ncols=3, width=4.4)
    for i, r in enumerate(dpo_runs):
        h, beta, c = r["history"], r["beta"], f"C{i}"
        steps = [x["step"] for x in h]
        w = max(1, len(steps) // 15)
        axes[0][0].plot(steps, smooth([x["rewards/margins"] for x in h], w), color=c,
                        label=f"beta={beta:g}")
        axes[0][1].plot(steps, smooth([x["rewards/accuracy"] for x in h], w), color=c)
        axes[0][2].plot(steps, smooth([x["rewards/chosen"] / beta for x in h], w), color=c)
        axes[0][2].plot(steps, smooth([x["rewards/rejected"] / beta for x in h], w), color=c, ls="--")
    axes[0][0].set_title("implicit reward margin r_hat(y_w) - r_hat(y_l),\n"
                         "r_hat = beta log pi_theta/pi_ref", fontsize=9)
    axes[0][1].set_title("accuracy: r_hat(y_w) > r_hat(y_l)", fontsize=9)
    axes[0][2].set_title("log pi_theta - log pi_ref (nats) of y_w (solid)\nand of y_l (dashed)", fontsize=9)
    axes[0][2].axhline(0, color="gray", lw=0.5)
    axes[0][0].legend(fontsize=7)
    for ax in axes[0]:
        ax.set_xlabel("DPO step")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def frontier_comparison(dpo_runs, ppo_runs, sft_eval) -> dict:
    """Compare the two frontiers (upper envelopes of reward vs KL). Both start at the SFT point
    (KL 0). At each KL budget (the KL of every trained point), take the best gold reward each
    method reached within the budget, and count where DPO's best is higher and where PPO's is."""
    start = [(-math.inf, sft_eval["gold_reward"])]      # within every budget (sampled KLs can be < 0)
    dpo = start + [(k, g) for r in dpo_runs for k, g, s in r["points"] if s > 0]
    ppo = start + [(k, g) for r in ppo_runs for k, g, s in r["points"] if s > 0]
    budgets = sorted(k for k, _ in dpo[1:] + ppo[1:])
    best = lambda pts, b: max(g for k, g in pts if k <= b)   # noqa: E731
    dpo_higher = sum(best(dpo, b) > best(ppo, b) for b in budgets)
    ppo_higher = sum(best(ppo, b) > best(dpo, b) for b in budgets)
    return {"budgets": len(budgets), "dpo_higher": dpo_higher, "ppo_higher": ppo_higher}


def conclusions(dpo_runs, ppo_runs, sft_eval, cmp, pairs_info) -> list[str]:
    lines = []
    best_d = max(dpo_runs, key=lambda r: r["final_gold"])
    best_p = max(ppo_runs, key=lambda r: r["final_gold"]) if ppo_runs else None
    lines.append(f"SFT (pi_ref) gold reward {sft_eval['gold_reward']:.3f} on {sft_eval['n_samples']} "
                 f"held-out samples.")
    for r in dpo_runs:
        w = r["win_rate_vs_sft"]
        lines.append(f"DPO beta={r['beta']:<5g} gold {r['final_gold']:.3f} at KL {r['final_kl']:6.2f} nats; "
                     f"wins {w['win_rate']:.0%} against SFT (95% CI {w['ci_low']:.0%}-{w['ci_high']:.0%}).")
    for r in ppo_runs:
        w = r["win_rate_vs_sft"]
        lines.append(f"PPO-GT kl_coef={r['kl_coef']:<5g} gold {r['final_gold']:.3f} at KL {r['final_kl']:6.2f} "
                     f"nats; wins {w['win_rate']:.0%} against SFT (95% CI {w['ci_low']:.0%}-{w['ci_high']:.0%}).")
    small = min(dpo_runs, key=lambda r: r["beta"])
    large = max(dpo_runs, key=lambda r: r["beta"])
    lines.append(f"beta is DPO's KL knob: in the same number of steps beta={small['beta']:g} moved to KL "
                 f"{small['final_kl']:.2f} nats and beta={large['beta']:g} to {large['final_kl']:.2f}"
                 + (" (a larger beta keeps pi_theta closer to pi_ref)." if large["final_kl"] < small["final_kl"]
                    else " (here the larger beta did not stay closer: too few steps for beta to matter)."))
    if ppo_runs:
        decided = cmp["dpo_higher"] + cmp["ppo_higher"]
        verdict = ("DPO's frontier lies above PPO-GT's" if cmp["dpo_higher"] > 2 * decided / 3 else
                   "PPO-GT's frontier lies above DPO's" if cmp["ppo_higher"] > 2 * decided / 3 else
                   "the two frontiers overlap")
        lines.append(f"Frontier (slide 002 'DPO versus Baselines', DPO paper Fig. 2 left): {verdict}. Over "
                     f"{cmp['budgets']} KL budgets, the best DPO point within the budget has the higher gold "
                     f"reward {cmp['dpo_higher']} times, PPO-GT's {cmp['ppo_higher']} times (one point's gold "
                     f"has a standard error of about {sft_eval['gold_reward_se']:.3f}). The paper finds DPO's "
                     f"frontier above PPO's, even above PPO on the true reward; here PPO-GT gets the oracle "
                     f"itself and fresh samples every iteration, DPO only {pairs_info['pairs']} fixed pairs "
                     f"sampled once from SFT.")
        d_step = np.mean([r["seconds_per_step"] for r in dpo_runs])
        p_it = np.mean([r["seconds_per_iteration"] for r in ppo_runs])
        lines.append(f"Cost (slide 002 'Comparison between PPO and DPO'): a DPO step took {d_step:.3f} s, a "
                     f"PPO iteration {p_it:.2f} s ({p_it / d_step:.0f}x): DPO needs no sampling, no value "
                     f"model and no reward model during training — 'simpler ... cheaper and more stable'; "
                     f"but it 'does not leverage online data' (slide 000).")
    h = best_d["history"]
    tail = h[-max(1, len(h) // 10):]
    move_w = np.mean([x["rewards/chosen"] for x in tail]) / best_d["beta"]
    move_l = np.mean([x["rewards/rejected"] for x in tail]) / best_d["beta"]
    lines.append(f"Implicit reward (slide 000 'Introducing DPO': 'a classification problem on preference "
                 f"data'): for beta={best_d['beta']:g} the margin grew from 0 to "
                 f"{np.mean([x['rewards/margins'] for x in tail]):.2f} and the accuracy to "
                 f"{np.mean([x['rewards/accuracy'] for x in tail]):.0%}; log pi_theta - log pi_ref moved by "
                 f"{move_w:+.2f} nats on y_w and {move_l:+.2f} on y_l — "
                 + ("the preferred response became LESS likely than under pi_ref: DPO widens the gap, "
                    "and both sides can go down." if move_w < 0 else
                    "the preferred response became more likely and the rejected one less."))
    if best_p is not None:
        lines.append(f"Best final gold: DPO beta={best_d['beta']:g} {best_d['final_gold']:.3f} vs "
                     f"PPO-GT kl_coef={best_p['kl_coef']:g} {best_p['final_gold']:.3f} (SFT "
                     f"{sft_eval['gold_reward']:.3f}).")
    return lines


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    S = dict(SCALE["quick" if run.quick else "default"], betas=tuple(settings.betas),
             kl_coefs=tuple(settings.kl_coefs))
    out = os.path.join(run.out, "lessons", "10_dpo")
    runs_dir = os.path.join(out, "runs")
    shutil.rmtree(runs_dir, ignore_errors=True)        # fresh training runs each time (a short lesson)
    t_start = time.perf_counter()
    sft, tok = ensure_sft(run)                                   # pi_ref, from the cache when built
    sft.eval().requires_grad_(False)
    t_lesson = time.perf_counter()

    train_p, eval_p = prompt_sets(settings.prompts, S["train_prompts"], S["eval_prompts"], run.seed)
    print(f"\n[1-2] {len(train_p)} '{settings.prompts}' prompts x {S['K']} samples of the SFT model, pairs "
          f"labelled by the oracle; {len(eval_p)} held-out prompts x {S['eval_samples']} samples")
    groups, samples = rank_policy_samples(sft, tok, train_p, k=S["K"], temperature=1.0, noise=0.0,
                                         max_new_tokens=S["max_new_tokens"], seed=run.seed + 1,
                                         bias=AnnotatorBias.off())
    golds = np.asarray(samples.gold)
    gold_mean, gold_std = float(golds.mean()), float(max(golds.std(), 1e-3))
    pairs_info = {"pairs": sum(len(g.pairs) for g in groups), "train_prompts": len(train_p),
                  "eval_prompts": len(eval_p),
                  "sft_sample_gold_mean": gold_mean, "sft_sample_gold_std": gold_std}
    print(f"      {pairs_info['pairs']} pairs; SFT samples' gold reward {gold_mean:.3f} +- {gold_std:.3f}")
    if not groups:
        more = ("run without --quick (more prompts and samples)" if run.quick else
                "use more prompts or samples (train_prompts, K in SCALE, lessons/10_dpo.py)")
        raise ConfigError(f"no preference pair: for each of the {len(train_p)} prompts, its {S['K']} SFT samples "
                          f"got the same gold reward; {more}")
    sft_eval = evaluate_policy(sft, None, tok, eval_p, n_samples=S["eval_samples"],
                               max_new_tokens=S["max_new_tokens"], seed=run.seed)

    print(f"\n[3] DPO, beta in {list(S['betas'])}: {S['dpo_steps']} steps of {S['dpo_batch']} pairs each")
    dpo_runs = []
    for beta in S["betas"]:
        t0 = time.perf_counter()
        dpo_runs.append(run_dpo(sft, tok, groups, beta, S, eval_p, sft_eval,
                                os.path.join(runs_dir, f"dpo_beta{beta:g}"), run.seed, run.device))
        r = dpo_runs[-1]
        print(f"      beta={beta:g}: gold {r['final_gold']:.3f}, KL {r['final_kl']:.2f}, margin "
              f"{r['final']['rewards/margins']:.2f}, accuracy {r['final']['rewards/accuracy']:.2f} "
              f"({time.perf_counter() - t0:.0f}s)")

    print(f"\n[4] PPO on the gold reward (PPO-GT), KL coefficient in {list(S['kl_coefs'])}: "
          f"{S['ppo_iterations']} iterations of {S['ppo_batch']} episodes")
    ppo_runs = []
    for kl in S["kl_coefs"]:
        t0 = time.perf_counter()
        ppo_runs.append(run_ppo(sft, tok, train_p, kl, S, eval_p, sft_eval,
                                os.path.join(runs_dir, f"ppo_kl{kl:g}"), run.seed, run.device,
                                gold_mean, gold_std))
        r = ppo_runs[-1]
        print(f"      kl_coef={kl:g}: gold {r['final_gold']:.3f}, KL {r['final_kl']:.2f} "
              f"({time.perf_counter() - t0:.0f}s)")

    cmp = frontier_comparison(dpo_runs, ppo_runs, sft_eval)
    plot_frontier(dpo_runs, ppo_runs, sft_eval, os.path.join(out, "frontier.png"))
    plot_win_rates([(f"DPO beta={r['beta']:g}", r["win_rate_vs_sft"]) for r in dpo_runs]
                   + [(f"PPO-GT kl={r['kl_coef']:g}", r["win_rate_vs_sft"]) for r in ppo_runs],
                   os.path.join(out, "win_rates.png"))
    plot_margins(dpo_runs, os.path.join(out, "dpo_margins.png"))
    lines = conclusions(dpo_runs, ppo_runs, sft_eval, cmp, pairs_info)
    print("\nWhat this shows:")
    for line in lines:
        print("  - " + line)
    metrics = {
        "prompts": settings.prompts, "scale": S, "data": pairs_info,
        "sft": {k: v for k, v in sft_eval.items() if k not in ("scores", "groups")},
        "dpo": {f"beta={r['beta']:g}": {k: v for k, v in r.items() if k != "history"} for r in dpo_runs},
        "ppo": {f"kl_coef={r['kl_coef']:g}": r for r in ppo_runs},
        "frontier_comparison": cmp, "conclusions": lines,
        "seconds_lesson": time.perf_counter() - t_lesson,
        "seconds_total": time.perf_counter() - t_start,
    }
    write_json(os.path.join(out, "metrics.json"), metrics)
    print(f"\nfigures and metrics.json in {out} ({metrics['seconds_lesson']:.0f}s after the SFT model)")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
