"""Lesson 08: PPO against a reward model, with a per-token KL penalty, and reward hacking without it.

Slides: 000 "Step 3: Optimize a policy against the reward model using RL" and "Limitations of RL +
reward modeling"; 002 "RLHF: Proximal Policy Optimization" and "Limitations of PPO Methods".
Read `minialign/ppo.py` beside it: one PPO iteration is the numbered steps of `ppo_iteration`.

The policy pi_theta starts as the SFT model; the reward model r_phi (lesson 07) scores its answers;
PPO maximises, per token, r = r_phi - beta * (log pi_theta - log pi_ref) (slide: r = r_theta - lambda r_KL).
What the lesson shows, in order:
1. the same held-out prompts answered by the SFT model and after PPO;
2. a sweep of the KL coefficient beta: a larger beta keeps KL(pi_theta || pi_ref) small and gains
   less proxy reward; each run is a point (and a trajectory) on the reward-vs-KL plane;
3. beta = 0, trained longer: nothing keeps the policy where r_phi was trained, the proxy reward
   keeps rising while the gold reward (the world's oracle, our stand-in for the human labelers)
   falls, and the text degenerates: reward hacking ("Limitations of RL + reward modeling").
The proxy reward is r_phi's score normalised to mean 0, std 1 on SFT samples (the missing-<|end|>
penalty included); the gold reward is the oracle's score in [0, 1]; KL is the mean over samples of
the summed per-token log pi_theta - log pi_ref, in nats. All three are measured on held-out prompts.

Run:    python lessons/08_ppo.py [--quick] [--betas 0.1 0.03] [--iterations N] [--hack-iterations N]
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
from minialign.evaluation import mean_and_se, prompt_text, sample_and_score  # noqa: E402
from minialign.pipeline import add_run_args, ensure_rm, ensure_sft, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402
from minialign.ppo import (QUICK, PPOConfig, ValueModel, apply_missing_end, measure_score_norm,  # noqa: E402
                           train_ppo)

LESSON = "08_ppo"


@dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK."""

    betas: list[float] = field(default_factory=lambda: [0.1, 0.03])
    """KL coefficients of the sweep, e.g. --betas 0.1 0.03 (--quick: 0.05).
    Range: betas > 0 (beta = 0 is the reward-hacking run, which always runs)."""
    iterations: int = 30
    """PPO iterations per beta of the sweep (--quick: 3). Range: iterations >= 1."""
    hack_iterations: int = 60
    """PPO iterations of the beta = 0 run (--quick: 4). Range: hack_iterations >= 1."""
    n_eval: int = 128
    """Held-out prompts for the final evaluation (--quick: 16). Range: n_eval >= 1."""
    n_shown: int = 3
    """Held-out prompts whose answers are printed, per policy (--quick: 2). Range: n_shown >= 0."""

    def check(self) -> None:
        """Rules between values (config.validate runs them after the ranges)."""
        if len(set(self.betas)) < len(self.betas):
            raise ConfigError(f"--betas must be distinct values (each names one run), got {self.betas}")


# --quick: a seconds-long smoke run.
LESSON_QUICK = dict(betas=[0.05], iterations=3, hack_iterations=4, n_eval=16, n_shown=2)


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


def build(run):
    """The SFT model (pi_ref and the start of pi_theta) and the reward model r_phi, from the pipeline cache."""
    sft, tok = ensure_sft(run)
    rm, _ = ensure_rm(run)
    return sft.eval(), rm.eval(), tok


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


def plot_reward_vs_kl(histories: dict, evals: dict, path: str):
    """Each run's trajectory (training rollouts) and final held-out point on the reward-vs-KL plane."""
    fig, axes = new_figure(ncols=2, width=5.0)
    for ax, key, title in zip(axes[0], ("proxy_reward", "gold_reward"),
                              ("proxy reward vs KL", "gold reward vs KL")):
        ax.scatter([0.0], [evals["SFT"][key]], color="black", marker="*", s=120, zorder=3, label="SFT (held-out)")
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


