"""Lessons 04 (task diversity), 05 (Self-Instruct) and 06 (LIMA): their helpers, and --quick runs.

- ROUGE-L (lesson 05's near-duplicate filter) against hand-worked values and a brute-force LCS;
- the A/B/C/D grader against answers whose quality is known (reference, wrong, off topic);
- lesson 04's answer NLL against log-probabilities computed the slow, obvious way (full softmax
  over the vocabulary, one position at a time);
- each lesson end to end with --quick in a subprocess (slow: CI runs them).
"""

import itertools
import json
import os
import random
import subprocess
import sys

import pytest
from lesson_loader import load_lesson
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def si():
    return load_lesson("05_self_instruct")


# ----------------------------------------------------------------------------------------------
# ROUGE-L
def test_rouge_l_hand_worked_values(si):
    # 6 words each, LCS "what is the plural of" = 5: P = R = 5/6, F = 5/6
    assert si.rouge_l("What is the plural of cat?", "What is the plural of dog?") == pytest.approx(5 / 6)
    # LCS of "the cat sat on the mat" and "the mat sat on the cat" is "the sat on the" = 4 of 6
    assert si.rouge_l("the cat sat on the mat", "the mat sat on the cat") == pytest.approx(4 / 6)
    # unequal lengths: candidate 4 words, reference 2, LCS 2: P = 1/2, R = 1, F = 2PR/(P+R) = 2/3
    assert si.rouge_l("a b c d", "a c") == pytest.approx(2 / 3)
    assert si.rouge_l("a c", "a b c d") == pytest.approx(2 / 3)          # F is symmetric
    # LCS 1 of 3 and 5 words: P = 1/3, R = 1/5, F = 2 * (1/15) / (8/15) = 1/4
    assert si.rouge_l("x y z", "q z r s t") == pytest.approx(0.25)
    # case and punctuation do not count (the rouge_score tokenizer)
    assert si.rouge_l("Hello, World!", "hello world") == 1.0
    assert si.rouge_l("Translate to French: the dog", "translate to french the dog") == 1.0
    assert si.rouge_l("red blue", "green yellow") == 0.0
    assert si.rouge_l("", "anything at all") == 0.0
    assert si.rouge_l("?!", "...") == 0.0


def brute_force_lcs(a, b) -> int:
    """The longest subsequence of `a` that is also a subsequence of `b`, by trying them all."""
    def is_subsequence(seq, of):
        it = iter(of)
        return all(x in it for x in seq)
    for k in range(len(a), 0, -1):
        if any(is_subsequence(c, b) for c in itertools.combinations(a, k)):
            return k
    return 0


def test_lcs_matches_brute_force(si):
    assert si.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4     # the textbook example
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        assert si.lcs_length(a, b) == brute_force_lcs(a, b), (a, b)


def test_rouge_filter_rejects_near_duplicates_only(si):
    pool = [si.rouge_tokens("What is the plural of fox?")]
    reason, best = si.instruction_verdict("What is the plural of duck?", pool, 0.7)
    assert reason == "too similar (ROUGE-L)" and best == pytest.approx(5 / 6)
    reason, best = si.instruction_verdict("Write a one-sentence story about a cat.", pool, 0.7)
    assert reason is None and best < 0.7
    assert si.instruction_verdict("Hi", pool, 0.7)[0] == "too short or long"
    assert si.instruction_verdict(None, pool, 0.7)[0] == "instruction cut off"


# ----------------------------------------------------------------------------------------------
# The oracle's A/B/C/D and the seed tasks
def test_grade_classes_follow_the_oracle(si):
    from minialign.world import instruction_data
    for ex in instruction_data(seed=0, n_per_family=2, splits=("test", "unseen_family")):
        if ex.answers:   # tasks with a right answer: the reference is an A, the wrong answer not
            assert si.grade(ex.prompt, ex.response) == "A", (ex.family, ex.prompt, ex.response)
            assert si.grade(ex.prompt, ex.meta["wrong"]) != "A", (ex.family, ex.meta["wrong"])
    assert si.grade("What is 3 plus 4?", "7.") == "A"
    assert si.grade("What is 3 plus 4?", "8.") == "C"                 # responds, wrong answer
    assert si.grade("What is 3 plus 4?", "The sun was warm and the sky was blue.") == "D"  # off topic
    assert si.grade("What is 3 plus 4?", "") == "D"
    assert si.grade("Sing me the song of the blue moon?", "Okay.") == "D"   # not a task of the world


def test_seed_tasks_are_valid_world_tasks(si):
    from minialign.world import parse_prompt
    families = si.SEED_FAMILIES.split(",")
    seeds = si.seed_tasks(families, 4, seed=0)
    assert len(seeds) == 4 * len(families)
    for t in seeds:
        parsed = parse_prompt(t.prompt)
        assert parsed is not None and parsed.family.name in families, t
        assert si.grade(t.prompt, t.output) == "A", t
        assert all(si.data_quality(t).values()), t
    # an instance prompt ends where the model must write the input
    assert si.instance_prompt(seeds[:2], "What is 1 plus 1?").endswith(
        "\n\nInstruction: What is 1 plus 1?\nInput:")


