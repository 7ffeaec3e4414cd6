"""Problems a program can check: the verifiable tasks of reasoning RL, with worked steps ("time to think").

Deck 002, "Current Developments": reinforcement learning on "domains where correct answer can be
programmatically derived (math, coding, ...)", and "additional tokens to give the model time to think".
Four families, each with an exact answer and the steps a careful student would write:
- add:    column addition with carries ("What is 347 plus 85?"; one template is a word problem);
- count:  how many words of a list belong to a category ("How many animals are in this list: ...?");
- sort:   numbers from small to big;
- people: how many of some people live in a town or have a pet, a short word problem over the world's
          facts: the steps recall each person's fact, which only pretraining taught.

Splits, by problem: "train" and "test" draw from two disjoint pools (a fixed hash of the problem puts 1 in
5 in the test pool), "hard" from a harder band no split trains on (4-digit operands, longer lists).

Two forms of the same demonstration (`reasoning_data(form=...)`):
    answer:  The answer is 432.
    worked:  Let me think. 7 plus 5 is 12, so 2. 4 plus 8 is 12, plus 1 is 13, so 3 2. 3 plus 0 is 3,
             plus 1 is 4, so 4 3 2. The answer is 432.
The markers are plain text, not new special tokens: "Let me think." opens the scratchpad and "The answer
is" marks the answer, as DeepSeek-R1's template marks its parts with plain-text tags. Every word of the
prompts and of both forms is a word of the pretraining corpus (tested), so the tokenizer already has
tokens for them and the base model has seen them; a special token would be an untrained embedding that no
corpus text can contain, and adding one would change the vocabulary and so every checkpoint. Column
steps read "4 plus 8 is 12, plus 1 is 13" so that the world's fact checker finds each one true.

The checker (`extract_answer`, `check_answer`, `check_format`, `verifiable_reward`) reads the text after
the last "The answer is" and compares it exactly: "0432", "432 apples" or a missing marker are wrong.
"""

import re
import zlib
from dataclasses import dataclass
from random import Random
from typing import Callable

from .facts import person_fact, state_person_fact
from .lexicon import ANIMALS, CATEGORY_PLURAL, COLORS, JOBS, NAMES, PETS, TOWNS
from .tasks import Example

THINK = "Let me think."
"""Opens the scratchpad of a worked answer."""
ANSWER = "The answer is"
"""Marks the answer: the checker compares the text after its last occurrence."""
FORMS = ("answer", "worked")
SPLITS = ("train", "test", "hard")
TEST_POOL_EVERY = 5  # 1 problem in 5 is kept for the test split


@dataclass(frozen=True)
class VerifiableFamily:
    """One kind of problem: prompt templates, a sampler, and a solver giving the answer and the worked steps."""

    name: str
    templates: tuple                                   # prompt templates over the fields
    sample: Callable[[Random, bool], dict]             # (rng, hard band?) -> fields
    solve: Callable[[dict], tuple]                     # fields -> (exact answer, [worked steps])
    key: tuple                                         # the fields that make the problem (others dress it)

    def problem(self, fields: dict) -> str:
        """The problem, whatever its order and dress: the key fields, a list's items sorted ("85, 347" and
        "347, 85" are one addition, a reordered list is the same count or sort)."""
        parts = [", ".join(sorted(fields[k].split(", "))) for k in self.key]
        return self.name + "|" + "|".join(sorted(parts) if self.name == "add" else parts)

    def pool(self, fields: dict) -> str:
        """"train" or "test": a fixed hash of the problem decides, so the two pools never share one."""
        return "test" if zlib.crc32(self.problem(fields).encode()) % TEST_POOL_EVERY == 0 else "train"


# ----------------------------------------------------------------------------------------------------------------
# add: column addition with carries
def _digits_of(n: int, width: int) -> list[int]:
    """Digits from the right (ones first), padded with zeros to `width`."""
    return [int(c) for c in reversed(str(n).zfill(width))]


def _sample_add(rng: Random, hard: bool) -> dict:
    """Two operands of 2-3 digits (hard band: 4), with at least one carry."""
    while True:
        sizes = (4, 4) if hard else (rng.choice((2, 3)), rng.choice((2, 3)))
        a, b = (rng.randint(10 ** (d - 1), 10 ** d - 1) for d in sizes)
        if _has_carry(a, b):
            return {"a": str(a), "b": str(b), "name": rng.choice(NAMES)}


def _has_carry(a: int, b: int) -> bool:
    """Whether some column of a + b carries (a carry needs a column whose two digits sum to 10 or more)."""
    width = max(len(str(a)), len(str(b)))
    return any(x + y >= 10 for x, y in zip(_digits_of(a, width), _digits_of(b, width)))


