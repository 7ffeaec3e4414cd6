"""Lessons 02 (LM is not a task solver) and 03 (instruction tuning) run end to end with --quick.

Both share one run folder, so the second reuses the tokenizer, base model and SFT model that the
first built (the pipeline's stage cache), as a student's runs would.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_lesson(name: str, out) -> str:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", name + ".py"), "--quick",
                           "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_lessons_02_and_03_quick(tmp_path):
    out = tmp_path / "run"
    stdout = run_lesson("02_lm_is_not_a_task_solver", out)
    lesson = out / "lessons" / "02_lm_is_not_a_task_solver"
    m = json.loads((lesson / "metrics.json").read_text())
    assert [r["prompt"] for r in m["slide_prompts"]] == ["Explain the moon to a six year old.",
                                                        "Translate to French: the small dog"]
    assert m["summary"]["n"] == 35 and 0.0 <= m["summary"]["sft_gold"] <= 1.0
    assert (lesson / "base_vs_sft.png").stat().st_size > 1000
    assert "Language Modeling != Solving Tasks" in stdout and "What this shows" in stdout
    # the SFT stage it built: checkpoint, metrics (base and SFT scores), figures
    sft = json.loads((out / "sft" / "metrics.json").read_text())
    assert set(sft["eval"]["splits"]) == {"test", "unseen_template", "unseen_family"}
    assert set(sft["base_eval"]["splits"]) == set(sft["eval"]["splits"])
    for name in ("ckpt.pt", "loss.png", "scores.png"):
        assert (out / "sft" / name).exists(), name

    stdout = run_lesson("03_instruction_tuning", out)
    lesson = out / "lessons" / "03_instruction_tuning"
    m = json.loads((lesson / "metrics.json").read_text())
    assert set(m["summary"]) == {"test", "unseen_template", "unseen_family"}
    unseen = {r["family"] for r in m["families"] if r["split"] == "unseen_family"}
    seen = {r["family"] for r in m["families"] if r["split"] == "test"}
    assert unseen and seen and not unseen & seen
    for name in ("scores.png", "oracle_grades.png"):
        assert (lesson / name).stat().st_size > 1000, name
    assert "Instruction Tuning" in stdout and "[sft]" not in stdout   # reused, not retrained
