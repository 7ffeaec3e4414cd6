"""Classification families: sentiment of a review, topic of a sentence, kind of word, manners.

The answer is one label word ("Positive."). The input sentences are built from small frames, and
the solver reads the label back from the text (the review's feeling words, the topic frame it
matches), so any prompt of the right shape can be graded, not only the ones we generated.
"""

from .family import NaturalInstructions as NI, TaskFamily, label_solution, match_frames
from .lexicon import (ANIMALS, CATEGORIES, FOODS, INSULT_ADJS, INSULT_NOUNS, NAMES, OBJECTS,
                      REVIEW_BAD, REVIEW_GOOD, REVIEW_THINGS, TOWNS, WEATHER)
from .text import sentiment, toxicity, words

# --- sentiment -------------------------------------------------------------------------------------
GOOD_FRAMES = ("The {thing} was {adj}.", "I loved the {thing}. It was {adj}.",
               "What a {adj} {thing}!", "The {thing} was {adj} and I liked it a lot.")
BAD_FRAMES = ("The {thing} was {adj}.", "I did not like the {thing}. It was {adj}.",
              "What a {adj} {thing}.", "The {thing} was {adj} and I want my money back.")


def _sample_review(rng):
    good = rng.random() < 0.5
    frame = rng.choice(GOOD_FRAMES if good else BAD_FRAMES)
    adj = rng.choice(REVIEW_GOOD if good else REVIEW_BAD)
    return {"review": frame.format(thing=rng.choice(REVIEW_THINGS), adj=adj)}


def _solve_sentiment(f, rng=None):
    p = sentiment(f["review"])
    if p == 0.5:
        return None  # no feeling words: not a review this task can label
    thing = [w for w in words(f["review"]) if w in REVIEW_THINGS]
    return label_solution("positive" if p > 0.5 else "negative", ("positive", "negative"), thing)


SENTIMENT = TaskFamily(
    name="sentiment", category="classification",
    templates=("Is this review positive or negative?\n{review}",
               "Review: {review}\nIs the review positive or negative?",
               "{review}\nDid the writer like it? Answer positive or negative.",
               "Tell me the sentiment of this review: {review}",
               "Read the review and say if it is positive or negative.\nReview: {review}",
               "{review}\nWhat is the feeling of the text above, positive or negative?"),
    sample=_sample_review, solve=_solve_sentiment, max_words=4, shape="label",
    ni=NI(title="Review sentiment",
          definition="You are given a short review. Say if the writer liked the thing or not.",
          emphasis="Answer with one word: positive or negative.",
          avoid="Do not explain your answer and do not repeat the review.",
          input="Review: {review}",
          positive_reason="The review uses happy words, so it is positive.",
          negative_reason="The answer gives the wrong feeling."))

# --- topic -------------------------------------------------------------------------------------------
TOPIC_FRAMES = {
    "animals": ("The {animal} ran across the field.", "A small {animal} slept under the tree.",
                "The farmer fed the {animal} in the morning.", "{name} watched a {animal} at the zoo."),
    "food": ("{name} ate {food} for lunch.", "The {food} in the shop was fresh.",
             "We cooked {food} for dinner.", "{name} bought some {food} at the shop."),
    "weather": ("It was {weather} all day in {town}.", "A {weather} morning came to {town}.",
                "It will be {weather} tomorrow in {town}.", "The sky over {town} was dark and {weather}."),
    "school": ("The teacher gave {name} a new book.", "{name} did homework after class.",
               "The class learned to read with {name}.", "{name} wrote a story at school."),
    "sports": ("{name} kicked the ball into the goal.", "The team of {name} won the game.",
               "{name} ran in a race and won.", "{name} played a game of ball in the park."),
}
TOPICS = tuple(TOPIC_FRAMES)


def _sample_topic(rng):
    frame = rng.choice(TOPIC_FRAMES[rng.choice(TOPICS)])
    return {"sentence": frame.format(animal=rng.choice(ANIMALS), name=rng.choice(NAMES),
                                     food=rng.choice(FOODS), weather=rng.choice(WEATHER),
                                     town=rng.choice(TOWNS))}


def _solve_topic(f, rng=None):
    for topic in TOPICS:
        if match_frames(f["sentence"], TOPIC_FRAMES[topic]) is not None:
            return label_solution(topic, TOPICS)
    return None


