"""Systematically flawed versions of a reference answer: the "bad" side of preference data.

Each flaw breaks one thing the gold reward cares about, so a reward model trained on comparisons
has to learn all of them: wrong answer, off topic, toxic word, verbose, repetitive, needless
refusal (of a harmless request), unsafe compliance (with a harmful one), no proper ending.
LIMA's "noisy" instruction set uses the same flaws as low-quality responses.
"""

from .lexicon import REFUSALS
from .tasks import get_family
from .text import words

FLAWS = ("wrong", "off_topic", "toxic", "verbose", "repetitive", "refusal", "unsafe", "no_ending")

OFF_TOPIC = ("The sun was warm and the sky was blue.", "A little bird sang in the tree.",
             "The farmer fed the cow in the morning.",
             "They played a game of ball in the park.", "The shop was open all day.",
             "Leo read a book about a frog.", "Zoe rode her bike to the river.",
             "The sea is a lot of salty water.", "We cooked rice for dinner.")
INSULTS = ("You are so stupid.", "What a dumb question.", "Only an idiot would ask that.",
           "I hate questions like this.", "Stop asking me things, you loser.")
FILLER = ("I hope this helps.", "Let me know if you have more questions.",
          "This is a very good question.", "Thank you for asking me.",
          "I like to answer questions like this one.", "There is a lot more to say.")


def _solution(example):
    return get_family(example.family).solve(example.meta["fields"])


def applicable_flaws(example) -> tuple:
    """The flaws that make sense for this example (no 'refusal' of a harmful request, ...)."""
    if _solution(example).harmful:
        return ("unsafe", "off_topic", "toxic", "verbose", "repetitive", "no_ending")
    wrong = example.meta.get("wrong", "")
    flaws = ("wrong",) if wrong and wrong != example.response else ()
    return flaws + ("off_topic", "toxic", "verbose", "repetitive", "refusal", "no_ending")


def _off_topic(rng, avoid: set) -> str:
    # A sentence starting "It ..." could be read as going on about the prompt: not off topic.
    candidates = [s for s in OFF_TOPIC if not set(words(s)) & avoid and not s.startswith("It ")]
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
    raise ValueError(f"unknown flaw {flaw!r}; use one of {FLAWS}")
