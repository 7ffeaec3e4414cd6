"""Lesson 07 (reward model) runs end to end with --quick; the rm stage trains on a preference file."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_lesson_07_reward_model_quick_and_rm_stage_on_a_file(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "07_reward_model.py"), "--quick",
                           "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lesson = out / "lessons" / "07_reward_model"
    metrics = json.loads((lesson / "metrics.json").read_text())
    for arm in ("comparisons", "ratings"):
        assert [c["prompts"] for c in metrics["curves"][arm]] == metrics["curves"]["budgets"]
        assert all(0.0 <= c["accuracy_vs_oracle"] <= 1.0 for c in metrics["curves"][arm])
    assert metrics["examples"] and "r_phi" in metrics["examples"][0]
    assert metrics["flaws"] and all(0.0 <= v["accuracy"] <= 1.0 for v in metrics["flaws"].values())
    assert 0.5 < metrics["noise_ceiling"]["annotators_vs_oracle"] < 1.0
    for name in ("accuracy_vs_comparisons.png", "calibration.png"):
        assert (lesson / name).stat().st_size > 1000, name
    assert "Reward Model Training" in proc.stdout and "What this shows" in proc.stdout
    # the pipeline's rm stage it reused: checkpoint, metrics, figures
    rm_metrics = json.loads((out / "rm" / "metrics.json").read_text())
    assert abs(rm_metrics["normalization"]["gain"]) > 0
    for name in ("ckpt.pt", "training.png", "calibration.png", "reward_vs_gold.png"):
        assert (out / "rm" / name).exists(), name

    # the same stage on a preference JSONL file (rankings), reusing the SFT model built above
    from minialign.pipeline import Run
    from minialign.pipeline import ensure_rm
    from minialign.reward import QUICK, RMConfig
    other = tmp_path / "file_run"
    for stage in ("tokenizer", "pretrain", "sft"):
        shutil.copytree(out / stage, other / stage)
    run = Run(out=str(other), preset="tiny", device=__import__("torch").device("cpu"), seed=0, quick=True)
    cfg = RMConfig(**{**QUICK, "data": os.path.join(ROOT, "data", "examples", "rankings.jsonl"),
                      "eval_fraction": 0.25})
    rm, tok = ensure_rm(run, cfg)
    m = json.loads((other / "rm" / "metrics.json").read_text())
    assert m["data"].endswith("rankings.jsonl") and m["n_eval_pairs"] > 0
    assert m["accuracy_vs_oracle"] is None        # no gold rewards in a file
    assert len(rm.score(tok, ["What pet does Zoe have?"], ["Zoe has a duck."])) == 1
