"""Benchmark of the per-token log-prob kernel: time and peak memory of one forward + backward, against the naive way.

    python -m minialign.bench                      # CPU, the default shapes (~5 minutes on 2 cores)
    python -m minialign.bench --shapes quick       # seconds
    python -m minialign.bench --device cuda --shapes gpu --out runs/bench

Variants (each computes per-token log p(y_t) from hidden states h (N, d) and the output embedding W (V, d), then
backpropagates sum_t g_t log p_t with a random upstream g, as PPO or DPO would):
    naive          log_softmax(h W^T).gather(y)                         (minialign.logprobs.naive_token_logprobs)
    cross_entropy  -F.cross_entropy(h W^T, y, reduction="none")         (PyTorch's fused log-softmax + NLL)
    torch_lce      -F.linear_cross_entropy(h, W, y, reduction="none", options=...)   (PyTorch's own chunked
                   linear + cross-entropy, where the installed torch has it; chunk size --lce-chunk)
    ours           minialign.logprobs.token_logprobs
    naive_ent      naive log_softmax, then H = -sum p log p                (the baseline for ours_ent)
    ours_ent       token_logprobs(..., return_entropy=True); the loss adds sum_t g'_t H_t

Time: the median of --repeats runs after one warm-up. Variants are interleaved in rounds (and the order rotated
each round), so the swings in machine speed that shared machines show hit all variants alike; ratios are taken
against the baseline measured in the same rounds. The table also gives the ratio of CPU time (of this process):
on a machine busy with other jobs, a single-threaded run (--threads 1) then still measures the work each variant
does, while wall time also counts the waits for a free core. Memory: the peak extra memory of one forward + backward over
what the inputs already use, gradients included. On CPU it is the peak resident set size (RSS) of a fresh
subprocess per (variant, shape), measured from after the inputs are allocated; on CUDA it is
torch.cuda.max_memory_allocated. Absolute seconds on shared VMs swing by up to 2x; compare ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from minialign.logprobs import naive_token_logprobs, token_logprobs

# (B, T, V, d). "default": GPT-2's vocabulary at GPT-2's width and at a small width, a mid-size vocabulary, and the
# tiny preset's training batch (B=16, T=256, V=2048, d=128).
SHAPES = {
    "quick": [(4, 64, 2048, 64), (4, 64, 8192, 64)],
    "default": [(8, 256, 50257, 768), (8, 256, 50257, 128), (16, 128, 8192, 256), (16, 256, 2048, 128)],
    "gpu": [(8, 1024, 50257, 768), (8, 1024, 50257, 2048), (4, 2048, 131072, 4096)],
}
VARIANTS = ["naive", "cross_entropy", "torch_lce", "ours", "naive_ent", "ours_ent"]
BASELINE = {"naive_ent": "naive_ent", "ours_ent": "naive_ent"}  # every other variant compares with "naive"
MIB = 2**20


def has_torch_lce() -> bool:
    return hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions")


def available_variants(names=None) -> list[str]:
    names = list(names or VARIANTS)
    return [v for v in names if v != "torch_lce" or has_torch_lce()]


def make_inputs(shape, device, dtype=torch.float32, seed=0):
    """h (N, d), W (V, d) both requiring grad, y (N,), upstream weights g, g_ent (N,). GPT-2-like scales."""
    b, t, v, d = shape
    n = b * t
    gen = torch.Generator().manual_seed(seed)
    # Generated in place (no temporaries) so the memory baseline is clean.
    h = torch.randn(n, d, generator=gen).to(device=device, dtype=dtype).requires_grad_()
    w = torch.randn(v, d, generator=gen).mul_(0.02).to(device=device, dtype=dtype).requires_grad_()
    y = torch.randint(0, v, (n,), generator=gen).to(device)
    g = torch.rand(n, generator=gen).to(device)
    g_ent = torch.rand(n, generator=gen).to(device)
    return h, w, y, g, g_ent


def forward_backward(variant, inputs, lce_chunk=256):
    """One forward + backward of `variant` on inputs = make_inputs(...)."""
    h, w, y, g, g_ent = inputs
    h.grad = w.grad = None
    if variant == "naive":
        loss = (naive_token_logprobs(h, w, y) * g).sum()
    elif variant == "cross_entropy":
        loss = (-F.cross_entropy(h @ w.T, y, reduction="none") * g).sum()
    elif variant == "torch_lce":
        options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=lce_chunk or None)
        loss = (-F.linear_cross_entropy(h, w, y, reduction="none", options=options) * g).sum()
    elif variant == "ours":
        loss = (token_logprobs(h, w, y) * g).sum()
    elif variant in ("naive_ent", "ours_ent"):
        fn = naive_token_logprobs if variant == "naive_ent" else token_logprobs
        logp, entropy = fn(h, w, y, return_entropy=True)
        loss = (logp * g).sum() + (entropy * g_ent).sum()
    else:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    loss.backward()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_variants(shape, variants, *, repeats, device, dtype=torch.float32, seed=0, lce_chunk=256, progress=None):
    """One warm-up round, then `repeats` interleaved rounds. Returns ({variant: [wall seconds]},
    {variant: [CPU seconds of this process]}); on a machine shared with other jobs the CPU time of a
    single-threaded run (--threads 1) measures the work done without the time spent waiting for a core."""
    inputs = make_inputs(shape, device, dtype, seed)
    wall, cpu = {v: [] for v in variants}, {v: [] for v in variants}
    for r in range(repeats + 1):
        k = r % len(variants)
        for variant in variants[k:] + variants[:k]:  # rotate the order so no variant always runs first
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            forward_backward(variant, inputs, lce_chunk)
            _sync(device)
            if r > 0:  # round 0 is the warm-up
                wall[variant].append(time.perf_counter() - start)
                cpu[variant].append(time.process_time() - start_cpu)
        if progress is not None:
            progress.update(1)
    del inputs
    gc.collect()
    return wall, cpu


# ---------------------------------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------------------------------


def _rss_bytes():
    """(current RSS, peak RSS) of this process in bytes. Linux: /proc; elsewhere only the peak is known."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError):
        import resource  # Unix only; imported here so the rest of the benchmark runs anywhere

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return peak, peak


