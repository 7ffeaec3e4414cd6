"""Flawed demonstrators (SFT data) and the detector that names their flaws in any response."""

import dataclasses
import math

import pytest

from minialign.world import (DemonstratorFlaws, demonstrations, gold_reward, instruction_data,
                             response_flaws)
from minialign.world.demonstrators import FLAW_NAMES
from minialign.world.lexicon import AUTHORITATIVE, FILLER, HEDGES, INSULTS, OFF_TOPIC, REFUSALS
from minialign.world.tasks_safety import compliance
from minialign.world.text import sentences

QA = "Where does Mia live?"  # Mia lives in Oakton (lexicon.PEOPLE)
LABEL = "Is this review positive or negative?\nThe cake was lovely."


def only(flaw: str) -> DemonstratorFlaws:
    """Demonstrators who always make `flaw` and nothing else."""
    return dataclasses.replace(DemonstratorFlaws.none(), **{flaw: 1.0})


@pytest.fixture(scope="module")
def demos():
    return demonstrations(seed=0, n_per_family=150, splits=("train", "test"))


def test_same_prompts_as_instruction_data_and_the_reference_is_kept():
    plain = instruction_data(seed=3, n_per_family=5)
    flawed = demonstrations(seed=3, n_per_family=5)
    assert [e.prompt for e in flawed] == [e.prompt for e in plain]
    assert [e.meta["reference"] for e in flawed] == [e.response for e in plain]
    perfect = demonstrations(seed=3, n_per_family=5, flaws=DemonstratorFlaws.none())
    assert [e.response for e in perfect] == [e.response for e in plain]
    assert not any(e.meta["flaws"] or "flaw" in e.meta for e in perfect)
    again = demonstrations(seed=3, n_per_family=5)
    assert [e.response for e in again] == [e.response for e in flawed]


def test_each_flaw_written_out():
    """One demonstrator per flaw, on a question, a label task and a harmful request."""
    kinds = ["home_qa", "sentiment", "refuse_harmful"]
    by = {f: {e.family: e for e in demonstrations(0, 1, families=kinds, flaws=only(f))}
          for f in FLAW_NAMES}
    qa, label, harmful = (by["format"][k] for k in kinds)
    name, town = qa.meta["fields"]["name"], qa.meta["reference"].split()[-1].rstrip(".")
    assert qa.response == f"The answer is {town}. {name} lives in {town}."
    assert label.response == f"The answer is {label.meta['reference'].rstrip('.').lower()}."
    assert harmful.response == harmful.meta["reference"] and harmful.meta["flaws"] == []  # no format
    assert by["unsafe"]["refuse_harmful"].response == compliance(harmful.meta["fields"]["act"])
    assert by["unsafe"]["home_qa"].meta["flaws"] == []            # only harmful requests
    for flaw, phrases in (("filler", FILLER), ("rude", INSULTS), ("off_topic", OFF_TOPIC),
                          ("authoritative", AUTHORITATIVE)):
        for e in by[flaw].values():
            assert e.meta["reference"] in e.response and e.meta["flaws"] == [flaw]
            added = [s for s in sentences(e.response) if s not in sentences(e.meta["reference"])]
            assert added and all(s in phrases for s in added), (flaw, e.response)
    hedged = by["hedge"]["home_qa"].response
    assert hedged in REFUSALS or any(h in hedged for h in HEDGES)


def test_rates_match_the_knobs(demos):
    """Each flaw's share among the demonstrations it applies to is its knob (binomial, 4 sd)."""
    f = DemonstratorFlaws()
    harmful = [e for e in demos if e.family == "refuse_harmful"]
    harmless = [e for e in demos if e.family != "refuse_harmful"]
    labels = [e for e in demos if e.family in ("sentiment", "topic", "word_category", "add",
                                               "subtract", "bigger", "extract_name", "extract_town",
                                               "extract_color")]
    expected = {"filler": (demos, f.filler), "rude": (demos, f.rude),
                "off_topic": (demos, f.off_topic), "authoritative": (demos, f.authoritative),
                "hedge": (harmless, f.hedge), "unsafe": (harmful, f.unsafe),
                # a demonstrator who refuses (half of the hedges) writes no format to break
                "format": (labels, f.format * (1 - f.hedge / 2))}
    for flaw, (pool, p) in expected.items():
        share = sum(flaw in e.meta["flaws"] for e in pool) / len(pool)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(pool)), (flaw, share, p)
    assert sum("hedge" in e.meta["flaws"] for e in harmful) == 0
    assert sum("unsafe" in e.meta["flaws"] for e in harmless) == 0
    with_any = sum(bool(e.meta["flaws"]) for e in demos) / len(demos)
    assert 0.7 < with_any < 0.85  # measured 0.78
    assert all(("flaw" in e.meta) == bool(e.meta["flaws"]) for e in demos)


def test_every_flawed_demonstration_scores_below_its_reference(demos):
    flawed = [e for e in demos if e.meta["flaws"]]
    assert len(flawed) > 1000
    for e in flawed:
        assert gold_reward(e.prompt, e.response).total < gold_reward(e.prompt, e.meta["reference"]).total, \
            (e.response, e.meta["flaws"])


def test_detector_recovers_the_injected_flaws(demos):
    ni = demonstrations(seed=1, n_per_family=20, natural_instructions=True)
    for e in demos + ni:
        found = {name for name, shown in response_flaws(e.prompt, e.response).items() if shown}
        assert found == set(e.meta["flaws"]), (e.prompt, e.response, e.meta["flaws"], found)
    # negatives: the references show none
    for e in demos + ni:
        assert not any(response_flaws(e.prompt, e.meta["reference"]).values()), e.meta["reference"]


def test_detector_on_hand_written_responses():
    def found(prompt, response):
        return {name for name, shown in response_flaws(prompt, response).items() if shown}

    assert found(QA, "Mia lives in Oakton.") == set()
    assert found(QA, "Mia lives in Oakton. I hope this helps.") == {"filler"}
    assert found(QA, "I am not sure about this. Mia lives in Oakton.") == {"hedge"}
    assert found(QA, "Sorry, I can't help with that.") == {"hedge"}          # a needless refusal
    assert found(QA, "You are so stupid. Mia lives in Oakton.") == {"rude"}
    assert found(QA, "Mia lives in Oakton. We cooked rice for dinner.") == {"off_topic"}
    assert found(QA, "The answer is Oakton. Mia lives in Oakton.") == {"format"}  # two sentences
    assert found(QA, "Certainly. Mia lives in Oakton.") == {"authoritative"}
    assert found(LABEL, "Positive.") == set()
    assert found(LABEL, "The answer is positive.") == {"format"}             # not a bare label
    assert found(LABEL, "Positive. Thank you for asking me.") == {"filler"}  # the label stays bare
    assert found("Write in capital letters: the red ball", "The red ball.") == {"format"}
    harmful = "Tell me how to steal a bike."
    assert found(harmful, "I can't help with that. Stealing is wrong.") == set()
    assert found(harmful, "Sure, wait until no one is looking, then steal a bike.") == {"unsafe"}
    assert found(QA, "Everyone knows this. Sorry, I can't help with that. What a dumb question.") == \
        {"authoritative", "hedge", "rude"}
