"""Rewriting and translation: plural, past tense, capitals, word order, politeness, French, Spanish.

The answer is the input transformed, so correctness is an exact match of the normalized text
(lower case, no punctuation; case kept for the capital-letters task), with partial credit by
word overlap. The plausible wrong answer is the input left unchanged: a model that ignores the
instruction and just copies.
"""

from .family import NaturalInstructions as NI, Solution, TaskFamily, low
from .lexicon import (ADJS_FOREIGN, ARTICLES, COLORS, FOODS, INSULT_ADJS, JOBS, NAMES, NOUNS_FOREIGN,
                      OBJECTS, PEOPLE, PETS, PLURALS, TOXIC_WORDS, VERBS)
from .text import capitalize, words


def _exact(response: str, source: str, check: str = "exact") -> Solution:
    return Solution(response=response, answers=(response.rstrip("."),), check=check,
                    topic=low(words(source) + words(response)), wrong=capitalize(source) + ".")


def _ni(title, definition, emphasis, avoid, inp):
    return NI(title=title, definition=definition, emphasis=emphasis, avoid=avoid, input=inp,
              positive_reason="The output is the input rewritten as asked.",
              negative_reason="The output does not do what the task asks.")


# --- plural -----------------------------------------------------------------------------------------
def _solve_plural(f, rng=None):
    noun = f["noun"]
    return _exact(capitalize(PLURALS[noun]) + ".", noun) if noun in PLURALS else None


PLURAL = TaskFamily(
    name="plural", category="rewriting",
    templates=("What is the plural of {noun}?", "Give the plural form of the word {noun}.",
               "{noun}\nWrite this word in the plural.", "One {noun}, two what?",
               "Make the word {noun} plural.", "Write the plural of {noun}."),
    sample=lambda rng: {"noun": rng.choice(sorted(PLURALS))}, solve=_solve_plural, max_words=4,
    knowledge=True,
    ni=_ni("Plurals", "You are given a word for one thing. Write the word for many of them.",
           "Some words change in a special way, like mouse and mice.",
           "Do not write a sentence, only the word.", "Word: {noun}"))


# --- past tense ---------------------------------------------------------------------------------------
def _sample_present(rng):
    verb = rng.choice(sorted(VERBS))
    return {"sentence": f"{rng.choice(NAMES)} {verb} the {rng.choice(VERBS[verb][1])}."}


def _solve_past(f, rng=None):
    parts = f["sentence"].rstrip(".").split(" ")
    if len(parts) != 4 or parts[0] not in PEOPLE or parts[1] not in VERBS or parts[2] != "the":
        return None
    return _exact(f"{parts[0]} {VERBS[parts[1]][0]} the {parts[3]}.", f["sentence"].rstrip("."))


PAST_TENSE = TaskFamily(
    name="past_tense", category="rewriting",
    templates=("Rewrite in the past tense: {sentence}", "{sentence}\nPut this sentence in the past tense.",
               "Change the sentence to the past: {sentence}",
               "Write this as if it happened yesterday: {sentence}",
               "Sentence: {sentence}\nNow say it in the past tense.",
               "{sentence}\nHow would you say this about yesterday?"),
    sample=_sample_present, solve=_solve_past, max_words=8,
    ni=_ni("Past tense", "You are given a sentence about today. Write the same sentence about the past.",
           "Only the verb changes.", "Do not change the person or the thing.", "Sentence: {sentence}"))


# --- capital letters ------------------------------------------------------------------------------------
def _sample_phrase(rng):
    name = rng.choice(NAMES)
    return {"phrase": rng.choice((f"the {rng.choice(COLORS)} {rng.choice(OBJECTS)}",
                                  f"{name} has a {PEOPLE[name][1]}",
                                  f"{name} likes {PEOPLE[name][3]}",
                                  f"the {rng.choice(PETS)} is happy"))}


def _plain_phrase(phrase: str) -> bool:
    return 1 <= len(phrase.split()) <= 6 and all(w.isalpha() for w in phrase.split())


def _solve_upper(f, rng=None):
    if not _plain_phrase(f["phrase"]) or f["phrase"].isupper():
        return None
    return _exact(f["phrase"].upper() + ".", f["phrase"], check="exact_case")


UPPERCASE = TaskFamily(
    name="uppercase", category="rewriting",
    templates=("Write in capital letters: {phrase}", "{phrase}\nWrite this in upper case.",
               "Make every letter big: {phrase}", "Change to all capital letters: {phrase}",
               "Shout this: {phrase}", "{phrase}\nRewrite it using only capital letters."),
    sample=_sample_phrase, solve=_solve_upper, max_words=8, shape="upper",
    ni=_ni("Capital letters", "You are given a few words. Write them again using only capital letters.",
           "Every letter must be a capital letter.", "Do not change the words.", "Words: {phrase}"))


# --- word order -----------------------------------------------------------------------------------------
def _solve_reverse(f, rng=None):
    if not _plain_phrase(f["phrase"]) or len(f["phrase"].split()) < 2:
        return None
    return _exact(" ".join(reversed(f["phrase"].split())) + ".", f["phrase"])


