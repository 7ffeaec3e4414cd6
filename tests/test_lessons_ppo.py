"""Lesson 08 (PPO) runs end to end with --quick and writes its figures and metrics."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_lesson_08_ppo_quick(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "08_ppo.py"), "--quick", "--out", str(out),
                           "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lesson = out / "lessons" / "08_ppo"
    metrics = json.loads((lesson / "metrics.json").read_text())
    assert metrics["runs"] and all("gold_reward" in r and "kl" in r and "proxy_reward" in r
                                   for r in metrics["runs"].values())
    for name in ("reward_vs_kl.png", "training_curves.png", "gold_components.png"):
        assert (lesson / name).exists(), name
    assert "reward hacking" in proc.stdout.lower()
    assert (out / "sft" / "ckpt.pt").exists() and (out / "rm" / "ckpt.pt").exists()  # built through the cache
    assert set(metrics["runs"]) == {"SFT", "beta=0.05", "hack (biased RM)", "control (unbiased RM)"}
    assert (out / "rm_unbiased" / "ckpt.pt").exists()                        # the control reward model
    h = metrics["reward_hacking"]                                            # verdicts computed from the numbers
    assert h["reward_hacking"] == (h["hack"]["proxy_rose"] and h["hack"]["below_sft"])
    assert [p["n"] for p in metrics["best_of_n"]["points"]] == [1, 2, 4, 8, 16, 32, 64]
