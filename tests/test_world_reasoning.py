"""The verifiable tasks: answers and worked steps against hand-worked examples and plain computations, the
splits by problem and the harder band, both forms of the same problems, every word known to the corpus, and
the exact checker on tricky answers."""

import re

import pytest

from minialign.world import pretraining_corpus
from minialign.world.facts import check_fact
from minialign.world.lexicon import ANIMALS, COLORS, JOBS, PEOPLE
from minialign.world.reasoning import (ANSWER, FAMILIES, FORMS, SPLITS, THINK, add_steps, check_answer,
                                       check_format, extract_answer, reasoning_data, verifiable_reward)
from minialign.world.text import sentences, words
from minialign.world.vocabulary import known_words


@pytest.fixture(scope="module")
def data():
    return {form: reasoning_data(seed=0, n_per_family=150, splits=SPLITS, form=form) for form in FORMS}


# ----------------------------------------------------------------------------------------------------------------
# Answers and steps
def test_column_addition_steps_worked_by_hand():
    assert add_steps(347, 85) == ["7 plus 5 is 12, so 2.", "4 plus 8 is 12, plus 1 is 13, so 3 2.",
                                  "3 plus 0 is 3, plus 1 is 4, so 4 3 2."]
    # a final carry: the last column writes its whole sum
    assert add_steps(947, 85)[-1] == "9 plus 0 is 9, plus 1 is 10, so 1 0 3 2."
    assert add_steps(16, 25) == ["6 plus 5 is 11, so 1.", "1 plus 2 is 3, plus 1 is 4, so 4 1."]


def _plain_answer(ex) -> str:
    """The answer computed the obvious way, from the prompt's numbers and the world's tables."""
    f = ex.meta["fields"]
    if ex.family == "add":
        return str(int(f["a"]) + int(f["b"]))
    if ex.family == "sort":
        return ", ".join(str(x) for x in sorted(int(x) for x in re.findall(r"\d+", ex.prompt)))
    if ex.family == "count":
        kind = {"animals": ANIMALS, "colors": COLORS, "jobs": JOBS}[f["plural"]]
        return str(sum(item in kind for item in f["items"].split(", ")))
    town_or_pet = f["relation"].split()[-1]
    return str(sum(town_or_pet in PEOPLE[name][:2] for name in f["names"].split(", ")))


def test_every_answer_equals_a_plain_computation_and_ends_both_forms(data):
    for form, examples in data.items():
        for ex in examples:
            assert ex.answers == [_plain_answer(ex)], ex.prompt
            assert ex.response.endswith(f"{ANSWER} {ex.answers[0]}.")
            assert check_format(ex.response) == form and check_answer(ex.response, ex.answers[0])


def test_worked_steps_state_true_facts_and_a_running_count(data):
    for ex in data["worked"]:
        assert ex.response.startswith(THINK + " ")
        for s in sentences(ex.response):
            assert check_fact(s) is not False, s           # "4 plus 8 is 12, ..." and "Mia lives in Oakton, ..."
        if ex.family in ("count", "people"):                # the count after the last item is the answer
            assert ex.meta["steps"][-1].endswith(f", so {ex.answers[0]}.")
        if ex.family == "add":                              # the last column has written the whole sum
            assert ex.meta["steps"][-1].endswith(" ".join(ex.answers[0]) + ".")


def test_additions_carry():
    for ex in reasoning_data(seed=1, n_per_family=200, splits=("train", "hard"), families=["add"]):
        a, b = (int(ex.meta["fields"][k]) for k in ("a", "b"))
        assert any(int(x) + int(y) >= 10 for x, y in zip(str(a)[::-1], str(b)[::-1])), (a, b)


# ----------------------------------------------------------------------------------------------------------------
# Splits and forms
def test_same_seed_same_problems_in_both_forms_and_deterministic(data):
    answer, worked = data["answer"], data["worked"]
    assert [e.prompt for e in answer] == [e.prompt for e in worked]
    assert [e.answers for e in answer] == [e.answers for e in worked]
    assert all(e.response == f"{ANSWER} {e.answers[0]}." for e in answer)
    again = reasoning_data(seed=0, n_per_family=150, splits=SPLITS, form="worked")
    assert [e.response for e in again] == [e.response for e in worked]
    assert [e.prompt for e in reasoning_data(seed=1, n_per_family=20)] != [e.prompt for e in worked[:80]]


