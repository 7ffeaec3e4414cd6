"""Lesson 08: PPO against a reward model, with a per-token KL penalty, and reward hacking without it.

Slides: 000 "Step 3: Optimize a policy against the reward model using RL" and "Limitations of RL +
reward modeling"; 002 "RLHF: Proximal Policy Optimization" and "Limitations of PPO Methods".
Read `minialign/ppo.py` beside it: one PPO iteration is the numbered steps of `ppo_iteration`.

The policy pi_theta starts as the SFT model; the reward model r_phi (lesson 07) scores its answers;
PPO maximises, per token, r = r_phi - beta * (log pi_theta - log pi_ref) (slide: r = r_theta - lambda r_KL).
What the lesson shows, in order:
1. the same held-out prompts answered by the SFT model and after PPO;
2. a sweep of the KL coefficient beta: a larger beta keeps KL(pi_theta || pi_ref) small and gains
   less proxy reward; each run is a point (and a trajectory) on the reward-vs-KL plane, beside
   best-of-n (n samples of pi_SFT, r_phi keeps its favourite; KL = log n - (n-1)/n), the baseline
   that trains nothing (Gao et al. 2022, figure 1);
3. a small beta, trained longer: the proxy reward keeps rising while the gold reward (the world's
   oracle, our stand-in for the human labelers) rises and then falls: reward hacking. The world's
   annotators are biased the slide's way ("Chatbots are rewarded to produce responses that *seem*
   authoritative and helpful, regardless of truth": world.AnnotatorBias), r_phi learned the bias,
   and the policy writes what it rewards. The same run against a reward model trained on unbiased
   annotators (`<out>/rm_unbiased`) is the control.
The proxy reward is r_phi's score normalised to mean 0, std 1 on SFT samples (the missing-<|end|>
penalty included); the gold reward is the oracle's score in [0, 1]; KL is the mean over samples of
the summed per-token log pi_theta - log pi_ref, in nats. All three are measured on held-out prompts.

Things to try: --hack-iterations 120 (how far below SFT does the gold fall, and does the control
stay up?); --hack-beta 0.1 (the KL penalty holds the biased run near pi_ref: does the hacking go away?);
--betas 0.3 0.1 0.03 0.01 (more points on the reward-vs-KL plane).

Time: about 3 minutes on a quiet 2-core CPU with the pipeline's stages cached; a first run builds
the tokenizer, the pretrained model, SFT, the reward model and the unbiased annotators' reward model
(`rm_unbiased`, about a minute) first.

Run:    python lessons/08_ppo.py [--quick] [--betas 0.1 0.03] [--iterations N] [--hack-beta B] [--hack-iterations N]
Writes: <out>/lessons/08_ppo/{metrics.json, training_curves.png, reward_vs_kl.png, gold_components.png}
        and one PPO run folder per beta (checkpoints: a re-run reuses finished runs).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass, field, replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.config import ConfigError, add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.evaluation import flaw_rates, mean_and_se, prompt_text, sample_and_score  # noqa: E402
from minialign.pipeline import add_run_args, ensure_rm, ensure_sft, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402
from minialign.best_of_n import best_of_n_curve  # noqa: E402
from minialign.chat import end_id, prompt_ids  # noqa: E402
from minialign.ppo import (QUICK, PPOConfig, ValueModel, apply_missing_end, measure_score_norm,  # noqa: E402
                           train_ppo)
from minialign.reward import QUICK as RM_QUICK, RMConfig  # noqa: E402
from minialign.world import rl_prompts  # noqa: E402

LESSON = "08_ppo"


@dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK."""

    betas: list[float] = field(default_factory=lambda: [0.1, 0.03])
    """KL coefficients of the sweep, e.g. --betas 0.1 0.03 (--quick: 0.05). Range: betas > 0."""
    iterations: int = 30
    """PPO iterations per beta of the sweep (--quick: 3). Range: iterations >= 1."""
    hack_beta: float = 0.01
    """The small KL coefficient of the two reward-hacking runs (biased and unbiased reward model).
    Range: hack_beta >= 0."""
    hack_iterations: int = 60
    """PPO iterations of the reward-hacking runs (--quick: 4). Range: hack_iterations >= 1."""
    bon_prompts: int = 32
    """Held-out prompts of the best-of-n curve, 64 samples of pi_SFT each (--quick: 4; 0 skips it).
    Range: bon_prompts >= 0."""
    n_eval: int = 128
    """Held-out prompts for the final evaluation (--quick: 16). Range: n_eval >= 1."""
    n_shown: int = 3
    """Held-out prompts whose answers are printed, per policy (--quick: 2). Range: n_shown >= 0."""

    def check(self) -> None:
        """Rules between values (config.validate runs them after the ranges)."""
        if len(set(self.betas)) < len(self.betas):
            raise ConfigError(f"--betas must be distinct values (each names one run), got {self.betas}")


