"""Lessons 01-05 read their verdicts off the numbers: each verdict function is fed both outcomes."""

import os
import sys

import pytest
from lesson_loader import load_lesson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


L01 = load_lesson("01_pretraining")
L02 = load_lesson("02_lm_is_not_a_task_solver")
L03 = load_lesson("03_instruction_tuning")
L04 = load_lesson("04_task_diversity")
L05 = load_lesson("05_self_instruct")


# ---------------------------------------------------------------------------------------------- 01
def translation(rate: float, slide_correct: float) -> dict:
    return {"slide_prompt": "Translate to French: the small dog", "slide_answer": "Le petit chien.",
            "slide_correct": slide_correct, "n": 20, "correct_rate": rate, "interval_95": [0.0, 0.16]}


def test_lesson01_translation_verdict_both_ways():
    no = L01.translation_verdict(translation(0.0, 0.0))
    assert "does not translate it" in no and "as on the slide" in no
    yes = L01.translation_verdict(translation(0.8, 1.0))
    assert "translates it correctly" in yes and "unlike the slide" in yes and "often follows" in yes
    assert "sometimes follows" in L01.translation_verdict(translation(0.3, 0.0))


def test_lesson01_loss_verdict_and_interval():
    assert "lowered" in L01.loss_verdict(7.6, 0.9)
    assert "NOT below" in L01.loss_verdict(7.6, 7.9)
    low, high = L01.wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2              # 0/20 is not "0 +- 0"
    low, high = L01.wilson_interval(10, 20)
    assert low < 0.5 < high


# ---------------------------------------------------------------------------------------------- 02
def rows02(base_correct: float, sft_correct: float, base_writes: bool, n: int = 40) -> list[dict]:
    """n prompts; the SFT model's correctness alternates around sft_correct so the SE is not zero."""
    rows = []
    for i in range(n):
        sc = min(1.0, max(0.0, sft_correct + (0.1 if i % 2 else -0.1)))
        rows.append({"base_correct": base_correct, "sft_correct": sc, "base_gold": 0.5 + base_correct / 2,
                     "sft_gold": 0.5 + sc / 2, "base_writes_a_task": base_writes and i % 5 != 0,
                     "sft_writes_a_task": False, "sft_ended": True})
    return rows


def test_lesson02_verdict_sees_a_rise():
    v = L02.verdict(L02.summarize(rows02(0.0, 0.6, True)))
    assert "mostly continues it" in v and "(the slide's failure)" in v
    assert "solved rises" in v and "as the slide says" in v


def test_lesson02_verdict_does_not_claim_a_rise_that_is_not_there():
    v = L02.verdict(L02.summarize(rows02(0.5, 0.2, False)))
    assert "falls" in v and "rises" not in v and "did not raise" in v
    assert "writes another task in only" in v and "unlike on the slide" in v
    # a difference within two standard errors is no change
    assert L02.change(0.05, 0.04).startswith("does not change")
    assert L02.change(0.10, 0.04).startswith("rises") and L02.change(-0.10, 0.04).startswith("falls")


# ---------------------------------------------------------------------------------------------- 03
def numbers03(seen: float, unseen: float, form: float, content: float, se: float = 0.02) -> dict:
    split = lambda d: {"base": 0.1, "sft": 0.1 + d, "diff": d, "se": se, "n_families": 9}  # noqa: E731
    return {"splits": {"test": split(seen), "unseen_template": split(seen), "unseen_family": split(unseen)},
            "form": {"diff": form, "se": se, "n_families": 9},
            "content": {"diff": content, "se": se, "n_families": 9}}


def test_lesson03_verdict_form_not_content():
    v = L03.verdict(numbers03(0.3, 0.0, 0.3, 0.0))
    assert "the form of an answer, not its content" in v and "does not measurably generalize" in v


def test_lesson03_verdict_both_transfer_and_neither():
    v = L03.verdict(numbers03(0.3, 0.2, 0.3, 0.2))
    assert "Both the form and the content" in v and "generalizes to unseen tasks" in v
    v = L03.verdict(numbers03(0.01, -0.01, -0.05, -0.01))
    assert "Neither the form nor the content" in v and "not beyond two standard errors" in v


def test_lesson03_family_change_is_paired_over_families():
    base = {"families": {"unseen_family": {"a": {"score": 0.0}, "b": {"score": 0.2}}}}
    sft = {"families": {"unseen_family": {"a": {"score": 0.1}, "b": {"score": 0.3}, "c": {"score": 1.0}}}}
    c = L03.family_change(base, sft, "unseen_family", lambda f: f["score"])
    assert c["n_families"] == 2 and c["diff"] == pytest.approx(0.1) and c["se"] == pytest.approx(0.0)
    assert L03.stuck_families([{"split": "test", "family": "add", "sft": 0.0}]).startswith("Seen families")
    assert L03.stuck_families([{"split": "test", "family": "add", "sft": 0.5}]) == ""


