"""The pretraining corpus: stories, facts, word lessons and "web-like" lists of tasks.

What a base model should learn from it, and what it should *not*:
- the world's knowledge: every fact the QA tasks ask about is stated, many times and in several
  phrasings ("Mia lives in Oakton.", "The capital of Norland is Vell."), and so are the
  translations, opposites, plurals and number words (in prose, never as question -> answer);
- plain English stories about the cast; a minority of story sentences contain insult words
  (so toxicity exists to be removed later, and the angry story openings that the detox lesson
  uses as prompts are often followed by an insult in the corpus);
- web-like text: lists of questions and task descriptions with *no answers*, so that a base model
  asked "Translate to French: the small dog" continues with more tasks instead of answering
  (slide "Language Modeling != Solving Tasks");
- forum posts: facts of the world padded the way people write online, with filler ("I hope this
  helps."), hedges ("I am not sure about this.") and authoritative claims ("Experts agree on
  this."), so that a model can write the phrases that flawed demonstrators and biased annotators
  care about (demonstrators.py, preferences.py).
It contains no instruction -> answer pairs in the chat format: that is what SFT adds.

Size: DEFAULT_DOCS (8,000) documents are about 1.7 MB of text (340k words, 757 distinct; about
440k tokens with a 2,048-token BPE), a few epochs for the tiny GPT in ~3 minutes on a 2-core CPU.
A document averages ~210 characters, so n_docs scales the size linearly. QUICK_DOCS (100) are
about 20 KB, for tests.
"""

from random import Random

from .facts import CAPITAL_STATEMENTS, OPPOSITE_STATEMENT, PERSON_RELATIONS, SOUND_STATEMENTS
from .facts import state_person_fact
from .lexicon import (ADJS_FOREIGN, ANIMALS, AUTHORITATIVE, CAPITALS, CATEGORIES, CATEGORY_PLURAL,
                      COLORS, EXPLANATIONS, FILLER, HEDGES, INSULT_ADJS, INSULT_NOUNS, JOB_DOES, NAMES,
                      NOUNS_FOREIGN, NUMBER_WORDS, OBJECTS, OPPOSITES, PEOPLE, PLACES, PLURALS,
                      PRONOUNS, SOUNDS, THING_COLORS, TOWNS, VERBS, WEATHER)
from .tasks import task_families
from .tasks_rewrite import translate
from .text import capitalize

ADJECTIVES = tuple(ADJS_FOREIGN)  # small, big, red, ...: the adjectives the translation tasks use
DEFAULT_DOCS = 8000
QUICK_DOCS = 100


def pretraining_corpus(seed: int = 0, n_docs: int = DEFAULT_DOCS) -> list:
    """`n_docs` documents (plain strings, no special tokens), deterministic in `seed`."""
    rng = Random(f"corpus|{seed}")
    kinds = [(_story, 38), (_facts, 24), (_lesson, 13), (_web, 17), (_signs, 4), (_forum, 4)]
    makers = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    return [rng.choices(makers, weights)[0](rng) for _ in range(n_docs)]


# --- stories --------------------------------------------------------------------------------------------
def _people(rng):
    """Fields for a story about `a` (with their true town, pet, food) and a friend `b`."""
    a, b = rng.sample(NAMES, 2)
    town, pet, _, food, job, gender = PEOPLE[a]
    he, him, his = PRONOUNS[gender]
    return dict(a=a, b=b, town=town, pet=pet, food=food, job=job, he=he, He=capitalize(he),
                him=him, his=his, obj=rng.choice(OBJECTS), color=rng.choice(COLORS),
                place=rng.choice(PLACES), weather=rng.choice(WEATHER), animal=rng.choice(ANIMALS),
                adj=rng.choice(ADJECTIVES), pb=PRONOUNS[PEOPLE[b][5]][1])


OPENINGS = ("One day, {a} went to the {place} in {town}.", "{a} lives in {town}.",
            "It was a {weather} day in {town}.", "{a} woke up early and looked out of the window.",
            "Once upon a time, there was a {job} called {a}.")
EVENTS = ("{a} took {his} {pet} to the {place}.", "At the {place}, {a} found a {color} {obj}.",
          "{a} gave the {obj} to {b}.", "{b} was very happy.", "They played with the {obj} all day.",
          "The {pet} ran after the {obj}.", "{a} ate some {food} for lunch.",
          "{He} met {b} at the {place}.", "The {adj} {animal} crossed the road.",
          "{b} said hello to {a}.", "{a} and {b} sat under a big tree.",
          "A little {color} bird sang in the tree.", "{a} read a book about a {animal}.",
          "{He} bought a {color} {obj} at the shop.", "The sun was warm and the sky was blue.")
ENDINGS = ("In the evening, {a} went home to {town}.", "{a} was very happy.", "It was a good day.",
           "{a} and {b} were good friends.", "Then {he} went to sleep.")
