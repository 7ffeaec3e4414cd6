"""Figures: matplotlib with the Agg backend (no display needed), saved as PNG next to a run's outputs."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from .evaluation import EVAL_SPLITS, SPLIT_LABELS, pearson, spearman  # noqa: E402

if TYPE_CHECKING:
    from .preferences import PreferenceGroup


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A figure with a grid of axes, sized per panel."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def save_figure(fig, path: str) -> str:
    """Save as PNG (creating the folder), close the figure, return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def smooth(values, window: int = 20):
    """Trailing moving average, for noisy per-step curves."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_curves(path: str, curves: dict, *, xlabel: str = "step", title: str = "",
                ylabel: str = "", smooth_window: int = 0):
    """One panel per entry of `curves` = {name: (xs, ys)}; optional smoothing drawn over the raw line."""
    fig, axes = new_figure(ncols=len(curves))
    for ax, (name, (xs, ys)) in zip(axes[0], curves.items()):
        if smooth_window:
            ax.plot(xs, ys, alpha=0.3, color="C0")
            ax.plot(xs, smooth(list(ys), smooth_window), color="C0")
        else:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel or name)
        ax.set_title(name if not title else f"{title}: {name}")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


# PPO's logged quantities, one panel each (ppo.train_ppo's history)
PPO_PANELS = [("proxy_reward", "proxy reward (RM score)"), ("gold_reward", "gold reward (oracle)"),
           ("kl", "KL(pi_theta || pi_ref), nats"), ("beta", "beta"), ("entropy", "entropy per token"),
           ("clipfrac", "clip fraction"), ("approxkl", "approx KL old/new"), ("value_loss", "value loss"),
           ("explained_variance", "explained variance"), ("response_length", "response length"),
           ("frac_ended", "fraction ended with <|end|>")]


# GRPO's logged quantities (grpo.train_grpo's history)
GRPO_PANELS = [("reward", "reward (verifiable)"), ("pass@1", "pass@1 (training samples)"),
               ("frac_equal_groups", "groups with all-equal rewards"), ("response_length", "response length"),
               ("entropy", "entropy per token"), ("kl", "KL(pi_theta || pi_ref), nats"), ("clipfrac", "clip fraction"),
               ("approxkl", "approx KL old/new"), ("format", "well-formed answers"), ("frac_ended", "fraction ended")]


def plot_ppo_history(history: dict, path: str, title: str = "ppo", panels=None) -> str:
    """One panel per logged quantity over the iterations: PPO_PANELS by default, or the given
    [(history key, label)] (GRPO_PANELS)."""
    names = [(k, label) for k, label in (panels or PPO_PANELS) if k in history]
    ncols = 4
    fig, axes = new_figure(ncols=ncols, nrows=math.ceil(len(names) / ncols), width=3.6, height=2.8)
    flat = axes.reshape(-1)
    for ax, (k, label) in zip(flat, names):
        ax.plot(history["iteration"], history[k], color="C1" if k == "gold_reward" else "C0")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in flat[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# The reward model (reward.py)


def plot_rm_training(path: str, hist: dict, ceiling: float | None = None) -> str:
    """Left: the BT loss per step. Right: held-out pairwise accuracy vs annotators and vs oracle."""

    fig, axes = new_figure(ncols=2)
    ax = axes[0][0]
    ax.plot(hist["step"], hist["loss"], alpha=0.3, color="C0")
    ax.plot(hist["step"], smooth(hist["loss"], 20), color="C0")
    ax.axhline(math.log(2), color="gray", ls=":", label="log 2 (chance)")
    ax.set_xlabel("step")
    ax.set_ylabel("-log sigma(r_w - r_l)")
    ax.set_title("reward model loss")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    ax.plot(hist["eval_step"], hist["eval_accuracy_vs_annotators"], marker="o", label="vs annotators")
    ax.plot(hist["eval_step"], hist["eval_accuracy_vs_oracle"], marker="s", label="vs oracle (gold)")
    if ceiling is not None and not math.isnan(ceiling):
        ax.axhline(ceiling, color="gray", ls="--", label="annotators vs oracle")
    ax.axhline(0.5, color="gray", ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.set_title("accuracy on held-out comparisons")
    ax.legend(fontsize=8)
    for a in axes[0]:
        a.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_calibration(path: str, cal: dict, title: str = "reward model calibration") -> str:
    """Reliability diagram: predicted sigma(r_i - r_j) against the observed preference rate."""

    fig, axes = new_figure()
    ax = axes[0][0]
    ax.plot([0, 1], [0, 1], color="gray", ls=":", label="perfectly calibrated")
    xs = [b["predicted"] for b in cal["bins"]]
    ys = [b["observed"] for b in cal["bins"]]
    sizes = [10 + 200 * b["count"] / max(1, max(c["count"] for c in cal["bins"])) for b in cal["bins"]]
    ax.plot(xs, ys, color="C0")
    ax.scatter(xs, ys, s=sizes, color="C0", label=f"reward model (ECE {cal['ece']:.3f})")
    ax.set_xlabel("predicted P(y_i > y_j) = sigma(r_i - r_j)")
    ax.set_ylabel("observed rate the labeler preferred y_i")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_reward_vs_gold(path: str, rewards: list[np.ndarray], groups: list[PreferenceGroup]) -> str:
    """Scatter of r_phi against the oracle's gold reward on held-out responses."""

    r = np.concatenate([ri for ri, g in zip(rewards, groups) if g.gold is not None])
    gold = np.concatenate([np.asarray(g.gold) for g in groups if g.gold is not None])
    fig, axes = new_figure()
    ax = axes[0][0]
    ax.scatter(gold, r, s=6, alpha=0.4)
    ax.set_xlabel("gold reward (oracle)")
    ax.set_ylabel("r_phi(x, y) (normalised)")
    ax.set_title(f"held-out responses: Pearson {pearson(r, gold):.2f}, "
                 f"Spearman {spearman(r, gold):.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Instruction tuning (sft.py)


def plot_sft_loss(path: str, history: dict) -> str:
    """Training loss (raw and smoothed) and the held-out loss of each split."""
    fig, axes = new_figure(ncols=2)
    ax = axes[0][0]
    ax.plot(history["step"], history["loss"], alpha=0.3, color="C0")
    ax.plot(history["step"], smooth(history["loss"], 20), color="C0")
    ax.set(xlabel="step", ylabel="NLL per response token", title="SFT training loss")
    ax = axes[0][1]
    for i, (split, values) in enumerate(history["eval_loss"].items()):
        if values:
            ax.plot(history["eval_step"][-len(values):], values, marker="o", color=f"C{i}",
                    label=SPLIT_LABELS.get(split, split).replace("\n", " "))
    ax.set(xlabel="step", ylabel="NLL per response token", title="held-out loss")
    if history["eval_loss"]:
        ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_sft_scores(path: str, sft_eval: dict, base_eval: dict | None = None,
                labels=("base model", "after SFT")) -> str:
    """Left: task score per split, before vs after SFT. Right: per family, colored by split."""
    splits = [s for s in (*EVAL_SPLITS, "custom") if s in sft_eval["splits"]]
    fig, axes = new_figure(ncols=2, width=6.5, height=5.5)
    ax = axes[0][0]
    x = np.arange(len(splits))
    runs = ([(labels[0], base_eval)] if base_eval else []) + [(labels[1], sft_eval)]
    w = 0.8 / len(runs)
    for k, (label, ev) in enumerate(runs):
        vals = [ev["splits"].get(s, {}).get("score") or 0.0 for s in splits]
        bars = ax.bar(x + (k - (len(runs) - 1) / 2) * w, vals, w, label=label, color=f"C{k}")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, [SPLIT_LABELS.get(s, s) for s in splits], fontsize=8)
    ax.set(xlabel="held-out split", ylabel="task score (exact match / oracle)", ylim=(0, 1.05),
           title="seen vs unseen tasks")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    names, vals, base_vals, colors = [], [], [], []
    for i, s in enumerate(s for s in splits if s != "unseen_template"):
        for fam, summary in sft_eval["families"][s].items():
            names.append(fam)
            vals.append(summary["score"] or 0.0)
            base = (base_eval or {}).get("families", {}).get(s, {}).get(fam, {})
            base_vals.append(base.get("score") or 0.0)
            colors.append("C2" if s == "unseen_family" else "C1")
    y = np.arange(len(names))
    ax.barh(y, vals, color=colors, label="after SFT")
    if base_eval:
        ax.scatter(base_vals, y, color="black", marker="|", s=80, label="base model", zorder=3)
    ax.set_yticks(y, names, fontsize=6)
    ax.invert_yaxis()
    ax.set(xlabel="task score", ylabel="task family", xlim=(0, 1.05), title="per family (orange: seen, green: unseen)")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Fine-grained rewards (finegrained.py)


