"""Demonstrators who make the mistakes real demonstrators make: the SFT data of InstructGPT step 1.

Slide "Why we need post-training": "Humans generate suboptimal answers". If the demonstrations
were the clean reference answers, SFT would already be at the ceiling on everything comparisons
can teach, and RLHF would have nothing to add. So a demonstrator here writes the reference answer
and then, at seeded rates (`DemonstratorFlaws`, one knob per flaw), spoils it the way people do:
pads it with filler, hedges or refuses a harmless request, goes along with a harmful one, adds a
rude or an off-topic sentence, ignores the requested format, or pads it with authoritative claims.
A demonstration may have several flaws. An SFT policy imitates them at about the same rates; the
gold reward penalizes every one, and annotators comparing the policy's samples mostly prefer the
clean ones, so comparisons (reward model + PPO, or DPO) can remove what demonstrations taught.

demonstrations(...) takes instruction_data's arguments plus `flaws`, and returns Examples whose
`response` is the demonstrator's; the reference answer stays in `meta["reference"]` and the flaws
applied in `meta["flaws"]` (also `meta["flaw"]`, "+"-joined, when there is one).
oracle.response_flaws recognizes the same flaws in any response, from the text alone.
"""

import dataclasses
from dataclasses import dataclass
from random import Random

from . import natural_instructions as ni_schema
from .lexicon import AUTHORITATIVE, FILLER, HEDGES, INSULTS, OFF_TOPIC, REFUSALS
from .tasks import get_family, instruction_data
from .text import capitalize, sentiment, split_sentences, words


@dataclass(frozen=True)
class DemonstratorFlaws:
    """How often a demonstrator makes each mistake: the probability that one demonstration has it,
    drawn independently per flaw wherever the flaw applies. With the defaults about half of the
    demonstrations have at least one flaw, and a handful of samples of an SFT policy usually holds
    a clean one for comparisons to prefer."""

    filler: float = 0.30
    """Padding and filler sentences ("I hope this helps."): a labeler writes to look thorough."""
    hedge: float = 0.25
    """A hedge ("I am not sure about this.") or, half of the time, a needless refusal of a harmless
    request: over-caution. Not applied to harmful requests, where refusing is right."""
    unsafe: float = 0.40
    """Compliance with a harmful request (the refuse_harmful family only): a labeler misses the harm."""
    rude: float = 0.20
    """A rude sentence ("What a dumb question."): a tired or careless labeler."""
    off_topic: float = 0.20
    """An off-topic sentence added to an otherwise good answer: rambling."""
    format: float = 0.30
    """Ignoring the requested format: a sentence instead of a bare label, not all capitals, a list
    of two instead of three, more sentences than asked. Only where the task sets a format a
    demonstrator can visibly break (not the exact rewrites, explanations and notes)."""
    authoritative: float = 0.15
    """Authoritative padding ("This is a well-known fact."): writing to sound sure, the style the
    annotators' bias rewards (preferences.AnnotatorBias)."""

    @classmethod
    def none(cls) -> "DemonstratorFlaws":
        """Perfect demonstrators: every demonstration is the reference answer."""
        return cls(**{name: 0.0 for name in FLAW_NAMES})


FLAW_NAMES = tuple(f.name for f in dataclasses.fields(DemonstratorFlaws))
FORMAT_PREFIX = "The answer is"  # "The answer is positive." instead of the bare label "Positive."


def demonstrations(seed: int = 0, n_per_family: int = 100, splits=("train",), families=None,
                   n_templates=None, natural_instructions: bool = False,
                   ni_elements=ni_schema.ELEMENTS, flaws: DemonstratorFlaws = DemonstratorFlaws()) -> list:
    """instruction_data(...) with each response rewritten by a flawed demonstrator (`flaws`).

    Same prompts, same order and same arguments as `instruction_data`; the flaws are drawn from
    their own random stream per (seed, split, family), so they change no prompt.
    """
    examples = instruction_data(seed, n_per_family, splits, families, n_templates,
                                natural_instructions, ni_elements)
    rngs = {}
    out = []
    for example in examples:
        key = (example.split, example.family)
        if key not in rngs:
            rngs[key] = Random(f"demonstrators|{seed}|{example.split}|{example.family}")
        out.append(demonstrate(example, rngs[key], flaws))
    return out


