"""Lesson 12 (reasoning RL): the --quick run end to end, and each verdict function fed both outcomes (the verdicts
are computed from the numbers: a test per outcome shows that each can come out either way)."""

import json
import math
import os
import subprocess
import sys

import pytest
from lesson_loader import load_lesson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reasoning_eval(counts, splits, n_samples=1):
    """A minimal evaluate_reasoning result: per-problem correct counts, their splits, pass@1 per split."""
    out = {"correct_counts": counts, "problem_splits": splits, "n_samples": n_samples, "splits": {}}
    for s in sorted(set(splits)):
        xs = [c / n_samples for c, t in zip(counts, splits) if t == s]
        mean = sum(xs) / len(xs)
        se = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) / len(xs))
        out["splits"][s] = {"pass@1": mean, "pass@1_se": se}
    return out


@pytest.mark.parametrize("worked_counts, better, by_10, answer_better", [
    ([1] * 16 + [1] * 4, True, True, False),             # worked right on 20 of 20, answer-only on 8
    ([1] * 8 + [0] * 12, False, False, False),           # the same problems right: no difference
    ([0] * 20, False, False, True),                      # worked wrong everywhere
])
def test_verdict_time_to_think_both_ways(worked_counts, better, by_10, answer_better):
    m = load_lesson("12_reasoning_rl")
    splits = ["test"] * 20 + ["hard"] * 2
    answer = reasoning_eval([1] * 8 + [0] * 12 + [1, 1], splits)
    worked = reasoning_eval(worked_counts + [0, 0], splits)
    v = m.verdict_time_to_think(answer, worked)
    d = [w - a for w, a in zip(worked_counts, [1] * 8 + [0] * 12)]            # the paired differences, by hand
    mean = sum(d) / 20
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 19 / 20)
    assert v["difference"] == pytest.approx(mean) and v["difference_se"] == pytest.approx(se)
    assert (v["worked_better"], v["by_10_points"], v["answer_better"]) == (better, by_10, answer_better)
    assert v["answer"] == pytest.approx(0.4)                                  # the hard split is left out


def passes(p1, p8, p16=None, se=0.02):
    out = {"pass@1": p1, "pass@1_se": se, "pass@8": p8, "pass@8_se": se}
    out.update({"pass@16": p16 if p16 is not None else p8, "pass@16_se": se})
    return out


@pytest.mark.parametrize("gain, gain_se, gap_before, meets", [
    (0.12, 0.02, (0.5, 0.9), True),        # bar = min(0.10, 0.20) = 0.10: met
    (0.06, 0.02, (0.5, 0.6), True),        # bar = min(0.10, 0.05) = 0.05: met
    (0.06, 0.02, (0.5, 0.9), False),       # bar 0.10: not met
    (0.12, 0.08, (0.5, 0.9), False),       # above the bar but within two standard errors of 0
])
def test_verdict_grpo_bar_is_the_smaller_of_10_points_and_half_the_gap(gain, gain_se, gap_before, meets):
    m = load_lesson("12_reasoning_rl")
    before = passes(*gap_before)
    after = passes(gap_before[0] + gain, gap_before[1])
    v = m.verdict_grpo(before, after, gain, gain_se, [1, 2, 4, 8, 16])
    assert v["bar"] == pytest.approx(min(0.10, (gap_before[1] - gap_before[0]) / 2))
    assert v["meets_bar"] is meets
    assert v["k_top"] == 16 and v["top_change"] == pytest.approx(0.0)


def curves(grpo_gain, ppo_gain, grpo_seconds=10.0, ppo_seconds=20.0):
    c = lambda gain, secs: {"iteration": [0, 10], "pass@1": [0.5, 0.5 + gain], "samples": [0, 640],  # noqa: E731
                            "seconds": [0.0, secs]}
    return {"GRPO": c(grpo_gain, grpo_seconds), "PPO": c(ppo_gain, ppo_seconds)}


def finals(grpo_gain, ppo_gain, noise=0.0):
    """Per-problem results out of 8 samples on 40 problems: the start at 4/8 on each; each run's gain spread
    +-noise around its mean (GRPO and PPO in opposite phase, so the paired difference swings by 2 x noise)."""
    ev = lambda counts: {"correct_counts": counts, "n_samples": 8}  # noqa: E731
    start = ev([4] * 40)
    run = lambda gain, sign: ev([8 * (0.5 + gain + (sign * noise if i % 2 else -sign * noise)) for i in range(40)])  # noqa
    return start, {"GRPO": run(grpo_gain, 1), "PPO": run(ppo_gain, -1)}


def test_verdict_speed_both_ways():
    """Gains per sample and per minute, each compared paired by problem against two standard errors."""
    m = load_lesson("12_reasoning_rl")
    v = m.verdict_speed(curves(0.10, 0.05), *finals(0.10, 0.05))
    assert v["GRPO"]["gain"] == pytest.approx(0.10) and v["GRPO"]["gain_se"] == pytest.approx(0.0, abs=1e-12)
    assert v["GRPO"]["gain_per_1000_samples"] == pytest.approx(1000 * 0.10 / 640)
    assert v["GRPO"]["gain_per_minute"] == pytest.approx(60 * 0.10 / 10)
    assert v["per_minute_difference"]["mean"] == pytest.approx(60 * 0.10 / 10 - 60 * 0.05 / 20)
    assert (v["per_sample"], v["per_second"], v["grpo_cheaper_per_iteration"]) == ("more than", "more than", True)
    v = m.verdict_speed(curves(0.05, 0.10, grpo_seconds=30.0), *finals(0.05, 0.10))
    assert (v["per_sample"], v["per_second"], v["grpo_cheaper_per_iteration"]) == ("less than", "less than", False)
    v = m.verdict_speed(curves(0.10, 0.20, grpo_seconds=5.0), *finals(0.10, 0.20))   # half the gain, a quarter the time
    assert (v["per_sample"], v["per_second"]) == ("less than", "more than")
    # 5 points apart on average, but +-25 points problem by problem: within two standard errors (4 points each)
    v = m.verdict_speed(curves(0.10, 0.05), *finals(0.10, 0.05, noise=0.125))
    assert v["per_sample_difference"]["mean"] == pytest.approx(0.05)
    assert v["per_sample"] == "as much as (within two standard errors)"


