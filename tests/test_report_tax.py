"""The alignment tax in the evaluation stage: exact match per policy and the paired difference from SFT."""

import math

import pytest

import minialign.evaluation as evaluation
from minialign.report import EvalConfig, evaluate_alignment_tax, tax_table
from minialign.world import instruction_data


def test_alignment_tax_counts_exact_answers_and_pairs_them_with_sft(monkeypatch):
    """SFT answers every problem with its reference; "PPO" only the first half. The base model is skipped."""
    examples = [ex for ex in instruction_data(seed=1, n_per_family=1, splits="test") if ex.answers]
    n = len(examples)
    half = n // 2

    def fake_answers(model, tok, prompts, **kw):
        assert prompts == [ex.prompt for ex in examples]
        return [{"text": ex.response if model == "sft" or i < half else "I do not know."}
                for i, ex in enumerate(examples)]

    monkeypatch.setattr(evaluation, "generate_answers", fake_answers)
    tax = evaluate_alignment_tax({"base": "base", "SFT": "sft", "PPO": "ppo"}, None,
                                 EvalConfig(tax_per_family=1), seed=0)
    assert tax["n_problems"] == n and set(tax["policies"]) == {"SFT", "PPO"}
    sft, ppo = tax["policies"]["SFT"], tax["policies"]["PPO"]
    assert sft["exact_match"] == 1.0 and ppo["exact_match"] == pytest.approx(half / n)
    # paired: d_i = 0 for the first half, -1 after; mean and its standard error by hand
    d = [0.0] * half + [-1.0] * (n - half)
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) / math.sqrt(n)
    assert ppo["vs_sft"] == pytest.approx(mean) and ppo["vs_sft_se"] == pytest.approx(se)
    assert f"{mean:+.3f}" in tax_table(tax)
