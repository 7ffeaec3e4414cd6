"""Lesson 10 (DPO vs PPO) runs end to end with --quick and writes its figures and metrics."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_lesson_10_dpo_quick(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "10_dpo.py"), "--quick",
                           "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lesson = out / "lessons" / "10_dpo"
    metrics = json.loads((lesson / "metrics.json").read_text())
    assert metrics["dpo"] and metrics["ppo"]
    for r in list(metrics["dpo"].values()) + list(metrics["ppo"].values()):
        assert len(r["points"]) >= 2                       # (KL, gold) at the start and later
        assert 0.0 <= r["win_rate_vs_sft"]["win_rate"] <= 1.0
    for name in ("frontier.png", "win_rates.png", "dpo_margins.png"):
        assert (lesson / name).exists(), name
    assert "DPO versus Baselines" in proc.stdout