# ----------------------------------------------------------------------------------------------
# Lesson 04's answer NLL, against the slow way
def test_answer_nll_matches_full_softmax():
    from minialign.chat import render
    from minialign.model import GPT, GPTConfig
    from minialign.sft import SFTConfig
    from minialign.tokenizer import train_bpe
    from minialign.world import instruction_data, pretraining_corpus
    lesson = load_lesson("04_task_diversity")
    tok = train_bpe(pretraining_corpus(seed=0, n_docs=60), vocab_size=400, progress=False)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2,
                          n_embd=32)).eval()
    examples = instruction_data(seed=0, n_per_family=1, splits="test")[:12]
    got = lesson.answer_nll(model, tok, examples, SFTConfig(eval_batch_size=5), torch.device("cpu"))

    total, n = 0.0, 0      # -log p of every answer token (and <|end|>), one position at a time
    for ex in examples:
        r = render(tok, ex.prompt, ex.response)
        with torch.no_grad():
            logits = model.logits(model(torch.tensor([r.ids])))[0]          # (T, V)
        for t in range(len(r.ids) - 1):
            if r.loss_mask[t + 1]:
                total -= torch.log_softmax(logits[t].double(), -1)[r.ids[t + 1]].item()
                n += 1
    assert got == pytest.approx(total / n, rel=1e-4)


# ----------------------------------------------------------------------------------------------
# The lessons end to end (--quick), sharing one run folder (the base model is built once)
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sft_data_lessons") / "run"


def run_lesson(name: str, out) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", name + ".py"), "--quick",
                           "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = out / "lessons" / name
    return json.loads((folder / "metrics.json").read_text()), proc.stdout


def pngs_exist(folder, names):
    for name in names:
        assert (folder / name).stat().st_size > 1000, name


@pytest.mark.slow
def test_lesson_04_task_diversity_quick(run_dir):
    m, stdout = run_lesson("04_task_diversity", run_dir)
    assert m["families"]["counts"] == [2, 6, 12, 26]
    total = m["config"]["examples_per_arm"]                      # same data size for every arm
    for k, a in zip(m["families"]["counts"], m["families"]["arms"]):
        assert total - k < a["n_examples"] <= total
    assert len({a["steps"] for a in m["families"]["arms"] + m["templates"]["arms"]}) == 1
    assert [len(a["train_families"]) for a in m["families"]["arms"]] == [2, 6, 12, 26]
    for arm in m["families"]["arms"] + m["templates"]["arms"]:
        for split in ("test", "unseen_template", "unseen_family"):
            s = arm["splits"][split]
            assert 0 <= s["score"] <= 1 and 0 <= s["gold"] <= 1 and s["nll"] > 0
    assert set(m["templates"]["unseen_template"]) == {"1", "2", "4"}
    assert set(m["mixtures"]["table"]) == {"qa only", "rewriting only", "classification only", "combined"}
    for row in m["mixtures"]["table"].values():
        assert {"qa", "rewriting", "classification"} <= set(row)
    assert m["base_model"]["early"]["pretrain_steps"] < m["base_model"]["full"]["pretrain_steps"]
    pngs_exist(run_dir / "lessons" / "04_task_diversity",
               ("families.png", "templates.png", "mixtures.png", "base_model.png"))
    assert "Effect of Prompt Variations" in stdout and "What this shows" in stdout


@pytest.mark.slow
def test_lesson_05_self_instruct_quick(run_dir):
    m, stdout = run_lesson("05_self_instruct", run_dir)
    assert m["n_seeds"] == 24 and m["pool_size"] == m["n_seeds"] + m["kept"]
    assert m["proposed"] == sum(it["proposed"] for it in m["iterations"])
    assert m["proposed"] == m["kept"] + sum(m["dropped"].values())     # every candidate accounted for
    assert set(m["classes"]) == {"A", "B", "C", "D"}
    assert set(m["quality"]) == {"valid instruction", "appropriate input", "acceptable output",
                                 "all fields valid"}
    for name in ("base model (no SFT)", "seeds only", "seeds + self-instruct"):
        assert sum(m["eval"][name]["all"]["classes"].values()) == pytest.approx(1.0)
    folder = run_dir / "lessons" / "05_self_instruct"
    pngs_exist(folder, ("pool.png", "quality.png", "rouge.png"))
    lines = (folder / "generated.jsonl").read_text().splitlines()
    assert len(lines) == m["proposed"]
    assert "Self-Instruct" in stdout and "What this shows" in stdout


@pytest.mark.slow
def test_lesson_06_lima_quick(run_dir):
    m, stdout = run_lesson("06_lima", run_dir)
    assert set(m["results"]) == {"curated", "noisy", "low_diversity", "noisy_subset"}
    assert m["data"]["noisy_subset"]["n"] == min(m["data"]["curated"]["n"], m["data"]["noisy"]["n"])
    assert m["data"]["low_diversity"]["families"] == 3
    assert m["data"]["curated"]["flawed"] == 0 and m["data"]["noisy"]["flawed"] > 0
    for r in m["results"].values():
        for group in ("test", "unseen_family", "all"):
            assert 0 <= r[group]["gold"] <= 1 and 0 <= r[group]["score"] <= 1
            assert 0 <= r[group]["flawed"] <= 1 and set(r[group]["flaws"]) >= {"filler", "rude", "off_topic"}
        assert len(r["all"]["gold_per_prompt"]) == r["all"]["n"]
    assert set(m["verdict"]["differences"]) == {"quantity", "quality", "diversity"}
    assert set(m["format_constraint"]) == {"uppercase", "name_three"}
    assert all(0 <= f["with"] <= 1 and 0 <= f["without"] <= 1 for f in m["format_constraint"].values())
    pngs_exist(run_dir / "lessons" / "06_lima", ("lima.png",))
    assert "Quality vs. Quantity vs. Diversity" in stdout and "What this shows" in stdout
