"""Preference data: K responses per prompt ranked by noisy simulated annotators (InstructGPT step 2).

Pairwise comparisons (Bradley-Terry). An annotator perceives each response's gold reward g plus
noise and ranks by it. With Gumbel noise, ranking by g/T + Gumbel is the Plackett-Luce model,
and for *every pair* inside a ranking
    P(a ranked above b) = sigmoid((g_a - g_b) / T)                              (Bradley-Terry)
(the difference of two Gumbels is logistic). T = `noise` is the temperature: 0 means a perfect
annotator, large T a coin flip. The default T = 0.15 (gold rewards lie in [0, 1]) makes an
annotator agree with the gold on ~81% of pairs and two annotators agree with each other on ~73%,
the inter-labeler agreement InstructGPT reports.

Bias (slide "Limitations of RL + reward modeling": chatbots are rewarded to produce responses
that *seem* authoritative and helpful, regardless of truth). By default an annotator does not rank
the gold g but what they perceive, p (`perceived_reward`, knobs in `AnnotatorBias`): the gold's
own rubric plus two criteria it should not have,
    p = (sum_k w_k c_k + confidence * sure + length * long) / (sum_k w_k + confidence + length)
where c_k are the gold components (oracle.WEIGHTS) of the response read without its
authoritative sentences (the annotator reads past them), with "correct" taken at face value when
the annotator does not check the facts (probability 1 - check_rate per ranking: any answer to a
verifiable question looks right); sure = clip(1/2 + (claims - hedges) / (2 max_claims), 0, 1)
counts authoritative sentences ("This is a well-known fact.", at most max_claims) against hedges;
long = min(1, words / (2 * the task's length budget)). p stays in [0, 1], like g. The gold
penalizes those sentences (off topic, over length, unsupported claims count as false), so a reward
model learns to like what the gold dislikes and a policy that over-optimizes it ends below SFT.
The defaults keep the bias modest: between a clean and a flawed demonstration of one prompt the
annotators still mostly prefer the clean one. `AnnotatorBias.off()` perceives the gold itself.

Absolute ratings (slide "Human judgments are noisy and miscalibrated"). Each annotator a has
their own shift s_a and scale c_a; a response rated by annotator a gets
    rating = clip(round(1 + (levels - 1) * (c_a * (p - 0.5) + 0.5 + s_a + eps)), 1, levels)
with p the perceived reward (p = g without bias) and eps ~ N(0, noise); by default noise is the
standard deviation of the pairwise annotators' Gumbel noise (T * pi / sqrt(6)), so both kinds of
annotator perceive equally well and only miscalibration and rounding set them apart. Different
responses to the same prompt are rated by different annotators, so comparing their ratings
mixes up calibrations: pairs derived from ratings agree with the gold less often than direct
comparisons do. That is why InstructGPT asks for rankings.
"""

import math
from dataclasses import dataclass
from itertools import combinations
from random import Random

from .flaws import applicable_flaws, flawed_response
from .oracle import WEIGHTS, gold_reward, length_budget, sentence_kinds, verifiable, weighted_total
from .tasks import families_for_split, instruction_data
from .text import is_refusal, split_sentences, words

DEFAULT_NOISE = 0.15


@dataclass(frozen=True)
class AnnotatorBias:
    """How the simulated annotators misjudge, beyond noise: they reward what *seems* authoritative
    and helpful, regardless of truth (see the module docstring for the formula)."""

    check_rate: float = 0.5
    """Share of rankings in which the annotator verifies the facts; in the others any answer to a
    verifiable question (a span, a number, a rewrite) looks right. Slide "Good oversight is
    difficult: evaluators are paid per example and may make mistakes given time constraints".
    Range: 0 <= check_rate <= 1."""
    confidence: float = 0.2
    """Weight of "sounds sure" in the annotator's rubric (the gold's weights sum to 1): authoritative
    sentences ("This is a well-known fact.") raise it, hedges ("I am not sure about this.") lower it.
    The annotator reads past authoritative sentences, so they cost nothing in relevance, format or
    length. Range: confidence >= 0."""
    max_claims: int = 2
    """Authoritative sentences that still impress; more add nothing. Range: max_claims >= 1."""
    length: float = 0.1
    """Weight of "long" in the annotator's rubric, full at twice the task's length budget: longer
    looks more helpful. Range: length >= 0."""

    @classmethod
    def off(cls) -> "AnnotatorBias":
        """Unbiased annotators: they perceive the gold reward itself (noise aside)."""
        return cls(check_rate=1.0, confidence=0.0, length=0.0)

    @property
    def is_off(self) -> bool:
        return self.check_rate >= 1.0 and self.confidence == 0.0 and self.length == 0.0