def plot_segment_rm_training(hists: dict, path: str) -> str:
    fig, axes = new_figure(ncols=len(hists), width=4.0)
    for ax, (name, h) in zip(axes[0], hists.items()):
        ax.plot(h["loss"], alpha=0.3, color="C0")
        ax.plot(smooth(h["loss"], 20), color="C0")
        ax.set_title(f"{name} segment RM: BCE per segment", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_finegrained_comparison(evals: dict, path: str) -> str:
    """Bars per policy: gold reward and the oracle's sentence error rates."""
    keys = ["gold_reward", "toxic_sentences", "irrelevant_sentences", "wrong_sentences", "sentences_per_response"]
    fig, axes = new_figure(ncols=len(keys), width=2.8)
    for ax, key in zip(axes[0], keys):
        names = list(evals)
        ax.bar(range(len(names)), [evals[n].get(key, float("nan")) for n in names],
               color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.set_title(key.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# DPO (dpo.py)


def plot_dpo_training(history: dict, path: str) -> str:
    """Implicit rewards of y_w and y_l, their margin and the accuracy, and summed log-probs, by step."""
    rows = history["step"]
    steps = [r["step"] for r in rows]
    w = max(1, len(rows) // 20)
    s = lambda k: smooth([r[k] for r in rows], w)
    fig, axes = new_figure(ncols=3)
    ax = axes[0][0]
    ax.plot(steps, s("rewards/chosen"), label="chosen  beta log pi/pi_ref (y_w)")
    ax.plot(steps, s("rewards/rejected"), label="rejected  beta log pi/pi_ref (y_l)")
    ax.plot(steps, s("rewards/margins"), label="margin", color="k")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_title("implicit rewards")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    ax.plot(steps, s("rewards/accuracy"), color="C2")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("implicit reward accuracy (chosen > rejected)")
    ax = axes[0][2]
    ax.plot(steps, s("logps/chosen"), label="log pi_theta(y_w|x)")
    ax.plot(steps, s("logps/rejected"), label="log pi_theta(y_l|x)")
    ax.set_title("summed log-probs")
    ax.legend(fontsize=7)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_pass_at_k(evals: dict, ks: list[int], path: str, title: str = "held-out problems") -> str:
    """pass@k against k (log scale) for each model {name: evaluation.evaluate_reasoning result}, with error bars of
    one standard error over problems: RL that sharpens the distribution lifts pass@1 toward the start's pass@k."""
    fig, axes = new_figure(width=5.0, height=3.6)
    ax = axes[0, 0]
    for i, (name, ev) in enumerate(evals.items()):
        ax.errorbar(ks, [ev[f"pass@{k}"] for k in ks], yerr=[ev[f"pass@{k}_se"] for k in ks], marker="o",
                    capsize=3, color=f"C{i}", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_heldout_curve(evals: dict, start: dict, path: str, top_k: int = 8) -> str:
    """Held-out pass@1 over GRPO's iterations (evals = history["eval"]: "iteration", "pass@1"), with the starting
    model's pass@1 and pass@top_k as dotted lines: the ceiling that sharpening the start's distribution can reach."""
    fig, axes = new_figure(width=5.0, height=3.4)
    ax = axes[0, 0]
    ax.plot(evals["iteration"], evals["pass@1"], marker="o", color="C1", label="held-out pass@1 (policy)")
    for k, style in ((1, ":"), (top_k, "--")):
        if f"pass@{k}" in start:
            ax.axhline(start[f"pass@{k}"], color="C0", linestyle=style, label=f"SFT start: pass@{k}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
