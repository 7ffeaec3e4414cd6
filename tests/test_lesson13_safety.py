"""Lesson 13 (safe responses): its prompt sets, its paired verdicts fed both outcomes, and the --quick run."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from lesson_loader import load_lesson

from minialign.evaluation import paired_mean_difference
from minialign.world import gold_reward, instruction_data
from minialign.world.lexicon import HARM_VERBS
from minialign.world.text import is_refusal, words

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


L = load_lesson("13_safety")


def test_harmful_prompts_are_never_in_the_training_data():
    trained = {ex.prompt for ex in instruction_data(seed=3, n_per_family=400, splits="train", families=[L.SAFETY])}
    held = L.harmful_prompts()
    assert held and not set(held) & trained and len(set(held)) == len(held)
    # every one is harmful for the oracle: a refusal is its correct answer, compliance is not
    for p in held[:6]:
        assert gold_reward(p, "I can't help with that. Stealing is wrong.").components["harmless"] == 1.0
        assert gold_reward(p, "Sure, here is how.").components["harmless"] == 0.0


def test_lookalikes_are_harmless():
    for act in L.HARMLESS_ACTS:
        assert not set(words(act)) & set(HARM_VERBS), act
    prompts = L.lookalike_prompts()
    assert len(prompts) == len(set(prompts)) == len(L.HARMLESS_ACTS) * 5
    for p in prompts:      # the oracle does not read them as harmful: going along with them costs nothing
        assert gold_reward(p, "Sure, here is how.").components["harmless"] == 1.0, p


def test_paired_difference_by_hand():
    a, b = [1.0, 0.5, 0.0, 1.0], [0.5, 0.5, 0.5, 0.0]
    d = [0.5, 0.0, -0.5, 1.0]
    mean = sum(d) / 4
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 3) / 2
    got = paired_mean_difference(a, b)
    assert got["mean"] == pytest.approx(mean) and got["se"] == pytest.approx(se)


def rates(no_harm, with_harm, no_look, with_look, n=30, seed=0):
    rng = np.random.default_rng(seed)
    noise = lambda: rng.normal(0, 0.05, n)
    group = lambda h, lk: {"harmful": np.clip(h + noise(), 0, 1), "lookalike": np.clip(lk + noise(), 0, 1),
                           "ordinary": np.zeros(n)}
    return {L.NO_SAFETY: group(no_harm, no_look), L.WITH_SAFETY: group(with_harm, with_look),
            "PPO": group(with_harm, with_look)}


def test_verdict_when_safety_data_teaches_refusal_and_over_refusal(capsys):
    got = L.verdict(rates(0.1, 0.7, 0.05, 0.4))
    out = capsys.readouterr().out
    assert got["safety_data"]["teaches_refusal"] and got["safety_data"]["adds_over_refusal"]
    assert "teaches the model to refuse" in out and "over-refusal" in out and "PPO vs SFT" in out


def test_verdict_when_nothing_changes(capsys):
    got = L.verdict(rates(0.3, 0.3, 0.1, 0.1))
    out = capsys.readouterr().out
    assert not got["safety_data"]["teaches_refusal"] and not got["safety_data"]["adds_over_refusal"]
    assert "no clear change here" in out and "no clear change in over-refusal" in out


def test_refusal_marker_reading():
    assert is_refusal("Sorry, I can't help with that.") and not is_refusal("You can ride it in the park.")


@pytest.mark.slow
def test_lesson_13_quick(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "13_safety.py"), "--quick", "--out",
                           str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = out / "lessons" / "13_safety"
    m = json.loads((folder / "metrics.json").read_text())
    assert set(m["table"]) == {L.NO_SAFETY, L.WITH_SAFETY, "PPO", "DPO"}
    for row in m["table"].values():
        assert set(row) == set(L.GROUPS) and all(0 <= row[g]["rate"] <= 1 for g in row)
    assert (folder / "refusals.png").exists() and "What this shows" in proc.stdout
