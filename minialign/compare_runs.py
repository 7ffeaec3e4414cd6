"""Compare the numbers two runs wrote: every `metrics.json` under two run folders, value by value.

    python -m minialign.compare_runs runs/before runs/after [--tol 1e-6]

A restructuring of the code must not change what it computes: run the same command at the same seed
before and after, then compare. Numbers are equal when |a - b| <= tol * max(1, |a|, |b|); strings and
booleans must be identical; timing keys (wall-clock seconds, tokens per second) are skipped.
Prints one line per difference and a summary; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

# Keys whose values differ between two identical computations: wall-clock times and rates.
TIMING = ("seconds", "time", "tokens_per_s", "tok_s")


def skipped(key: str) -> bool:
    """A timing key: 'train_seconds', 'seconds_per_iteration', 'tokens_per_s_median', PPO's 't_generate'."""
    k = key.lower()
    return k.startswith("t_") or any(s in k for s in TIMING)


def differences(a, b, where: str = "", tol: float = 1e-6) -> list[str]:
    """Where two JSON values differ beyond `tol` (relative, with an absolute floor of tol)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if skipped(str(k)):
                continue
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'the second' if k not in a else 'the first'} run")
            else:
                out += differences(a[k], b[k], f"{where}/{k}", tol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]", tol)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        if math.isnan(a) and math.isnan(b):
            return []
        if abs(a - b) <= tol * max(1.0, abs(a), abs(b)):
            return []
        return [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def metrics_files(folder: str) -> list[str]:
    """Paths of every metrics.json under `folder`, relative to it."""
    out = []
    for root, _, files in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, f), folder) for f in files if f == "metrics.json"]
    return sorted(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--tol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    args = p.parse_args(argv)
    first, second = metrics_files(args.first), metrics_files(args.second)
    diffs = [f"{f}: only in {args.first}" for f in first if f not in second]
    diffs += [f"{f}: only in {args.second}" for f in second if f not in first]
    for f in (f for f in first if f in second):
        with open(os.path.join(args.first, f)) as fa, open(os.path.join(args.second, f)) as fb:
            diffs += [f"{f}{d}" for d in differences(json.load(fa), json.load(fb), tol=args.tol)]
    for d in diffs:
        print(d)
    print(f"{len(first)} metrics files compared, {len(diffs)} differences (tol {args.tol:g})")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
