"""Lesson 00: a byte-level BPE tokenizer, trained from scratch and exported to tiktoken.

The model never sees text, only token ids; this lesson builds the map between the two
(read `minialign/tokenizer.py` beside it). It shows, in order:

1. the first merges BPE learns from the corpus: frequent letter pairs first, then whole words;
2. compression (UTF-8 bytes per token on held-out text) grows with the vocabulary size. A smaller
   vocabulary is exactly a prefix of a larger one's merge list, so we train once, at the largest size;
3. the fast tiktoken encoder gives exactly the ids of the slow pure-Python reference;
4. decode(encode(text)) == text for any text, emoji and CJK included (byte-level: no unknown token);
5. special tokens: "<|user|>" typed in plain text stays ordinary bytes; only the chat template's
   `encode_with_specials` turns it into its one special id.

Run:    python lessons/00_tokenizer.py [--quick] [--out DIR] [--seed N] [--vocab-sizes 262 512 ...]
Writes: <out>/lessons/00_tokenizer/{tokenizer.json, compression.png, metrics.json}
Run time: about 4 seconds on a 2-core CPU (3.4 s measured); it builds nothing first. --quick: about a second.

Things to try: --vocab-sizes 262 2048 4096 (the embedded world's corpus runs out of pairs to merge at about
2,300 tokens: a larger vocabulary needs more text); --seed 1 (other documents of the world: the first merges
are the same pairs in a slightly different order, and compression moves by about 0.01 bytes per token).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minialign.config import ConfigError, add_dataclass_args, cli_main, from_args  # noqa: E402
from minialign.plotting import new_figure, save_figure  # noqa: E402
from minialign.tokenizer import SPECIAL_TOKENS, Tokenizer, train_bpe  # noqa: E402
from minialign.world import DEFAULT_DOCS, QUICK_DOCS, pretraining_corpus  # noqa: E402


@dataclass
class LessonConfig:
    """Lesson 00's settings. It trains only a tokenizer, so it has its own --quick, --out, --device
    and --seed instead of the pipeline's run flags."""

    quick: bool = False
    """A seconds-long run: fewer documents, smaller vocabularies, a shorter encoder comparison."""
    out: str | None = None
    """Run folder; the lesson writes to <out>/lessons/00_tokenizer (None: runs/default, or runs/quick
    with --quick)."""
    device: str = "auto"
    """Accepted for uniformity with the other lessons; BPE runs on the CPU."""
    seed: int = 0
    """Seed of the generated corpus. Range: seed >= 0."""
    n_docs: int = DEFAULT_DOCS
    """World documents to train and test on (the last tenth held out); the same scale as the pipeline's
    tokenizer (--quick: 100). Range: n_docs >= 2 (one to train on, one held out)."""
    vocab_sizes: list[int] = field(default_factory=lambda: [262, 384, 512, 1024, 2048])
    """Vocabulary sizes of the compression curve: the BPE is trained once at the largest, the others
    are prefixes of its merges; the second is also trained on its own to show the prefix property
    (--quick: 262 300 400 512). Range: vocab_sizes >= 262 (256 bytes + 6 special tokens, no merge:
    one token per byte)."""
    encoder_chars: int = 200_000
    """Characters of held-out text to encode with tiktoken and the pure-Python reference (--quick:
    20000). Range: encoder_chars >= 1."""

    def check(self) -> None:
        if len(self.vocab_sizes) < 2:
            raise ConfigError(f"--vocab-sizes must list at least two sizes (the second is trained on "
                              f"its own to show the prefix property), got {self.vocab_sizes}")


# --quick: the settings that change (from_args: defaults < QUICK < the flags given).
QUICK = dict(n_docs=QUICK_DOCS, vocab_sizes=[262, 300, 400, 512], encoder_chars=20_000)


def bytes_per_token(tok: Tokenizer, docs: list[str]) -> float:
    """Compression: UTF-8 bytes of the text divided by the number of tokens it encodes to."""
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(docs))
    return n_bytes / max(n_tokens, 1)


def show_merges(tok: Tokenizer, n: int) -> None:
    print(f"\n1. The first {n} merges (rank: left + right -> new token):")
    for i, (a, b) in enumerate(tok.merges[:n]):
        print(f"   {i:3d}: {tok.token_bytes(a)!r:>10} + {tok.token_bytes(b)!r:<10} -> "
              f"{tok.token_bytes(256 + i)!r}")
    longest = sorted(range(256, 256 + len(tok.merges)), key=lambda i: -len(tok.token_bytes(i)))[:8]
    print("   longest tokens:", ", ".join(repr(tok.token_bytes(i)) for i in longest))


def compression_curve(big: Tokenizer, sizes: list[int], heldout: list[str]) -> dict[int, float]:
    """Bytes per token on held-out text for each vocabulary size (each a prefix of `big`'s merges)."""
    n_special = len(SPECIAL_TOKENS)
    curve = {}
    print("\n2. Compression on held-out text (more merges -> fewer, longer tokens):")
    for size in sizes:
        if size > big.vocab_size:
            print(f"   vocab {size:5d}: skipped, the corpus ran out of pairs at {big.vocab_size}")
            continue
        small = Tokenizer(big.merges[: size - 256 - n_special])
        curve[size] = bytes_per_token(small, heldout)
        print(f"   vocab {size:5d}: {curve[size]:.2f} bytes per token")
    return curve