# --quick: a seconds-long smoke run.
LESSON_QUICK = dict(betas=[0.05], iterations=3, hack_iterations=4, n_eval=16, n_shown=2, bon_prompts=4)
HACKED, CONTROL = "hack (biased RM)", "control (unbiased RM)"


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


def build(run):
    """The SFT model (pi_ref and the start of pi_theta), the pipeline's reward model r_phi (biased annotators,
    the world's default) and the control r_phi trained the same way on unbiased annotators' comparisons."""
    sft, tok = ensure_sft(run)
    rm, _ = ensure_rm(run)
    rm_cfg = RMConfig(**(RM_QUICK if run.quick else {}))
    unbiased, _ = ensure_rm(run, replace(rm_cfg, annotator_bias=False), stage="rm_unbiased")
    return sft.eval(), rm.eval(), unbiased.eval(), tok


def run_ppo(name: str, beta: float, iterations: int, sft, rm, tok, prompts, base_cfg: PPOConfig, norm,
            out_dir: str, run):
    """One PPO run from the SFT model with a fixed beta; finished runs are reloaded from their checkpoint."""
    cfg = replace(base_cfg, beta=beta, iterations=iterations, adaptive_kl=False)
    policy, ref = copy.deepcopy(sft), copy.deepcopy(sft)
    value = ValueModel.from_reward_model(rm)    # V starts as r_phi: it already knows what is rewarded
    t0 = time.perf_counter()
    metrics = train_ppo(policy, ref, rm, value, tok, prompts, cfg, os.path.join(out_dir, name), run.device,
                        seed=run.seed, score_norm=norm, desc=f"ppo {name}")
    return policy, metrics, time.perf_counter() - t0


def evaluate(policy, sft, rm, tok, prompts, cfg: PPOConfig, norm, seed: int) -> dict:
    """Held-out answers of `policy`: gold reward (oracle), proxy reward (normalised r_phi), KL to the SFT model."""
    s = sample_and_score(policy, sft, tok, prompts, max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, seed=seed)
    raw = torch.tensor(rm.score(tok, [prompt_text(p) for p in prompts], s.responses))
    proxy = apply_missing_end((raw - norm[0]) / norm[1], torch.tensor(s.ended), cfg.missing_end,
                              cfg.missing_end_penalty)
    names = sorted({k for c in s.components for k in c})
    gold, gold_se = mean_and_se(s.gold)
    kl, kl_se = mean_and_se(s.kl)
    return {"proxy_reward": float(proxy.mean()), "gold_reward": gold, "gold_se": gold_se, "kl": kl, "kl_se": kl_se,
            "response_tokens": float(np.mean(s.lengths)), "ended": float(np.mean(s.ended)),
            "components": {k: float(np.mean([c.get(k, 0.0) for c in s.components])) for k in names},
            "flaw_rates": flaw_rates([prompts[i] for i in s.prompt_index], s.responses),
            "responses": s.responses, "proxy_per_sample": proxy.tolist(), "gold_per_sample": list(s.gold)}


