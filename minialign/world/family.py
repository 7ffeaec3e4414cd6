"""What a task family is: templates, an instance sampler, a solver, and its Natural Instructions.

A *task family* (T0's "dataset", Natural Instructions' "task") is one skill, e.g. "where does a
person live" or "put a sentence in the past tense". An *instance* is a dict of string fields
(`{"name": "Mia"}`); a *template* turns the fields into the user's prompt (T0 style: several
phrasings per family, some putting the instruction after the input). The *solver* maps the
fields back to the reference answer and to what the oracle needs to grade any answer.

Because a template is a format string, it can also be run backwards: `template_regex` turns it
into a regular expression that recovers the fields from a prompt. That is how the oracle knows
the task from the prompt text alone (PPO only has the text) and why the oracle and the data can
never disagree: both call the same solver.
"""

import functools
import re
import zlib
from dataclasses import dataclass
from random import Random
from typing import Callable, Optional

CATEGORIES = ("classification", "extraction", "qa", "arithmetic", "rewriting", "translation",
              "generation", "safety")
# How the oracle judges correctness (see oracle.py):
#   span   - an accepted answer appears, and no competitor (another town, another label, another
#            number) does
#   exact  - the normalized response equals the normalized reference (partial credit: word F1)
#   exact_case - the same, but letter case must match too (the "uppercase" task)
#   open   - a family-specific rubric in [0, 1] (on topic, cheerful, like the reference, ...)
#   refuse - the request is harmful: refusing is correct
CHECKS = ("span", "exact", "exact_case", "open", "refuse")
EVAL_POOL_EVERY = 5  # 1 instance in 5 is kept out of the training pool (for held-out instances)


@dataclass(frozen=True)
class Solution:
    """The reference answer to one instance, and what the oracle needs to grade any answer."""

    response: str                                  # reference answer, short and well formed
    answers: tuple[str, ...] = ()                  # accepted exact-match answers (empty: open)
    check: str = "span"                            # one of CHECKS
    competitors: frozenset = frozenset()           # lower-case values that make a span wrong
    topic: frozenset = frozenset()                 # lower-case words that keep a sentence on topic
    wrong: str = ""                                # a plausible wrong answer
    grade: Optional[Callable[[str], float]] = None # for check == "open": response -> [0, 1]
    harmful: bool = False                          # the request is harmful (answer: refuse)


@dataclass(frozen=True)
class NaturalInstructions:
    """The Natural Instructions schema (Mishra et al. 2022) for one family."""

    title: str            # high-level description of the task
    definition: str       # the core instructions
    emphasis: str         # what to be careful about
    avoid: str            # things to avoid
    input: str            # how one instance is shown after "Input:" (a template over the fields)
    positive_reason: str  # why the positive example's output is right
    negative_reason: str  # why the negative example's output is wrong


@dataclass(frozen=True)
class TaskFamily:
    """One task family. `templates[i]` with the fields of `sample(rng)` gives a prompt."""

    name: str
    category: str                                  # one of CATEGORIES
    templates: tuple                               # >= 5 T0-style prompt templates
    sample: Callable[[Random], dict]               # draws the fields of a random instance
    solve: Callable[..., Optional[Solution]]       # solve(fields, rng=None); None if not valid
    ni: NaturalInstructions
    seen: bool = True                              # False: held out, only in "unseen_family"
    heldout_templates: tuple = (4, 5)              # template ids held out of training
    sentences: tuple = (1, 1)                      # (min, max) sentences an answer should have
    max_words: int = 12                            # length budget before conciseness drops
    shape: str = ""                                # extra format rule: "label", "upper", "list3"
    key: tuple = ()                                # fields naming an instance (empty: all fields)
    # The answer needs a fact of the world the prompt does not state (a home town, a plural, a
    # French word): on held-out instances only what pretraining taught can answer it.
    knowledge: bool = False

    def __post_init__(self):
        assert self.category in CATEGORIES, self.category
        assert len(self.templates) >= 5, f"{self.name}: T0 style needs >= 5 templates"

    @property
    def seen_templates(self) -> tuple:
        """Template ids used for training (all of them count as unseen for a held-out family)."""
        return tuple(i for i in range(len(self.templates)) if i not in self.heldout_templates)

    def render(self, template_id: int, fields: dict) -> str:
        return self.templates[template_id].format(**fields)

    def pool(self, fields: dict) -> str:
        """"train" or "eval": a fixed hash of the instance decides, so pools never overlap."""
        names = self.key or sorted(fields)
        ident = self.name + "|" + "|".join(fields[k] for k in names)
        return "eval" if zlib.crc32(ident.encode()) % EVAL_POOL_EVERY == 0 else "train"

    def sample_in_pool(self, rng: Random, pool: Optional[str]) -> dict:
        """Rejection-sample an instance from the given pool ("train", "eval", or None: any)."""
        for _ in range(1000):
            fields = self.sample(rng)
            if pool is None or self.pool(fields) == pool:
                return fields
        raise RuntimeError(f"{self.name}: no instance in pool {pool!r} after 1000 draws")


@functools.lru_cache(maxsize=None)
def template_regex(template: str) -> "re.Pattern":
    """Turn "Where does {name} live?" into ^Where does (?P<name>.+?) live\\?$ (run it backwards)."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            pattern.append(re.escape(part))
        elif f"(?P<{part}>" in "".join(pattern):
            pattern.append(f"(?P={part})")  # a field used twice must repeat the same text
        else:
            pattern.append(f"(?P<{part}>.+?)")
    return re.compile("^" + "".join(pattern) + "$", re.DOTALL)


def low(values) -> frozenset:
    """Lower-cased frozenset of strings (competitor and topic sets are lower case)."""
    return frozenset(v.lower() for v in values)


def others(value: str, pool) -> frozenset:
    """The lower-cased values of `pool` other than `value` (the competitors of an answer)."""
    return frozenset(v.lower() for v in pool if v != value)


def fixed_rng(*parts) -> Random:
    """A Random seeded from the given parts: a deterministic choice that depends on an instance."""
    return Random("|".join(str(p) for p in parts))


def label_solution(label: str, labels, topic=()) -> Solution:
    """Reference for a classification answer: the bare label ("Positive."), graded as a span."""
    wrong = sorted(set(labels) - {label})[zlib.crc32(label.encode()) % (len(labels) - 1)]
    return Solution(response=label.capitalize() + ".", answers=(label,), check="span",
                    competitors=others(label, labels), topic=low(labels) | low(topic),
                    wrong=wrong.capitalize() + ".")


def match_frames(text: str, frames) -> Optional[dict]:
    """Fields of the first sentence frame (a template) that matches `text`, or None."""
    for frame in frames:
        match = template_regex(frame).match(text)
        if match is not None:
            return match.groupdict()
    return None
