"""Benchmark of the foundation: generation with and without the KV cache, and the tokenizer.

    python -m minialign.bench_generate                 # tiny preset, 16 prompts x 128 new tokens, CPU
    python -m minialign.bench_generate --device cuda --preset small

1. Generation. Without a cache, every new token re-runs the model over the whole sequence so far:
   step t costs O(t) token-forwards, a response of n tokens O(n^2). With the KV cache
   (`generate(..., use_cache=True)`) each step forwards only the new token and attends to the stored
   keys and values: O(n) token-forwards in all. Both variants run the same prompts with the same seed,
   interleaved (cache, no cache, cache, ...) so a busy machine slows both alike; the ratio of the
   medians is the speedup. No stop token is given, so every row generates exactly `new_tokens` tokens
   in both variants (the model is randomly initialised: speed does not depend on the weights).
2. The tokenizer: time to train the BPE on the default corpus, and bytes per token on held-out text.

Training tokens/s of pretraining is printed by `python train.py pretrain` (tqdm) and saved as
`tokens_per_s_median` in `<out>/pretrain/metrics.json`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from .config import pick_device
from .generate import generate
from .model import GPT, PRESETS, make_config


def generation_speed(preset: str = "tiny", *, n_prompts: int = 16, new_tokens: int = 128, vocab: int = 2048,
                     rounds: int = 3, device="cpu", seed: int = 0) -> dict:
    """Median tokens/s of KV-cache and no-cache sampling, interleaved; and their ratio."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = GPT(make_config(preset, vocab_size=vocab)).to(device).eval()
    # Prompts of 8..12 tokens (different lengths: left padding and position ids are exercised too).
    prompts = [torch.randint(0, vocab - 2, (8 + i % 5,)).tolist() for i in range(n_prompts)]
    # A random model samples every id with some probability; a stop id would end rows early and make
    # the two variants generate different amounts. stop_ids=[] generates exactly new_tokens per row.
    speed = {True: [], False: []}
    for r in range(rounds):
        for cache in (True, False):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            g = generate(model, prompts, max_new_tokens=new_tokens, stop_ids=[], pad_id=vocab - 1,
                         temperature=1.0, generator=torch.Generator(device=device).manual_seed(r),
                         use_cache=cache)
            if device.type == "cuda":
                torch.cuda.synchronize()
            n = sum(len(x) for x in g.response_ids)
            speed[cache].append(n / (time.perf_counter() - t))
    cached, uncached = statistics.median(speed[True]), statistics.median(speed[False])
    return {"preset": preset, "n_prompts": n_prompts, "new_tokens": new_tokens, "rounds": rounds,
            "kv_cache_tokens_per_s": cached, "no_cache_tokens_per_s": uncached, "speedup": cached / uncached}


def tokenizer_speed(vocab_size: int = 2048, seed: int = 0) -> dict:
    """BPE training time on the default world corpus, and bytes/token on held-out documents."""
    from .tokenizer import train_bpe
    from .world import pretraining_corpus
    docs = pretraining_corpus(seed=seed, n_docs=8000)
    held = "\n\n".join(pretraining_corpus(seed=seed + 1, n_docs=500))
    t = time.perf_counter()
    tok = train_bpe(docs, vocab_size=vocab_size, progress=False)
    seconds = time.perf_counter() - t
    return {"vocab_size": vocab_size, "train_seconds": seconds,
            "bytes_per_token": len(held.encode("utf-8")) / len(tok.encode(held))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--no-tokenizer", action="store_true", help="skip the tokenizer benchmark")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    g = generation_speed(args.preset, n_prompts=args.prompts, new_tokens=args.new_tokens, rounds=args.rounds,
                         device=device)
    print(f"generation, {args.preset}, {g['n_prompts']} prompts x {g['new_tokens']} new tokens "
          f"(median of {g['rounds']} interleaved rounds):\n"
          f"  KV cache   {g['kv_cache_tokens_per_s']:8.0f} tokens/s\n"
          f"  no cache   {g['no_cache_tokens_per_s']:8.0f} tokens/s\n"
          f"  speedup    {g['speedup']:8.1f}x   (goal: >= 5x)")
    if not args.no_tokenizer:
        t = tokenizer_speed()
        print(f"tokenizer: {t['vocab_size']}-token BPE on the default corpus trained in {t['train_seconds']:.2f}s; "
              f"{t['bytes_per_token']:.2f} bytes/token on held-out text")


if __name__ == "__main__":
    main()