def plot_curves(histories: dict, path: str):
    """Proxy and gold reward over PPO iterations, one line per run."""
    fig, axes = new_figure(ncols=3, width=4.4)
    for i, (name, h) in enumerate(histories.items()):
        for ax, key in zip(axes[0], ("proxy_reward", "gold_reward", "kl")):
            w = max(1, len(h[key]) // 10)
            ax.plot(h["iteration"], smooth(h[key], w), color=f"C{i}", label=name)
    for ax, title in zip(axes[0], ("proxy reward (normalised r_phi)", "gold reward (oracle)",
                                   "KL(pi_theta || pi_ref), nats")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("PPO iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def plot_reward_vs_kl(histories: dict, evals: dict, bon: dict | None, path: str):
    """Each run's trajectory (training rollouts) and final held-out point on the reward-vs-KL plane, and the
    best-of-n curve (its analytic KL; its proxy standardised on its own SFT samples)."""
    fig, axes = new_figure(ncols=2, width=5.0)
    for ax, key, title in zip(axes[0], ("proxy_reward", "gold_reward"),
                              ("proxy reward vs KL", "gold reward vs KL")):
        ax.scatter([0.0], [evals["SFT"][key]], color="black", marker="*", s=120, zorder=3, label="SFT (held-out)")
        if bon:
            pts = bon["points"]
            field = "proxy" if key == "proxy_reward" else "gold"
            ax.plot([p["kl"] for p in pts], [p[field] for p in pts], "k--", marker="o", ms=3,
                    label="best-of-n, n = 1..64")
        for i, (name, h) in enumerate(histories.items()):
            w = max(1, len(h[key]) // 10)
            ax.plot(smooth(h["kl"], w), smooth(h[key], w), color=f"C{i}", alpha=0.5)
            ax.scatter([evals[name]["kl"]], [evals[name][key]], color=f"C{i}", s=60, zorder=3,
                       label=f"{name} (held-out)")
        ax.set_xlabel("KL(pi_theta || pi_ref), nats")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=8)
    return save_figure(fig, path)


def plot_components(evals: dict, path: str):
    """The oracle's components per policy: what the policy gave up or gained."""
    names = list(next(iter(evals.values()))["components"])
    fig, axes = new_figure(width=1.2 * len(names) + 2, height=3.6)
    ax = axes[0][0]
    width = 0.8 / len(evals)
    for i, (run_name, e) in enumerate(evals.items()):
        ax.bar(np.arange(len(names)) + i * width, [e["components"][k] for k in names], width, label=run_name,
               color="black" if run_name == "SFT" else f"C{i - 1}")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names)
    ax.set_ylabel("gold component (1 = good)")
    ax.set_title("the oracle's view of each policy (held-out prompts)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def time_split(history: dict) -> dict:
    """Mean seconds per PPO iteration, in total and per phase (generation, scoring, log-probs, update, gold)."""
    phases = {k: float(np.mean(v)) for k, v in history.items() if k.startswith("t_")}
    return {"total": sum(phases.values()), **phases}


def verdict(hist: dict, sft_eval: dict, final: dict) -> dict:
    """What a run's numbers say, never assumed: did the proxy keep rising, did the gold peak and fall, and where
    did the gold end against the SFT model's (held-out, with its standard error)?"""
    k = max(1, len(hist["proxy_reward"]) // 5)
    proxy_start, proxy_end = np.mean(hist["proxy_reward"][:k]), np.mean(hist["proxy_reward"][-k:])
    # the gold per training batch is noisy: full trailing windows of a tenth of the run (its first point is the
    # mean of the first iterations, not the first batch alone)
    w = max(1, len(hist["gold_reward"]) // 10)
    gold_curve = smooth(hist["gold_reward"], w)[w - 1:]
    se = float(np.hypot(final["gold_se"], sft_eval["gold_se"]))
    out = {"proxy_start": float(proxy_start), "proxy_end": float(proxy_end), "gold_start": float(gold_curve[0]),
           "gold_peak": float(max(gold_curve)), "gold_end": float(gold_curve[-1]),
           "held_out_gold": final["gold_reward"], "sft_gold": sft_eval["gold_reward"], "difference_se": se,
           "kl": final["kl"]}
    out["proxy_rose"] = bool(proxy_end > proxy_start)
    out["gold_rose_then_fell"] = bool(out["gold_peak"] - max(out["gold_start"], out["gold_end"]) > 0.01)
    out["below_sft"] = bool(final["gold_reward"] < sft_eval["gold_reward"] - 2 * se)   # beyond 2 standard errors
    return out


def describe(name: str, v: dict) -> str:
    return (f"{name}: during training the proxy went {v['proxy_start']:+.2f} -> {v['proxy_end']:+.2f}; the gold "
            f"{v['gold_start']:.3f} -> peak {v['gold_peak']:.3f} -> {v['gold_end']:.3f}. Held out: gold "
            f"{v['held_out_gold']:.3f} vs SFT {v['sft_gold']:.3f} (difference se {v['difference_se']:.3f}), "
            f"KL {v['kl']:.1f} nats.")


def train_and_evaluate(runs, sft, rms: dict, tok, prompts, held_out, base_cfg, out_dir, run):
    """Each PPO run (name, beta, iterations, reward model's name), then every policy (and the SFT model) answers the
    held-out prompts; the proxy is each run's own reward model (the biased one for SFT)."""
    histories, evals, seconds = {}, {}, {}
    rm, norm = rms["biased"]
    evals["SFT"] = evaluate(sft, sft, rm, tok, held_out, base_cfg, norm, run.seed)
    for name, beta, iters, which in runs:
        rm, norm = rms[which]
        folder = f"beta_{beta:g}_it{iters}_{which}"        # a new folder per setting: finished runs are reused
        policy, m, seconds[name] = run_ppo(folder, beta, iters, sft, rm, tok, prompts, base_cfg, norm, out_dir, run)
        histories[name] = m["history"]
        evals[name] = evaluate(policy, sft, rm, tok, held_out, base_cfg, norm, run.seed)
    return histories, evals, seconds


def print_answers(evals: dict, held_out, n_shown: int) -> None:
    print("\n=== 1. The same held-out prompts, answered by the SFT model and after PPO ===")
    for j in range(min(n_shown, len(held_out))):
        print(f"\nprompt: {prompt_text(held_out[j])!r}")
        for name, e in evals.items():
            text = e["responses"][j]
            print(f"  {name:>21}: {text!r}" + ("   (empty: <|end|> at once)" if not text.strip() else ""))


def print_table(evals: dict, iters_of: dict) -> None:
    print("\n=== 2. Proxy reward, gold reward and KL on held-out prompts (slide: r = r_theta - beta KL) ===")
    print(f"{'policy':>21} {'iters':>5} {'proxy r_phi':>11} {'gold':>13} {'KL (nats)':>11} {'tokens':>7} {'ended':>6}")
    for name, e in evals.items():
        print(f"{name:>21} {iters_of.get(name, 0):>5} {e['proxy_reward']:>+11.2f} {e['gold_reward']:>7.3f}"
              f"+-{e['gold_se']:.3f} {e['kl']:>11.2f} {e['response_tokens']:>7.1f} {e['ended']:>6.2f}")


def print_hacking(histories: dict, evals: dict, settings: LessonConfig) -> dict:
    """Reward hacking, read off the numbers: the biased reward model's run against the unbiased control's."""
    hack = verdict(histories[HACKED], evals["SFT"], evals[HACKED])
    control = verdict(histories[CONTROL], evals["SFT"], evals[CONTROL])
    print(f"\n=== 3. Reward hacking: beta = {settings.hack_beta:g} for {settings.hack_iterations} iterations "
          f"(slide 000 'Limitations of RL + reward modeling') ===")
    print("  " + describe(HACKED, hack) + "\n  " + describe(CONTROL, control))
    shown = hack["proxy_rose"] and hack["below_sft"]
    if shown and not control["below_sft"]:
        print("  Reward hacking: against the reward model learned from biased annotators, the proxy kept rising while\n"
              "  the gold reward fell below the SFT model's; the policy writes what the annotators over-rated (see the\n"
              "  authoritative-padding rate below and the samples above). Against the unbiased annotators' reward model\n"
              "  the same run did not fall below SFT: the bias, learned by r_phi, is what PPO exploited.")
    elif shown:
        print("  The gold fell below the SFT model's against both reward models: here the drift itself (a small beta,\n"
              "  many iterations) costs gold, not only the annotators' bias.")
    else:
        print("  The gold did not end below the SFT model's in this run" +
              (" (it did rise and then fall: over-optimisation, Gao et al. 2022)." if hack["gold_rose_then_fell"]
               else ".") + " More iterations (--hack-iterations) or a smaller --hack-beta push further.")
    for name in (HACKED, CONTROL):
        print(f"  {name}: authoritative padding in {evals[name]['flaw_rates']['authoritative']:.0%} of held-out answers "
              f"(SFT {evals['SFT']['flaw_rates']['authoritative']:.0%})")
    return {"hack": hack, "control": control, "reward_hacking": bool(shown),
            "bias_is_the_cause": bool(shown and not control["below_sft"])}


def print_best_of_n(bon: dict) -> dict:
    """Best-of-n read off its curve: does the gold peak at some n and fall after it while the proxy keeps rising?"""
    pts = bon["points"]
    best = max(pts, key=lambda p: p["gold"])
    last = pts[-1]
    out = {"best_n": best["n"], "best_gold": best["gold"], "gold_n1": pts[0]["gold"], "gold_last": last["gold"],
           "n_last": last["n"], "proxy_rose": bool(all(b["proxy"] >= a["proxy"] for a, b in zip(pts, pts[1:]))),
           "rose_then_fell": bool(best["gold"] > pts[0]["gold"] and best["gold"] > last["gold"])}
    print("\n=== Best-of-n (no training): gold and proxy against KL = log n - (n-1)/n ===")
    for p in pts:
        print(f"  n = {p['n']:>2}  KL {p['kl']:.2f}  gold {p['gold']:.3f} +- {p['gold_se']:.3f}  proxy {p['proxy']:+.2f}")
    if out["rose_then_fell"]:
        print(f"  The gold peaks at n = {best['n']} ({best['gold']:.3f}, from {pts[0]['gold']:.3f} at n = 1) and falls to "
              f"{last['gold']:.3f} at n = {last['n']}" + (" while the proxy keeps rising" if out["proxy_rose"] else "")
              + ": over-optimisation without any training.")
    else:
        print("  The gold does not rise and then fall over n here.")
    return out


def print_correlation(evals: dict) -> dict:
    """Why the proxy and the gold part ways: does r_phi rank the policy's own answers like the oracle?"""
    corr = {name: float(np.corrcoef(e["proxy_per_sample"], e["gold_per_sample"])[0, 1])
            if np.std(e["proxy_per_sample"]) > 0 and np.std(e["gold_per_sample"]) > 0 else float("nan")
            for name, e in evals.items()}
    print("\n=== 4. Does the proxy track the gold on the policy's own answers? ===")
    print("  Pearson correlation of r_phi and the gold reward over held-out samples: "
          + ", ".join(f"{k} " + (f"{v:+.2f}" if np.isfinite(v) else "n/a (all answers score alike)")
                      for k, v in corr.items()))
    if not corr["SFT"] >= 0.1:
        print("  On the SFT model's own answers r_phi hardly tracks the gold (or tracks it backwards): it learned the\n"
              "  flaws of its preference data, not the mistakes this policy makes (a right and a wrong answer of the\n"
              "  same form score alike). Pushing r_phi up then cannot raise the gold reward; the KL penalty limits\n"
              "  how much gold is traded away for proxy reward.")
    else:
        print("  r_phi ranks the SFT model's answers roughly like the oracle, so a small move along r_phi can raise\n"
              "  the gold; far from pi_ref the correlation breaks down (over-optimisation, Gao et al. 2022).")
    return corr


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", LESSON)
    os.makedirs(out_dir, exist_ok=True)
    t_start = time.perf_counter()
    sft, rm, unbiased, tok = build(run)
    base_cfg = PPOConfig(**(QUICK if run.quick else {}))
    prompts = rl_prompts(base_cfg.prompt_kind, n=base_cfg.n_prompts, seed=run.seed, split="train")
    held_out = rl_prompts(base_cfg.prompt_kind, n=settings.n_eval, seed=run.seed + 1, split="test")
    print(f"\n[08] PPO from the SFT model on {len(prompts)} RL prompts; evaluation on {len(held_out)} held-out prompts")
    # The proxy reward's scale: each r_phi normalised on SFT samples at the PPO temperature, shared by its runs
    ids = [prompt_ids(tok, prompt_text(p)) for p in prompts]
    norm_of = lambda r: measure_score_norm(sft, r, ids, base_cfg, end_id=end_id(tok), pad_id=tok.pad_id,  # noqa: E731
                                           seed=run.seed)
    rms = {"biased": (rm, norm_of(rm)), "unbiased": (unbiased, norm_of(unbiased))}
    runs = ([(f"beta={b:g}", b, settings.iterations, "biased") for b in settings.betas]
            + [(HACKED, settings.hack_beta, settings.hack_iterations, "biased"),
               (CONTROL, settings.hack_beta, settings.hack_iterations, "unbiased")])
    histories, evals, seconds = train_and_evaluate(runs, sft, rms, tok, prompts, held_out, base_cfg, out_dir, run)
    bon = None
    if settings.bon_prompts:
        print(f"\n[08] best-of-n: 64 samples of pi_SFT on {settings.bon_prompts} held-out prompts, r_phi keeps its favourite")
        bon = best_of_n_curve(sft, rm, tok, held_out[:settings.bon_prompts], N=64, temperature=base_cfg.temperature,
                              max_new_tokens=base_cfg.max_new_tokens, seed=run.seed)
    iters_of = {name: it for name, _, it, _ in runs}
    print_answers(evals, held_out, settings.n_shown)
    print_table(evals, iters_of)
    bon_verdict = print_best_of_n(bon) if bon else None
    hacking = print_hacking(histories, evals, settings)
    corr = print_correlation(evals)

    paths = [plot_curves(histories, os.path.join(out_dir, "training_curves.png")),
             plot_reward_vs_kl(histories, evals, bon, os.path.join(out_dir, "reward_vs_kl.png")),
             plot_components(evals, os.path.join(out_dir, "gold_components.png"))]
    per_sample = ("responses", "proxy_per_sample", "gold_per_sample")
    metrics = {"runs": {name: {k: v for k, v in e.items() if k not in per_sample} for name, e in evals.items()},
               "proxy_gold_correlation": corr, "iterations": iters_of,
               "score_norm": {k: list(v[1]) for k, v in rms.items()}, "reward_hacking": hacking,
               "best_of_n": bon, "best_of_n_verdict": bon_verdict,
               "samples": {name: e["responses"][:settings.n_shown] for name, e in evals.items()},
               "seconds": {**{k: round(v, 1) for k, v in seconds.items()},
                           "total": round(time.perf_counter() - t_start, 1)},
               "seconds_per_iteration": {name: time_split(h) for name, h in histories.items()}}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(f"\nfigures: {', '.join(paths)}\nlesson done in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
