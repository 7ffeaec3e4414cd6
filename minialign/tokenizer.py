"""Byte-level BPE, trained from scratch, encoded fast by tiktoken.

What BPE is
-----------
Byte-pair encoding (Sennrich et al. 2016; GPT-2, Radford et al. 2019) builds a vocabulary by
starting from single symbols and repeatedly gluing together the most frequent *adjacent pair*.
Every glue step is a "merge" `(left_id, right_id) -> new_id`; the ordered list of merges *is* the
tokenizer. Byte-level BPE starts from the 256 byte values, so every string (any language, emoji,
binary junk) can be encoded: in the worst case one token per UTF-8 byte, never an "unknown" token.

Training, in numbered steps (`train_bpe`)
-----------------------------------------
1. Pre-tokenize: split the text with a regex into chunks (words with their leading space,
   numbers, runs of punctuation, whitespace). Merges never cross a chunk boundary, so
   " dog" and " dog." share the token " dog" instead of learning "dog." as a separate word.
2. Count the chunks. A few MB of English has only tens of thousands of *distinct* chunks, so we
   train on (chunk, count) pairs instead of the running text: that is what makes it fast.
3. Write every distinct chunk as its list of UTF-8 byte ids (0..255), and count every adjacent
   pair over the corpus: count(a, b) = sum over chunks of (occurrences of a,b in the chunk) * (chunk count).
4. Take the most frequent pair (ties: the smallest (a, b)), give it the next id 256, 257, ...,
   and replace it in every chunk that contains it, left to right.
5. Update the pair counts *incrementally*: only chunks that contained the pair changed, so
   subtract their old pairs and add their new ones (instead of recounting the whole corpus).
6. Repeat 4-5 until the vocabulary has `vocab_size` tokens (256 bytes + merges + specials).

Encoding (`Tokenizer.encode_slow` is the readable reference, `Tokenizer.encode` the fast one)
----------------------------------------------------------------------------------------------
Pre-tokenize the same way; in each chunk, repeatedly apply the merge with the lowest rank (the
earliest learned) among the adjacent pairs present, until no learned pair is left.
tiktoken does exactly this in Rust when given `mergeable_ranks = {token_bytes: rank}` with ranks
0..255 = the single bytes and 256.. = the merges in training order: it merges the adjacent pair
whose concatenated bytes has the lowest rank. Training applied merges in that same order, so
every token's bytes are reachable and both encoders agree (tests/test_tokenizer.py checks it).

Special tokens (`SPECIAL_TOKENS`) get the ids right after the merges. Plain `encode` treats a
string such as "<|user|>" in the text as ordinary bytes, so text can never forge a chat turn;
only `encode_with_specials` (used by the chat template) turns them into their ids.

Where this deviates from GPT-2, and why
---------------------------------------
- GPT-2 maps each byte to a printable unicode character (`bytes_to_unicode`) because its merges
  file is text. We keep raw bytes and store merges as pairs of integer ids, so no remap is needed.
- Pre-tokenization regex. GPT-2's pattern uses `\\p{L}` (letter) and `\\p{N}` (number), which
  Python's `re` lacks. The trainer and `encode_slow` use `SPLIT_PATTERN` with `[^\\W\\d_]` for a letter
  and `\\d` for a number; tiktoken gets GPT-2's own `TIKTOKEN_PATTERN`. They split identically on
  ASCII, accented and non-Latin letters, CJK and emoji (tested). Known differences, absent from
  our corpus: characters that are numbers but not decimal digits ("²", "½", "Ⅻ") count as
  letters for `re`, and the control characters U+001C..U+001F are whitespace for `re` only.
- Ties between equally frequent pairs go to the smallest (left id, right id), so training is
  deterministic. Overlapping pairs are all counted ("aaa" has two (a, a)), as in minbpe and
  Hugging Face tokenizers, although only one of them can be merged.
- A merge whose bytes already exist as a token would be skipped: tiktoken keys tokens by their
  bytes, so each byte string may be only one token. This is a guard; we have not seen it happen
  (not on English, code, or thousands of random small corpora).
- GPT-2 has one special token (<|endoftext|>); we add the chat-template tokens after it.
- If the corpus runs out of pairs, training stops early and `vocab_size` comes out smaller.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter, defaultdict
from typing import Iterable

import tiktoken
from tqdm.auto import tqdm

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# GPT-2's pre-tokenization regex (contractions | words | numbers | punctuation | whitespace),
# in Python `re` syntax: a letter is "a word character that is not a digit or underscore".
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
# The same regex with Unicode classes, for tiktoken's Rust regex engine.
TIKTOKEN_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# tiktoken's "gpt2"/"r50k_base" spelling of GPT-2's regex (possessive, same splits).
_R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

FORMAT = "minialign-bpe"
FORMAT_VERSION = 1


class TokenizerFileError(Exception):
    """A tokenizer file is missing or unreadable; the message names the file."""


# ----------------------------------------------------------------------------------------------
# Training
def pretokenize(text: str, pattern: str = SPLIT_PATTERN) -> list[str]:
    """Split text into the chunks that BPE works inside (step 1). Concatenated, they give `text` back."""
    return re.findall(pattern, text)


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right, by `new_id`."""
    a, b = pair
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def count_chunks(texts: Iterable[str], pattern: str = SPLIT_PATTERN, progress: bool = True) -> Counter:
    """Steps 1-2: {chunk: number of occurrences} over all documents (chunks never span two documents)."""
    counts: Counter = Counter()
    for text in tqdm(texts, desc="pre-tokenize", unit="doc", disable=not progress, leave=False):
        counts.update(pretokenize(text, pattern))
    return counts


