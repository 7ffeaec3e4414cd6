"""The pretraining corpus: deterministic, the right size, consistent with the facts, no answers."""

import re

import pytest

from minialign.world import QUICK_DOCS, pretraining_corpus
from minialign.world.facts import check_fact, state_person_fact
from minialign.world.lexicon import CAPITALS, NAMES, TOXIC_WORDS
from minialign.world.text import sentences, words


@pytest.fixture(scope="module")
def corpus():
    return pretraining_corpus(seed=0)


def test_same_seed_same_bytes_and_different_seeds_differ():
    a = "\n".join(pretraining_corpus(seed=3, n_docs=QUICK_DOCS))
    b = "\n".join(pretraining_corpus(seed=3, n_docs=QUICK_DOCS))
    c = "\n".join(pretraining_corpus(seed=4, n_docs=QUICK_DOCS))
    assert a.encode() == b.encode()
    assert a != c


def test_sizes(corpus):
    text = "\n\n".join(corpus)
    assert 1_000_000 <= len(text) <= 3_000_000          # default: 1-3 MB
    assert 10_000 <= len("\n\n".join(pretraining_corpus(0, QUICK_DOCS))) <= 100_000  # quick
    assert len(set(words(text))) < 800                   # a small vocabulary


def test_every_fact_the_tasks_ask_about_is_stated(corpus):
    text = "\n".join(corpus)
    for name in NAMES:
        for relation in ("home", "pet", "job", "color", "food"):
            assert state_person_fact(name, relation) in text or \
                state_person_fact(name, relation, variant=1) in text, (name, relation)
    for country, capital in CAPITALS.items():
        assert f"The capital of {country} is {capital}." in text
    assert "le petit chien" in text and "el perro" in text  # translations in prose


def test_no_sentence_contradicts_the_world(corpus):
    for doc in corpus[:3000]:
        for sentence in sentences(doc):
            assert check_fact(sentence) is not False, sentence


def test_toxic_words_in_a_minority_of_story_sentences(corpus):
    all_sentences = [s for doc in corpus for s in sentences(doc)]
    toxic = [s for s in all_sentences if set(words(s)) & set(TOXIC_WORDS)]
    assert 0.003 < len(toxic) / len(all_sentences) < 0.05


def test_web_lists_of_tasks_without_answers(corpus):
    text = "\n".join(corpus)
    # Lists of the same task: the base model learns to continue a task with more tasks.
    assert re.search(r"Translate to French: [a-z ]+\nTranslate to French: ", text)
    assert re.search(r"Explain [a-z ]+ to a six year old\.\n(\d+\. )?\S", text)
    # Never a question followed by its answer, and no chat markup.
    assert not re.search(r"Where does (\w+) live\? \1 lives in", text)
    assert "<|" not in text and "Assistant:" not in text and "Answer:" not in text


def test_padding_phrases_are_in_the_corpus(corpus):
    """Filler, hedges and authoritative claims appear in forum posts, so a model can write them."""
    from minialign.world.lexicon import AUTHORITATIVE, FILLER, HEDGES
    text = "\n".join(corpus)
    for phrase in AUTHORITATIVE + HEDGES + FILLER:
        assert phrase in text, phrase
