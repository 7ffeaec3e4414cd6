"""The whole pipeline as a user meets it: `train.py --quick` end to end with its report, an interrupted stage
that resumes, and bad inputs that each give a message naming what is wrong (subprocesses, like a user)."""

import ast
import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(*args, timeout=300):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `train.py --quick` run folder, built once for the tests that read it: (folder, the finished process)."""
    out = str(tmp_path_factory.mktemp("quick") / "run")
    proc = train("--quick", "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_quick_pipeline_end_to_end_with_report(quick_run):
    out, proc = quick_run
    assert "=== stage 10/10: evaluate" in proc.stdout
    report = open(os.path.join(out, "report.md")).read()
    for title in ("## Final comparison", "## Pretraining", "## Instruction tuning (SFT)", "## Reward model",
                  "## PPO with a per-token KL penalty", "## Fine-grained rewards", "## DPO",
                  "## SFT on worked steps (time to think)", "## GRPO on a verifiable reward", "## Time per stage",
                  "## Versions"):
        assert title in report, title
    # the final table has one row per policy, each with a gold reward and a KL
    for policy in ("base", "SFT", "PPO", "fine-grained PPO", "DPO"):
        row = re.search(rf"^\| {re.escape(policy)} \| (\d\.\d+) ± \d\.\d+ \|.*\| (-?\d+\.\d+) \| \d\.\d\d \[", report,
                        re.MULTILINE)
        assert row, policy
    assert re.search(r"held-out pairwise accuracy: \d\.\d+ vs the annotators", report)
    assert re.search(r"on responses sampled from the SFT model .* accuracy vs the oracle \d\.\d+", report)
    assert "could not read" not in report
    for figure in re.findall(r"\]\(([^)]+\.png)\)", report):      # every linked figure exists
        assert os.path.getsize(os.path.join(out, figure)) > 1000, figure
    times = json.load(open(os.path.join(out, "stage_times.json")))
    assert set(times) == {"tokenizer", "pretrain", "sft", "rm", "ppo", "finegrained", "dpo", "sft_reasoning", "grpo",
                          "evaluate"}
    # the grpo stage: pass@k of the SFT start and of the policy on the same held-out problems, and the paired gain
    g = json.load(open(os.path.join(out, "grpo", "metrics.json")))
    before, after = g["heldout"]["sft"], g["heldout"]["grpo"]
    assert g["heldout"]["ks"] == [1, 2, 4] and before["n_samples"] == after["n_samples"] == 4
    pairs = list(zip(before["correct_counts"], after["correct_counts"]))
    gain = sum(b - a for a, b in pairs) / 4 / len(pairs)
    assert g["heldout"]["pass@1_gain"] == pytest.approx(gain)
    assert g["history"]["eval"]["iteration"] == [0, 2, 3]
    assert re.search(r"held-out pass@1 gain over the SFT start: \*\*[+-]\d\.\d{3} ± \d\.\d{3}\*\*", report)
    ev = json.load(open(os.path.join(out, "evaluate", "metrics.json")))
    for kind in ("instruction", "toxic"):
        sft = ev["kinds"][kind]["policies"]["SFT"]
        assert sft["kl"] == 0.0 and sft["win_rate_vs_sft"]["win_rate"] == 0.5
        assert 0 < sft["distinct_responses"] <= 1
        assert f"held-out {kind} prompts" in report
    assert "| distinct answers | distinct-2 | tokens |" in report
    # the reward model is trained: the best-of-n curve, its figure and its section
    bon = ev["best_of_n"]
    assert (bon["N"], bon["n_prompts"]) == (64, 8) and [p["n"] for p in bon["points"]] == [1, 2, 4, 8, 16, 32, 64]
    assert bon["points"][-1]["kl"] == pytest.approx(math.log(64) - 63 / 64)
    assert "## Over-optimisation: best-of-n, PPO and DPO against KL" in report
    assert "](evaluate/overoptimization.png)" in report and re.search(r"^\| 64 .*\| 3\.175 \|", report, re.M)
    # a second run finds every stage finished and trains nothing
    again = train("--quick", "--out", out)
    assert again.returncode == 0 and "resuming" not in again.stdout
    assert "[pretrain] " not in again.stdout and "[sft] " not in again.stdout
    assert "[sft_reasoning] " not in again.stdout and "[grpo] " not in again.stdout


def test_compare_shows_every_policy_side_by_side_with_the_oracles_gold(quick_run, tmp_path):
    out, _ = quick_run
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("Write a short story about a cat.\n\nIs the sentence 'I love it' positive or negative?\n")
    proc = train("compare", "--quick", "--out", out, "--prompt", "What is the capital of France?",
                 "--prompts-file", str(prompts_file), "--best-of", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sampled at temperature 0.7 (seed 0), at most 16 tokens" in proc.stdout
    blocks = proc.stdout.split("=== prompt ")[1:]
    prompts = ["What is the capital of France?", "Write a short story about a cat.",
               "Is the sentence 'I love it' positive or negative?"]
    assert len(blocks) == 3
    from minialign.world import gold_reward
    for prompt, block in zip(prompts, blocks):
        lines = block.strip().splitlines()
        assert ast.literal_eval(lines[0].split(": ", 1)[1]) == prompt
        header, rows = lines[1], lines[2:]
        at = header.index("answer")                                  # aligned: every answer starts there
        assert [r.split("  ")[0] for r in rows] == ["base", "SFT", "PPO", "fine-grained PPO", "DPO",
                                                    "best-of-4 (SFT + RM)"]
        for row in rows:
            answer = ast.literal_eval(row[at:])
            gold = float(row[header.index("gold"):].split()[0])
            assert gold == pytest.approx(gold_reward(prompt, answer).total, abs=5e-4), row


def test_compare_refuses_no_prompt_an_empty_file_and_a_run_without_policies(quick_run, tmp_path, capsys):
    sys.path.insert(0, ROOT)
    import train as train_module
    out, _ = quick_run
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    for args, message in [(["--out", out], "no prompt given"),
                          (["--out", out, "--prompts-file", str(empty)], "holds no prompt"),
                          (["--out", out, "--prompts-file", str(tmp_path / "nope.txt")], "no such file"),
                          (["--out", str(tmp_path / "nothing"), "--prompt", "Hi"], "no finished policy"),
                          (["--out", out, "--prompt", "Hi", "--best-of", "-1"], "--best-of must be >= 0")]:
        assert train_module.main(["compare", "--quick", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    # greedy: one answer per policy, the same on a second call
    first = train_module.main(["compare", "--quick", "--out", out, "--prompt", "Hi", "--greedy"])
    text = capsys.readouterr().out
    assert first == 0 and "answers greedy; best-of-n samples" in text
    assert train_module.main(["compare", "--quick", "--out", out, "--prompt", "Hi", "--greedy"]) == 0
    assert capsys.readouterr().out == text


# A child that runs train.main and presses Ctrl-C on itself right after its first checkpoint lands (os.replace),
# directly or from inside a finalizer, where Python swallows the KeyboardInterrupt ("Exception ignored in ...").
# The signal goes through the real handler at a known step, so the test depends on no timing.
CTRL_C_CHILD = """
import os, signal, sys
sys.path.insert(0, os.getcwd())
import train
real_replace, sent = os.replace, []

class Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)

def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    if dst.endswith("ckpt.pt") and not sent:
        sent.append(1)
        if sys.argv[1] == "finalizer":
            Finalizer()                    # created and collected at once: Ctrl-C inside __del__
        else:
            os.kill(os.getpid(), signal.SIGINT)

os.replace = replace
sys.exit(train.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("where", ["loop", "finalizer"])
def test_interrupted_stage_resumes_and_finishes(tmp_path, where):
    out = str(tmp_path / "run")
    args = ["pretrain", "--quick", "--out", out, "--steps", "60", "--ckpt-every", "10"]
    proc = subprocess.run([sys.executable, "-c", CTRL_C_CHILD, where, *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "interrupted" in proc.stderr and "resume" in proc.stderr
    if where == "finalizer":                                        # what losing a Ctrl-C looks like
        assert "Exception ignored" in proc.stderr and "KeyboardInterrupt" in proc.stderr
    else:
        assert "Traceback" not in proc.stderr
    ckpt = os.path.join(out, "pretrain", "ckpt.pt")
    saved = torch.load(ckpt, weights_only=False)
    assert not saved["done"] and saved["step"] == 10               # stopped at the checkpoint that was asked
    again = train(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming pretraining from step 10" in again.stdout
    final = torch.load(ckpt, weights_only=False)
    assert final["done"] and final["step"] == 60


def test_missing_data_file_is_named(tmp_path):
    proc = train("sft", "--quick", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2
    assert f"error: {tmp_path / 'nope.jsonl'}: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "tokenizer").exists()         # refused before any stage was built


def test_malformed_data_file_names_file_line_and_field(tmp_path):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}\n'
                   '{"prompt": "Hi", "chosen": "Hello."}\n')
    proc = train("dpo", "--quick", "--out", str(tmp_path / "run"), "--data", str(bad))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bad}, line 2, field 'rejected'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_preset_names_the_choices():
    proc = train("--preset", "huge", "sft")
    assert proc.returncode != 0 and "invalid choice: 'huge'" in proc.stderr and "tiny" in proc.stderr


def test_checkpoint_from_another_config_is_refused_and_kept(tmp_path):
    out = str(tmp_path / "run")
    assert train("pretrain", "--quick", "--out", out).returncode == 0
    ckpt = os.path.join(out, "pretrain", "ckpt.pt")
    state = torch.load(ckpt, weights_only=False)
    state["model_config"]["n_embd"] = 128                       # as if written by another model size
    torch.save(state, ckpt)
    before = os.path.getmtime(ckpt)
    proc = train("sft", "--quick", "--out", out)
    assert proc.returncode == 2
    assert "was written with a different configuration" in proc.stderr and "n_embd" in proc.stderr
    assert os.path.getmtime(ckpt) == before                       # nothing overwritten


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    """ENOSPC on the second save: a clear message, and the first checkpoint still loads."""
    sys.path.insert(0, ROOT)
    import train as train_module
    from minialign import checkpoint

    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    out = str(tmp_path / "run")
    code = train_module.main(["pretrain", "--quick", "--out", out, "--ckpt-every", "10"])
    err = capsys.readouterr().err
    assert code == 2
    assert "could not write checkpoint" in err and "No space left on device" in err and "unchanged" in err
    state = checkpoint.load_checkpoint(os.path.join(out, "pretrain", "ckpt.pt"))
    assert state["step"] == 10 and not state["done"]
    assert [f for f in os.listdir(os.path.join(out, "pretrain")) if f.startswith(".tmp")] == []
