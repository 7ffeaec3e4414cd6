"""All task families, the seen/held-out splits, and the instruction data built from them.

Splits (T0 / Natural Instructions style evaluation of generalization):
- "train":           seen families, seen templates, instances from the training pool
- "test":            seen families, seen templates, instances from the eval pool (new inputs)
- "unseen_template": seen families, *held-out templates*, eval-pool instances (new phrasings)
- "unseen_family":   *held-out families* (never in any training split), all templates
Nothing leaks: held-out families and templates never appear in "train", and the two instance
pools are disjoint by construction (`TaskFamily.pool` hashes the instance). For the families
marked `knowledge` (home towns, plurals, French words, ...) a new instance asks for a fact no
training example contained: only a model that learned it in pretraining can answer (LIMA). The
other families can be solved from the prompt alone.

Knobs for the lessons: `families` (how many / which training families: T0's "more datasets"),
`n_templates` (how many prompt templates per family: T0's "more prompts"), and
`natural_instructions` (render the Natural Instructions schema instead of one-line templates).
"""

import functools
import re
from dataclasses import dataclass, field
from random import Random

from . import natural_instructions as ni_schema
from . import tasks_classify, tasks_extract, tasks_generate, tasks_math, tasks_qa, tasks_rewrite
from . import tasks_safety
from .family import TaskFamily, template_regex

SPLITS = ("train", "test", "unseen_template", "unseen_family")
NI_TEMPLATE_ID = -1  # template_id of prompts rendered in the Natural Instructions schema

_ALL = {f.name: f for m in (tasks_classify, tasks_extract, tasks_qa, tasks_math, tasks_rewrite,
                            tasks_generate, tasks_safety) for f in m.FAMILIES}
# Training families in an order that mixes categories, so that "the first k families" is a
# diverse set for every k (the T0 "number of training datasets" sweep).
SEEN_ORDER = ("home_qa", "add", "sentiment", "plural", "story", "refuse_harmful", "extract_name",
              "translate_french", "capital_qa", "topic", "past_tense", "explain", "subtract",
              "extract_town", "review", "pet_qa", "word_category", "polite_rewrite",
              "continue_story", "bigger", "extract_color", "animal_sound", "reverse_words",
              "positive_review", "job_qa", "uppercase")
UNSEEN = tuple(name for name, f in _ALL.items() if not f.seen)
assert sorted(SEEN_ORDER) == sorted(n for n, f in _ALL.items() if f.seen)
_BY_TITLE = {f.ni.title: f for f in _ALL.values()}
assert len(_BY_TITLE) == len(_ALL), "Natural Instructions titles must be unique"


@dataclass
class Example:
    """One instruction-following example. `prompt` is the user message (no chat tokens)."""

    family: str
    category: str
    template_id: int          # index into the family's templates; NI_TEMPLATE_ID for NI prompts
    split: str                # one of SPLITS
    prompt: str
    response: str             # reference answer, short and well formed
    answers: list             # accepted exact-match answers (empty for open-ended tasks)
    meta: dict = field(default_factory=dict)  # fields, pool, check, wrong (a plausible wrong
    # answer); for a demonstration (demonstrators.py): reference (the clean answer), flaws (the
    # demonstrator's, a list) and flaw ("+"-joined, only when there is one)


def task_families() -> list:
    """All task families: the seen ones (in SEEN_ORDER), then the held-out ones."""
    return [_ALL[n] for n in SEEN_ORDER] + [_ALL[n] for n in UNSEEN]


def get_family(name: str) -> TaskFamily:
    if name not in _ALL:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(_ALL)}")
    return _ALL[name]