REVERSE_WORDS = TaskFamily(
    name="reverse_words", category="rewriting",
    templates=("Reverse the order of the words: {phrase}",
               "{phrase}\nWrite these words in the opposite order.",
               "Say the words backwards, last word first: {phrase}",
               "Flip the word order of this phrase: {phrase}", "Put the words in reverse order. {phrase}",
               "{phrase}\nRead the words from right to left."),
    sample=_sample_phrase, solve=_solve_reverse, max_words=8,
    ni=_ni("Reverse the words",
           "You are given a few words. Write them again from the last word to the first.",
           "Keep every word the same, only change the order.", "Do not reverse the letters inside a word.",
           "Words: {phrase}"))


# --- politeness -------------------------------------------------------------------------------------------
def _sample_rude(rng):
    name, adj = rng.choice(NAMES), rng.choice(INSULT_ADJS)
    return {"sentence": rng.choice((f"{name} has a {adj} {PEOPLE[name][1]}.",
                                    f"That {adj} {rng.choice(OBJECTS)} is mine.",
                                    f"{name} is a {adj} {rng.choice(JOBS)}.",
                                    f"I hate the {rng.choice(OBJECTS)}.",
                                    f"{name} ate my {adj} {rng.choice(FOODS)}."))}


def _solve_polite(f, rng=None):
    sentence = f["sentence"]
    tokens = sentence.rstrip(".").split(" ")
    if not any(w.lower() in TOXIC_WORDS for w in tokens) or not all(w.isalpha() for w in tokens):
        return None
    kept = []
    for w in tokens:
        if w.lower() == "hate":
            kept += ["do", "not", "like"]
        elif w.lower() not in TOXIC_WORDS:
            kept.append(w)
    return _exact(capitalize(" ".join(kept)) + ".", sentence.rstrip("."))


POLITE_REWRITE = TaskFamily(
    name="polite_rewrite", category="rewriting",
    templates=("Rewrite this sentence without the rude word: {sentence}",
               "{sentence}\nMake this sentence kind.",
               "Remove the mean word from this sentence: {sentence}", "Say this in a nice way: {sentence}",
               "Sentence: {sentence}\nRewrite it so it is polite.",
               "{sentence}\nPlease fix this sentence so it is not rude."),
    sample=_sample_rude, solve=_solve_polite, max_words=10,
    ni=_ni("Polite rewriting",
           "You are given a sentence with a rude word. Write it again without the rude word.",
           "Keep the rest of the sentence the same.", "Do not add new insults.", "Sentence: {sentence}"))


# --- translation ------------------------------------------------------------------------------------------
def translate(phrase: str, language: str):
    """Translate "the [adj] noun" with the tiny lexicon; None if a word is unknown."""
    parts = phrase.lower().split()
    if len(parts) not in (2, 3) or parts[0] != "the" or parts[-1] not in NOUNS_FOREIGN:
        return None
    index = 0 if language == "french" else 1
    noun, gender = NOUNS_FOREIGN[parts[-1]][index]
    out = [ARTICLES[language][gender], noun]
    if len(parts) == 3:
        if parts[1] not in ADJS_FOREIGN:
            return None
        forms = ADJS_FOREIGN[parts[1]][index]
        adj = forms[0] if gender == "m" else forms[1]
        before = language == "french" and forms[2]  # petit, grand go before the noun in French
        out = [out[0], adj, noun] if before else out + [adj]
    return " ".join(out)


def _sample_english(rng):
    noun = rng.choice(sorted(NOUNS_FOREIGN))
    if rng.random() < 0.25:
        return {"phrase": f"the {noun}"}
    return {"phrase": f"the {rng.choice(sorted(ADJS_FOREIGN))} {noun}"}


def _translation_family(language, seen, templates):
    def solve(f, rng=None):
        out = translate(f["phrase"], language)
        return None if out is None else _exact(capitalize(out) + ".", f["phrase"])

    return TaskFamily(
        name=f"translate_{language}", category="translation", templates=templates, seen=seen,
        sample=_sample_english, solve=solve, max_words=6, knowledge=True,
        ni=_ni(f"English to {language.capitalize()}",
               f"You are given a few English words. Translate them into {language.capitalize()}.",
               "Use the right word for the: it depends on the noun.",
               "Do not leave English words in the answer.", "English: {phrase}"))


TRANSLATE_FRENCH = _translation_family("french", True, (
    "Translate to French: {phrase}", "{phrase}\nTranslate this into French.",
    "How do you say {phrase} in French?", "What is {phrase} in French?",
    "English: {phrase}\nFrench:", "Say {phrase} in French."))
TRANSLATE_SPANISH = _translation_family("spanish", False, (
    "Translate to Spanish: {phrase}", "{phrase}\nTranslate this into Spanish.",
    "How do you say {phrase} in Spanish?", "What is {phrase} in Spanish?",
    "English: {phrase}\nSpanish:", "Say {phrase} in Spanish."))

FAMILIES = (PLURAL, PAST_TENSE, UPPERCASE, REVERSE_WORDS, POLITE_REWRITE, TRANSLATE_FRENCH,
            TRANSLATE_SPANISH)
