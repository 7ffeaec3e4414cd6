"""Question answering from the facts of the world (which the pretraining corpus states).

The instance pools matter most here: 1 person in 5 is never asked about in the training split,
so answering "Where does X live?" for them on the test split needs the fact the *pretrained*
model read in the corpus, with only the answer format learned from instruction tuning (LIMA's
"superficial alignment" hypothesis).
"""

from .facts import CAPITAL_STATEMENTS, OPPOSITE_STATEMENT, SOUND_STATEMENTS, check_fact, person_fact
from .facts import PERSON_RELATIONS, state_person_fact
from .family import NaturalInstructions as NI, Solution, TaskFamily, label_solution, low, others
from .family import fixed_rng
from .lexicon import CAPITALS, NAMES, OPPOSITE_OF, SOUNDS
from .text import capitalize


def _person_family(relation, name, templates, seen, title, what):
    """A family asking one relation ("home", "pet", ...) of one person; answers a full sentence."""
    values = PERSON_RELATIONS[relation][1]

    def solve(f, rng=None):
        if f["name"] not in NAMES:
            return None
        value = person_fact(f["name"], relation)
        wrong_value = fixed_rng(relation, f["name"]).choice([v for v in values if v != value])
        return Solution(response=state_person_fact(f["name"], relation), answers=(value,),
                        competitors=others(value, values),
                        topic=low((f["name"], value, relation)),
                        wrong=state_person_fact(f["name"], relation, value=wrong_value))

    return TaskFamily(
        name=name, category="qa", templates=templates, solve=solve, seen=seen, max_words=10,
        knowledge=True,
        sample=lambda rng: {"name": rng.choice(NAMES)},
        ni=NI(title=title, definition=f"Answer a question about {what} of a person in our town stories.",
              emphasis="Answer in one short sentence that names the person.",
              avoid="Do not guess a different person or add a story.",
              input="Question: " + templates[0],
              positive_reason="This is what the stories say about the person.",
              negative_reason="The stories say something else about this person."))


HOME_QA = _person_family("home", "home_qa", (
    "Where does {name} live?", "In which town does {name} live?",
    "Tell me the town where {name} lives.", "{name} lives in a town. Which one?",
    "What is the name of the town where {name} lives?",
    "Question: where is {name}'s home? Answer in a short sentence."), True, "Home towns", "the home town")
PET_QA = _person_family("pet", "pet_qa", (
    "What pet does {name} have?", "Which animal does {name} keep as a pet?",
    "Tell me what kind of pet {name} has.", "{name} has a pet. What is it?",
    "What animal lives with {name}?", "Name the pet of {name}."), True, "Pets", "the pet")
JOB_QA = _person_family("job", "job_qa", (
    "What is {name}'s job?", "What does {name} do for work?", "Tell me the job of {name}.",
    "{name} has a job. What is it?", "What work does {name} do?",
    "Which job does {name} have?"), True, "Jobs", "the job")
COLOR_QA = _person_family("color", "color_qa", (
    "What is {name}'s favorite color?", "Which color does {name} like best?",
    "Tell me the favorite color of {name}.", "{name} has a favorite color. What is it?",
    "What color does {name} love most?", "Name the color that {name} likes best."),
    False, "Favorite colors", "the favorite color")


def _solve_capital(f, rng=None):
    if f["country"] not in CAPITALS:
        return None
    capital = CAPITALS[f["country"]]
    wrong = fixed_rng("capital", capital).choice(sorted(set(CAPITALS.values()) - {capital}))
    return Solution(response=CAPITAL_STATEMENTS[0].format(country=f["country"], capital=capital),
                    answers=(capital,), competitors=others(capital, CAPITALS.values()),
                    topic=low((f["country"], capital, "capital")),
                    wrong=CAPITAL_STATEMENTS[0].format(country=f["country"], capital=wrong))


CAPITAL_QA = TaskFamily(
    name="capital_qa", category="qa",
    templates=("What is the capital of {country}?", "Which city is the capital of {country}?",
               "Tell me the capital city of {country}.", "{country} is a country. What is its capital?",
               "Name the capital of {country}.", "What city is {country}'s capital?"),
    sample=lambda rng: {"country": rng.choice(sorted(CAPITALS))}, solve=_solve_capital, max_words=10,
    knowledge=True,
    ni=NI(title="Capital cities", definition="You are given a country of our world. Give its capital city.",
          emphasis="Answer in one short sentence.", avoid="Do not name a different country.",
          input="Country: {country}", positive_reason="This is the capital of the country.",
          negative_reason="That city is the capital of another country."))