def learn_merges(words: list[list[int]], counts: list[int], n_merges: int,
                 progress: bool = True) -> list[tuple[int, int]]:
    """Steps 3-6 on distinct chunks: `words[w]` is chunk w as token ids, seen `counts[w]` times.

    Returns up to `n_merges` merges; merge i creates token id 256 + i. `words` is modified in place.
    """
    # 3. corpus-wide pair counts, and which words contain each pair (entries may go stale: a word
    #    listed for a pair may have lost it to an earlier merge; merge_pair then changes nothing).
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (ids, c) in enumerate(zip(words, counts)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += c
            where[pair].add(w)
    # A max-heap of (-count, pair): the top is the most frequent pair, ties to the smallest pair.
    # When a count changes we push a fresh entry; old entries are recognised as stale and skipped.
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    vocab = [bytes([b]) for b in range(256)]          # token id -> its bytes
    known = set(vocab)
    merges: list[tuple[int, int]] = []
    bar = tqdm(total=n_merges, desc="BPE merges", unit="merge", disable=not progress)
    while len(merges) < n_merges and heap:
        # 4. the most frequent pair
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue                                  # stale heap entry
        new_bytes = vocab[pair[0]] + vocab[pair[1]]
        if new_bytes in known:                        # see module docstring: skip duplicates
            del pair_counts[pair]
            continue
        new_id = len(vocab)
        merges.append(pair)
        vocab.append(new_bytes)
        known.add(new_bytes)
        # 5. rewrite only the words that contain the pair, and update their pairs' counts
        changed = set()
        for w in where.pop(pair):
            old = words[w]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):
                continue                              # stale: the pair is no longer in this word
            c = counts[w]
            for p in zip(old, old[1:]):
                pair_counts[p] -= c
                changed.add(p)
            for p in zip(new, new[1:]):
                pair_counts[p] += c
                where[p].add(w)
                changed.add(p)
            words[w] = new
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
        bar.update(1)
        bar.set_postfix(count=-neg_count, token=repr(new_bytes)[2:-1], refresh=False)
    bar.close()
    return merges


