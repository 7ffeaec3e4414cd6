"""Bad settings and degenerate data get a clear error (`error: ...`, exit code 2, no traceback), never a
traceback or a silent no-op: the rows of the table a new user met, every config field's documented range
enforced by the one validation path, and preference files that leave nothing (or too little) to train on."""

import dataclasses
import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

from minialign.config import ConfigError, Range, field_docs, field_ranges, parse_range, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CONFIGS = [("minialign.model", "GPTConfig"), ("minialign.pretrain", "PretrainConfig"), ("minialign.sft", "SFTConfig"),
           ("minialign.reward", "RMConfig"), ("minialign.ppo", "PPOConfig"), ("minialign.grpo", "GRPOConfig"),
           ("minialign.finegrained", "FineGrainedConfig"), ("minialign.dpo", "DPOConfig"),
           ("minialign.report", "EvalConfig"), ("minialign.side_by_side", "CompareConfig")]


def train(*args, timeout=300):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def assert_user_error(proc, message):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {message}" in proc.stderr, proc.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------------
# The table of the issue, row by row (each refused before any stage is built)
@pytest.mark.parametrize("args, message", [
    (["sft", "--lr", "-0.1"], "--lr must be > 0, got -0.1"),
    (["sft", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["ppo", "--beta", "-1"], "--beta must be >= 0 (the KL coefficient; 0 turns the penalty off), got -1.0"),
    (["dpo", "--beta", "0"], "--beta must be > 0 (at beta = 0 the DPO loss is the constant log 2"),
    (["pretrain", "--steps", "0"], "--steps must be >= 1 (0 would save an untrained model), got 0"),
    (["ppo", "--kl-estimator", "k2"], "--kl-estimator must be one of 'k1', 'k3', got 'k2'"),
    (["ppo", "--cliprange", "1.5"], "--cliprange must be in (0, 1), got 1.5"),
    (["ppo", "--n-minibatches", "9"], "--n-minibatches (9) must be at most --batch-size (8)"),
    (["finegrained", "--rewards", "toxicity,kindness"], "--rewards must name one or more of toxicity"),
])
def test_bad_settings_are_refused_before_anything_runs(tmp_path, args, message):
    out = tmp_path / "run"
    proc = train(*args, "--quick", "--out", str(out))
    assert_user_error(proc, message)
    assert not (out / "tokenizer").exists()                    # nothing was built


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_user_error(tmp_path):
    assert_user_error(train("sft", "--quick", "--device", "cuda", "--out", str(tmp_path)),
                      "--device cuda: CUDA is not available on this machine; use --device cpu")


# ----------------------------------------------------------------------------------------------------------------
# Every config dataclass: each numeric or fixed-choice field states its range, and validation enforces it
def config_classes():
    return [getattr(importlib.import_module(m), c) for m, c in CONFIGS]


def outside(rng: Range):
    """A value just outside a range, worked out from its terms (not by the code under test)."""
    t = rng.terms
    if len(t) == 3 and t[0] is None:
        op, c = t[1][1], t[2]
        if op == "in":
            return "nonsense"
        if op == ">=":
            return c - 1 if isinstance(c, int) else c - 1e-3
        return {">": c, "<": c, "<=": c + 1}[op]
    if len(t) == 5 and t[2] is None:
        return t[0] if t[1][1] == "<" else t[0] - 1          # below the lower end of "a < x" / "a <= x"
    raise AssertionError(f"unexpected range shape {rng.expr}")


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_every_numeric_field_states_a_range_that_validation_enforces(cls):
    ranges, docs = field_ranges(cls), field_docs(cls)
    quick = getattr(importlib.import_module(cls.__module__), "QUICK", {}) if cls.__name__ != "GPTConfig" else {}
    validate(cls(**quick))                                    # the defaults and the --quick settings are valid
    for f in dataclasses.fields(cls):
        ftype = f.type if isinstance(f.type, type) else eval(f.type, vars(importlib.import_module(cls.__module__)))
        base = getattr(ftype, "__args__", (ftype,))[0]
        if base in (int, float):
            assert f.name in ranges, f"{cls.__name__}.{f.name} states no 'Range:' in its docstring"
        if f.name not in ranges:
            continue
        assert docs[f.name].rstrip().endswith(".") and "Range:" in docs[f.name]
        bad = outside(ranges[f.name])
        with pytest.raises(ConfigError, match=rf"^--{f.name.replace('_', '-')} must be .*, got {bad!r}$"):
            validate(dataclasses.replace(cls(), **{f.name: bad}))


def test_choice_fields_state_their_choices():
    from minialign.ppo import PPOConfig
    ranges = field_ranges(PPOConfig)
    for name in ("kl_estimator", "score_position", "missing_end", "whiten_advantages", "prompt_kind"):
        assert ranges[name].terms[1][1] == "in", name


def test_ranges_are_read_as_written():
    r = parse_range("beta", "The KL coefficient. Range: beta >= 0 (0 turns the penalty off).")
    assert (r.describe(), r.note, r.holds(0.0), r.holds(-0.1)) == (">= 0", "0 turns the penalty off", True, False)
    r = parse_range("p", "A share. Range: 0 < p <= 1.")
    assert (r.describe(), r.holds(1.0), r.holds(0.0), r.holds(1.5)) == ("in (0, 1]", True, False, False)
    r = parse_range("kind", "Which. Range: kind in ('a', 'b') (the two kinds).")
    assert (r.describe(), r.note, r.holds("a"), r.holds("c")) == ("one of 'a', 'b'", "the two kinds", True, False)
    assert parse_range("x", "No range here.") is None
    with pytest.raises(ValueError, match="cannot read the range"):
        parse_range("x", "Range: y > 0.")


# ----------------------------------------------------------------------------------------------------------------
# Degenerate data
def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_preference_file_of_ties_names_the_real_reason(tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": f"Say {i}.", "chosen": f"{i}.", "rejected": f"{i}."}
                                                   for i in range(5)])
    proc = train("dpo", "--quick", "--out", str(tmp_path / "run"), "--data", str(data))
    assert_user_error(proc, f"{data}: no usable preference record: all 5 records are ties (chosen identical to "
                            f"rejected), which teach nothing")
    assert not (tmp_path / "run" / "tokenizer").exists()         # refused before any stage was built


def test_dpo_pairs_dropped_for_every_reason_are_counted_by_cause(tmp_path, capsys):
    """Pairs that are too long and pairs whose two sides tokenize the same are counted apart; none left stops
    the run with both counts; fewer usable pairs than one batch is said plainly before training."""
    from minialign.dpo import DPOConfig, train_dpo
    from minialign.preferences import PreferenceGroup
    from minialign.loaders import DataError
    from minialign.model import GPT, GPTConfig
    from minialign.tokenizer import Tokenizer
    tok = Tokenizer([])                                     # byte tokens: one token per character
    policy = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    pairs = [PreferenceGroup.pair(p, w, l) for p, w, l in [
        ("Hi?", "A" * 80, "B"),                             # too long for 64 tokens
        ("Hi?", "Same.", "Same."),                          # a tie
        ("Hi?", "Hello.", "Go away."), ("Yo?", "Hey.", "No.")]]
    cfg = DPOConfig(batch_size=4, max_steps=1, eval_every=0, warmup_steps=0)
    with pytest.raises(DataError, match=r"no pair is left after dropping 1 longer than the context of 64 tokens, "
                                        r"1 with chosen identical to rejected"):
        train_dpo(policy, GPT(policy.config), tok, pairs[:2], cfg, str(tmp_path / "a"), "cpu", quiet=True)
    train_dpo(policy, GPT(policy.config), tok, pairs, cfg, str(tmp_path / "b"), "cpu", quiet=True)
    assert ("warning: only 2 preference pairs (after dropping 1 longer than the context of 64 tokens, 1 with "
            "chosen identical to rejected), fewer than one batch of --batch-size 4") in capsys.readouterr().err