@pytest.mark.parametrize("counts_variant, kl_variant, differs, drifts", [
    ([4, 4, 0, 0, 4, 4, 0, 0], 3.0, False, True),      # same answers, more KL
    ([0, 0, 0, 0, 0, 0, 0, 0], 0.5, True, False),      # worse, less KL
])
def test_verdict_beta_both_ways(counts_variant, kl_variant, differs, drifts):
    m = load_lesson("12_reasoning_rl")
    after = {"correct_counts": [4, 4, 0, 0, 4, 4, 0, 0], "n_samples": 4, "pass@1": 0.5}
    variant = {"correct_counts": counts_variant, "n_samples": 4, "pass@1": sum(counts_variant) / 32}
    v = m.verdict_beta({"beta": 0.04, "after": after, "kl": 1.0}, {"beta": 0.0, "after": variant, "kl": kl_variant})
    assert v["difference"] == pytest.approx(sum(counts_variant) / 32 - 0.5)
    assert (v["accuracy_differs"], v["variant_drifts_further"]) == (differs, drifts)


def test_ppo_reward_fn_scores_exact_ended_answers_on_the_last_token():
    import torch
    from types import SimpleNamespace
    from minialign.world import reasoning_data
    m = load_lesson("12_reasoning_rl")
    problems = reasoning_data(seed=0, n_per_family=1, families=["add", "count"], splits="train")
    right = [p.meta["answer"] for p in problems]
    r = SimpleNamespace(prompts=[problems[0].prompt, problems[1].prompt, problems[0].prompt],
                        responses=[f"The answer is {right[0]}.", "The answer is 99.", f"The answer is {right[0]}."],
                        ended=torch.tensor([True, True, False]),
                        mask=torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]))
    rewards, info = m.verifiable_reward_fn(problems)(r)
    expected = torch.zeros(3, 4)
    expected[0, 2] = 1.0                         # right and ended: 1 on the last real token; the others 0
    assert torch.equal(rewards, expected) and info["correct"].tolist() == [1.0, 0.0, 0.0]


def test_ppo_is_sized_like_grpo():
    from minialign.grpo import GRPOConfig
    m = load_lesson("12_reasoning_rl")
    g = GRPOConfig(iterations=7, prompts_per_iteration=3, group_size=4, lr=2e-4, beta=0.02)
    p = m.ppo_config(g)
    assert (p.iterations, p.batch_size, p.lr, p.beta, p.temperature, p.max_new_tokens) == (7, 12, 2e-4, 0.02, 1.0, 80)
    assert (p.ppo_epochs, p.n_minibatches, p.normalize_score, p.missing_end) == (2, 2, False, "none")


def test_parts_d_and_e_run_at_the_lesson_budget_in_folders_named_by_it():
    from minialign.grpo import GRPOConfig
    m = load_lesson("12_reasoning_rl")
    g = GRPOConfig(prompts_per_iteration=24, iterations=60, beta=0.04)
    c = m.compare_config(g, m.LessonConfig(compare_prompts_per_iteration=8, compare_iterations=30))
    assert (c.prompts_per_iteration, c.iterations, c.beta, c.lr, c.group_size) == (8, 30, 0.04, g.lr, g.group_size)
    assert (m.compare_stage(g, c, 0.04), m.compare_stage(g, c, 0.0)) == ("grpo_8x30", "grpo_8x30_beta0")
    same = m.compare_config(g, m.LessonConfig(compare_prompts_per_iteration=0, compare_iterations=0))
    assert same == g and (m.compare_stage(g, same, 0.04), m.compare_stage(g, same, 0.0)) == ("grpo", "grpo_beta0")


@pytest.mark.slow
def test_lesson_12_quick(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "12_reasoning_rl.py"), "--quick", "--out",
                           str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = out / "lessons" / "12_reasoning_rl"
    metrics = json.loads((folder / "metrics.json").read_text())
    for name in ("time_to_think.png", "pass_at_k.png", "training.png", "grpo_vs_ppo.png"):
        assert (folder / name).exists(), name
    for stage in ("sft_reasoning", "sft_reasoning_answer", "grpo", "grpo_beta0"):     # built through the cache
        assert (out / stage / "ckpt.pt").exists(), stage
    assert (folder / "ppo" / "ckpt.pt").exists()
    assert metrics["pass_at_k"]["ks"] == [1, 2, 4]
    assert set(metrics["curves"]) == {"GRPO", "PPO"}
    assert metrics["curves"]["GRPO"]["samples"] == metrics["curves"]["PPO"]["samples"] == [0, 32, 48]
    v = metrics["grpo"]                                                         # verdicts computed from the numbers
    assert v["meets_bar"] == (v["gain"] >= v["bar"] and v["gain"] > 2 * v["gain_se"])
    assert "=== (a) time to think" in proc.stdout and "=== (e) beta = 0.04 against beta = 0 ===" in proc.stdout
