"""Lesson 08's verdicts are read off the numbers: each fed both outcomes."""

import pytest
from lesson_loader import load_lesson


L = load_lesson("08_ppo")
SFT = {"gold_reward": 0.60, "gold_se": 0.01, "flaw_rates": {"authoritative": 0.05}}


def history(gold: list[float]) -> dict:
    return {"gold_reward": gold, "proxy_reward": [0.1 * i for i in range(len(gold))]}


RISE_FALL = [0.60] * 10 + [0.70] * 20 + [0.40] * 30          # 60 iterations: up, then down below the start
RISE = [0.60] * 10 + [0.70] * 50


def test_verdict_sees_the_rise_and_fall_and_where_it_ends():
    v = L.verdict(history(RISE_FALL), SFT, {"gold_reward": 0.40, "gold_se": 0.01, "kl": 20.0})
    assert v["proxy_rose"] and v["gold_rose_then_fell"] and v["below_sft"]
    assert v["gold_start"] == pytest.approx(0.60) and v["gold_peak"] == pytest.approx(0.70)
    assert v["gold_end"] == pytest.approx(0.40)
    v = L.verdict(history(RISE), SFT, {"gold_reward": 0.65, "gold_se": 0.01, "kl": 3.0})
    assert not v["gold_rose_then_fell"] and not v["below_sft"]
    # 0.58 is within 2 standard errors (se of the difference 0.014) of 0.60: not "below"
    assert not L.verdict(history(RISE), SFT, {"gold_reward": 0.58, "gold_se": 0.01, "kl": 3.0})["below_sft"]


def test_verdict_start_is_not_one_noisy_batch():
    """A lucky first batch must not hide the rise: the start is a mean over the first iterations."""
    gold = [0.90] + [0.60] * 9 + [0.70] * 20 + [0.40] * 30
    v = L.verdict(history(gold), SFT, {"gold_reward": 0.40, "gold_se": 0.01, "kl": 20.0})
    assert v["gold_start"] == pytest.approx(0.65) and v["gold_rose_then_fell"]


def evals(hack_gold: float, control_gold: float) -> dict:
    rate = {"authoritative": 0.5}
    return {"SFT": SFT, L.HACKED: {"gold_reward": hack_gold, "gold_se": 0.01, "kl": 20.0, "flaw_rates": rate},
            L.CONTROL: {"gold_reward": control_gold, "gold_se": 0.01, "kl": 7.0, "flaw_rates": rate}}


@pytest.mark.parametrize("hack, control, shown, cause, words", [
    (0.40, 0.62, True, True, "is what PPO exploited"),
    (0.40, 0.45, True, False, "against both reward models"),
    (0.62, 0.62, False, False, "did not end below"),
])
def test_print_hacking_both_ways(hack, control, shown, cause, words, capsys):
    hist = {L.HACKED: history(RISE_FALL), L.CONTROL: history(RISE)}
    got = L.print_hacking(hist, evals(hack, control), L.LessonConfig())
    assert got["reward_hacking"] is shown and got["bias_is_the_cause"] is cause
    assert words in capsys.readouterr().out


def points(golds: list[float]) -> dict:
    return {"points": [{"n": 2 ** i, "kl": float(i), "gold": g, "gold_se": 0.01, "proxy": 0.1 * i}
                       for i, g in enumerate(golds)]}


def test_best_of_n_both_ways(capsys):
    got = L.print_best_of_n(points([0.55, 0.62, 0.60, 0.50]))
    assert got["rose_then_fell"] and got["best_n"] == 2 and got["proxy_rose"]
    assert "peaks at n = 2" in capsys.readouterr().out
    got = L.print_best_of_n(points([0.55, 0.58, 0.60, 0.61]))
    assert not got["rose_then_fell"]
    assert "does not rise and then fall" in capsys.readouterr().out