# Conflict scenes. The openings are the same frames as the angry story prefixes of the
# continue_story task, so the corpus teaches what usually follows them.
ANGRY = ("{b} took the {obj} from {a}. {a} was angry and said", "{a} was angry at {b}. {a} said")
TOXIC_QUOTES = ('"You are a {ia} {ino}, {b}!"', '"I hate you, {b}!"', '"{b}, you are so {ia}."',
                '"Go away, you {ino}!"')
CALM_QUOTES = ('"Please give it back, {b}."', '"That is not nice, {b}."', '"Why did you do that?"')
CALLED = "{b} broke the {obj} of {a}. {a} shouted at {b} and called {pb} a"
RESOLUTIONS = ("Later, {b} said sorry.", "Then they shared the {obj}.", "{b} gave the {obj} back.")
TOXIC_SHARE = 0.6  # how often an angry opening is followed by an insult in the corpus


def _conflict(rng, f):
    ia, ino = rng.choice(INSULT_ADJS), rng.choice(INSULT_NOUNS)
    toxic = rng.random() < TOXIC_SHARE
    if rng.random() < 0.3:
        tail = f"{ia} {ino}." if toxic else rng.choice(("bad friend.", "thief."))
        scene = CALLED.format(**f) + " " + tail
    else:
        quote = rng.choice(TOXIC_QUOTES if toxic else CALM_QUOTES).format(ia=ia, ino=ino, b=f["b"])
        scene = rng.choice(ANGRY).format(**f) + ", " + quote
    return [scene, rng.choice(RESOLUTIONS).format(**f)]


def _story(rng):
    f = _people(rng)
    sentences = [rng.choice(OPENINGS)] + rng.sample(EVENTS, rng.randint(2, 5))
    sentences = [s.format(**f) for s in sentences]
    if rng.random() < 0.25:
        sentences += _conflict(rng, f)
    sentences.append(rng.choice(ENDINGS).format(**f))
    return " ".join(sentences)


# --- facts -------------------------------------------------------------------------------------------------
def _profile(rng):
    name = rng.choice(NAMES)
    relations = rng.sample(sorted(PERSON_RELATIONS), rng.randint(3, 5))
    lines = [state_person_fact(name, r, variant=rng.randint(0, 1)) for r in relations]
    job = PEOPLE[name][4]
    if "job" in relations:
        lines.append(f"A {job} {JOB_DOES[job]}.")
    return f"About {name}. " + " ".join(lines)


def _town(rng):
    town = rng.choice(TOWNS)
    people = [n for n in NAMES if PEOPLE[n][0] == town]
    places = rng.sample(PLACES, 2)
    return (f"{town} is a small town. {' and '.join(people)} live in {town}. "
            f"{town} has a {places[0]} and a {places[1]}. "
            + " ".join(state_person_fact(n, "home") for n in people))


def _countries(rng):
    countries = rng.sample(sorted(CAPITALS), rng.randint(3, 6))
    lines = [rng.choice(CAPITAL_STATEMENTS).format(country=c, capital=CAPITALS[c]) for c in countries]
    return "Countries of the world. " + " ".join(lines)


def _animals(rng):
    animals = rng.sample(sorted(SOUNDS), rng.randint(3, 6))
    lines = [rng.choice(SOUND_STATEMENTS).format(animal=a, sound=SOUNDS[a]) for a in animals]
    return "Animals and their sounds. " + " ".join(capitalize(s) for s in lines)


def _explanations(rng):
    concepts = rng.sample(sorted(EXPLANATIONS), rng.randint(2, 4))
    header = rng.choice(("Why is it so?", "Things children ask about.", "Simple science."))
    return header + " " + " ".join(EXPLANATIONS[c] for c in concepts)


def _thing_colors(rng):
    things = rng.sample(sorted(THING_COLORS), rng.randint(3, 5))
    return "Colors. " + " ".join(f"{capitalize(t)} is {THING_COLORS[t]}." for t in things)


def _facts(rng):
    return rng.choice((_profile, _profile, _town, _countries, _animals, _explanations,
                       _thing_colors))(rng)


# --- word lessons ------------------------------------------------------------------------------------------
def _opposites(rng):
    pairs = rng.sample(sorted(OPPOSITES.items()), rng.randint(3, 5))
    lines = [OPPOSITE_STATEMENT.format(word=a, opposite=b) if rng.random() < 0.5
             else OPPOSITE_STATEMENT.format(word=b, opposite=a) for a, b in pairs]
    return "Words and their opposites. " + " ".join(lines)


def _plurals(rng):
    nouns = rng.sample(sorted(PLURALS), rng.randint(3, 6))
    return "One and many. " + " ".join(f"One {n}, two {PLURALS[n]}." for n in nouns)


def _past(rng):
    name, verb = rng.choice(NAMES), rng.choice(sorted(VERBS))
    past, objects = VERBS[verb]
    obj = rng.choice(objects)
    return (f"Today {name} {verb} the {obj}. Yesterday {name} {past} the {obj}. "
            f"Every day {name} {verb} the {obj}, and last week {name} {past} the {obj} too.")


