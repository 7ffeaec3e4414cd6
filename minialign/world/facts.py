"""The facts of the world as sentences, and a checker that says whether a sentence states one.

The same statement templates serve twice: the pretraining corpus uses them to *state* the facts
("Mia lives in Oakton."), and `check_fact` runs them backwards to *verify* any sentence a model
writes. That gives the oracle a factuality signal for free text (the "wrong" sentence label of
fine-grained feedback), not only for answers to known questions.
"""

import re

from .family import template_regex
from .lexicon import (CAPITALS, COLORS, FOODS, JOBS, PEOPLE, PETS, SOUNDS, THING_COLORS, TOWNS,
                      OPPOSITE_OF, NUMBER_WORDS)

# relation -> (index in PEOPLE's tuple, the values it can take, statement templates)
PERSON_RELATIONS = {
    "home": (0, TOWNS, ("{name} lives in {value}.", "{name}'s home is in {value}.")),
    "pet": (1, PETS, ("{name} has a {value}.", "{name} has a pet {value}.")),
    "color": (2, COLORS, ("{name}'s favorite color is {value}.",
                          "{name} likes the color {value} best.")),
    "food": (3, FOODS, ("{name}'s favorite food is {value}.", "{name} likes to eat {value}.")),
    "job": (4, JOBS, ("{name} is a {value}.", "{name} works as a {value}.")),
}
CAPITAL_STATEMENTS = ("The capital of {country} is {capital}.",
                      "{capital} is the capital of {country}.")
SOUND_STATEMENTS = ("A {animal} says {sound}.", "The {animal} says {sound}.")
THING_COLOR_STATEMENT = "{thing} is {color}."
OPPOSITE_STATEMENT = "The opposite of {word} is {opposite}."
_ARITHMETIC = re.compile(r"(\d+|[a-z]+) (plus|minus) (\d+|[a-z]+) (?:is|makes|equals) (\d+|[a-z]+)")
_CAPITAL_OF = {capital: country for country, capital in CAPITALS.items()}
_VALUE_OF_WORD = {w: i for i, w in enumerate(NUMBER_WORDS)}


def person_fact(name: str, relation: str) -> str:
    """The true value of `relation` ("home", "pet", ...) for a person."""
    return PEOPLE[name][PERSON_RELATIONS[relation][0]]


def state_person_fact(name: str, relation: str, variant: int = 0, value: str = None) -> str:
    """A sentence stating a person fact (the true one unless `value` is given)."""
    templates = PERSON_RELATIONS[relation][2]
    value = person_fact(name, relation) if value is None else value
    return templates[variant % len(templates)].format(name=name, value=value)


def _number(token: str):
    return int(token) if token.isdigit() else _VALUE_OF_WORD.get(token)


def check_fact(sentence: str):
    """True if `sentence` states a fact of the world, False if it contradicts one, else None.

    Only sentences shaped like the world's fact statements are judged; anything else (a story
    sentence, an opinion) returns None.
    """
    text = sentence.strip()
    for relation, (index, values, templates) in PERSON_RELATIONS.items():
        for template in templates:
            match = template_regex(template).match(text)
            if match and match["name"] in PEOPLE and match["value"] in values:
                return PEOPLE[match["name"]][index] == match["value"]
    for template in CAPITAL_STATEMENTS:
        match = template_regex(template).match(text)
        if match and match["country"] in CAPITALS and match["capital"] in _CAPITAL_OF:
            return CAPITALS[match["country"]] == match["capital"]
    for template in SOUND_STATEMENTS:
        match = template_regex(template).match(text)
        if match and match["animal"].lower() in SOUNDS and match["sound"] in SOUNDS.values():
            return SOUNDS[match["animal"].lower()] == match["sound"]
    match = template_regex(THING_COLOR_STATEMENT).match(text)
    if match and match["thing"].lower() in THING_COLORS and match["color"] in COLORS:
        return THING_COLORS[match["thing"].lower()] == match["color"]
    match = template_regex(OPPOSITE_STATEMENT).match(text)
    if match and match["word"] in OPPOSITE_OF and match["opposite"] in OPPOSITE_OF:
        return OPPOSITE_OF[match["word"]] == match["opposite"]
    return _check_arithmetic(text.lower())


def _check_arithmetic(text: str):
    match = _ARITHMETIC.search(text)
    if match is None:
        return None
    a, op, b, c = _number(match[1]), match[2], _number(match[3]), _number(match[4])
    if None in (a, b, c):
        return None
    return (a + b if op == "plus" else a - b) == c