def families_for_split(split: str, families) -> list:
    """The families `split` draws from, after the `families` knob (int: the first k seen ones)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if split == "unseen_family":
        names = UNSEEN if families is None or isinstance(families, int) else \
            [n for n in families if not get_family(n).seen]
        return [_ALL[n] for n in names]
    if families is None:
        names = SEEN_ORDER
    elif isinstance(families, int):
        names = SEEN_ORDER[:families]
    else:
        held_out = [n for n in families if not get_family(n).seen]
        if held_out:
            raise ValueError(f"families {held_out} are held out: they only appear in 'unseen_family'")
        names = families
    return [_ALL[n] for n in names]


def _template_ids(family: TaskFamily, split: str, n_templates) -> tuple:
    if split == "unseen_family":
        return tuple(range(len(family.templates)))
    if split == "unseen_template":
        return family.heldout_templates
    ids = family.seen_templates
    return ids if n_templates is None else ids[:max(1, n_templates)]


def make_example(family: TaskFamily, fields: dict, template_id: int, split: str, rng=None,
                 ni_elements=ni_schema.ELEMENTS) -> Example:
    """Render one instance with one template (or the NI schema) and attach its reference answer."""
    if template_id == NI_TEMPLATE_ID:
        prompt = ni_schema.render(family, fields, ni_elements)
    else:
        prompt = family.render(template_id, fields)
    solution = family.solve(fields, rng)
    return Example(family=family.name, category=family.category, template_id=template_id,
                   split=split, prompt=prompt, response=solution.response,
                   answers=list(solution.answers),
                   meta={"fields": dict(fields), "pool": family.pool(fields), "check": solution.check,
                         "wrong": solution.wrong})


def instruction_data(seed: int = 0, n_per_family: int = 100, splits=("train",), families=None,
                     n_templates=None, natural_instructions: bool = False,
                     ni_elements=ni_schema.ELEMENTS) -> list:
    """Instruction examples: `n_per_family` per family for each split, deterministic in `seed`.

    families: None (all), an int k (the first k seen families of SEEN_ORDER), or a list of names.
    n_templates: use only the first n seen templates of each family (train and test splits).
    natural_instructions: render prompts in the Natural Instructions schema (template_id -1)
      with the schema parts in `ni_elements`.
    Instances are drawn with replacement, so small families (10 people) repeat their instances.
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if natural_instructions and "unseen_template" in splits:
        raise ValueError("'unseen_template' has no meaning for Natural Instructions prompts")
    examples = []
    for split in splits:
        for family in families_for_split(split, families):
            # One random stream per (seed, split, family): adding a family changes no other.
            rng = Random(f"{seed}|{split}|{family.name}")
            pool = "train" if split == "train" else ("eval" if family.seen else None)
            ids = _template_ids(family, split, n_templates)
            for _ in range(n_per_family):
                fields = family.sample_in_pool(rng, pool)
                template_id = NI_TEMPLATE_ID if natural_instructions else rng.choice(ids)
                examples.append(make_example(family, fields, template_id, split, rng, ni_elements))
    return examples


@dataclass(frozen=True)
class ParsedPrompt:
    """What the oracle recovers from a prompt's text."""

    family: TaskFamily
    fields: dict
    template_id: int
    solution: object  # family.Solution (canonical: no rng)


def _longest_literal(template: str) -> str:
    return max(re.split(r"\{\w+\}", template), key=len)


# (family, template id, regex, a literal piece the prompt must contain): a cheap substring test
# skips most regexes, which keeps parsing an unseen prompt fast.
_INDEX = [(f, i, template_regex(t), _longest_literal(t)) for f in _ALL.values()
          for i, t in enumerate(f.templates)]


@functools.lru_cache(maxsize=65536)
def parse_prompt(prompt: str):
    """Recover the task of a prompt from its text alone: a ParsedPrompt, or None if unknown.

    Tries the Natural Instructions form, then every template of every family run backwards;
    the first match whose fields the family can solve wins. Cached: PPO scores many responses
    to the same prompt.
    """
    prompt = prompt.strip()
    if prompt.startswith("Task: "):
        found = ni_schema.parse(prompt, _BY_TITLE)
        if found is not None:
            family, fields = found
            return ParsedPrompt(family, fields, NI_TEMPLATE_ID, family.solve(fields))
    for family, template_id, regex, literal in _INDEX:
        if literal not in prompt:
            continue
        match = regex.match(prompt)
        if match is None:
            continue
        fields = match.groupdict()
        solution = family.solve(fields)
        if solution is not None:
            return ParsedPrompt(family, fields, template_id, solution)
    return None