def _reset_peak_rss():
    """Reset the kernel's peak-RSS counter (Linux >= 4.0), so the peak starts from now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:   # not Linux, or not allowed: the peak then counts from the process start
        pass


def _probe_memory(variant, shape, dtype, seed, lce_chunk):
    """Run in a fresh subprocess: peak extra RSS (bytes) of one forward + backward over the inputs' RSS."""
    device = torch.device("cpu")
    forward_backward(variant, make_inputs((1, 8, 64, 16), device, dtype, seed), lce_chunk)  # one-time setup
    inputs = make_inputs(shape, device, dtype, seed)
    gc.collect()
    _reset_peak_rss()
    base, _ = _rss_bytes()
    forward_backward(variant, inputs, lce_chunk)
    _, peak = _rss_bytes()
    return max(peak - base, 0)


def measure_memory(variant, shape, *, device, dtype=torch.float32, seed=0, lce_chunk=256):
    """Peak extra memory in bytes of one forward + backward of `variant` (None where it cannot be measured)."""
    if device.type == "cuda":
        inputs = make_inputs(shape, device, dtype, seed)
        forward_backward(variant, inputs, lce_chunk)  # warm-up: cuBLAS workspaces are not the kernel's memory
        inputs[0].grad = inputs[1].grad = None
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        forward_backward(variant, inputs, lce_chunk)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    if device.type != "cpu":
        return None
    spec = json.dumps(dict(variant=variant, shape=list(shape), dtype=str(dtype).split(".")[-1], seed=seed,
                           lce_chunk=lce_chunk))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so the child imports this minialign
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "minialign.bench", "--probe-memory", spec,
                           "--threads", str(torch.get_num_threads())],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {variant} {shape} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["extra_bytes"]


