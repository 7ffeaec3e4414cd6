"""Byte-level BPE: training, the tiktoken export, special tokens, files.

Every check compares against something obvious written here: merges worked out by hand, a naive
trainer that recounts every pair from scratch at every step, and an encoder that replays the merges
one by one in training order.
"""

import json
import os
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
import tiktoken

from minialign.tokenizer import (SPECIAL_TOKENS, SPLIT_PATTERN, TIKTOKEN_PATTERN, Tokenizer,
                                 TokenizerFileError, _R50K_PATTERN, train_bpe)

N_SPECIAL = len(SPECIAL_TOKENS)

WORDS = ("the a small big dog cat bird red blue happy sad runs ran sees saw likes liked park river "
         "school garden apple ball book is was and but then she he they it's don't we'll").split()

UNICODE_SAMPLE = (
    "Hello, world! It's 2024: naïve café costs 3.50€ -- they'll say I'M fine.\n\n"
    "  Ünïcödé: Ελληνικά, русский, العربية, हिन्दी, 東京タワー, 한국어 🙂🙂 👍🏽 👨‍👩‍👧 e\u0301\n"
    "snake_case x__y a1b2 __init__ 123456789 ¡¿?!   \t tabs\t\tand\r\nCRLF   \n trailing   ")


def english(seed: int, n_sentences: int) -> str:
    """Deterministic simple English with numbers and punctuation."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 10))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randrange(1000)))
        out.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ",", ":"]))
    return " ".join(out)


@pytest.fixture(scope="module")
def tok():
    return train_bpe(english(0, 3000), vocab_size=600, progress=False)


# ----------------------------------------------------------------------------------------------
# Independent, obvious versions of training and encoding
def naive_train(text: str, n_merges: int) -> list[tuple[int, int]]:
    """Recount every adjacent pair of every chunk occurrence at every step; merge the most frequent
    (ties: smallest pair), skipping pairs whose bytes already form a token."""
    chunks = [list(c.encode("utf-8")) for c in re.findall(SPLIT_PATTERN, text)]
    vocab = [bytes([b]) for b in range(256)]
    merges = []
    while len(merges) < n_merges:
        counts = Counter()
        for ids in chunks:
            for i in range(len(ids) - 1):
                counts[(ids[i], ids[i + 1])] += 1
        candidates = [p for p in counts if vocab[p[0]] + vocab[p[1]] not in vocab]
        if not candidates:
            break
        best = min(candidates, key=lambda p: (-counts[p], p))
        new_id = len(vocab)
        vocab.append(vocab[best[0]] + vocab[best[1]])
        merges.append(best)
        chunks = [replace_pair(ids, best, new_id) for ids in chunks]
    return merges


def replace_pair(ids, pair, new_id):
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def replay_encode(merges, text: str) -> list[int]:
    """Encode by replaying the merges one by one, in training order, on every chunk."""
    ids = []
    for chunk in re.findall(SPLIT_PATTERN, text):
        chunk_ids = list(chunk.encode("utf-8"))
        for rank, pair in enumerate(merges):
            chunk_ids = replace_pair(chunk_ids, pair, 256 + rank)
        ids.extend(chunk_ids)
    return ids


# ----------------------------------------------------------------------------------------------
# Pre-tokenization
def test_pretokenize_covers_the_text_and_splits_as_gpt2():
    chunks = re.findall(SPLIT_PATTERN, UNICODE_SAMPLE)
    assert "".join(chunks) == UNICODE_SAMPLE
    assert re.findall(SPLIT_PATTERN, "I don't like  big dogs!!") == [
        "I", " don", "'t", " like", " ", " big", " dogs", "!!"]


@pytest.mark.parametrize("pattern", [TIKTOKEN_PATTERN, _R50K_PATTERN])
def test_python_and_tiktoken_patterns_split_the_same(pattern):
    # A probe encoding whose only tokens are the chunks Python's `re` produced (no single bytes):
    # tiktoken returns one token per chunk exactly when its regex splits the same way (a piece
    # that is not one of these chunks cannot be encoded at all).
    chunks = [c.encode("utf-8") for c in re.findall(SPLIT_PATTERN, UNICODE_SAMPLE)]
    ranks = {}
    for c in chunks:
        ranks.setdefault(c, len(ranks))
    probe = tiktoken.Encoding("probe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    got = [probe.decode_single_token_bytes(t) for t in probe.encode(UNICODE_SAMPLE)]
    assert got == chunks


# ----------------------------------------------------------------------------------------------
# Training
def test_classic_aaabdaaabac_by_hand():
    # "aaabdaaabac": aa occurs 4 times (overlaps counted) -> Z=aa gives "ZabdZabac";
    # then Za and ab both occur twice; the tie goes to the smaller pair (a, b) -> Y=ab: "ZYdZYac";
    # then ZY twice -> X=ZY: "XdXac". All remaining pairs occur once.
    a, b, c, d = map(ord, "abcd")
    t = train_bpe("aaabdaaabac", vocab_size=256 + 3 + N_SPECIAL, progress=False)
    assert t.merges == [(a, a), (a, b), (256, 257)]
    assert t.token_bytes(258) == b"aaab"
    assert t.encode("aaabdaaabac") == [258, d, 258, a, c]
    assert t.encode_slow("aaabdaaabac") == [258, d, 258, a, c]


def test_word_counts_hugging_face_example():
    # The Hugging Face course example: hug x10, pug x5, pun x12, bun x4, hugs x5 (one word per line,
    # so each is its own chunk). ug = 10+5+5 = 20, then un = 12+4 = 16, then h+ug = 10+5 = 15.
    text = "\n".join(["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5)
    t = train_bpe(text, vocab_size=256 + 3 + N_SPECIAL, progress=False)
    assert [t.token_bytes(256 + i) for i in range(3)] == [b"ug", b"un", b"hug"]
    assert t.merges[2] == (ord("h"), 256)


def test_incremental_training_equals_naive_recount():
    text = english(1, 150) + " aaaa aaaaa aaaaaaa abababab " * 3 + UNICODE_SAMPLE
    t = train_bpe(text, vocab_size=256 + 120 + N_SPECIAL, progress=False)
    assert t.merges == naive_train(text, 120)


def test_merges_never_cross_documents():
    t = train_bpe(["xa", "bx"] * 20, vocab_size=400, progress=False)
    assert (ord("a"), ord("b")) not in t.merges
    # the same text as one string is one chunk "xabx...", where (a, b) is frequent
    joined = train_bpe("".join(["xa", "bx"] * 20), vocab_size=400, progress=False)
    assert (ord("a"), ord("b")) in joined.merges


def test_vocab_size_accounting_and_early_stop(tok):
    assert len(tok.merges) == 600 - 256 - N_SPECIAL
    assert tok.vocab_size == 600
    tiny = train_bpe("ab ab ab", vocab_size=1000, progress=False)   # runs out of pairs
    assert tiny.vocab_size == 256 + len(tiny.merges) + N_SPECIAL < 1000
    with pytest.raises(ValueError, match="smaller than"):
        train_bpe("abc", vocab_size=256)


# ----------------------------------------------------------------------------------------------
# Encoding
def test_token_bytes_are_concatenations_of_their_merge(tok):
    for b in range(256):
        assert tok.token_bytes(b) == bytes([b])
    for i, (a, b) in enumerate(tok.merges):
        assert tok.token_bytes(256 + i) == tok.token_bytes(a) + tok.token_bytes(b)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.token_bytes(tok.vocab_size)


def test_tiktoken_equals_reference_encoders(tok):
    held_out = english(2, 300) + "\n" + UNICODE_SAMPLE
    expected = replay_encode(tok.merges, held_out)
    assert tok.encode(held_out) == expected
    assert tok.encode_slow(held_out) == expected
    assert len(expected) < len(held_out.encode("utf-8")) / 2   # the merges do compress


def test_round_trip_random_bytes_as_latin1(tok):
    rng = random.Random(0)
    for _ in range(50):
        text = bytes(rng.randrange(256) for _ in range(rng.randrange(300))).decode("latin-1")
        assert tok.decode(tok.encode(text)) == text


def test_round_trip_random_unicode(tok):
    rng = random.Random(1)
    ranges = [(0x20, 0x7F), (0x0A, 0x0B), (0xA0, 0x800), (0x4E00, 0xA000), (0x1F300, 0x1FAFF),
              (0x10000, 0x10FFFF)]
    texts = []
    for _ in range(50):
        chars = []
        for _ in range(rng.randrange(200)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randrange(lo, hi)))
        texts.append("".join(chars))
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert ids == tok.encode(text)
        assert tok.decode(ids) == text


def test_decode_replaces_invalid_utf8(tok):
    assert tok.decode([ord("a"), 0xE6, ord("b")]) == "a\ufffdb"   # 0xE6 alone: a cut-off character


# ----------------------------------------------------------------------------------------------
# Special tokens
def test_special_token_ids_follow_the_merges(tok):
    first = 256 + len(tok.merges)
    assert tok.special == {s: first + i for i, s in enumerate(SPECIAL_TOKENS)}
    assert tok.eot_id == tok.special["<|endoftext|>"]
    assert tok.pad_id == tok.special["<|pad|>"]
    assert tok.vocab_size == first + N_SPECIAL


def test_special_strings_in_plain_text_are_ordinary_bytes(tok):
    text = "hi " + " ".join(SPECIAL_TOKENS) + " <|user|>bye<|end|>"
    ids = tok.encode(text)
    assert max(ids) < 256 + len(tok.merges)       # no special id at all
    assert tok.decode(ids) == text
    assert all(max(x) < 256 + len(tok.merges) for x in tok.encode_batch([text, "<|pad|>"]))


def test_encode_with_specials_gives_special_ids(tok):
    ids = tok.encode_with_specials("<|user|>hi there<|end|><|assistant|>")
    assert ids == ([tok.special["<|user|>"]] + tok.encode("hi there")
                   + [tok.special["<|end|>"], tok.special["<|assistant|>"]])
    assert tok.decode(ids) == "<|user|>hi there<|end|><|assistant|>"
    assert tok.token_bytes(tok.eot_id) == b"<|endoftext|>"


# ----------------------------------------------------------------------------------------------
# Files
def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(str(path))
    data = json.loads(path.read_text())
    assert data["format"] == "minialign-bpe" and data["version"] == 1
    assert [tuple(m) for m in data["merges"]] == tok.merges
    loaded = Tokenizer.load(str(path))
    assert loaded.merges == tok.merges and loaded.special == tok.special
    assert loaded.vocab_size == tok.vocab_size
    text = english(3, 100) + UNICODE_SAMPLE + "<|user|>"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.encode_with_specials(text) == tok.encode_with_specials(text)


def test_missing_file_error_names_the_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(TokenizerFileError, match=re.escape(str(path))):
        Tokenizer.load(str(path))


@pytest.mark.parametrize("corrupt, field", [
    (lambda text: text[: len(text) // 2], "JSON"),                                 # truncated
    (lambda text: text.replace('"minialign-bpe"', '"other"', 1), "format"),
    (lambda text: text.replace('"version": 1', '"version": 99'), "version"),
    (lambda text: text.replace("[97, 97]", "[97, 9999]"), "merges"),
    (lambda text: text.replace('"<|pad|>": 260', '"<|pad|>": "260"'), "special_tokens"),
    (lambda text: text.replace('"<|endoftext|>": 259', '"<|endoftext|>": 5'), "special_tokens"),
])
def test_corrupt_file_error_names_the_file_and_field(tmp_path, corrupt, field):
    path = tmp_path / "tokenizer.json"
    train_bpe("aaabdaaabac", vocab_size=256 + 3 + N_SPECIAL, progress=False).save(str(path))
    text = path.read_text()
    bad = corrupt(text)
    assert bad != text
    path.write_text(bad)
    with pytest.raises(TokenizerFileError, match=re.escape(str(path))) as err:
        Tokenizer.load(str(path))
    assert field in str(err.value)


def test_from_encoding_recovers_the_merges(tok):
    # The opt-in GPT-2 path rebuilds merges from a tiktoken.Encoding's ranks; checked offline on ours.
    back = Tokenizer.from_encoding(tok.encoding)
    assert back.merges == tok.merges and back.special == tok.special
    assert back.split_pattern == SPLIT_PATTERN


def test_lesson_quick_runs(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, os.path.join(root, "lessons", "00_tokenizer.py"), "--quick",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    tmp_path = tmp_path / "lessons" / "00_tokenizer"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tiktoken_equals_reference"] and metrics["round_trip_ok"]
    assert metrics["prefix_property"]
    assert (tmp_path / "compression.png").stat().st_size > 0
    Tokenizer.load(str(tmp_path / "tokenizer.json"))