# ---------------------------------------------------------------------------------------------- 04
def ch04(nll: float, gold: float, score: float, se: float = 0.01) -> dict:
    return {"nll": {"mean": nll, "se": se, "n": 9}, "gold": {"mean": gold, "se": se, "n": 9},
            "score": {"mean": score, "se": se, "n": 9}}


def test_lesson04_families_and_templates_verdicts_both_ways():
    assert "As on the slide" in L04.families_verdict(ch04(-1.0, 0.1, 0.1), 2, 26, 9)
    assert "In part as on the slide" in L04.families_verdict(ch04(-1.0, 0.0, 0.0), 2, 26, 9)
    assert "no measurable change" in L04.families_verdict(ch04(0.0, 0.005, 0.0), 2, 26, 9)
    assert "get worse" in L04.families_verdict(ch04(1.0, -0.1, 0.0), 2, 26, 9)
    assert "Mixed" in L04.families_verdict(ch04(-1.0, -0.1, 0.0), 2, 26, 9)
    assert "As on the slide" in L04.templates_verdict(ch04(-0.3, 0.1, 0.1), ch04(0, 0, 0), 1, 4)
    assert "Unlike the slide" in L04.templates_verdict(ch04(0.0, 0.0, 0.0), ch04(0, 0, 0), 1, 4)


def test_lesson04_base_verdict_both_ways():
    good = {"test": ch04(-0.5, 0.05, 0.06), "unseen_family": ch04(0, 0, 0)}
    assert "As on the slide" in L04.base_verdict(good, 100, 600)
    bad = {"test": ch04(0.5, -0.05, 0.0), "unseen_family": ch04(0, 0, 0)}
    assert "Unlike the slide" in L04.base_verdict(bad, 100, 600)


def test_lesson04_mixtures_verdict_both_ways():
    cats = ("qa", "rewriting")
    table = {"qa only": {"qa": {"gold": 0.8}, "rewriting": {"gold": 0.5}},
             "rewriting only": {"qa": {"gold": 0.5}, "rewriting": {"gold": 0.8}},
             "combined": {"qa": {"gold": 0.75}, "rewriting": {"gold": 0.75}}}
    own = {c: {"mixture": f"{c} only", "rival": "combined", "mean": 0.05, "se": 0.01} for c in cats}
    better = {n: {"mean": 0.1, "se": 0.01, "n": 6} for n in ("qa only", "rewriting only")}
    v = L04.mixtures_verdict(table, own, better)
    assert "Each mixture is best on its own category" in v and "gives the best overall" in v
    own = {c: {"mixture": f"{c} only", "rival": "combined", "mean": 0.0, "se": 0.01} for c in cats}
    worse = {"qa only": {"mean": -0.1, "se": 0.01, "n": 6}, "rewriting only": {"mean": 0.1, "se": 0.01, "n": 6}}
    v = L04.mixtures_verdict(table, own, worse)
    assert "No single mixture is measurably best" in v and "beats the combination" in v
    flat = {n: {"mean": 0.0, "se": 0.01, "n": 6} for n in ("qa only", "rewriting only")}
    assert "not confirmed" in L04.mixtures_verdict(table, own, flat)


def test_lesson04_paired_change_uses_common_families():
    a = {"x": {"gold": 0.5}, "y": {"gold": 0.6}, "z": {"gold": 0.0}}
    b = {"x": {"gold": 0.7}, "y": {"gold": 0.8}}
    c = L04.paired_change(a, b, "gold")
    assert c["n"] == 2 and c["mean"] == pytest.approx(0.2) and c["se"] == pytest.approx(0.0, abs=1e-12)
    one = L04.paired_change(a, b, "gold", only={"x"})
    assert one["n"] == 1 and one["se"] == float("inf")           # one family: no spread to measure
    assert L04.direction(one) == "flat" and L04.direction({"mean": -0.3, "se": 0.1}, lower=True) == "better"


def test_lesson04_figure_titles_do_not_state_the_result():
    source = open(os.path.join(ROOT, "lessons", "04_task_diversity.py")).read()
    for claim in ("become more likely (T0", "is best on its own category, weak", "-> better on new phrasings"):
        assert claim not in source


# ---------------------------------------------------------------------------------------------- 05
def data05(valid: float, output: float, all_valid: float) -> dict:
    return {"proposed": 100, "kept": 20, "kept_fraction": 0.2, "pool_size": 44,
            "proposed_valid_instruction": valid, "proposed_families": ["add", "antonym"],
            "quality": {"valid instruction": valid, "appropriate input": output,
                        "acceptable output": output, "all fields valid": all_valid},
            "classes": {"A": output, "B": 0.0, "C": 0.0, "D": 1 - output}}