def check_encoders(tok: Tokenizer, heldout: list[str], max_chars: int) -> dict:
    """Fast (tiktoken, Rust) vs slow (pure Python, the readable algorithm): same ids, and how fast."""
    text = "\n".join(heldout)[:max_chars]
    t0 = time.perf_counter()
    fast = tok.encode(text)
    t1 = time.perf_counter()
    slow = tok.encode_slow(text)
    t2 = time.perf_counter()
    same = fast == slow
    print(f"\n3. tiktoken vs the pure-Python reference on {len(text):,} characters: "
          f"same ids: {same}; tiktoken {(t2 - t1) / max(t1 - t0, 1e-9):.0f}x faster "
          f"({len(fast) / max(t1 - t0, 1e-9):,.0f} vs {len(slow) / max(t2 - t1, 1e-9):,.0f} tokens/s)")
    return {"tiktoken_equals_reference": same, "tiktoken_tokens_per_s": len(fast) / max(t1 - t0, 1e-9),
            "reference_tokens_per_s": len(slow) / max(t2 - t1, 1e-9)}


def show_round_trip(tok: Tokenizer) -> bool:
    print("\n4. Round trip: every string survives encode -> decode")
    sentence = "The small dog runs to the park."
    pieces = [tok.token_bytes(i).decode("utf-8", errors="replace") for i in tok.encode(sentence)]
    print(f"   {sentence!r} -> {len(pieces)} tokens: |" + "|".join(pieces) + "|")
    ok = True
    for text in [sentence, "naïve café, 東京, 🙂👍🏽", "x=3.14159; emoji\u200d and \t tabs\n"]:
        ids = tok.encode(text)
        ok &= tok.decode(ids) == text
        print(f"   {text!r}: {len(text.encode('utf-8'))} bytes -> {len(ids)} tokens, "
              f"decoded back equal: {tok.decode(ids) == text}")
    return ok


def show_specials(tok: Tokenizer) -> None:
    print("\n5. Special tokens (ids after the merges):",
          ", ".join(f"{s}={i}" for s, i in tok.special.items()))
    typed = "<|user|>"
    print(f"   encode({typed!r})               -> {tok.encode(typed)}  (ordinary bytes: a user "
          "cannot forge a turn)")
    print(f"   encode_with_specials({typed!r}) -> {tok.encode_with_specials(typed)}  (the chat "
          "template's own marker)")
    chat = "<|user|>Translate to French: the small dog<|end|><|assistant|>"
    ids = tok.encode_with_specials(chat)
    print(f"   a chat prompt: {chat!r}\n   -> {ids}")


def plot(curve: dict[int, float], tok: Tokenizer, path: str) -> None:
    fig, axes = new_figure(ncols=2)
    ax = axes[0][0]
    ax.plot(list(curve), list(curve.values()), marker="o")
    for size, bpt in curve.items():
        ax.annotate(f"{bpt:.2f}", (size, bpt), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(curve), [str(size) for size in curve])
    ax.minorticks_off()
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel("vocabulary size (256 bytes + merges + specials)")
    ax.set_ylabel("UTF-8 bytes per token (held-out)")
    ax.set_title("More merges compress more")
    ax.grid(alpha=0.3)
    ax = axes[0][1]
    lengths = [len(tok.token_bytes(256 + i)) for i in range(len(tok.merges))] or [2]
    ax.hist(lengths, bins=range(2, max(lengths) + 2), align="left")
    ax.set_xlabel("token length (bytes)")
    ax.set_ylabel("number of learned tokens")
    ax.set_title(f"Lengths of the {len(tok.merges)} merged tokens")
    save_figure(fig, path)


def parse_args(argv=None) -> LessonConfig:
    """The validated LessonConfig: a bad setting stops here, before the corpus is generated."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_args(parser, LessonConfig)
    args = parser.parse_args(argv)
    return from_args(LessonConfig, args, **(QUICK if getattr(args, "quick", False) else {}))


def main(argv=None) -> int:
    settings = parse_args(argv)
    out = os.path.join(settings.out or ("runs/quick" if settings.quick else "runs/default"),
                       "lessons", "00_tokenizer")
    os.makedirs(out, exist_ok=True)

    docs, source = pretraining_corpus(seed=settings.seed, n_docs=settings.n_docs), "world"
    n_held = max(1, len(docs) // 10)
    train_docs, heldout = docs[:-n_held], docs[-n_held:]
    n_bytes = sum(len(d.encode("utf-8")) for d in train_docs)
    sizes = settings.vocab_sizes
    print(f"Corpus: {source}, {len(train_docs):,} training documents ({n_bytes / 1e6:.2f} MB), "
          f"{len(heldout):,} held out")

    t0 = time.perf_counter()
    tok = train_bpe(train_docs, vocab_size=max(sizes))
    train_time = time.perf_counter() - t0
    print(f"Trained a {tok.vocab_size}-token BPE ({len(tok.merges)} merges) in {train_time:.1f}s")

    show_merges(tok, 20)
    # a BPE trained on its own at a smaller size is exactly the prefix of the larger one's merges
    small = train_bpe(train_docs, vocab_size=sizes[1], progress=False)
    prefix_ok = small.merges == tok.merges[: len(small.merges)]
    print(f"   (a {sizes[1]}-token BPE trained on its own = the first {len(small.merges)} merges "
          f"of this one: {prefix_ok})")
    curve = compression_curve(tok, sizes, heldout)
    speed = check_encoders(tok, heldout, max_chars=settings.encoder_chars)
    round_trip_ok = show_round_trip(tok)
    show_specials(tok)

    tok.save(os.path.join(out, "tokenizer.json"))
    plot(curve, tok, os.path.join(out, "compression.png"))
    metrics = {"corpus": source, "train_docs": len(train_docs), "train_bytes": n_bytes,
               "heldout_docs": len(heldout), "vocab_size": tok.vocab_size, "train_time_s": train_time,
               "bytes_per_token": {str(k): v for k, v in curve.items()},
               "prefix_property": prefix_ok, "round_trip_ok": round_trip_ok, **speed}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"\nWrote {out}/tokenizer.json, compression.png, metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
