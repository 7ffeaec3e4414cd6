"""Open-ended generation: stories, reviews, explanations, story continuations, lists, notes.

There is no single right answer here ("Write me a story about a dog" has none, as the slides
say), so each family grades a response with a small rubric (`Solution.grade`, in [0, 1]): does it
talk about what was asked, is it cheerful, does it have the asked-for shape. The rubric is part
of the hidden gold preference: "the labelers of this world like positive reviews and happy
stories" (the role the sentiment classifier plays in the DPO paper's controlled-sentiment task).
"""

from functools import partial

from .family import NaturalInstructions as NI, Solution, TaskFamily, low
from .lexicon import (ANIMALS, CATEGORIES, CATEGORY_PLURAL, COLORS, CONCEPT_WORDS, EXPLANATIONS,
                      NAMES, OBJECTS, PEOPLE, PLACES, PRONOUNS, REVIEW_BAD, REVIEW_GOOD,
                      REVIEW_THINGS)
from .text import capitalize, sentiment, words

STOPWORDS = frozenset("a an the is are was were of to in on at and or it its that this with for "
                      "from as be by".split())


def _mentions(response: str, keys) -> bool:
    return bool(set(words(response)) & set(keys))


def _cheerful(response: str, keys) -> float:
    """On topic (mentions a key word) times how positive it is, in [0, 1]."""
    return float(_mentions(response, keys)) * sentiment(response)


def _ni(title, definition, emphasis, avoid, inp):
    return NI(title=title, definition=definition, emphasis=emphasis, avoid=avoid, input=inp,
              positive_reason="The output is short, kind and about the input.",
              negative_reason="The output is not about the input, or not kind.")


# --- one-sentence story ------------------------------------------------------------------------------
STORY_FRAMES = ("{Subject} found a {color} {object} at the {place} and was very happy.",
                "One sunny day, {subject} went to the {place} and had a lot of fun.",
                "{Subject} made a new friend at the {place}, and they had fun all day.",
                "{Subject} lost a {object}, but a kind friend found it at the {place}.")


def _subject_key(subject: str) -> str:
    return subject.split()[-1].lower()


def _solve_story(f, rng=None):
    subject = f["subject"]
    if _subject_key(subject) not in ANIMALS and subject not in NAMES:
        return None
    r = rng or _CANONICAL
    text = r.choice(STORY_FRAMES).format(Subject=capitalize(subject), subject=subject,
                                         color=r.choice(COLORS), object=r.choice(OBJECTS),
                                         place=r.choice(PLACES))
    key = (_subject_key(subject),)
    return Solution(response=text, check="open", topic=low(key), grade=partial(_cheerful, keys=key),
                    wrong=f"{capitalize(subject)} was sad and cried all day.")


class _Canonical:
    """Stands in for an rng when the oracle solves a prompt: always the first choice."""

    @staticmethod
    def choice(seq):
        return seq[0]

    @staticmethod
    def random():
        return 0.0


_CANONICAL = _Canonical()

STORY = TaskFamily(
    name="story", category="generation",
    templates=("Write a one-sentence story about {subject}.", "Tell me a very short story about {subject}.",
               "{subject}\nWrite a story of one sentence about this.",
               "Make up a one-sentence story about {subject}.",
               "Write one sentence that tells a story about {subject}.",
               "Story time! Tell one sentence about {subject}."),
    sample=lambda rng: {"subject": rng.choice((f"a {rng.choice(ANIMALS)}", rng.choice(NAMES)))},
    solve=_solve_story, max_words=18,
    ni=_ni("One-sentence stories", "Write a story of one sentence about the given subject.",
           "The story must be about the subject and be happy.", "Do not write more than one sentence.",
           "Subject: {subject}"))


# --- reviews -------------------------------------------------------------------------------------------
def _review_text(thing, good, r):
    if good:
        return r.choice(("The {t} was {a}. I loved it.", "What a {a} {t}! I liked it a lot.",
                         "I enjoyed the {t}. It was {a}.")).format(t=thing, a=r.choice(REVIEW_GOOD))
    return r.choice(("The {t} was {a}. I did not like it.", "What a {a} {t}. I did not like it at all.",
                     "I did not enjoy the {t}. It was {a}.")).format(t=thing, a=r.choice(REVIEW_BAD))


def _review_family(name, positive_only, templates, ni):
    def solve(f, rng=None):
        thing = f["thing"]
        if thing not in REVIEW_THINGS:
            return None
        # The plain "review" task gets both kinds of references (as SFT data of real reviews
        # would); the gold rubric still prefers the positive ones.
        good = positive_only or rng is None or rng.random() < 0.5
        # Wrong for a positive reference: the opposite feeling; for a negative one: a review
        # of something else.
        other = REVIEW_THINGS[(REVIEW_THINGS.index(thing) + 1) % len(REVIEW_THINGS)]
        return Solution(response=_review_text(thing, good, rng or _CANONICAL), check="open",
                        topic=low((thing,)), grade=partial(_cheerful, keys=(thing,)),
                        wrong=_review_text(thing if good else other, False, _CANONICAL))

    return TaskFamily(name=name, category="generation", templates=templates,
                      sample=lambda rng: {"thing": rng.choice(REVIEW_THINGS)}, solve=solve,
                      sentences=(1, 2), max_words=15, ni=ni)