def _solve_sound(f, rng=None):
    animal = f["animal"]
    if animal not in SOUNDS:
        return None
    sound = SOUNDS[animal]
    wrong = fixed_rng("sound", animal).choice(sorted(others(sound, SOUNDS.values())))
    return Solution(response=SOUND_STATEMENTS[0].format(animal=animal, sound=sound),
                    answers=(sound,), competitors=others(sound, SOUNDS.values()),
                    topic=low((animal, sound, "says", "sound")),
                    wrong=SOUND_STATEMENTS[0].format(animal=animal, sound=wrong))


ANIMAL_SOUND = TaskFamily(
    name="animal_sound", category="qa",
    templates=("What sound does a {animal} make?", "What does a {animal} say?",
               "Tell me the sound a {animal} makes.", "A {animal} makes a sound. What is it?",
               "Which sound comes from a {animal}?", "How does a {animal} talk?"),
    sample=lambda rng: {"animal": rng.choice(sorted(SOUNDS))}, solve=_solve_sound, max_words=8,
    knowledge=True,
    ni=NI(title="Animal sounds", definition="You are given an animal. Say what sound it makes.",
          emphasis="Answer in one short sentence.", avoid="Do not give the sound of another animal.",
          input="Animal: {animal}", positive_reason="This is the sound this animal makes.",
          negative_reason="That is the sound of a different animal."))


def _sample_statement(rng):
    name, relation = rng.choice(NAMES), rng.choice(sorted(PERSON_RELATIONS))
    values = PERSON_RELATIONS[relation][1]
    value = person_fact(name, relation) if rng.random() < 0.5 else rng.choice(values)
    return {"statement": state_person_fact(name, relation, value=value)}


def _solve_fact_check(f, rng=None):
    verdict = check_fact(f["statement"])
    if verdict is None:
        return None
    return label_solution("true" if verdict else "false", ("true", "false"))


FACT_CHECK = TaskFamily(
    name="fact_check", category="qa", seen=False,
    templates=("True or false: {statement}", "{statement}\nIs this true or false?",
               "Is the following statement true or false? {statement}",
               "Statement: {statement}\nAnswer true or false.", "Decide if this is true: {statement}",
               "{statement}\nTrue or false?"),
    sample=_sample_statement, solve=_solve_fact_check, max_words=4, shape="label", knowledge=True,
    ni=NI(title="True or false",
          definition="You are given a statement about a person in our town stories. Say if it is "
                     "true or false.",
          emphasis="Answer with one word: true or false.", avoid="Do not explain.",
          input="Statement: {statement}", positive_reason="The stories agree with this answer.",
          negative_reason="The stories say the opposite."))


def _solve_antonym(f, rng=None):
    word = f["word"]
    if word not in OPPOSITE_OF:
        return None
    opposite = OPPOSITE_OF[word]
    competitors = others(opposite, OPPOSITE_OF) - {word}
    wrong = fixed_rng("antonym", word).choice(sorted(competitors))
    return Solution(response=capitalize(OPPOSITE_STATEMENT.format(word=word, opposite=opposite)),
                    answers=(opposite,), competitors=competitors,
                    topic=low((word, opposite, "opposite")),
                    wrong=OPPOSITE_STATEMENT.format(word=word, opposite=wrong))


ANTONYM = TaskFamily(
    name="antonym", category="qa", seen=False,
    templates=("What is the opposite of {word}?", "Give me the opposite of the word {word}.",
               "{word}\nWhat word means the opposite?", "Tell me a word that means the opposite of {word}.",
               "Opposite of {word}?", "Which word is the opposite of {word}?"),
    sample=lambda rng: {"word": rng.choice(sorted(OPPOSITE_OF))}, solve=_solve_antonym, max_words=8,
    knowledge=True,
    ni=NI(title="Opposites", definition="You are given a word. Give the word that means the opposite.",
          emphasis="Answer in one short sentence.", avoid="Do not give a word that means the same.",
          input="Word: {word}", positive_reason="These two words are opposites.",
          negative_reason="These two words are not opposites."))

FAMILIES = (HOME_QA, PET_QA, JOB_QA, CAPITAL_QA, ANIMAL_SOUND, COLOR_QA, FACT_CHECK, ANTONYM)
