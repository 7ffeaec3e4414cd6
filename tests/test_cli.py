"""The command line and the foundation lessons, run as a user would (subprocesses, --quick)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_help_lists_every_stage():
    out = run("train.py", "--help")
    for stage in ("tokenizer", "pretrain", "sample", "data"):
        assert stage in out


def test_unknown_preset_is_a_clear_error():
    proc = subprocess.run([sys.executable, "train.py", "--preset", "huge", "pretrain"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "invalid choice: 'huge'" in proc.stderr


@pytest.mark.slow
def test_pretrain_quick_then_lessons(tmp_path):
    out = str(tmp_path / "run")
    run("train.py", "pretrain", "--quick", "--out", out)
    metrics = json.load(open(os.path.join(out, "pretrain", "metrics.json")))
    assert metrics["final_val_loss"] < 6.0          # below log(512) = 6.24, the uniform guess
    assert os.path.exists(os.path.join(out, "pretrain", "loss.png"))
    # re-running finds the finished stage and does not train again
    again = run("train.py", "pretrain", "--quick", "--out", out)
    assert "resuming" not in again and "[pretrain] " not in again.split("\n")[1]
    run("lessons/00_tokenizer.py", "--quick", "--out", out)
    assert os.path.exists(os.path.join(out, "lessons", "00_tokenizer", "metrics.json"))
    run("lessons/01_pretraining.py", "--quick", "--out", out)
    m = json.load(open(os.path.join(out, "lessons", "01_pretraining", "metrics.json")))
    assert m["final_val_loss"] < m["uniform_loss"]
    assert os.path.exists(os.path.join(out, "lessons", "01_pretraining", "loss.png"))