def _problem(ex):
    """What makes two problems the same, order aside: the sets of numbers, items or names, and the category."""
    f = ex.meta["fields"]
    return (ex.family, frozenset(re.findall(r"\d+", ex.prompt)) if ex.family in ("add", "sort") else
            frozenset(f.get("items", f.get("names", "")).split(", ")), f.get("plural"), f.get("relation"))


def test_test_problems_never_in_train_and_the_hard_band_is_harder(data):
    by = {s: [e for e in data["worked"] if e.split == s] for s in SPLITS}
    train, test = {_problem(e) for e in by["train"]}, {_problem(e) for e in by["test"]}
    assert not train & test
    assert {p[0] for p in train} == {p[0] for p in test} == {f.name for f in FAMILIES}
    size = {"add": lambda f: max(len(f["a"]), len(f["b"])), "count": lambda f: len(f["items"].split(", ")),
            "sort": lambda f: len(f["numbers"].split(", ")), "people": lambda f: len(f["names"].split(", "))}
    for family in FAMILIES:
        easy = max(size[family.name](e.meta["fields"]) for s in ("train", "test") for e in by[s]
                   if e.family == family.name)
        hard = min(size[family.name](e.meta["fields"]) for e in by["hard"] if e.family == family.name)
        assert hard > easy, family.name


def test_every_word_is_a_word_of_the_world_and_of_the_pretraining_corpus(data):
    corpus = set(words(" ".join(pretraining_corpus(seed=0))))
    known = known_words()
    used = {w for examples in data.values() for e in examples for w in words(e.prompt + " " + e.response)
            if not w.isdigit()}
    assert not used - known and not used - corpus, (used - known, used - corpus)
    assert {"let", "me", "think", "the", "answer", "is"} <= used


# ----------------------------------------------------------------------------------------------------------------
# The checker on tricky answers
@pytest.mark.parametrize("response, ok", [
    ("The answer is 432.", True),
    ("Let me think. 7 plus 5 is 12, so 2. The answer is 432.", True),
    ("The answer is 432", True),                      # the final period is optional for the answer
    ("The answer is  432 .", True),                   # spaces around it are not part of it
    ("The answer is 0432.", False),                   # leading zero
    ("The answer is 432 apples.", False),             # extra text after the answer
    ("The answer is 432. I hope this helps.", False),  # extra sentence after the answer
    ("432.", False),                                  # no marker
    ("the answer is 432.", False),                    # the marker is case-sensitive
    ("The answer is 431. The answer is 432.", True),  # the last marker counts (the format check fails)
    ("The answer is 432.0.", False),
    ("The answer is four hundred thirty two.", False),
    ("", False),
])
def test_checker_on_tricky_answers(response, ok):
    assert check_answer(response, "432") is ok


def test_extract_answer_and_lists():
    assert extract_answer("Let me think. 9: take 9. The answer is 7, 19, 30.") == "7, 19, 30"
    assert extract_answer("no marker here.") is None
    assert check_answer("The answer is 7, 19, 30.", "7, 19, 30")
    assert not check_answer("The answer is 7,19,30.", "7, 19, 30")           # exact, not normalised
    assert not check_answer("The answer is 19, 7, 30.", "7, 19, 30")


@pytest.mark.parametrize("response, form", [
    ("The answer is 3.", "answer"),
    ("Let me think. cat is an animal, so 1. The answer is 1.", "worked"),
    ("  The answer is 3.  ", "answer"),
    ("The answer is 3", None),                         # no final period
    ("Sure. The answer is 3.", None),                  # text before the answer without the scratchpad marker
    ("Let me think. The answer is 3.", None),          # an empty scratchpad
    ("Let me think. 1 plus 2 is 3, so 3. The answer is 3. The answer is 3.", None),  # two answers
    ("The answer is 3. I hope this helps.", None),     # text after the answer
    ("Let me think. 1 plus 2 is 3, so 3.", None),      # no answer
])
def test_format_check(response, form):
    assert check_format(response) == form


def test_reward_needs_the_end_token_and_the_exact_answer():
    ex = reasoning_data(seed=0, n_per_family=1, families=["add"])[0]
    right = f"{ANSWER} {ex.answers[0]}."
    assert verifiable_reward(ex, right) == 1.0
    assert verifiable_reward(ex, right, ended=False) == 0.0       # cut off at the token budget
    assert verifiable_reward(ex, f"{ANSWER} 0{ex.answers[0]}.") == 0.0