def add_steps(a: int, b: int) -> list[str]:
    """The columns from the right, each with the digits written so far; the last writes its whole sum:
    347 + 85 -> ["7 plus 5 is 12, so 2.", "4 plus 8 is 12, plus 1 is 13, so 3 2.",
                 "3 plus 0 is 3, plus 1 is 4, so 4 3 2."]"""
    width = max(len(str(a)), len(str(b)))
    da, db = _digits_of(a, width), _digits_of(b, width)
    steps, written, carry = [], [], 0
    for i, (x, y) in enumerate(zip(da, db)):
        s = x + y
        text = f"{x} plus {y} is {s}"
        if carry:
            s += carry
            text += f", plus {carry} is {s}"
        if i == width - 1:
            written = [int(c) for c in str(s)] + written
        else:
            written, carry = [s % 10] + written, s // 10
        steps.append(f"{text}, so {' '.join(map(str, written))}.")
    return steps


def _solve_add(f: dict) -> tuple:
    a, b = int(f["a"]), int(f["b"])
    return str(a + b), add_steps(a, b)


ADD = VerifiableFamily(
    name="add",
    templates=("What is {a} plus {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}.", "{a} + {b} = ?",
               "{name} had {a} apples and got {b} more. How many apples did {name} have then?"),
    sample=_sample_add, solve=_solve_add, key=("a", "b"))


# ----------------------------------------------------------------------------------------------------------------
# count: how many words of a list are of one category
_KINDS = {"animal": ANIMALS, "color": COLORS, "job": JOBS, "town": TOWNS}
_KIND_OF = {w: kind for kind, ws in _KINDS.items() for w in ws}
assert len(_KIND_OF) == sum(len(ws) for ws in _KINDS.values()), "a word in two categories"
_COUNTED = ("animal", "color", "job")  # towns are only distractors (there are five)


def _sample_count(rng: Random, hard: bool) -> dict:
    """A list of 4-6 words (hard band: 8-10) from four categories, and the category to count."""
    n = rng.randint(8, 10) if hard else rng.randint(4, 6)
    kind = rng.choice(_COUNTED)
    k = rng.randint(0, min(n, len(_KINDS[kind])))
    others = [w for w in _KIND_OF if _KIND_OF[w] != kind]
    items = rng.sample(_KINDS[kind], k) + rng.sample(others, n - k)
    rng.shuffle(items)
    return {"plural": CATEGORY_PLURAL[kind], "items": ", ".join(items)}


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def _solve_count(f: dict) -> tuple:
    kind = next(k for k, p in CATEGORY_PLURAL.items() if p == f["plural"])
    steps, n = [], 0
    for item in f["items"].split(", "):
        n += _KIND_OF[item] == kind
        steps.append(f"{item} is {_article(_KIND_OF[item])} {_KIND_OF[item]}, so {n}.")
    return str(n), steps


COUNT = VerifiableFamily(
    name="count",
    templates=("How many {plural} are in this list: {items}?", "How many of these words are {plural}: {items}?",
               "Here is a list: {items}. How many {plural} are in it?"),
    sample=_sample_count, solve=_solve_count, key=("plural", "items"))


# ----------------------------------------------------------------------------------------------------------------
# sort: numbers from small to big
def _sample_sort(rng: Random, hard: bool) -> dict:
    """3-4 different numbers below 100 (hard band: 6)."""
    return {"numbers": ", ".join(str(x) for x in rng.sample(range(1, 100), 6 if hard else rng.randint(3, 4)))}


def _solve_sort(f: dict) -> tuple:
    left = [int(x) for x in f["numbers"].split(", ")]
    steps = []
    while left:
        smallest = min(left)
        steps.append(f"{', '.join(map(str, left))}: take {smallest}.")
        left.remove(smallest)
    return ", ".join(map(str, sorted(int(x) for x in f["numbers"].split(", ")))), steps


SORT = VerifiableFamily(
    name="sort",
    templates=("Put these numbers in order from small to big: {numbers}.",
               "Write these numbers from small to big: {numbers}.", "Put {numbers} in order from small to big."),
    sample=_sample_sort, solve=_solve_sort, key=("numbers",))


# ----------------------------------------------------------------------------------------------------------------
# people: how many of some people live in a town / have a pet (the world's facts)
_PHRASE = {"home": "live in {value}", "pet": "have a {value}"}


def _sample_people(rng: Random, hard: bool) -> dict:
    """3-4 people (hard band: 6-7) and a town or a pet; mostly one that some of them have."""
    relation = rng.choice(("home", "pet"))
    names = rng.sample(NAMES, rng.randint(6, 7) if hard else rng.randint(3, 4))
    if rng.random() < 0.8:
        value = person_fact(rng.choice(names), relation)
    else:
        value = rng.choice(TOWNS if relation == "home" else PETS)
    return {"relation": _PHRASE[relation].format(value=value), "names": ", ".join(names)}


