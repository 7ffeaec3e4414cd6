"""Instruction data: families and templates, splits without leakage, knobs, and parseable prompts."""

import dataclasses
import json
from collections import Counter

import pytest

from minialign.world import NI_TEMPLATE_ID, SPLITS, instruction_data, parse_prompt, task_families
from minialign.world.family import CATEGORIES
from minialign.world.text import ends_properly, words


@pytest.fixture(scope="module")
def data():
    return instruction_data(seed=0, n_per_family=30, splits=SPLITS)


def _dump(examples) -> bytes:
    return json.dumps([dataclasses.asdict(e) for e in examples], sort_keys=True).encode()


def test_families_templates_and_categories():
    families = task_families()
    assert len(families) >= 20
    assert sum(f.seen for f in families) >= 20
    assert {f.category for f in families} == set(CATEGORIES)
    for f in families:
        assert len(f.templates) >= 5, f.name
        # T0 style: some templates put the instruction after the input.
        assert any(not t.startswith("{") for t in f.templates), f.name
    assert sum(any(t.startswith("{") for t in f.templates) for f in families) >= 15
    assert len({f.ni.title for f in families}) == len(families)
    assert 5 < sum(f.knowledge for f in families) < len(families) - 5


def test_same_seed_same_bytes_and_different_seeds_differ():
    a = instruction_data(seed=1, n_per_family=5, splits=SPLITS)
    assert _dump(a) == _dump(instruction_data(seed=1, n_per_family=5, splits=SPLITS))
    assert _dump(a) != _dump(instruction_data(seed=2, n_per_family=5, splits=SPLITS))


def test_no_held_out_family_or_template_in_train(data):
    held_out_families = {f.name for f in task_families() if not f.seen}
    held_out_templates = {(f.name, t) for f in task_families() for t in f.heldout_templates}
    train = [e for e in data if e.split == "train"]
    assert train
    for e in train:
        assert e.family not in held_out_families
        assert (e.family, e.template_id) not in held_out_templates
        assert e.meta["pool"] == "train"
    unseen_family = [e for e in data if e.split == "unseen_family"]
    assert {e.family for e in unseen_family} == held_out_families
    for e in (e for e in data if e.split == "unseen_template"):
        assert (e.family, e.template_id) in held_out_templates


def test_test_prompts_never_appear_in_train(data):
    train_prompts = {e.prompt for e in instruction_data(seed=0, n_per_family=200)}
    for e in data:
        if e.split != "train":
            assert e.prompt not in train_prompts
            assert e.meta["pool"] == "eval" or e.split == "unseen_family"


def test_every_prompt_parses_back_to_its_task(data):
    ni = instruction_data(seed=0, n_per_family=3, splits=("train", "test", "unseen_family"),
                          natural_instructions=True)
    for e in data + ni:
        parsed = parse_prompt(e.prompt)
        assert parsed is not None, e.prompt
        assert (parsed.family.name, parsed.fields) == (e.family, e.meta["fields"])
        assert parsed.solution.answers == tuple(e.answers) or parsed.solution.check == "open"


def test_short_well_formed_responses_and_prompts(data):
    for e in data:
        assert 1 <= len(words(e.response)) <= 25, e.response
        assert ends_properly(e.response), e.response
        assert len(words(e.prompt)) < 60, e.prompt
        if e.answers:  # the reference contains one of the accepted answers ("12" or "twelve")
            assert any(a.lower() in e.response.lower() for a in e.answers)


def test_natural_instructions_schema():
    examples = instruction_data(seed=0, n_per_family=1, splits=("train", "unseen_family"),
                                natural_instructions=True)
    for e in examples:
        assert e.template_id == NI_TEMPLATE_ID
        for part in ("Definition:", "Emphasis:", "Things to avoid:", "Positive example:",
                     "Negative example:", "Reason:"):
            assert part in e.prompt
        assert len(words(e.prompt)) < 140
    bare = instruction_data(seed=0, n_per_family=1, natural_instructions=True,
                            ni_elements=("definition",))[0].prompt
    assert "Definition:" in bare and "Negative example:" not in bare
    assert parse_prompt(bare) is not None


def test_knobs_for_families_and_templates():
    few = instruction_data(seed=0, n_per_family=20, families=3)
    assert len({e.family for e in few}) == 3
    one = instruction_data(seed=0, n_per_family=40, n_templates=1)
    assert all(e.template_id == 0 for e in one)
    two = instruction_data(seed=0, n_per_family=40, n_templates=2)
    assert Counter(e.template_id for e in two).keys() == {0, 1}
    chosen = instruction_data(seed=0, n_per_family=2, families=["add", "plural"])
    assert {e.family for e in chosen} == {"add", "plural"}
    with pytest.raises(ValueError, match="held out"):
        instruction_data(seed=0, n_per_family=1, families=["antonym"])


def test_safety_prompts_are_paraphrased_and_refused():
    examples = instruction_data(seed=0, n_per_family=50, splits=("train", "test", "unseen_template"),
                                families=["refuse_harmful"])
    assert len({e.template_id for e in examples}) == 6
    assert all("help" in e.response for e in examples)


def test_independent_of_python_hash_seed():
    """No set iteration order leaks into the data: two interpreters, two hash seeds, same bytes."""
    import os
    import subprocess
    import sys
    code = ("import dataclasses, json; from minialign.world import instruction_data, SPLITS, "
            "pretraining_corpus; print(json.dumps([dataclasses.asdict(e) for e in "
            "instruction_data(0, 3, splits=SPLITS)]) + ''.join(pretraining_corpus(0, 50)))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = []
    for hash_seed in ("1", "2"):
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=path)
        outputs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                      check=True, text=True).stdout)
    assert outputs[0] == outputs[1] and len(outputs[0]) > 1000