def verdict(hist: dict, sft_eval: dict, hack_eval: dict) -> tuple[bool, str]:
    """Did beta = 0 hack the reward model? Read off the numbers, never assumed."""
    k = max(1, len(hist["proxy_reward"]) // 5)
    proxy_start, proxy_end = np.mean(hist["proxy_reward"][:k]), np.mean(hist["proxy_reward"][-k:])
    gold_curve = smooth(hist["gold_reward"], k)
    gold_peak, gold_end = max(gold_curve), gold_curve[-1]
    hacked = (hack_eval["proxy_reward"] > sft_eval["proxy_reward"] and hack_eval["gold_reward"] < sft_eval["gold_reward"]
              and proxy_end > proxy_start)
    # The milder form (Gao et al. 2022): the proxy keeps rising after the gold has peaked.
    text_over = gold_peak - gold_end > 0.02 and proxy_end > proxy_start
    text = (f"beta = 0, during training: proxy {proxy_start:+.2f} -> {proxy_end:+.2f}; gold peaked at {gold_peak:.3f} "
            f"and ended at {gold_end:.3f}.\n  held out: proxy {sft_eval['proxy_reward']:+.2f} (SFT) -> "
            f"{hack_eval['proxy_reward']:+.2f}, gold {sft_eval['gold_reward']:.3f} (SFT) -> {hack_eval['gold_reward']:.3f}, "
            f"KL {hack_eval['kl']:.1f} nats.")
    return ("hacked" if hacked else "overoptimised" if text_over else ""), text


def train_and_evaluate(runs, sft, rm, tok, prompts, held_out, base_cfg, norm, out_dir, run):
    """Each PPO run of the sweep, then every policy (and the SFT model) answers the held-out prompts."""
    histories, evals, seconds = {}, {}, {}
    evals["SFT"] = evaluate(sft, sft, rm, tok, held_out, base_cfg, norm, run.seed)
    for name, beta, iters in runs:
        folder = f"beta_{beta:g}_it{iters}"        # a new folder per setting: finished runs are reused
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
            print(f"  {name:>10}: {text!r}" + ("   (empty: <|end|> at once)" if not text.strip() else ""))


def print_table(evals: dict, iters_of: dict) -> None:
    print("\n=== 2. Proxy reward, gold reward and KL on held-out prompts (slide: r = r_theta - beta KL) ===")
    print(f"{'policy':>10} {'iters':>5} {'proxy r_phi':>11} {'gold':>13} {'KL (nats)':>11} {'tokens':>7} {'ended':>6}")
    for name, e in evals.items():
        print(f"{name:>10} {iters_of.get(name, 0):>5} {e['proxy_reward']:>+11.2f} {e['gold_reward']:>7.3f}"
              f"+-{e['gold_se']:.3f} {e['kl']:>11.2f} {e['response_tokens']:>7.1f} {e['ended']:>6.2f}")


def print_hacking(histories: dict, evals: dict, settings: LessonConfig) -> bool:
    hacked, text = verdict(histories["beta=0"], evals["SFT"], evals["beta=0"])
    print("\n=== 3. Reward hacking with beta = 0 (slide 000 'Limitations of RL + reward modeling') ===")
    print("  " + text)
    if hacked == "hacked":
        print("  Reward hacking: the reward model's score went up while the oracle's gold reward went down. The\n"
              "  policy found answers r_phi over-rates (see the components figure and the samples above); the\n"
              "  KL penalty is what keeps it near pi_ref, where r_phi was trained and is accurate.")
    elif hacked == "overoptimised":
        best = max(e["gold_reward"] for name, e in evals.items() if name not in ("SFT", "beta=0"))
        print("  Over-optimisation: during training the proxy kept rising after the gold reward had peaked, and the\n"
              f"  text drifted (KL above); held out, the beta = 0 policy ({evals['beta=0']['gold_reward']:.3f}) is below\n"
              f"  the KL-penalised ones (best {best:.3f}) though still above the SFT model. Pushed further\n"
              "  (--hack-iterations) the gold can fall below the SFT model's (a side run of ours: 0.60 at KL 87);\n"
              "  the KL penalty keeps pi_theta where r_phi is accurate.")
    else:
        print("  No reward hacking showed in this run: the gold reward did not fall while the proxy rose.\n"
              "  At this scale it needs more iterations (--hack-iterations) or a weaker reward model.")
    print(f"  (The beta = 0 run is trained for {settings.hack_iterations} iterations, the sweep for "
          f"{settings.iterations}: longer training at beta = 0\n  makes the hacking plain; training_curves.png "
          f"compares the runs iteration by iteration.)")
    return hacked


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
    sft, rm, tok = build(run)
    from minialign.chat import end_id, prompt_ids
    from minialign.world import rl_prompts
    base_cfg = PPOConfig(**(QUICK if run.quick else {}))
    prompts = rl_prompts(base_cfg.prompt_kind, n=base_cfg.n_prompts, seed=run.seed, split="train")
    held_out = rl_prompts(base_cfg.prompt_kind, n=settings.n_eval, seed=run.seed + 1, split="test")
    print(f"\n[08] PPO from the SFT model on {len(prompts)} RL prompts; evaluation on {len(held_out)} held-out prompts")
    # The proxy reward's scale: r_phi normalised on SFT samples at the PPO temperature, shared by every run
    norm = measure_score_norm(sft, rm, [prompt_ids(tok, prompt_text(p)) for p in prompts], base_cfg,
                              end_id=end_id(tok), pad_id=tok.pad_id, seed=run.seed)
    runs = ([(f"beta={b:g}", b, settings.iterations) for b in settings.betas]
            + [("beta=0", 0.0, settings.hack_iterations)])
    histories, evals, seconds = train_and_evaluate(runs, sft, rm, tok, prompts, held_out, base_cfg, norm, out_dir,
                                                   run)
    iters_of = {name: it for name, _, it in runs}
    print_answers(evals, held_out, settings.n_shown)
    print_table(evals, iters_of)
    hacked = print_hacking(histories, evals, settings)
    corr = print_correlation(evals)

    paths = [plot_curves(histories, os.path.join(out_dir, "training_curves.png")),
             plot_reward_vs_kl(histories, evals, os.path.join(out_dir, "reward_vs_kl.png")),
             plot_components(evals, os.path.join(out_dir, "gold_components.png"))]
    per_sample = ("responses", "proxy_per_sample", "gold_per_sample")
    metrics = {"runs": {name: {k: v for k, v in e.items() if k not in per_sample} for name, e in evals.items()},
               "proxy_gold_correlation": corr, "iterations": iters_of, "score_norm": list(norm),
               "reward_hacking": hacked,
               "samples": {name: e["responses"][:settings.n_shown] for name, e in evals.items()},
               "seconds": {**{k: round(v, 1) for k, v in seconds.items()},
                           "total": round(time.perf_counter() - t_start, 1)},
               "seconds_per_iteration": {name: time_split(h) for name, h in histories.items()}}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(f"\nfigures: {', '.join(paths)}\nlesson done in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