def test_lesson05_generation_verdict_both_ways():
    assert "most of the generated data is usable" in L05.generation_verdict(24, ["add"], data05(0.9, 0.6, 0.5))
    v = L05.generation_verdict(24, ["add"], data05(0.6, 0.0, 0.0))
    assert "not usable" in v and "the step that breaks is the instance" in v
    assert "rarely valid tasks" in L05.generation_verdict(24, ["add"], data05(0.1, 0.0, 0.0))


def evals05(seeds: list[float], generated: list[float]) -> dict:
    arm = lambda g: {"all": {"gold": sum(g) / len(g), "score": 0.0, "golds": g, "scores": [0.0] * len(g)}}  # noqa: E731
    return {"seeds only": arm(seeds), "seeds + self-instruct": arm(generated)}


def test_lesson05_fine_tuning_verdict_both_ways():
    seeds = [0.5, 0.6] * 10
    up = L05.fine_tuning_change(evals05(seeds, [g + 0.1 + 0.01 * (i % 2) for i, g in enumerate(seeds)]))
    assert up["gold"] == pytest.approx(0.105) and up["n"] == 20
    assert "helps" in L05.fine_tuning_verdict(up, 0.5) and "As in the paper" in L05.fine_tuning_verdict(up, 0.5)
    down = L05.fine_tuning_change(evals05(seeds, [g - 0.1 - 0.01 * (i % 2) for i, g in enumerate(seeds)]))
    v = L05.fine_tuning_verdict(down, 0.0)
    assert "hurts" in v and "Unlike the paper" in v and "few-shot learner" in v
    same = L05.fine_tuning_change(evals05(seeds, [g + (0.01 if i % 2 else -0.01) for i, g in enumerate(seeds)]))
    assert "no difference beyond two standard errors" in L05.fine_tuning_verdict(same, 0.5)


def test_lesson05_docstring_does_not_announce_the_outcome():
    assert "mostly wrong or off topic" not in L05.__doc__


@pytest.mark.parametrize("module", [L01, L02, L03, L04, L05])
def test_docstrings_state_run_time_and_what_is_built_first(module):
    assert "on a 2-core CPU" in module.__doc__ and "Builds first, if missing" in module.__doc__


def schema_arm(gold_shift: float) -> dict:
    fams = {f"f{i}": {"score": 0.1, "gold": 0.5 + gold_shift + 0.01 * (i % 3), "nll": 6.0} for i in range(9)}
    return {"families": {"unseen_family": fams}}


def test_lesson04_schema_verdict_pairs_each_schema_with_the_definition():
    arms = {"definition only": schema_arm(0.0), "+ positive examples": schema_arm(0.1),
            "positive examples only": schema_arm(-0.1)}
    text = L04.schema_verdict(arms)
    pos, only = [line for line in text.split("\n") if "vs definition only" in line]
    assert pos.startswith("  + positive examples") and "gold reward +0.10 +- 0.00" in pos and "better on gold" in pos
    assert "gold reward -0.10 +- 0.00" in only and "worse on gold" in only
    same = L04.schema_verdict({"definition only": schema_arm(0.0), "full schema": schema_arm(0.0)})
    assert "no measurable change in any measure" in same


@pytest.mark.slow
def test_lesson04_schema_part_quick(tmp_path):
    import json
    import subprocess
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "04_task_diversity.py"), "--quick",
                           "--parts", "schema", "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = out / "lessons" / "04_task_diversity"
    m = json.loads((folder / "metrics.json").read_text())
    assert set(m["schema"]["arms"]) == set(L04.SCHEMAS) and (folder / "schema.png").exists()
    assert "Natural Instructions schema" in proc.stdout


def sized(base_gold: float, sft_gold: float) -> dict:
    fams = lambda g: {f"f{i}": {"score": 0.0, "gold": g + 0.01 * (i % 3), "nll": 5.0} for i in range(9)}
    return {"base": {"families": {"test": fams(base_gold)}}, "sft": {"families": {"test": fams(sft_gold)}}}


def test_lesson04_size_verdict_compares_the_gains_smallest_vs_largest():
    more = L04.size_verdict({32: sized(0.3, 0.6), 128: sized(0.5, 0.6)})
    assert "width 32: gold reward +0.30 +- 0.00" in more and "smallest minus largest gain in gold reward +0.20" in more
    assert "gains MORE" in more
    less = L04.size_verdict({32: sized(0.3, 0.35), 128: sized(0.3, 0.6)})
    assert "gains LESS" in less
    same = L04.size_verdict({32: sized(0.3, 0.5), 128: sized(0.4, 0.6)})
    assert "do not differ beyond two standard errors" in same


@pytest.mark.slow
def test_lesson04_size_part_quick(tmp_path):
    import json
    import subprocess
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "lessons", "04_task_diversity.py"), "--quick",
                           "--parts", "size", "--widths", "32", "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = out / "lessons" / "04_task_diversity"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["size"]["widths"] == [32, 64] and (folder / "model_size.png").exists()     # quick model: 64 wide
    assert "Impact of Model Size" in proc.stdout