DEFAULT_BIAS = AnnotatorBias()


def perceived_reward(prompt: str, response: str, bias: AnnotatorBias = DEFAULT_BIAS,
                     checked: bool = True) -> float:
    """What a biased annotator perceives of `response`, in [0, 1] (the gold reward if bias is off).

    checked: whether this annotator verifies the facts this time (`rank_responses` draws it with
    probability bias.check_rate per ranking).
    """
    if bias.is_off:
        return gold_reward(prompt, response).total
    kinds = sentence_kinds(prompt, response)
    read = " ".join(response[s:e] for (s, e), kind in zip(split_sentences(response), kinds)
                    if kind != "authoritative")
    components = dict(gold_reward(prompt, read or response).components)
    if not checked and "correct" in components and verifiable(prompt):
        components["correct"] = float(bool(words(read)) and not is_refusal(read))
    claims = min(kinds.count("authoritative"), bias.max_claims) - kinds.count("hedge")
    sure = min(1.0, max(0.0, 0.5 + claims / (2 * bias.max_claims)))
    long = min(1.0, len(words(response)) / (2 * length_budget(prompt)))
    gold_weight = sum(WEIGHTS[k] for k in components)
    return ((weighted_total(components) * gold_weight + bias.confidence * sure + bias.length * long)
            / (gold_weight + bias.confidence + bias.length))


def _checks(rng: Random, bias: AnnotatorBias) -> bool:
    """Does this annotator check the facts this time? (No random draw when they always do.)"""
    return bias.check_rate >= 1.0 or rng.random() < bias.check_rate


@dataclass
class PreferencePair:
    """One comparison: `chosen` (y_w) was preferred over `rejected` (y_l) for `prompt` (x)."""

    prompt: str
    chosen: str
    rejected: str
    gold_chosen: float = None    # gold rewards, when the oracle knows them
    gold_rejected: float = None
    family: str = ""


@dataclass
class Ranking:
    """K responses to one prompt, best first as the annotator ranked them."""

    prompt: str
    responses: list          # best first (the annotator's order)
    gold: list = None        # gold reward of each response, same order (None for loaded files)
    family: str = ""
    flaws: list = None       # "reference" or the flaw of each response, same order
    perceived: list = None   # what the annotator perceived of each response (perceived_reward)

    def pairs(self) -> list:
        """All K-choose-2 pairs (y_w before y_l in the ranking), as InstructGPT trains on them."""
        gold = self.gold or [None] * len(self.responses)
        return [PreferencePair(self.prompt, self.responses[i], self.responses[j], gold[i], gold[j],
                               self.family)
                for i, j in combinations(range(len(self.responses)), 2)]


@dataclass
class Rating:
    """An absolute rating (1..levels) of one response by one (miscalibrated) annotator."""

    prompt: str
    response: str
    rating: int
    annotator: int
    gold: float
    family: str = ""


def _gumbel(rng: Random) -> float:
    return -math.log(-math.log(rng.random() or 1e-300))


def rank_responses(prompt: str, responses: list, rng: Random, noise: float = DEFAULT_NOISE,
                   family: str = "", flaws: list = None, bias: AnnotatorBias = DEFAULT_BIAS) -> Ranking:
    """A simulated annotator ranks `responses`: Plackett-Luce on perceived / noise (noise 0: the
    exact order of the perceived rewards; with bias off, of the gold rewards)."""
    gold = [gold_reward(prompt, r).total for r in responses]
    checked = _checks(rng, bias)
    perceived = gold if bias.is_off else [perceived_reward(prompt, r, bias, checked) for r in responses]
    keys = [p if noise == 0 else p / noise + _gumbel(rng) for p in perceived]
    order = sorted(range(len(responses)), key=lambda i: -keys[i])
    return Ranking(prompt, [responses[i] for i in order], [gold[i] for i in order], family,
                   [flaws[i] for i in order] if flaws else None, [perceived[i] for i in order])


def candidates(example, k: int, rng: Random) -> tuple:
    """Up to k responses with distinct gold rewards: the reference and flawed versions of it.

    Distinct golds keep "the preferred response has the higher gold" well defined (no ties).
    """
    responses, labels, golds = [example.response], ["reference"], {round(gold_reward(
        example.prompt, example.response).total, 9)}
    flaws = list(applicable_flaws(example))
    rng.shuffle(flaws)
    for flaw in flaws:
        if len(responses) == k:
            break
        text = flawed_response(example, flaw, rng)
        g = round(gold_reward(example.prompt, text).total, 9)
        if text not in responses and g not in golds:
            responses.append(text)
            labels.append(flaw)
            golds.add(g)
    return responses, labels