# ---------------------------------------------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------------------------------------------


def run_benchmark(shapes, variants=None, *, repeats=5, device="cpu", dtype=torch.float32, seed=0, lce_chunk=256,
                  memory=True, progress=True):
    """Time (and measure memory of) every variant at every shape. Returns one row (dict) per (shape, variant)."""
    from tqdm import tqdm

    device = torch.device(device)
    variants = available_variants(variants)
    rows = []
    bar = tqdm(total=len(shapes) * (repeats + 1 + (len(variants) if memory else 0)), desc="bench",
               disable=not progress)
    for shape in shapes:
        b, t, v, d = shape
        bar.set_postfix_str(f"B={b} T={t} V={v} d={d}: timing")
        times, cpu_times = time_variants(shape, variants, repeats=repeats, device=device, dtype=dtype, seed=seed,
                                         lce_chunk=lce_chunk, progress=bar)
        bar.set_postfix_str(f"B={b} T={t} V={v} d={d}: memory")
        mem = dict.fromkeys(variants)
        if memory:
            def probe(variant):
                extra = measure_memory(variant, shape, device=device, dtype=dtype, seed=seed, lce_chunk=lce_chunk)
                bar.update(1)
                return extra

            # CPU probes are separate processes, so two at a time measure the same as one at a time
            with ThreadPoolExecutor(max_workers=2 if device.type == "cpu" else 1) as pool:
                mem = dict(zip(variants, pool.map(probe, variants)))
        for variant in variants:
            base = BASELINE.get(variant, "naive")
            row = dict(B=b, T=t, V=v, d=d, N=b * t, variant=variant, baseline=base,
                       time_s=statistics.median(times[variant]), times_s=times[variant],
                       cpu_s=statistics.median(cpu_times[variant]),
                       peak_extra_mib=None if mem[variant] is None else mem[variant] / MIB)
            if base in times:
                row["time_ratio"] = row["time_s"] / statistics.median(times[base])
                # the same comparison round by round, less sensitive to a slow phase hitting one median
                row["paired_time_ratio"] = statistics.median(a / b for a, b in zip(times[variant], times[base]))
                row["cpu_ratio"] = row["cpu_s"] / statistics.median(cpu_times[base])
            if mem.get(base):
                row["mem_ratio"] = mem[variant] / mem[base] if mem[variant] is not None else None
            rows.append(row)
    bar.close()
    return rows


def format_table(rows) -> str:
    """A markdown table: one line per (shape, variant)."""
    lines = ["| B x T (N) | V | d | variant | fwd+bwd median (s) | x baseline | CPU time x baseline | "
             "peak extra (MiB) | x baseline |",
             "|---|---|---|---|---|---|---|---|---|"]

    def fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    for r in rows:
        base = "" if r["baseline"] == "naive" else f" (vs {r['baseline']})"
        lines.append(f"| {r['B']} x {r['T']} ({r['N']}) | {r['V']} | {r['d']} | {r['variant']} | "
                     f"{r['time_s']:.3f} | {fmt(r.get('time_ratio'), '.2f')}{base} | {fmt(r.get('cpu_ratio'), '.2f')} | "
                     f"{fmt(r['peak_extra_mib'], '.0f')} | {fmt(r.get('mem_ratio'), '.2f')} |")
    return "\n".join(lines)


def _ratio(rows, shape_pred, variant, key):
    vals = [r.get(key) for r in rows if r["variant"] == variant and shape_pred(r)]
    return [v for v in vals if v is not None]