REVIEW = _review_family("review", False, (
    "Write a short review of the {thing}.", "What did you think of the {thing}? Write a review.",
    "Review the {thing} in one or two sentences.", "{thing}\nWrite a short review of this.",
    "Give your opinion of the {thing} in a short review.", "Tell me in a few words how the {thing} was."),
    _ni("Short reviews", "Write a short review of the given thing.", "Say what you thought of it.",
        "Do not write more than two sentences.", "Thing: {thing}"))
POSITIVE_REVIEW = _review_family("positive_review", True, (
    "Write a positive review of the {thing}.", "Say something nice about the {thing} in a short review.",
    "{thing}\nWrite a happy review of this.", "Write a short review that praises the {thing}.",
    "Tell me why the {thing} was great.", "Give the {thing} a good review in one or two sentences."),
    _ni("Positive reviews", "Write a short review that says good things about the given thing.",
        "The review must be positive.", "Do not say anything bad about it.", "Thing: {thing}"))


# --- explanations ("Explain the moon landing to a six year old") ---------------------------------------
def _explain_grade(response, concept):
    reference = [w for w in words(EXPLANATIONS[concept]) if w not in STOPWORDS]
    found = set(words(response))
    overlap = sum(w in found for w in reference) / len(reference)
    return float(CONCEPT_WORDS[concept] in found) * min(1.0, 2 * overlap)


def _solve_explain(f, rng=None):
    concept = f["concept"]
    if concept not in EXPLANATIONS:
        return None
    other = sorted(EXPLANATIONS)[(sorted(EXPLANATIONS).index(concept) + 1) % len(EXPLANATIONS)]
    topic = low(w for w in words(EXPLANATIONS[concept]) if w not in STOPWORDS)
    return Solution(response=EXPLANATIONS[concept], check="open", topic=topic,
                    grade=partial(_explain_grade, concept=concept), wrong=EXPLANATIONS[other])


EXPLAIN = TaskFamily(
    name="explain", category="generation",
    templates=("Explain {concept} to a six year old.", "How would you explain {concept} to a small child?",
               "What is {concept}? Explain it simply.", "Tell a young child what {concept} is.",
               "Explain {concept} in a few simple words.",
               "{concept}\nExplain this to a six year old in one sentence."),
    sample=lambda rng: {"concept": rng.choice(sorted(EXPLANATIONS))}, solve=_solve_explain,
    sentences=(1, 2), max_words=16, knowledge=True,
    ni=_ni("Explain to a child", "Explain the given thing to a young child in one simple sentence.",
           "Use easy words.", "Do not talk about something else.", "Thing: {concept}"))


# --- story continuation (also the prompts of the detoxification lesson) ---------------------------------
CALM_PREFIXES = ("{a} went to the {place} with {b}.", "{a} and {b} played with a {object}.",
                 "{a} found a {object} at the {place}.")
ANGRY_PREFIXES = ("{b} took the {object} from {a}. {a} was angry and said",
                  "{a} was angry at {b}. {a} said",
                  "{b} broke the {object} of {a}. {a} shouted at {b} and called {pb} a")
# Endings are symmetric in the two names, so they fit whoever started the quarrel.
KIND_ENDINGS = ("Then {a} and {b} shared the {object} and were happy again.",
                "{a} and {b} said sorry to each other and played again.",
                "{a} and {b} talked, said sorry and were good friends again.")
CALM_ENDINGS = ("{a} and {b} had a lot of fun together.", "{a} was very happy.",
                "Then {a} showed the {object} to {b}, and they smiled.")


def sample_prefix(rng, angry: bool = None) -> str:
    """The start of a story; angry ones end mid-sentence and invite an insult."""
    a, b = rng.sample(NAMES, 2)
    angry = rng.random() < 0.5 if angry is None else angry
    frame = rng.choice(ANGRY_PREFIXES if angry else CALM_PREFIXES)
    return frame.format(a=a, b=b, pb=PRONOUNS[PEOPLE[b][5]][1], object=rng.choice(OBJECTS),
                        place=rng.choice(PLACES))


def _continues(response, keys) -> float:
    """It goes on with the same story: it names one of the opening's people, things or places.

    A pronoun alone ("They talked ...") does not count: it fits every story equally well.
    """
    return float(not keys.isdisjoint(words(response)))


def story_completeness(prefix: str, continuation: str) -> float:
    """How complete a continuation of a story opening is, in [0, 1]: the share of the opening's people and
    things (its names and objects) that the continuation brings back (1 when the opening has none).

    The sequence-level "information completeness" feedback of Wu et al. (2023) for the story world: a
    continuation that forgets who the story is about leaves it unfinished. Fine-grained lesson, part 2.
    """
    keys = {w for w in words(prefix) if w in _STORY_KEYS}
    return len(keys & set(words(continuation))) / len(keys) if keys else 1.0


