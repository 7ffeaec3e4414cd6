"""Lesson 09 (fine-grained vs holistic rewards) runs end to end with --quick and writes its figures and metrics."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_lesson_09_fine_grained_quick(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "09_fine_grained.py"), "--quick", "--out",
                           str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lesson = out / "lessons" / "09_fine_grained"
    metrics = json.loads((lesson / "metrics.json").read_text())
    compare = metrics["compare"]
    assert set(compare["table"]) == {"SFT", "holistic", "fine-grained"}
    assert compare["flagged_difference"]["n"] == compare["n_prompts"] > 1
    assert compare["equal_steps"] is True                      # the quick ppo and finegrained stages match
    assert "Fine-grained vs holistic PPO at equal steps" in proc.stdout and "Verdict:" in proc.stdout
    table = metrics["detox"]["table"]
    assert set(table) == {"GPT (base, pi_init)", "holistic", "fine-grained"}
    for row in table.values():
        assert 0.0 <= row["toxicity_avg_max"] <= 1.0 and row["ppl"] > 1.0 and 0.0 <= row["dist2"] <= 1.0
    custom = metrics["customization"]
    assert set(custom["tokens_by_weight"]) == {"0.15", "0.1", "0.05"}
    assert set(custom["evals"]) == {"GPT (base, pi_init)", "w_rel=0.15", "w_rel=0.1", "w_rel=0.05"}
    assert 0.0 <= custom["relevance_rm"]["accuracy"] <= 1.0
    for name in ("flagged_sentences.png", "detox_table.png", "sample_efficiency.png", "customization.png"):
        assert (lesson / name).exists(), name
    assert "Example: Detoxification" in proc.stdout and "Customizing LLM Behavior" in proc.stdout
