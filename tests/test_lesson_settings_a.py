"""Lessons 00-05: each lesson's settings are one documented `LessonConfig`, checked by the project's one
validation path (`minialign.config.from_args` -> `validate`) before anything runs.

- a bad value on the command line gives `error: --<flag> must be ..., got ...`, exit code 2, no traceback,
  and nothing is built (the run folder is never created);
- every numeric field of every LessonConfig states its range (the text `--help` shows is the rule checked);
- --quick and the defaults resolve to the same numbers the lessons used before their settings were
  dataclasses (same numbers at the same seed).
"""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
from lesson_loader import load_lesson

from minialign.config import field_docs, field_ranges, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LESSONS = ["00_tokenizer", "01_pretraining", "02_lm_is_not_a_task_solver", "03_instruction_tuning",
           "04_task_diversity", "05_self_instruct"]


# ----------------------------------------------------------------------------------------------------------------
# A bad setting stops the lesson before anything runs
@pytest.mark.parametrize("lesson, args, message", [
    ("00_tokenizer", ["--n-docs", "1"], "--n-docs must be >= 2 (one to train on, one held out), got 1"),
    ("00_tokenizer", ["--vocab-sizes", "512"], "--vocab-sizes must list at least two sizes"),
    ("01_pretraining", ["--temperature", "-1"], "--temperature must be >= 0 (0 = greedy decoding), got -1.0"),
    ("02_lm_is_not_a_task_solver", ["--per-family", "0"], "--per-family must be >= 1, got 0"),
    ("03_instruction_tuning", ["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    ("04_task_diversity", ["--ni-fraction", "1.5"], "--ni-fraction must be in [0, 1], got 1.5"),
    ("04_task_diversity", ["--parts", "families,mixture"],
     "--parts must be a comma-separated subset of families,templates,mixtures,base,schema,size, got 'families,mixture'"),
    ("04_task_diversity", ["--widths", "32,x"], "--widths must be comma-separated whole numbers >= 1"),
    ("05_self_instruct", ["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    ("05_self_instruct", ["--in-context", "30"], "--in-context must be at most the number of seed tasks (24"),
])
def test_bad_lesson_setting_is_a_user_error(tmp_path, lesson, args, message):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join("lessons", lesson + ".py"), "--quick", "--out", str(out),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()                                      # nothing was built or written


# ----------------------------------------------------------------------------------------------------------------
# Every LessonConfig: documented fields, a stated range on every number, --quick values that are fields
@pytest.fixture(scope="module")
def lessons():
    return {name: load_lesson(name) for name in LESSONS}


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_config_states_every_range(lessons, name):
    cls = lessons[name].LessonConfig
    docs, ranges = field_docs(cls), field_ranges(cls)
    for f in dataclasses.fields(cls):
        assert docs.get(f.name), f"{name}: LessonConfig.{f.name} has no docstring"
        if re.search(r"\b(int|float)\b", str(f.type)):               # int, float, list[int], int | None ...
            assert f.name in ranges, f"{name}: LessonConfig.{f.name} states no 'Range: ...'"
    validate(cls())                                              # the defaults are valid
    quick = getattr(lessons[name], "QUICK", {})
    assert set(quick) <= {f.name for f in dataclasses.fields(cls)}, name
    validate(cls(**quick))                                       # and so are the --quick values


def test_settings_resolve_to_the_numbers_the_lessons_used(lessons):
    """The values of the hand-written flags before this change (default, and with --quick)."""
    def resolved(name, argv):
        settings = lessons[name].parse_args(argv)
        return settings if name == "00_tokenizer" else settings[1]       # the others: (run flags, settings)

    s = resolved("00_tokenizer", ["--quick"])
    assert (s.n_docs, s.vocab_sizes, s.encoder_chars) == (100, [262, 300, 400, 512], 20_000)
    s = resolved("00_tokenizer", [])
    assert (s.n_docs, s.vocab_sizes, s.encoder_chars) == (8000, [262, 384, 512, 1024, 2048], 200_000)
    assert (resolved("02_lm_is_not_a_task_solver", ["--quick"]).per_family,
            resolved("02_lm_is_not_a_task_solver", []).per_family) == (1, 2)
    q, d = resolved("03_instruction_tuning", ["--quick"]), resolved("03_instruction_tuning", [])
    assert (q.per_family, q.max_new_tokens, d.per_family, d.max_new_tokens) == (2, 12, 20, 40)
    q, d = resolved("04_task_diversity", ["--quick"]), resolved("04_task_diversity", [])
    assert (q.steps, q.examples, q.eval_per_family, q.early_steps) == (3, 52, 1, 4)
    assert (d.steps, d.examples, d.eval_per_family, d.early_steps) == (120, 2400, 6, 100)
    q, d = resolved("05_self_instruct", ["--quick"]), resolved("05_self_instruct", [])
    assert (q.iterations, q.per_iteration, q.steps, q.eval_per_family) == (1, 8, 2, 1)
    assert (d.iterations, d.per_iteration, d.steps, d.eval_per_family) == (4, 128, 100, 10)
    # a flag given on the command line wins over --quick
    assert resolved("04_task_diversity", ["--quick", "--steps", "7"]).steps == 7