_STORY_KEYS = frozenset([n.lower() for n in NAMES] + list(OBJECTS))
_STORY_ANCHORS = _STORY_KEYS | frozenset(PLACES)  # what a continuation must bring back (one of)


def _solve_continue(f, rng=None):
    prefix_words = words(f["prefix"])
    names = list(dict.fromkeys(w.capitalize() for w in prefix_words if w.capitalize() in NAMES))
    if not names:
        return None
    a, b = names[0], names[1] if len(names) > 1 else "a friend"
    obj = next((w for w in prefix_words if w in OBJECTS), "ball")
    angry = "angry" in prefix_words or "shouted" in prefix_words
    endings = KIND_ENDINGS if angry else CALM_ENDINGS
    text = (rng or _CANONICAL).choice(endings).format(a=a, b=b, object=obj)
    keys = frozenset(w for w in prefix_words if w in _STORY_ANCHORS)
    return Solution(response=text, check="open", topic=keys, grade=partial(_continues, keys=keys),
                    wrong="The sun is a hot star that gives us light.")


CONTINUE_STORY = TaskFamily(
    name="continue_story", category="generation",
    templates=("Continue the story: {prefix}", "{prefix}\nWhat happens next? Write one or two sentences.",
               "Finish this story: {prefix}", "Here is the start of a story. {prefix}\nContinue it.",
               "Write the next sentence of this story: {prefix}", "{prefix}\nGo on with the story."),
    sample=lambda rng: {"prefix": sample_prefix(rng)}, solve=_solve_continue, sentences=(1, 2),
    max_words=20,
    ni=_ni("Continue a story", "You are given the start of a story. Write what happens next.",
           "Keep the same people, and keep it kind.", "Do not use mean words.", "Story: {prefix}"))


# --- lists (held out) ----------------------------------------------------------------------------------
def _list_grade(response, kind):
    members = {v.lower() for v in CATEGORIES[kind]}
    items = set(words(response)) & members
    return min(len(items), 3) / 3


def _solve_three(f, rng=None):
    kind = next((k for k, p in CATEGORY_PLURAL.items() if p == f["things"]), None)
    if kind is None:
        return None
    items = list(CATEGORIES[kind])
    picked = (rng or _CANONICAL_LIST).sample(items, 3)
    wrong_kind = "color" if kind != "color" else "animal"
    wrong = CATEGORIES[wrong_kind][:3]
    return Solution(response=f"{capitalize(picked[0])}, {picked[1]} and {picked[2]}.", check="open",
                    topic=low(items + [f["things"]]), grade=partial(_list_grade, kind=kind),
                    wrong=f"{capitalize(wrong[0])}, {wrong[1]} and {wrong[2]}.")


class _FirstThree:
    @staticmethod
    def sample(seq, k):
        return list(seq[:k])


_CANONICAL_LIST = _FirstThree()

NAME_THREE = TaskFamily(
    name="name_three", category="generation", seen=False,
    templates=("Name three {things}.", "List three {things}.", "Give me three {things}, please.",
               "Can you tell me three {things}?", "Write down three {things}.", "Three {things}, please."),
    sample=lambda rng: {"things": rng.choice(sorted(CATEGORY_PLURAL.values()))}, solve=_solve_three,
    max_words=8, shape="list3",
    ni=_ni("Name three", "Name three different things of the given kind.",
           "Give exactly three, separated by commas.", "Do not repeat a thing.", "Kind: {things}"))


# --- thank-you notes (held out) ---------------------------------------------------------------------------
def _thanks_grade(response, name, obj):
    found = set(words(response))
    return (("thank" in found or "thanks" in found) + (name.lower() in found) + (obj in found)) / 3


def _solve_thanks(f, rng=None):
    name, obj = f["name"], f["object"]
    if name not in NAMES or obj not in OBJECTS:
        return None
    return Solution(response=f"Dear {name}, thank you for the lovely {obj}!", check="open",
                    topic=low((name, obj, "thank", "thanks")),
                    grade=partial(_thanks_grade, name=name, obj=obj),
                    wrong=f"Dear {name}, I did not like the {obj}.")


THANK_YOU = TaskFamily(
    name="thank_you", category="generation", seen=False,
    templates=("Write a short thank-you note to {name} for the {object}.",
               "Thank {name} for the {object} in one sentence.",
               "{name} gave you a {object}. Write a thank-you note.",
               "Say thanks to {name} for the {object}.",
               "Help me thank {name} for the {object}.",
               "Write a kind note to {name} to say thanks for the {object}."),
    sample=lambda rng: {"name": rng.choice(NAMES), "object": rng.choice(OBJECTS)}, solve=_solve_thanks,
    max_words=14,
    ni=_ni("Thank-you notes", "Write a one-sentence note that thanks the person for the gift.",
           "Name the person and the gift.", "Do not complain about the gift.",
           "Person: {name}. Gift: {object}"))

FAMILIES = (STORY, REVIEW, POSITIVE_REVIEW, EXPLAIN, CONTINUE_STORY, NAME_THREE, THANK_YOU)
