"""Extraction families: find the person, the town, the color or the animal in a sentence.

All four families read the *same* kind of sentence ("Mia saw a red dog in Oakton."): only the
instruction says which word to copy out. A model that ignores the instruction answers with the
wrong word of the sentence, which is exactly the plausible wrong answer we use for negative
examples and preference data.
"""

from .family import NaturalInstructions as NI, Solution, TaskFamily, low, others
from .lexicon import ANIMALS, COLORS, NAMES, TOWNS
from .text import capitalize, words

FRAMES = ("{name} saw a {color} {animal} in {town}.", "In {town}, {name} found a {color} {animal}.",
          "A {color} {animal} followed {name} home to {town}.",
          "{name} drew a {color} {animal} at school in {town}.",
          "{name} got a {color} {animal} toy in {town}.",
          "On the way to {town}, {name} met a {color} {animal}.")
KINDS = {"name": NAMES, "town": TOWNS, "color": COLORS, "animal": ANIMALS}
# Which other word of the sentence a careless reader copies instead.
CONFUSED_WITH = {"name": "town", "town": "name", "color": "animal", "animal": "color"}


def _sample(rng):
    return {"sentence": rng.choice(FRAMES).format(name=rng.choice(NAMES), town=rng.choice(TOWNS),
                                                  color=rng.choice(COLORS),
                                                  animal=rng.choice(ANIMALS))}


def _find(sentence: str, kind: str):
    """The single word of `kind` in the sentence (original spelling), or None."""
    lowered = {v.lower(): v for v in KINDS[kind]}
    found = {lowered[w] for w in words(sentence) if w in lowered}
    return found.pop() if len(found) == 1 else None


def _solver(kind):
    def solve(f, rng=None):
        values = {k: _find(f["sentence"], k) for k in KINDS}
        if None in values.values():
            return None
        value = values[kind]
        return Solution(response=capitalize(value) + ".", answers=(value,), check="span",
                        competitors=others(value, KINDS[kind]), topic=low(values.values()),
                        wrong=capitalize(values[CONFUSED_WITH[kind]]) + ".")
    return solve


def _family(kind, templates, seen, title, what):
    return TaskFamily(
        name=f"extract_{kind}", category="extraction", templates=templates, sample=_sample,
        solve=_solver(kind), seen=seen, max_words=4, shape="label",
        ni=NI(title=title,
              definition=f"You are given a sentence. Copy the {what} that appears in it.",
              emphasis=f"There is exactly one {what} in the sentence.",
              avoid="Do not copy the whole sentence and do not add other words.",
              input="Sentence: {sentence}",
              positive_reason=f"This is the {what} in the sentence.",
              negative_reason=f"This word is in the sentence, but it is not the {what}."))


EXTRACT_NAME = _family("name", (
    "Who is the person in this sentence?\n{sentence}",
    "{sentence}\nWhat is the name of the person in the sentence above?",
    "Sentence: {sentence}\nFind the name of the person.",
    "Give the name that appears in this sentence: {sentence}",
    "Read the sentence and write only the person's name.\n{sentence}",
    "{sentence}\nWhich person is this sentence about?"), True, "Find the person", "name of the person")
EXTRACT_TOWN = _family("town", (
    "Which town is named in this sentence?\n{sentence}",
    "{sentence}\nIn which town does this happen?",
    "Sentence: {sentence}\nFind the town.",
    "Give the name of the town in this sentence: {sentence}",
    "Read the sentence and write only the town.\n{sentence}",
    "{sentence}\nWhat place is named in the sentence above?"), True, "Find the town", "town")
EXTRACT_COLOR = _family("color", (
    "What color is mentioned in this sentence?\n{sentence}",
    "{sentence}\nWhich color word is in the sentence above?",
    "Sentence: {sentence}\nFind the color.",
    "Give the color that appears in this sentence: {sentence}",
    "Read the sentence and write only the color.\n{sentence}",
    "{sentence}\nWhat color is the animal?"), True, "Find the color", "color")
EXTRACT_ANIMAL = _family("animal", (
    "Which animal is in this sentence?\n{sentence}",
    "{sentence}\nWhat animal does the sentence above talk about?",
    "Sentence: {sentence}\nFind the animal.",
    "Give the animal that appears in this sentence: {sentence}",
    "Read the sentence and write only the animal.\n{sentence}",
    "{sentence}\nWhat kind of animal is it?"), False, "Find the animal", "animal")

FAMILIES = (EXTRACT_NAME, EXTRACT_TOWN, EXTRACT_COLOR, EXTRACT_ANIMAL)
