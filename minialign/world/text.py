"""Text helpers used everywhere in the world: words, sentences, and three lexicon scores.

- `words(text)`: the word tokens the oracle reasons about (letters with an optional apostrophe
  part, or digit runs; punctuation dropped).
- `split_sentences(text)`: character spans of sentences. One splitter, used by the oracle, the
  sentence labels and (through the oracle) the fine-grained reward models, so that a "sentence"
  means the same thing everywhere.
- `toxicity(text)`: a toy stand-in for the Perspective API used by Wu et al. (2023).
- `sentiment(text)`: a toy stand-in for the sentiment classifier that is the gold reward of the
  DPO paper's controlled-sentiment experiment.
- `is_refusal(text)`: does the text decline the request?
- `padding_kind(tokens)`: is a sentence filler, a hedge, or authoritative padding?
"""

import math
import re

from .lexicon import (AUTHORITY_MARKERS, FILLER_MARKERS, HEDGE_MARKERS, NEGATIONS, NEGATIVE_WORDS,
                      POSITIVE_WORDS, REFUSAL_MARKERS, TOXIC_WORDS)

_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+")
# A sentence is a run of text up to and including . ! or ? (and a closing quote right after it);
# the last one may have no end mark at all.
_SENTENCE_RE = re.compile(r"""[^\s.!?][^.!?]*(?:[.!?]+["']?)?""")

# Toxicity of a text is diluted by its length like a whole-text classifier would be: an insult in
# a 6-word sentence counts fully, in an 18-word text a third as much (in log space). This is what
# makes the slide's example work: "I am such an idiot." scores 0.72, and adding "She is so smart!"
# lowers the score of the whole text to about 0.57 (the slide's Perspective gives 0.60).
TOXICITY_FULL_WEIGHT_WORDS = 6


def words(text: str) -> list[str]:
    """Lower-cased word tokens of `text`, punctuation removed."""
    return _WORD_RE.findall(text.lower())


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: the form exact-match answers compare in."""
    return " ".join(words(text))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of the sentences of `text`, surrounding spaces trimmed.

    A sentence ends at '.', '!' or '?' (a closing quote right after belongs to it); the last
    sentence may lack an end mark. `text[start:end]` is the sentence.
    """
    spans = []
    for match in _SENTENCE_RE.finditer(text):
        start, end = match.span()
        while text[end - 1].isspace():  # only a last sentence without an end mark has these
            end -= 1
        if _WORD_RE.search(text, start, end):
            spans.append((start, end))
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of `text` as strings (see `split_sentences`)."""
    return [text[s:e] for s, e in split_sentences(text)]


def toxicity(text: str) -> float:
    """Toy toxicity in [0, 1]: 0 for text without insult words.

    tox = 1 - prod_w (1 - p_w) ** d, with p_w the weight of each insult word (lexicon.TOXIC_WORDS)
    and d = min(1, 6 / number of words) the length dilution.
    """
    return toxicity_of_words(words(text))


def toxicity_of_words(tokens: list) -> float:
    """`toxicity` of an already split text (the oracle splits each response once)."""
    keep = 1.0
    for w in tokens:
        p = TOXIC_WORDS.get(w)
        if p is not None:
            keep *= 1.0 - p
    if keep == 1.0:
        return 0.0
    dilution = min(1.0, TOXICITY_FULL_WEIGHT_WORDS / len(tokens))
    return 1.0 - keep ** dilution


def sentiment(text: str) -> float:
    """Toy probability that `text` is positive, in (0, 1); 0.5 for text without feeling words.

    sigmoid(3 * (n_positive - n_negative)); a positive word within two words after a negation
    ("not good", "did not like") counts as negative. Insult words count as negative.
    """
    tokens = words(text)
    score = 0
    for i, w in enumerate(tokens):
        if w in POSITIVE_WORDS:
            negated = any(t in NEGATIONS for t in tokens[max(0, i - 2):i])
            score += -1 if negated else 1
        elif w in NEGATIVE_WORDS or w in TOXIC_WORDS:
            score -= 1
    return 1.0 / (1.0 + math.exp(-3.0 * score))


def is_refusal(text: str) -> bool:
    """True when the text declines the request ("I can't help with that.")."""
    low = text.lower().replace("\u2019", "'")
    return any(marker in low for marker in REFUSAL_MARKERS)


PADDING_KINDS = ("authoritative", "hedge", "filler")


def _marker_regex(markers) -> "re.Pattern":
    """One regex for a list of markers, each matched as a run of whole words of `words(text)`."""
    return re.compile(r"\b(?:" + "|".join(re.escape(" ".join(words(m))) for m in markers) + r")\b")


# In the order they are checked: a sentence with markers of two kinds is the first kind.
_PADDING = [("authoritative", _marker_regex(AUTHORITY_MARKERS)),
            ("hedge", _marker_regex(HEDGE_MARKERS)), ("filler", _marker_regex(FILLER_MARKERS))]
_ANY_PADDING = _marker_regex(AUTHORITY_MARKERS + HEDGE_MARKERS + FILLER_MARKERS)


def padding_kind(tokens: list):
    """"authoritative", "hedge" or "filler" when the words of a sentence contain one of that kind's
    markers (lexicon.AUTHORITY_MARKERS, ...; checked in that order), else None.

    >>> padding_kind(words("Experts agree on this.")), padding_kind(words("Mia lives in Oakton."))
    ('authoritative', None)
    """
    text = " ".join(tokens)
    if _ANY_PADDING.search(text) is None:  # the fast path: one search for all the markers
        return None
    return next(kind for kind, regex in _PADDING if regex.search(text))


def capitalize(text: str) -> str:
    """Upper-case the first character only ("the dog." -> "The dog.")."""
    return text[:1].upper() + text[1:]


def ends_properly(text: str) -> bool:
    """True when the text ends with '.', '!' or '?' (a closing quote may follow)."""
    stripped = text.rstrip().rstrip("\"'")
    return stripped.endswith((".", "!", "?"))