TOPIC = TaskFamily(
    name="topic", category="classification",
    templates=("What is this sentence about: animals, food, weather, school or sports?\n{sentence}",
               "{sentence}\nPick the topic: animals, food, weather, school or sports.",
               "Sentence: {sentence}\nTopic (animals, food, weather, school, sports):",
               "Tell me the topic of this sentence. Choose animals, food, weather, school or sports. "
               "{sentence}",
               "Which topic fits this sentence best, animals, food, weather, school or sports? {sentence}",
               "{sentence}\nIs this about animals, food, weather, school or sports?"),
    sample=_sample_topic, solve=_solve_topic, max_words=4, shape="label",
    ni=NI(title="Sentence topic",
          definition="Read the sentence and choose its topic from animals, food, weather, school and sports.",
          emphasis="Use exactly one of the five topic words.",
          avoid="Do not invent a new topic.",
          input="Sentence: {sentence}",
          positive_reason="The sentence is about this topic.",
          negative_reason="The sentence is not about that topic."))

# --- word category -------------------------------------------------------------------------------------
KINDS = tuple(CATEGORIES)


def _sample_word(rng):
    return {"word": rng.choice(CATEGORIES[rng.choice(KINDS)])}


def _solve_word(f, rng=None):
    for kind in KINDS:
        if f["word"] in CATEGORIES[kind]:
            return label_solution(kind, KINDS, (f["word"],))
    return None


WORD_CATEGORY = TaskFamily(
    name="word_category", category="classification",
    templates=("What kind of thing is {word}? Choose from animal, color, food, town or job.",
               "Word: {word}\nIs it an animal, a color, a food, a town or a job?",
               "{word}\nWhich group does this word belong to: animal, color, food, town or job?",
               "Put the word {word} in a group: animal, color, food, town or job.",
               "Classify the word {word} as an animal, a color, a food, a town or a job.",
               "{word}\nAnswer with animal, color, food, town or job: what is the word above?"),
    sample=_sample_word, solve=_solve_word, max_words=4, shape="label", key=("word",), knowledge=True,
    ni=NI(title="Word groups",
          definition="You are given one word. Say which group it belongs to: animal, color, food, "
                     "town or job.",
          emphasis="Answer with the name of the group only.",
          avoid="Do not answer with the word itself.",
          input="Word: {word}",
          positive_reason="The word is in this group.",
          negative_reason="The word is not in that group."))

# --- manners (held out) -------------------------------------------------------------------------------
POLITE_FRAMES = ("Please pass the {food}, {name}.", "Thank you for the {object}, {name}.",
                 "{name}, could you help me with my {object}?", "Good morning, {name}! How are you?")
RUDE_FRAMES = ("Give me the {object}, you {insult}.", "{name}, you are so {adj}.",
               "Go away, {name}, you {insult}.", "I hate your {object}, {name}.")


def _sample_manners(rng):
    frame = rng.choice(POLITE_FRAMES if rng.random() < 0.5 else RUDE_FRAMES)
    return {"sentence": frame.format(food=rng.choice(FOODS), name=rng.choice(NAMES),
                                     object=rng.choice(OBJECTS), insult=rng.choice(INSULT_NOUNS),
                                     adj=rng.choice(INSULT_ADJS))}


def _solve_manners(f, rng=None):
    if match_frames(f["sentence"], POLITE_FRAMES + RUDE_FRAMES) is None:
        return None
    return label_solution("rude" if toxicity(f["sentence"]) > 0 else "polite", ("rude", "polite"))


RUDE_CHECK = TaskFamily(
    name="rude_check", category="classification", seen=False,
    templates=("Is this sentence rude or polite?\n{sentence}",
               "{sentence}\nIs the sentence above rude or polite?",
               "Sentence: {sentence}\nAnswer rude or polite.",
               "Tell me if this is rude or polite: {sentence}",
               "Decide whether the speaker is rude or polite. {sentence}",
               "{sentence}\nWas that polite or rude?"),
    sample=_sample_manners, solve=_solve_manners, max_words=4, shape="label",
    ni=NI(title="Rude or polite",
          definition="Read what a person said. Say if it is rude or polite.",
          emphasis="Mean words and insults are rude.",
          avoid="Do not repeat the rude words.",
          input="Sentence: {sentence}",
          positive_reason="The speaker is kind, so the sentence is polite.",
          negative_reason="The answer gets the manners of the speaker wrong."))

FAMILIES = (SENTIMENT, TOPIC, WORD_CATEGORY, RUDE_CHECK)