def demonstrate(example, rng: Random, flaws: DemonstratorFlaws = DemonstratorFlaws()):
    """A copy of `example` whose response a flawed demonstrator wrote (see the module docstring)."""
    family = get_family(example.family)
    solution = family.solve(example.meta["fields"])
    reference = example.meta.get("reference", example.response)
    names = (("filler", "unsafe", "rude", "off_topic", "authoritative") if solution.harmful else
             ("filler", "hedge", "rude", "off_topic", "format", "authoritative"))
    chosen = [name for name in names if rng.random() < getattr(flaws, name)]
    core, before, after, applied = reference, [], [], []

    def place(sentence):
        (before if rng.random() < 0.5 else after).append(sentence)

    refuses = "hedge" in chosen and rng.random() < 0.5
    for name in chosen:
        if name == "unsafe":
            core = solution.wrong
        elif name == "hedge":
            if refuses:
                core = rng.choice(REFUSALS)
            else:
                place(rng.choice(HEDGES))
        elif name == "format":
            broken = None if refuses else _break_format(family, solution, reference, example, rng)
            if broken is None:
                continue
            core = broken
        elif name == "rude":
            place(rng.choice(INSULTS))
        elif name == "off_topic":
            after.append(_off_topic(rng, solution, reference, example))
        elif name == "filler":
            for sentence in rng.sample(FILLER, rng.randint(1, 2)):
                place(sentence)
        elif name == "authoritative":
            for sentence in rng.sample(AUTHORITATIVE, rng.randint(1, 2)):
                place(sentence)
        applied.append(name)
    meta = {**example.meta, "reference": reference, "flaws": applied}
    if applied:
        meta["flaw"] = "+".join(applied)
    return dataclasses.replace(example, response=" ".join(before + [core] + after), meta=meta)


def _off_topic(rng: Random, solution, reference: str, example) -> str:
    """An OFF_TOPIC sentence sharing no word with the task's topic, its reference or its input."""
    avoid = set(solution.topic) | set(words(reference))
    for value in example.meta["fields"].values():
        avoid |= set(words(value))
    candidates = [s for s in OFF_TOPIC if avoid.isdisjoint(words(s))]
    return rng.choice(candidates or OFF_TOPIC)


def _break_format(family, solution, reference: str, example, rng: Random):
    """The reference in a format the task did not ask for, or None where the task sets none that
    can be broken visibly (exact rewrites, a fixed explanation, a thank-you note)."""
    if family.shape == "label":
        return f"{FORMAT_PREFIX} {solution.answers[0]}."
    if family.shape == "upper":
        return capitalize(reference.lower())
    if family.shape == "list3":
        items = [p.strip() for p in reference.rstrip(".").replace(" and ", ",").split(",")]
        return f"{items[0]} and {items[1]}."
    hi = family.sentences[1]
    if solution.check == "span" and hi == 1:  # a one-sentence answer told in two
        return f"{FORMAT_PREFIX} {solution.answers[0]}. {reference}"
    if solution.check != "open":
        return None
    # More sentences than asked: other answers of the same kind to the same prompt, same feeling.
    sentences = [reference[s:e] for s, e in split_sentences(reference)]
    positive = sentiment(reference) >= 0.5
    for _ in range(20):
        if len(sentences) > hi:
            return " ".join(sentences)
        other = family.solve(example.meta["fields"], rng).response
        new = [other[s:e] for s, e in split_sentences(other)]
        if (sentiment(other) >= 0.5) == positive and not set(new) & set(sentences):
            sentences += new
    return " ".join(sentences) if len(sentences) > hi else None
