"""Lesson 11: why log-probs dominate post-training memory, and the kernel that avoids it.

Every method of the lectures needs per-token log-probabilities log pi(y_t | x, y_<t): the SFT loss is
their mean, PPO's ratio and per-token KL penalty are differences of them (policy pi_theta, old policy,
reference pi_ref), and DPO sums them over y_w and y_l for pi_theta and pi_ref. The textbook way,
log_softmax(h W^T).gather(y), builds the logits for every token and every word of the vocabulary:
B x T x V floats, several times over. This lesson
1. counts those bytes for GPT-2 sizes, next to the model itself;
2. shows the online logsumexp on a tiny worked example (the idea that makes them unnecessary);
3. checks minialign's kernel (minialign/logprobs.py) against the textbook way;
4. measures time and peak memory of both as the vocabulary grows, and plots them.

    python lessons/11_logprob_kernel.py            # ~25 s on a quiet 2-core CPU (23 s measured)
    python lessons/11_logprob_kernel.py --quick    # seconds, small shapes

It builds nothing first: no model and no stage of the pipeline, only random tensors of the measured shapes.

Things to try: --seq-len 512 (N = B x T grows, and the naive way's (N, V) log-prob tensor with it);
--vocab-sizes 50257 100000 (a modern vocabulary).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from minialign.bench import format_table, run_benchmark  # noqa: E402
from minialign.config import add_dataclass_args, cli_main, from_args, write_json  # noqa: E402
from minialign.logprobs import IGNORE_INDEX, default_tiles, naive_token_logprobs, token_logprobs  # noqa: E402
from minialign.pipeline import add_run_args, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402

GB = 1e9
MIB = 2**20


@dataclass
class LessonConfig:
    """The benchmark's shapes (section 4; the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK."""

    batch_size: int = 8
    """B, sequences per batch (--quick: 2). Range: batch_size >= 1."""
    seq_len: int = 128
    """T, tokens per sequence; N = B x T tokens. Range: seq_len >= 1."""
    hidden_size: int = 128
    """d, the width of the hidden states h and of each row of W (--quick: 64). Range: hidden_size >= 1."""
    vocab_sizes: list[int] = field(default_factory=lambda: [2048, 8192, 16384, 32768, 50257])
    """V, the vocabulary sizes measured, e.g. --vocab-sizes 2048 8192 (--quick: 1024 4096 16384).
    Range: vocab_sizes >= 1."""
    repeats: int = 5
    """Timed repeats per shape; the median is reported (--quick: 3). Range: repeats >= 1."""


# --quick: seconds, small shapes.
LESSON_QUICK = dict(batch_size=2, hidden_size=64, vocab_sizes=[1024, 4096, 16384], repeats=3)


def human_bytes(b: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b:.0f} B"


def memory_story(batch: int = 8, seq_len: int = 1024, vocab: int = 50257, d: int = 768,
                 n_params: int = 124_000_000) -> dict:
    """Bytes of the naive log-prob computation for a GPT-2 (124M) PPO/DPO batch, in plain words."""
    n = batch * seq_len
    copy = n * vocab * 4  # one float32 (B, T, V) tensor
    token_tile, vocab_tile = default_tiles("cpu", n)
    rows = {
        "model weights (float32)": n_params * 4,
        "final hidden states h (B, T, d)": n * d * 4,
        "one float32 copy of the logits (B, T, V)": copy,
        "policy pi_theta, naive: logits + log_softmax + its gradient (3 copies)": 3 * copy,
        "reference pi_ref, naive (no gradient): logits + log_softmax (2 copies)": 2 * copy,
        "fused kernel, policy: per-token logp + lse (2 x B x T floats)": 2 * n * 4,
        f"fused kernel, one tile of workspace ({token_tile} x {vocab_tile} floats, on a CPU)":
            token_tile * vocab_tile * 4,
        "gradients dL/dW and dL/dh (any method pays these)": (vocab * d + n * d) * 4,
    }
    print(f"\n1. Why log-probs dominate memory. GPT-2 small (V = {vocab:,}, d = {d}, {n_params / 1e6:.0f}M "
          f"parameters), a batch of B = {batch} sequences of T = {seq_len} tokens (N = {n:,} tokens):")
    for name, b in rows.items():
        print(f"   {human_bytes(b):>9s}  {name}")
    print(f"   The hidden states are {human_bytes(n * d * 4)}, but the logits are V / d = {vocab / d:.0f} times "
          f"larger. With PPO (policy and reference, often also an old policy) the (B, T, V) copies reach "
          f"{5 * copy / GB:.0f} GB, {5 * copy / (n_params * 4):.0f}x the model. Yet each token needs only two "
          f"numbers from its row of V logits: the target's logit z[y] and lse = log sum_v exp(z_v).")
    return rows