def _solve_people(f: dict) -> tuple:
    relation = "home" if f["relation"].startswith("live in ") else "pet"
    value = f["relation"].split(" ")[-1]
    steps, n = [], 0
    for name in f["names"].split(", "):
        n += person_fact(name, relation) == value
        steps.append(f"{state_person_fact(name, relation)[:-1]}, so {n}.")   # "Mia lives in Oakton, so 1."
    return str(n), steps


PEOPLE_COUNT = VerifiableFamily(
    name="people",
    templates=("How many of these people {relation}: {names}?",
               "Here are some people: {names}. How many of them {relation}?"),
    sample=_sample_people, solve=_solve_people, key=("relation", "names"))

FAMILIES = (ADD, COUNT, SORT, PEOPLE_COUNT)
_BY_NAME = {f.name: f for f in FAMILIES}


def family_names(text: str):
    """'add, sort' -> ['add', 'sort']; '' -> None (all families). ValueError for a name that is not a family."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}: "
                         f"use one or more of {', '.join(_BY_NAME)}, comma-separated")
    return names or None


# ----------------------------------------------------------------------------------------------------------------
# Demonstrations in two forms, and the data
def render_response(answer: str, steps: list[str], form: str) -> str:
    """The response of one form: "The answer is X." or "Let me think. <steps> The answer is X."."""
    if form == "answer":
        return f"{ANSWER} {answer}."
    if form == "worked":
        return " ".join([THINK, *steps, f"{ANSWER} {answer}."])
    raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def make_problem(family: VerifiableFamily, fields: dict, template_id: int, split: str, form: str) -> Example:
    """One problem as an Example: the prompt, the response in `form`, the exact answer in `answers`."""
    answer, steps = family.solve(fields)
    return Example(family=family.name, category="reasoning", template_id=template_id, split=split,
                   prompt=family.templates[template_id].format(**fields),
                   response=render_response(answer, steps, form), answers=[answer],
                   meta={"fields": dict(fields), "answer": answer, "steps": steps, "form": form,
                         "pool": family.pool(fields)})


def reasoning_data(seed: int = 0, n_per_family: int = 100, splits=("train",), form: str = "worked",
                   families=None) -> list:
    """`n_per_family` problems per family and split, deterministic in `seed`; the two forms of the same
    seed are the same problems, only the responses differ (the equal-budget comparison of lesson 12).

    splits: any of SPLITS. families: None (all) or a list of names (add, count, sort, people).
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    out = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        for family in [_BY_NAME[n] for n in families] if families else FAMILIES:
            rng = Random(f"reasoning|{seed}|{split}|{family.name}")   # adding a family changes no other
            for _ in range(n_per_family):
                fields = _sample_in(family, rng, split)
                out.append(make_problem(family, fields, rng.randrange(len(family.templates)), split, form))
    return out


def _sample_in(family: VerifiableFamily, rng: Random, split: str) -> dict:
    """A problem of the split: the train or test pool of the normal band, or any of the hard band."""
    for _ in range(1000):
        fields = family.sample(rng, split == "hard")
        if split == "hard" or family.pool(fields) == split:
            return fields
    raise RuntimeError(f"{family.name}: no problem in the {split} pool after 1000 draws")


# ----------------------------------------------------------------------------------------------------------------
# The checker
_FORMAT = re.compile(r"(?:" + re.escape(THINK) + r" (?P<steps>[^\n]+) )?" + re.escape(ANSWER)
                     + r" (?P<answer>[^.\n]+)\.")


def extract_answer(response: str):
    """The text after the last "The answer is", stripped, without one final period; None without the marker."""
    at = response.rfind(ANSWER)
    if at < 0:
        return None
    text = response[at + len(ANSWER):].strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def check_answer(response: str, answer: str) -> bool:
    """Exact: the extracted answer equals `answer` character for character ("0432" is not "432")."""
    return extract_answer(response) == answer


def check_format(response: str):
    """The form of a well-formed response, "answer" or "worked", else None: one answer marker, at the end,
    after nothing or after a scratchpad opened by "Let me think."."""
    text = response.strip()
    match = _FORMAT.fullmatch(text)
    if match is None or text.count(ANSWER) != 1:
        return None
    return "worked" if match["steps"] is not None else "answer"


def verifiable_reward(example: Example, response: str, ended: bool = True) -> float:
    """1.0 when the response ended (<|end|>) and its answer is exactly the problem's, else 0.0."""
    return float(bool(ended) and check_answer(response, example.meta["answer"]))