def check_goals(rows) -> list[tuple[str, bool | None, str]]:
    """The kernel's goals on CPU, checked on the rows: [(goal, met (None = not measured), measured values)]."""
    big_v = lambda r: r["V"] >= 32768  # noqa: E731
    goals = [
        ("peak memory <= 0.2x naive at V >= 32k", lambda: _ratio(rows, big_v, "ours", "mem_ratio"), 0.2),
        ("time <= 1.0x naive at V >= 32k, d >= 768",
         lambda: _ratio(rows, lambda r: big_v(r) and r["d"] >= 768, "ours", "time_ratio"), 1.0),
        ("time <= 0.8x naive at V >= 32k, d <= 256",
         lambda: _ratio(rows, lambda r: big_v(r) and r["d"] <= 256, "ours", "time_ratio"), 0.8),
        ("time <= 1.2x naive at V <= 8192", lambda: _ratio(rows, lambda r: r["V"] <= 8192, "ours", "time_ratio"),
         1.2),
        ("with entropy: time <= 1.0x naive log-probs+entropy",
         lambda: _ratio(rows, lambda r: True, "ours_ent", "time_ratio"), 1.0),
    ]
    out = []
    for name, values, limit in goals:
        vals = values()
        out.append((name, (max(vals) <= limit) if vals else None, ", ".join(f"{v:.2f}" for v in vals)))
    # faster than torch's F.linear_cross_entropy at every shape (same rounds, so compare the medians directly)
    lce = {(r["B"], r["T"], r["V"], r["d"]): r["time_s"] for r in rows if r["variant"] == "torch_lce"}
    ours = {(r["B"], r["T"], r["V"], r["d"]): r["time_s"] for r in rows if r["variant"] == "ours"}
    both = [k for k in ours if k in lce]
    out.append(("faster than torch's F.linear_cross_entropy at every shape",
                all(ours[k] < lce[k] for k in both) if both else None,
                ", ".join(f"{ours[k] / lce[k]:.2f}x" for k in both)))
    return out


def environment(device) -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return dict(torch=torch.__version__, python=platform.python_version(), device=str(device),
                cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                cpus=os.cpu_count(), load_average=load)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps, or auto (cuda, then mps, then cpu)")
    parser.add_argument("--shapes", default="default", choices=sorted(SHAPES), help="which (B, T, V, d) set")
    parser.add_argument("--shape", action="append", default=None, metavar="B,T,V,d",
                        help="a shape of your own (repeatable); replaces --shapes")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant after one warm-up")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + str(VARIANTS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--lce-chunk", type=int, default=256,
                        help="batch_chunk_size for torch_lce; 0 = torch's own heuristic (very slow on CPU)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for bench.json and bench.md")
    parser.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)  # internal: the CPU child process
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.probe_memory:
        spec = json.loads(args.probe_memory)
        extra = _probe_memory(spec["variant"], tuple(spec["shape"]), getattr(torch, spec["dtype"]), spec["seed"],
                              spec["lce_chunk"])
        print(json.dumps({"extra_bytes": extra}))
        return None

    from minialign.config import pick_device

    device = pick_device(args.device)
    shapes = [tuple(int(x) for x in s.split(",")) for s in args.shape] if args.shape else SHAPES[args.shapes]
    env = environment(device)
    print(f"log-prob kernel benchmark on {device} ({env['threads']} threads, torch {env['torch']}, {args.dtype}); "
          f"shapes {args.shapes}: {shapes}")
    rows = run_benchmark(shapes, args.variants.split(","), repeats=args.repeats, device=device, dtype=dtype,
                         seed=args.seed, lce_chunk=args.lce_chunk, memory=not args.no_memory)
    table = format_table(rows)
    goals = check_goals(rows) if device.type == "cpu" else []
    print("\n" + table + "\n")
    for name, met, values in goals:
        print(f"  [{'met' if met else 'NOT met' if met is False else 'n/a'}] {name}: {values}")
    if args.out:
        from minialign.config import write_json

        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "bench.json"),
                   dict(environment=env | {"load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
                        args=vars(args), rows=rows, goals=[dict(goal=n, met=m, values=v) for n, m, v in goals]))
        with open(os.path.join(args.out, "bench.md"), "w") as f:
            f.write(table + "\n")
        print(f"\nwrote {os.path.join(args.out, 'bench.json')} and bench.md")
    return rows


if __name__ == "__main__":
    main()