def online_logsumexp_example() -> dict:
    """Print the running max m and running sum s over tiles of a tiny logit vector."""
    z = torch.tensor([2.0, -1.0, 0.5, 3.0, 1.0, -2.0])
    print("\n2. The online logsumexp: read the logits a tile at a time, keep only a running max m and a running "
          "sum s = sum exp(z - m).\n   When a tile raises the max, rescale the old sum by exp(m_old - m_new).")
    print(f"   logits z = {z.tolist()}, tiles of 2")
    m, s = -math.inf, 0.0
    steps = []
    for i in range(0, len(z), 2):
        tile = z[i:i + 2].tolist()
        m_new = max(m, *tile)
        alpha = math.exp(m - m_new)  # exp(-inf) = 0 on the first tile: nothing to rescale
        s = s * alpha + sum(math.exp(v - m_new) for v in tile)
        print(f"   tile {tile}: m = {m_new:4.1f}, old sum x exp({m:4.1f} - {m_new:4.1f}) = x {alpha:.3f}, "
              f"s = {s:.4f}")
        m = m_new
        steps.append(dict(tile=tile, m=m, s=s))
    lse = m + math.log(s)
    exact = torch.logsumexp(z, 0).item()
    print(f"   lse = m + log s = {lse:.6f};  torch.logsumexp(z) = {exact:.6f}.  log p(y=3) = z[3] - lse = "
          f"{z[3].item() - lse:.4f}")
    print("   The kernel does this for (tokens x vocab) tiles of z = h W^T, so no (N, V) tensor ever exists; the "
          "backward recomputes each tile\n   and uses d log p / dz = onehot(y) - softmax(z), with softmax(z) = "
          "exp(z - lse).")
    return dict(steps=steps, lse=lse, exact=exact)


def correctness_check(device, seed: int) -> dict:
    """Kernel vs textbook on one random batch: values and both gradients (float32)."""
    gen = torch.Generator().manual_seed(seed)
    b, t, v, d = 4, 96, 3000, 64
    h = torch.randn(b, t, d, generator=gen).to(device)
    w = (torch.randn(v, d, generator=gen) * 0.1).to(device)
    y = torch.randint(0, v, (b, t), generator=gen).to(device)
    y[:, :10] = IGNORE_INDEX  # e.g. prompt tokens: no log-prob, no gradient
    results = {}
    for name, fn in (("naive", naive_token_logprobs), ("ours", token_logprobs)):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        logp = fn(hh, ww, y)
        logp.sum().backward()
        results[name] = (logp.detach(), hh.grad, ww.grad)
    diff = {k: (a - b).abs().max().item() for k, a, b in zip(("logp", "dh", "dW"), results["ours"],
                                                                 results["naive"])}
    print(f"\n3. Check: the kernel against log_softmax + gather on {b * t} tokens, V = {v}, float32: "
          f"max |difference| logp {diff['logp']:.1e}, dL/dh {diff['dh']:.1e}, dL/dW {diff['dW']:.1e}.")
    return diff


def plot_scaling(path: str, rows, n_tokens: int) -> str:
    """Peak extra memory and time of one forward + backward against V, naive vs the kernel."""
    fig, axes = new_figure(ncols=2)
    labels = {"naive": "naive log_softmax + gather", "ours": "minialign kernel (token_logprobs)"}
    for variant, style in (("naive", "o-"), ("ours", "s-")):
        pts = sorted((r["V"], r["peak_extra_mib"], r["time_s"]) for r in rows if r["variant"] == variant)
        vs = [p[0] for p in pts]
        if pts[0][1] is not None:
            axes[0][0].plot(vs, [p[1] for p in pts], style, label=labels[variant])
        axes[0][1].plot(vs, [p[2] for p in pts], style, label=labels[variant])
    vs = sorted({r["V"] for r in rows})
    axes[0][0].plot(vs, [3 * n_tokens * v * 4 / MIB for v in vs], ":", color="gray",
                    label="3 x N x V floats (naive's three copies)")
    axes[0][0].set_ylabel("peak extra memory (MiB)")
    axes[0][0].set_title(f"Memory of forward + backward, N = {n_tokens} tokens")
    axes[0][1].set_ylabel("seconds (median)")
    axes[0][1].set_title(f"Time of forward + backward, N = {n_tokens} tokens")
    for ax in axes[0]:
        ax.set_xlabel("vocabulary size V")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", "11_logprob_kernel")
    print("\n\n".join(__doc__.split("\n\n")[:2]))

    story = memory_story()
    example = online_logsumexp_example()
    check = correctness_check(run.device, run.seed)

    # 4. The benchmark at lesson scale (minialign.bench does the timing and the memory measurement).
    b, t, d = settings.batch_size, settings.seq_len, settings.hidden_size
    vocabs, repeats = settings.vocab_sizes, settings.repeats
    shapes = [(b, t, v, d) for v in vocabs]
    print(f"\n4. Measuring one forward + backward, N = {b * t} tokens, d = {d}, V = {list(vocabs)} on {run.device} "
          f"(median of {repeats}; memory = peak over the inputs, gradients included)...")
    rows = run_benchmark(shapes, ["naive", "ours"], repeats=repeats, device=run.device, seed=run.seed)
    print("\n" + format_table(rows))
    ours = [r for r in rows if r["variant"] == "ours"]
    big = max(ours, key=lambda r: r["V"])
    mem = "" if big.get("mem_ratio") is None else f"{big['mem_ratio']:.2f}x the memory and "
    paid = ("the saved memory traffic pays that back here" if big["time_ratio"] <= 1.0
            else "measured here as the extra time")
    print(f"\nAt V = {big['V']:,} the kernel needs {mem}{big['time_ratio']:.2f}x the time of the naive way. The "
          f"naive memory grows with N x V; the kernel's stays at the gradients plus one tile of workspace. The "
          f"price is recomputing the logits in backward (8 N d V FLOPs instead of 6); {paid}.")

    os.makedirs(out_dir, exist_ok=True)
    fig_path = plot_scaling(os.path.join(out_dir, "memory_time_vs_vocab.png"), rows, b * t)
    metrics = dict(memory_story_bytes=story, online_logsumexp=example, max_abs_diff_vs_naive=check,
                   shapes=shapes, device=str(run.device), rows=rows)
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(f"\nFigure: {fig_path}\nMetrics: {os.path.join(out_dir, 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
