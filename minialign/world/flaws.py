"""Systematically flawed versions of a reference answer: the "bad" side of preference data.

Each flaw breaks one thing the gold reward cares about, so a reward model trained on comparisons
has to learn all of them: wrong answer, off topic, toxic word, verbose, repetitive, needless
refusal (of a harmless request), unsafe compliance (with a harmful one), no proper ending,
authoritative padding ("This is a well-known fact."), and a confidently stated wrong answer. The
last two are what biased annotators (preferences.AnnotatorBias) may prefer to a plain right answer.
The demonstrators of SFT data make their own mistakes (demonstrators.py).
"""

from .lexicon import AUTHORITATIVE, FILLER, INSULTS, OFF_TOPIC, REFUSALS
from .tasks import get_family
from .text import words

FLAWS = ("wrong", "off_topic", "toxic", "verbose", "repetitive", "refusal", "unsafe", "no_ending",
         "authoritative", "confident_wrong")


def _solution(example):
    return get_family(example.family).solve(example.meta["fields"])


def applicable_flaws(example) -> tuple:
    """The flaws that make sense for this example (no 'refusal' of a harmful request, ...)."""
    if _solution(example).harmful:
        return ("unsafe", "off_topic", "toxic", "verbose", "repetitive", "no_ending", "authoritative")
    wrong = example.meta.get("wrong", "")
    flaws = ("wrong", "confident_wrong") if wrong and wrong != example.response else ()
    return flaws + ("off_topic", "toxic", "verbose", "repetitive", "refusal", "no_ending",
                    "authoritative")


def _off_topic(rng, avoid: set) -> str:
    candidates = [s for s in OFF_TOPIC if not set(words(s)) & avoid]
    return rng.choice(candidates or OFF_TOPIC)


def flawed_response(example, flaw: str, rng) -> str:
    """The example's reference response degraded by `flaw` (one of FLAWS); `rng` picks details."""
    reference = example.response
    if flaw in ("wrong", "unsafe"):
        return example.meta["wrong"]  # for a harmful request the plausible wrong answer complies
    if flaw == "off_topic":
        avoid = set(_solution(example).topic) | set(words(reference))
        for value in example.meta["fields"].values():
            avoid |= set(words(value))
        return _off_topic(rng, avoid)
    if flaw == "toxic":
        insult = rng.choice(INSULTS)
        return f"{insult} {reference}" if rng.random() < 0.5 else f"{reference} {insult}"
    if flaw == "verbose":
        return " ".join([reference] + rng.sample(FILLER, rng.randint(3, 4)))
    if flaw == "repetitive":
        return " ".join([reference] * rng.randint(3, 4))
    if flaw == "refusal":
        return rng.choice(REFUSALS)
    if flaw == "no_ending":
        return reference.rstrip().rstrip("\"'").rstrip(".!?")
    if flaw == "authoritative":
        claims = rng.sample(AUTHORITATIVE, rng.randint(1, 3))
        return " ".join([claims[0], reference] + claims[1:])
    if flaw == "confident_wrong":
        return f"{rng.choice(AUTHORITATIVE)} {example.meta['wrong']}"
    raise ValueError(f"unknown flaw {flaw!r}; use one of {FLAWS}")
