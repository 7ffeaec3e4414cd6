"""Arithmetic on small numbers: add, subtract, pick the bigger, write a number in words.

Numbers stay small (sums up to 20) so a tiny model can learn them as facts rather than as an
algorithm. An answer may use digits or words: "7" and "seven" are both accepted.
"""

from .family import NaturalInstructions as NI, Solution, TaskFamily, fixed_rng
from .lexicon import NUMBER_WORDS
from .text import capitalize

MAX_OPERAND = 10
_NUMBERS = range(len(NUMBER_WORDS))


def _number_solution(value: int, topic_numbers, wrong_value: int) -> Solution:
    """Reference "7.", accepted "7"/"seven"; every other number (digits or words) is a competitor."""
    competitors = {str(n) for n in _NUMBERS if n != value}
    competitors |= {NUMBER_WORDS[n] for n in _NUMBERS if n != value}
    return Solution(response=f"{value}.", answers=(str(value), NUMBER_WORDS[value]),
                    competitors=frozenset(competitors),
                    topic=frozenset({str(value), NUMBER_WORDS[value]} | {str(n) for n in topic_numbers}),
                    wrong=f"{wrong_value}.")


def _ints(f, *names):
    """The named fields as ints, or None when one is not a small number."""
    if not all(f[n].isdigit() and int(f[n]) <= 20 for n in names):
        return None
    return [int(f[n]) for n in names]


def _off_by_one(a: int, b: int, value: int) -> int:
    """A near miss: the kind of wrong answer a careless adder gives."""
    step = fixed_rng(a, b).choice((-1, 1))
    return value + step if 0 <= value + step <= 20 else value - step


def _solve_add(f, rng=None):
    ab = _ints(f, "a", "b")
    if ab is None or sum(ab) > 20:
        return None
    a, b = ab
    return _number_solution(a + b, ab, _off_by_one(a, b, a + b))


def _solve_sub(f, rng=None):
    ab = _ints(f, "a", "b")
    if ab is None or ab[0] < ab[1]:
        return None
    a, b = ab
    return _number_solution(a - b, ab, _off_by_one(a, b, a - b))


def _solve_bigger(f, rng=None):
    ab = _ints(f, "a", "b")
    if ab is None or ab[0] == ab[1]:
        return None
    return _number_solution(max(ab), ab, min(ab))


def _sample_pair(rng):
    return {"a": str(rng.randint(0, MAX_OPERAND)), "b": str(rng.randint(0, MAX_OPERAND))}


def _sample_sub(rng):
    a = rng.randint(0, MAX_OPERAND + 2)
    return {"a": str(a), "b": str(rng.randint(0, a))}


def _sample_distinct(rng):
    a, b = rng.sample(range(21), 2)
    return {"a": str(a), "b": str(b)}


def _ni(title, definition, avoid, inp):
    return NI(title=title, definition=definition, emphasis="Answer with the number only.",
              avoid=avoid, input=inp, positive_reason="This number is the right answer.",
              negative_reason="This number is not the right answer.")


ADD = TaskFamily(
    name="add", category="arithmetic",
    templates=("What is {a} plus {b}?", "Add {a} and {b}.", "{a} + {b} = ?",
               "Compute the sum of {a} and {b}.",
               "If you have {a} apples and get {b} more, how many apples do you have?",
               "{a} plus {b}. What is the answer?"),
    sample=_sample_pair, solve=_solve_add, max_words=4, shape="label",
    ni=_ni("Addition", "You are given two small numbers. Add them.",
           "Do not write the numbers you were given.", "Numbers: {a} and {b}"))
SUBTRACT = TaskFamily(
    name="subtract", category="arithmetic",
    templates=("What is {a} minus {b}?", "Subtract {b} from {a}.", "{a} - {b} = ?",
               "Take {b} away from {a}. What is left?",
               "If you have {a} apples and eat {b}, how many are left?",
               "{a} minus {b}. What is the answer?"),
    sample=_sample_sub, solve=_solve_sub, max_words=4, shape="label",
    ni=_ni("Subtraction", "You are given two small numbers. Take the second away from the first.",
           "Do not add the numbers.", "Numbers: {a} and {b}"))
BIGGER = TaskFamily(
    name="bigger", category="arithmetic",
    templates=("Which is bigger, {a} or {b}?", "Which number is larger: {a} or {b}?",
               "{a} or {b}: which one is more?", "Tell me the bigger number of {a} and {b}.",
               "Pick the larger number. {a}, {b}", "Is {a} or {b} the bigger number?"),
    sample=_sample_distinct, solve=_solve_bigger, max_words=4, shape="label",
    ni=_ni("Bigger number", "You are given two numbers. Give the bigger one.",
           "Do not give the smaller number.", "Numbers: {a} and {b}"))


def _solve_word(f, rng=None):
    n = _ints(f, "n")
    if n is None:
        return None
    value = n[0]
    near = _off_by_one(value, value, value)
    return Solution(response=capitalize(NUMBER_WORDS[value]) + ".", answers=(NUMBER_WORDS[value],),
                    competitors=frozenset(NUMBER_WORDS) - {NUMBER_WORDS[value]},
                    topic=frozenset({str(value), NUMBER_WORDS[value]}),
                    wrong=capitalize(NUMBER_WORDS[near]) + ".")


NUMBER_WORD = TaskFamily(
    name="number_word", category="arithmetic", seen=False,
    templates=("Write the number {n} in words.", "How do you spell {n} as a word?",
               "{n}\nWrite this number as a word.", "Spell out the number {n}.",
               "Turn {n} into a word.", "What is {n} written in letters?"),
    sample=lambda rng: {"n": str(rng.randint(0, 20))}, solve=_solve_word, max_words=4, shape="label",
    knowledge=True,
    ni=_ni("Numbers in words", "You are given a number written with digits. Write it in words.",
           "Do not answer with digits.", "Number: {n}"))

FAMILIES = (ADD, SUBTRACT, BIGGER, NUMBER_WORD)