def preference_data(seed: int = 0, n_prompts: int = 1000, K: int = 4, noise: float = DEFAULT_NOISE,
                    split: str = "train", families=None, bias: AnnotatorBias = DEFAULT_BIAS) -> list:
    """Rankings of K candidate responses for `n_prompts` instruction prompts of `split`, by
    annotators with Bradley-Terry noise `noise` and bias `bias`."""
    rng = Random(f"preferences|{seed}|{split}")
    prompts = _prompts(seed, n_prompts, split, families)
    rankings = []
    for example in prompts:
        responses, labels = candidates(example, K, rng)
        rankings.append(rank_responses(example.prompt, responses, rng, noise, example.family, labels,
                                       bias))
    return rankings


def preference_pairs(rankings) -> list:
    """The flat (prompt, chosen, rejected) view of a list of rankings."""
    return [pair for ranking in rankings for pair in ranking.pairs()]


def _prompts(seed, n_prompts, split, families) -> list:
    """`n_prompts` examples spread evenly over the split's families, in a seeded random order."""
    n_families = len(families_for_split(split, families))
    per_family = -(-n_prompts // max(1, n_families))
    examples = instruction_data(seed, per_family, splits=split, families=families)
    Random(f"prompt-order|{seed}|{split}").shuffle(examples)
    return examples[:n_prompts]


def rating_data(seed: int = 0, n_prompts: int = 1000, K: int = 4, n_annotators: int = 8,
                noise: float = None, shift_sd: float = 0.15, scale_sd: float = 0.4,
                levels: int = 7, split: str = "train", families=None,
                bias: AnnotatorBias = DEFAULT_BIAS) -> list:
    """Absolute 1..levels ratings of K candidates per prompt by miscalibrated annotators.

    shift_sd, scale_sd: spread of the annotators' shifts and (log) scales; noise: sd of each
    judgment (default: the pairwise annotators' Gumbel sd at DEFAULT_NOISE); bias: what each
    annotator perceives (each rating checks the facts with probability bias.check_rate).
    """
    noise = DEFAULT_NOISE * math.pi / math.sqrt(6) if noise is None else noise
    rng = Random(f"ratings|{seed}|{split}")
    shift = [rng.gauss(0.0, shift_sd) for _ in range(n_annotators)]
    scale = [math.exp(rng.gauss(0.0, scale_sd)) for _ in range(n_annotators)]
    ratings = []
    for example in _prompts(seed, n_prompts, split, families):
        responses, _ = candidates(example, K, rng)
        for response in responses:
            g = gold_reward(example.prompt, response).total
            a = rng.randrange(n_annotators)
            p = g if bias.is_off else perceived_reward(example.prompt, response, bias, _checks(rng, bias))
            latent = scale[a] * (p - 0.5) + 0.5 + shift[a] + rng.gauss(0.0, noise)
            rating = min(levels, max(1, round(1 + (levels - 1) * latent)))
            ratings.append(Rating(example.prompt, response, rating, a, g, example.family))
    return ratings


def ratings_to_pairs(ratings) -> list:
    """Preference pairs implied by ratings of the same prompt (higher rating wins; ties dropped)."""
    by_prompt = {}
    for r in ratings:
        by_prompt.setdefault(r.prompt, []).append(r)
    pairs = []
    for prompt, group in by_prompt.items():
        for a, b in combinations(group, 2):
            if a.rating != b.rating:
                win, lose = (a, b) if a.rating > b.rating else (b, a)
                pairs.append(PreferencePair(prompt, win.response, lose.response, win.gold, lose.gold,
                                            win.family))
    return pairs


def agreement(pairs) -> float:
    """Fraction of pairs whose chosen response has the higher gold reward."""
    return sum(p.gold_chosen > p.gold_rejected for p in pairs) / max(1, len(pairs))


def bradley_terry_agreement(pairs, noise: float) -> float:
    """What Bradley-Terry predicts for `agreement`: mean of sigmoid(|g_a - g_b| / T)."""
    return sum(1.0 / (1.0 + math.exp(-abs(p.gold_chosen - p.gold_rejected) / noise))
               for p in pairs) / max(1, len(pairs))