def train_bpe(text: str | Iterable[str], vocab_size: int, *, progress: bool = True) -> "Tokenizer":
    """Train a byte-level BPE on `text` (one string, or an iterable of documents).

    `vocab_size` counts everything: 256 bytes + merges + len(SPECIAL_TOKENS) special tokens.
    """
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    if n_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is smaller than 256 bytes + "
                         f"{len(SPECIAL_TOKENS)} special tokens = {256 + len(SPECIAL_TOKENS)}")
    texts = [text] if isinstance(text, str) else text
    chunk_counts = count_chunks(texts, SPLIT_PATTERN, progress)
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    merges = learn_merges(words, list(chunk_counts.values()), n_merges, progress)
    return Tokenizer(merges)


# ----------------------------------------------------------------------------------------------
# The tokenizer
class Tokenizer:
    """A byte-level BPE: the merges, the special tokens, and a tiktoken.Encoding built from them.

    Token ids: 0..255 are single bytes (`byte_order[i]` is the byte of id i; identity by default),
    256 + i is merge i, and the special tokens follow: vocab_size = 256 + len(merges) + len(specials).
    """

    def __init__(self, merges: list[tuple[int, int]], *, special_tokens: list[str] = SPECIAL_TOKENS,
                 pattern: str = TIKTOKEN_PATTERN, split_pattern: str | None = SPLIT_PATTERN,
                 byte_order: list[int] | None = None, name: str = "minialign-bpe"):
        self.merges = [tuple(m) for m in merges]
        self.pattern = pattern              # tiktoken's (Rust regex) pre-tokenization pattern
        self.split_pattern = split_pattern  # the same in Python `re` syntax, for encode_slow
        self.byte_order = list(range(256)) if byte_order is None else list(byte_order)
        self.name = name
        # id -> bytes; a merge's token is the concatenation of its two parts
        self._vocab = [bytes([b]) for b in self.byte_order]
        for a, b in self.merges:
            self._vocab.append(self._vocab[a] + self._vocab[b])
        n = len(self._vocab)
        if len(set(self._vocab)) != n:
            raise ValueError("two tokens have the same bytes; tiktoken needs each byte string once")
        self.special: dict[str, int] = {tok: n + i for i, tok in enumerate(special_tokens)}
        self._special_by_id = {i: tok for tok, i in self.special.items()}
        self.vocab_size = n + len(self.special)
        self.eot_id = self.special.get("<|endoftext|>")
        self.pad_id = self.special.get("<|pad|>")
        self.encoding = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=self.mergeable_ranks,
                                          special_tokens=self.special)

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """{token bytes: rank} for tiktoken; the rank is the token id (bytes first, then merges in order)."""
        return {tok: i for i, tok in enumerate(self._vocab)}

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, merges={len(self.merges)})"

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Plain text -> ids. Special-token strings in `text` are encoded as ordinary bytes."""
        return self.encoding.encode(text, allowed_special=set(), disallowed_special=())

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` on many texts (tiktoken spreads them over threads)."""
        return self.encoding.encode_batch(texts, allowed_special=set(), disallowed_special=())

    def encode_with_specials(self, text: str) -> list[int]:
        """Like `encode`, but "<|user|>" etc. become their special ids (for the chat template only)."""
        return self.encoding.encode(text, allowed_special="all", disallowed_special=())

    def encode_slow(self, text: str) -> list[int]:
        """The reference encoder, in pure Python: in each chunk, apply the lowest-ranked merge present."""
        if self.split_pattern is None:
            raise ValueError(f"{self.name}: no Python pre-tokenization pattern; use encode()")
        rank = {pair: i for i, pair in enumerate(self.merges)}
        ids: list[int] = []
        byte_id = {b: i for i, b in enumerate(self.byte_order)}
        for chunk in pretokenize(text, self.split_pattern):
            chunk_ids = [byte_id[b] for b in chunk.encode("utf-8")]
            while len(chunk_ids) >= 2:
                pair = min(zip(chunk_ids, chunk_ids[1:]), key=lambda p: rank.get(p, float("inf")))
                if pair not in rank:
                    break                             # no learned merge left in this chunk
                chunk_ids = merge_pair(chunk_ids, pair, 256 + rank[pair])
            ids.extend(chunk_ids)
        return ids

    # -- decoding ------------------------------------------------------------------------------
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a special token gives its string's UTF-8 bytes)."""
        if 0 <= token_id < len(self._vocab):
            return self._vocab[token_id]
        if token_id in self._special_by_id:
            return self._special_by_id[token_id].encode("utf-8")
        raise ValueError(f"token id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")

    def decode(self, ids: Iterable[int]) -> str:
        """ids -> text; byte sequences that are not valid UTF-8 become U+FFFD."""
        return b"".join(self.token_bytes(int(i)) for i in ids).decode("utf-8", errors="replace")

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the tokenizer to one JSON file (atomically: a temporary file, then a rename)."""
        head = {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "pattern": self.pattern, "split_pattern": self.split_pattern,
                "special_tokens": self.special}
        if self.byte_order != list(range(256)):
            head["byte_order"] = self.byte_order
        # one merge per line, so the file reads as the merge list it is
        text = (json.dumps(head, indent=2, ensure_ascii=False)[:-2] + ',\n  "merges": [\n'
                + ",\n".join(f"    [{a}, {b}]" for a, b in self.merges) + "\n  ]\n}\n")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        """Read a file written by `save`. Raises TokenizerFileError naming the file on any problem."""
        if not os.path.exists(path):
            raise TokenizerFileError(f"tokenizer file not found: {path} (train one with train_bpe "
                                     "and save it, or run `python train.py`)")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TokenizerFileError(f"tokenizer file {path} is not readable JSON: {e}") from e
        return cls._from_dict(data, path)

    @classmethod
    def _from_dict(cls, data, path: str) -> "Tokenizer":
        def bad(field: str, why: str):
            return TokenizerFileError(f"tokenizer file {path}: field {field!r} {why}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad("format", f"should be {FORMAT!r}: this is not a minialign tokenizer file")
        if data.get("version") != FORMAT_VERSION:
            raise bad("version", f"is {data.get('version')!r}; this code reads version {FORMAT_VERSION}")
        for field in ("pattern", "special_tokens", "merges"):
            if field not in data:
                raise bad(field, "is missing")
        merges = data["merges"]
        if not isinstance(merges, list):
            raise bad("merges", "should be a list of [left_id, right_id] pairs")
        for i, m in enumerate(merges):
            # merge i may only combine tokens that exist before it: ids < 256 + i
            if (not isinstance(m, list) or len(m) != 2
                    or not all(isinstance(x, int) and 0 <= x < 256 + i for x in m)):
                raise bad("merges", f"entry {i} is {m!r}, expected two ids below {256 + i}")
        specials = data["special_tokens"]
        ok = isinstance(specials, dict) and all(isinstance(i, int) for i in specials.values())
        names = sorted(specials, key=specials.get) if ok else []
        if not ok or specials != {tok: 256 + len(merges) + i for i, tok in enumerate(names)}:
            raise bad("special_tokens", f"should map each token to the ids after the merges "
                                        f"({256 + len(merges)}, ...), got {specials!r}")
        byte_order = data.get("byte_order")
        if byte_order is not None and sorted(byte_order) != list(range(256)):
            raise bad("byte_order", "should be a permutation of 0..255")
        try:
            return cls(merges, special_tokens=names, pattern=data["pattern"],
                       split_pattern=data.get("split_pattern"), byte_order=byte_order,
                       name=data.get("name", FORMAT))
        except ValueError as e:                       # e.g. two merges with the same bytes
            raise TokenizerFileError(f"tokenizer file {path}: {e}") from e

    # -- optional: a pretrained tiktoken encoding ----------------------------------------------
    @classmethod
    def from_tiktoken(cls, name: str = "gpt2") -> "Tokenizer":
        """Opt-in: GPT-2's own tokenizer (or another byte-level tiktoken encoding), plus our specials.

        Needs tiktoken's files for `name`: tiktoken downloads them on first use, or reads them from
        its cache (TIKTOKEN_CACHE_DIR). Never used by default; minialign trains its own BPE.
        For "gpt2", ids 0..50255 are GPT-2's and <|endoftext|> keeps id 50256, so GPT-2 weights fit.
        """
        return cls.from_encoding(tiktoken.get_encoding(name))

    @classmethod
    def from_encoding(cls, enc: tiktoken.Encoding) -> "Tokenizer":
        """Wrap a tiktoken.Encoding whose ranks are 256 single bytes then merges (0..N-1, contiguous).

        The merges (pairs of ids) are recovered from the ranks: token r is what BPE makes of its own
        bytes when only tokens ranked below r may be used, which must be exactly two tokens.
        The encoding's special tokens are replaced by SPECIAL_TOKENS, placed after the merges.
        """
        ranks = enc._mergeable_ranks  # tiktoken keeps {bytes: rank} under this (private) name
        by_rank = sorted(ranks, key=ranks.get)
        if [ranks[t] for t in by_rank] != list(range(len(by_rank))) or any(
                len(t) != 1 for t in by_rank[:256]):
            raise ValueError(f"tiktoken encoding {enc.name!r} is not a byte-level BPE with ranks "
                             "0..255 = single bytes and contiguous merges after them")
        merges = []
        for r in range(256, len(by_rank)):
            parts = _bpe_bytes(by_rank[r], ranks, max_rank=r)
            if len(parts) != 2:
                raise ValueError(f"token {by_rank[r]!r} (rank {r}) of {enc.name!r} is not one merge")
            merges.append((ranks[parts[0]], ranks[parts[1]]))
        known = enc._pat_str in (TIKTOKEN_PATTERN, _R50K_PATTERN)
        return cls(merges, pattern=enc._pat_str, split_pattern=SPLIT_PATTERN if known else None,
                   byte_order=[t[0] for t in by_rank[:256]], name=enc.name)


def gpt2_byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte, as its vocab.json spells tokens: the printable
    Latin-1 bytes stand for themselves, the other 68 bytes are shifted to chr(256 + k) in order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    out, k = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + k)
            k += 1
    return out


def tokenizer_from_hf_gpt2(folder: str) -> "Tokenizer":
    """GPT-2's own tokenizer from a Hugging Face folder's `vocab.json` (offline; nothing is fetched).

    vocab.json maps each token, spelled with `gpt2_byte_to_unicode`'s characters, to its id; in GPT-2
    the id is the BPE rank (the first 256 ids are the single bytes, then the 50,000 merges in order),
    so {token bytes: id} are tiktoken's mergeable ranks and `Tokenizer.from_encoding` recovers the
    merges. Ids 0..50255 and <|endoftext|> = 50256 stay GPT-2's, so its weights fit; our other special
    tokens (<|pad|>, the chat roles, <|end|>) follow at 50257.. and need new embedding rows
    (`GPT.resize_vocab`).
    """
    path = os.path.join(folder, "vocab.json")
    if not os.path.exists(path):
        raise TokenizerFileError(f"{path}: no such file (a Hugging Face GPT-2 folder holds vocab.json "
                                 f"and merges.txt beside the weights)")
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)
    to_byte = {c: b for b, c in gpt2_byte_to_unicode().items()}
    try:
        ranks = {bytes(to_byte[c] for c in tok): i for tok, i in vocab.items() if tok != "<|endoftext|>"}
    except KeyError as e:
        raise TokenizerFileError(f"{path}: token with character {e} is not in GPT-2's byte alphabet") from None
    enc = tiktoken.Encoding("gpt2-hf", pat_str=_R50K_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": len(ranks)})
    return Tokenizer.from_encoding(enc)


def _bpe_bytes(token: bytes, ranks: dict[bytes, int], max_rank: int) -> list[bytes]:
    """tiktoken's merge rule on raw bytes: merge the adjacent parts whose concatenation has the
    lowest rank (below `max_rank`), until none is left. Returns the parts."""
    parts = [bytes([b]) for b in token]
    while len(parts) >= 2:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts
