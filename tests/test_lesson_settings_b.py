"""Lessons 06-11: each lesson's settings are one documented `LessonConfig` dataclass, checked by the project's one
validation path (minialign.config) before anything runs: a bad value is `error: --flag must be ..., got ...`, exit
code 2, no traceback, and nothing built; every numeric field states the range that is enforced."""

import dataclasses
import os
import subprocess
import sys
import typing

import pytest
from lesson_loader import load_lesson

from minialign.config import ConfigError, field_ranges, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LESSONS = ["06_lima", "07_reward_model", "08_ppo", "09_fine_grained", "10_dpo", "11_logprob_kernel",
           "12_reasoning_rl", "13_safety"]


# ----------------------------------------------------------------------------------------------------------------
# A bad value on the command line: refused before any model is built or trained
@pytest.mark.parametrize("lesson, flags, message", [
    ("06_lima", ["--lr", "-0.1"], "--lr must be > 0, got -0.1"),
    ("06_lima", ["--steps", "0"], "--steps must be >= 1, got 0"),
    ("07_reward_model", ["--eval-prompts", "0"], "--eval-prompts must be >= 1, got 0"),
    ("07_reward_model", ["--budgets", "8", "0"], "each value of --budgets must be >= 1, got 0"),
    ("08_ppo", ["--hack-iterations", "0"], "--hack-iterations must be >= 1, got 0"),
    ("08_ppo", ["--betas", "0.1", "-1"],
     "each value of --betas must be > 0, got -1.0"),
    ("09_fine_grained", ["--custom-lr", "0"], "--custom-lr must be > 0, got 0.0"),
    ("09_fine_grained", ["--weights", "0.1", "0.1"], "--weights must be distinct values (each names one run), got"),
    ("10_dpo", ["--prompts", "toxic"], "--prompts must be one of 'sentiment', 'instruction', got 'toxic'"),
    ("10_dpo", ["--betas", "0"], "each value of --betas must be > 0 (at beta = 0 the DPO loss is the constant log 2"),
    ("11_logprob_kernel", ["--repeats", "0"], "--repeats must be >= 1, got 0"),
    ("13_safety", ["--samples", "0"], "--samples must be >= 1, got 0"),
])
def test_a_bad_setting_is_a_clear_error_before_anything_runs(tmp_path, lesson, flags, message):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join("lessons", lesson + ".py"), "--quick", "--out", str(out),
                           "--device", "cpu", *flags], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()                                     # no stage built, no lesson output written


# ----------------------------------------------------------------------------------------------------------------
# Every numeric field states its range, and validation enforces exactly that range
def numeric(tp) -> bool:
    """int, float, list[int], list[float] (bool is an int in Python, but a switch here)."""
    tp = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, tuple) else tp
    return tp in (int, float)


def outside(rng):
    """A value just outside a range, worked out from its terms (not by the code under test)."""
    t = rng.terms
    if len(t) == 3 and t[0] is None:
        op, c = t[1][1], t[2]
        if op == "in":
            return "nonsense"
        return {">=": c - 1, ">": c, "<": c, "<=": c + 1}[op]
    if len(t) == 5 and t[2] is None:
        return t[0] if t[1][1] == "<" else t[0] - 1
    raise AssertionError(f"unexpected range shape {rng.expr}")


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_numeric_setting_states_a_range_that_is_enforced(lesson):
    module = load_lesson(lesson)
    cls = module.LessonConfig
    hints = typing.get_type_hints(cls)
    ranges = field_ranges(cls)
    fields = dataclasses.fields(cls)
    missing = [f.name for f in fields if numeric(hints[f.name]) and f.name not in ranges]
    assert not missing, f"{lesson}: numeric settings without a 'Range: ...' in their docstring: {missing}"
    assert ranges, f"{lesson}: no setting states a range"
    for cfg in (cls(), cls(**getattr(module, "LESSON_QUICK", {}))):      # the defaults and --quick are valid
        validate(cfg)
    for name, rng in ranges.items():
        bad = outside(rng)
        value = [bad] if typing.get_origin(hints[name]) in (list, tuple) else bad
        with pytest.raises(ConfigError, match="--" + name.replace("_", "-")):
            validate(cls(**{name: value}))


@pytest.mark.parametrize("lesson", LESSONS)
def test_help_shows_every_setting_with_its_range(lesson, capsys):
    module = load_lesson(lesson)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(module.LessonConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    for rng in field_ranges(module.LessonConfig).values():
        assert rng.expr in text, rng.expr
