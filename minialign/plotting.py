"""Figures: matplotlib with the Agg backend (no display needed), saved as PNG next to a run's outputs."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


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


def plot_ppo_history(history: dict, path: str, title: str = "ppo") -> str:
    """One panel per logged quantity over the PPO iterations."""
    names = [(k, label) for k, label in PPO_PANELS if k in history]
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
