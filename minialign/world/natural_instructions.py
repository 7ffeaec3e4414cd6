"""The Natural Instructions rendering of a task (Mishra et al. 2022, slide "Proposed Data Schema").

Instead of a one-line T0 template, the prompt spells the task out: title, definition,
emphasis/caution, things to avoid, one positive and one negative example (input, output, reason),
then the instance. `elements` drops parts of the schema, for the slide's ablation ("all
instruction elements help ... apart from negative examples").

The examples shown are fixed per family (as in the dataset, where a task's examples are part of
its instructions), drawn from the training pool with a seed derived from the family name.
"""

import functools
import re
from random import Random

from .family import template_regex

ELEMENTS = ("definition", "emphasis", "avoid", "positive", "negative")
_TITLE_RE = re.compile(r"^Task: (.+)$", re.MULTILINE)
_INPUT_RE = re.compile(r"\nNow do this one\.\nInput: (.*)\nOutput:$", re.DOTALL)


@functools.lru_cache(maxsize=None)
def _examples(family):
    """(positive fields, negative fields): two different fixed instances of the family."""
    rng = Random(f"natural-instructions|{family.name}")
    pool = "train" if family.seen else None
    positive = family.sample_in_pool(rng, pool)
    negative = positive
    while negative == positive:
        negative = family.sample_in_pool(rng, pool)
    return positive, negative


def render(family, fields: dict, elements=ELEMENTS) -> str:
    """The prompt for one instance in the Natural Instructions schema."""
    unknown = set(elements) - set(ELEMENTS)
    if unknown:
        raise ValueError(f"unknown Natural Instructions elements {sorted(unknown)}; use {ELEMENTS}")
    ni = family.ni
    lines = [f"Task: {ni.title}"]
    if "definition" in elements:
        lines.append(f"Definition: {ni.definition}")
    if "emphasis" in elements:
        lines.append(f"Emphasis: {ni.emphasis}")
    if "avoid" in elements:
        lines.append(f"Things to avoid: {ni.avoid}")
    positive, negative = _examples(family)
    if "positive" in elements:
        lines += ["Positive example:", "Input: " + ni.input.format(**positive),
                  "Output: " + family.solve(positive).response, f"Reason: {ni.positive_reason}"]
    if "negative" in elements:
        lines += ["Negative example:", "Input: " + ni.input.format(**negative),
                  "Output: " + family.solve(negative).wrong, f"Reason: {ni.negative_reason}"]
    lines += ["Now do this one.", "Input: " + ni.input.format(**fields), "Output:"]
    return "\n".join(lines)


def parse(prompt: str, families_by_title: dict):
    """(family, fields) of a prompt written by `render`, or None."""
    title = _TITLE_RE.search(prompt)
    tail = _INPUT_RE.search(prompt)
    if title is None or tail is None or title[1] not in families_by_title:
        return None
    family = families_by_title[title[1]]
    match = template_regex(family.ni.input).match(tail[1])
    if match is None or family.solve(match.groupdict()) is None:
        return None
    return family, match.groupdict()