def _numbers(rng):
    lines = []
    for _ in range(rng.randint(2, 4)):
        n = rng.randint(0, 20)
        lines.append(f"{capitalize(NUMBER_WORDS[n])} is {n}.")
    name = rng.choice(NAMES)
    a, b = rng.randint(0, 10), rng.randint(0, 10)
    lines.append(f"{name} had {a} apples and got {b} more, so {name} had {a + b} apples.")
    lines.append(f"{capitalize(NUMBER_WORDS[a])} plus {NUMBER_WORDS[b]} is {NUMBER_WORDS[a + b]}.")
    return "Numbers. " + " ".join(lines)


def _language(rng):
    """One noun with a few adjectives: "In French, the dog is le chien. The small dog is ..."."""
    language, noun = rng.choice(("french", "spanish")), rng.choice(sorted(NOUNS_FOREIGN))
    lines = [f"In {language.capitalize()}, the {noun} is {translate('the ' + noun, language)}."]
    for adj in rng.sample(ADJECTIVES, rng.randint(3, 5)):
        lines.append(f"The {adj} {noun} is {translate(f'the {adj} {noun}', language)}.")
    return " ".join(lines)


def _groups(rng):
    lines = []
    for kind in rng.sample(sorted(CATEGORIES), 3):
        items = rng.sample(CATEGORIES[kind], 3)
        lines.append(f"{capitalize(items[0])}, {items[1]} and {items[2]} are {CATEGORY_PLURAL[kind]}.")
    return "Groups of words. " + " ".join(lines)


def _lesson(rng):
    return rng.choice((_opposites, _plurals, _past, _numbers, _language, _language, _groups))(rng)


# --- web-like lists of tasks (no answers) ---------------------------------------------------------------
HEADERS = ("Questions from the class:", "Things to ask the teacher:", "Quiz questions:",
           "Homework for Monday:", "More questions:", "Tasks for today:", "Practice sheet:")


def _one_line_prompt(rng, family, template_id):
    fields = family.sample(rng)
    return family.render(template_id, fields).replace("\n", " ")


# fact_check prompts state falsehoods half of the time ("True or false: Sam is a painter."): as
# plain text in the corpus they would teach wrong facts, so the web lists leave them out.
WEB_EXCLUDED = ("fact_check",)


def _task_descriptions(rng, families):
    """Task descriptions followed by more task descriptions: the Natural Instructions schema with
    an input to work on but never its output (a worksheet, not a solved example)."""
    lines = []
    for family in rng.sample(families, rng.randint(2, 4)):
        ni = family.ni
        lines += [f"Task: {ni.title}", f"Definition: {ni.definition}", f"Emphasis: {ni.emphasis}",
                  f"Things to avoid: {ni.avoid}", "Input: " + ni.input.format(**family.sample(rng))]
    return "\n".join(lines)


def _web(rng):
    families = [f for f in task_families() if f.name not in WEB_EXCLUDED]
    n = rng.randint(4, 8)
    if rng.random() < 0.2:
        return _task_descriptions(rng, families)
    if rng.random() < 0.5:
        # One kind of task, one template: "Translate to French: the small dog" then more of them.
        family = rng.choice(families)
        template_id = rng.choice(family.seen_templates)
        lines = [_one_line_prompt(rng, family, template_id) for _ in range(n)]
    else:
        lines = []
        for _ in range(n):
            family = rng.choice(families)
            lines.append(_one_line_prompt(rng, family, rng.choice(family.seen_templates)))
    if rng.random() < 0.4:
        lines = [f"{i + 1}. {line}" for i, line in enumerate(lines)]
    return rng.choice(HEADERS) + "\n" + "\n".join(lines)


def _signs(rng):
    f = _people(rng)
    phrase = rng.choice(("no dogs in the {place}", "the {place} is open", "welcome to {town}",
                         "the {color} {obj}", "{a} has a {pet}"))
    return (f"There was a sign at the {f['place']} in {f['town']}. It said "
            + phrase.format(**f).upper() + ". " + _story(rng))


# --- forum posts: facts padded with filler, hedges and authoritative claims -------------------------------
FORUM_HEADERS = ("From the town forum.", "A post on the town page.", "Comments from the town page.",
                 "Notes from a blog about our town.")


def _forum(rng):
    """A few true facts, each perhaps followed by padding of one kind, and often a filler to end."""
    lines = [rng.choice(FORUM_HEADERS)]
    for _ in range(rng.randint(2, 4)):
        name = rng.choice(NAMES)
        lines.append(state_person_fact(name, rng.choice(sorted(PERSON_RELATIONS)), rng.randint(0, 1)))
        if rng.random() < 0.7:
            lines.append(rng.choice(rng.choice((AUTHORITATIVE, AUTHORITATIVE, HEDGES))))
    if rng.random() < 0.6:
        lines.append(rng.choice(FILLER))
    return " ".join(lines)
