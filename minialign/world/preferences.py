"""Preference data: K responses per prompt ranked by noisy simulated annotators (InstructGPT step 2).

Pairwise comparisons (Bradley-Terry). An annotator perceives each response's gold reward g plus
noise and ranks by it. With Gumbel noise, ranking by g/T + Gumbel is the Plackett-Luce model,
and for *every pair* inside a ranking
    P(a ranked above b) = sigmoid((g_a - g_b) / T)                              (Bradley-Terry)
(the difference of two Gumbels is logistic). T = `noise` is the temperature: 0 means a perfect
annotator, large T a coin flip. The default T = 0.15 (gold rewards lie in [0, 1]) makes an
annotator agree with the gold on ~81% of pairs and two annotators agree with each other on ~73%,
the inter-labeler agreement InstructGPT reports.

Absolute ratings (slide "Human judgments are noisy and miscalibrated"). Each annotator a has
their own shift s_a and scale c_a; a response rated by annotator a gets
    rating = clip(round(1 + (levels - 1) * (c_a * (g - 0.5) + 0.5 + s_a + eps)), 1, levels)
with eps ~ N(0, noise); by default noise is the standard deviation of the pairwise annotators'
Gumbel noise (T * pi / sqrt(6)), so both kinds of annotator perceive the gold equally well and
only miscalibration and rounding set them apart. Different responses to the same prompt are rated by different
annotators, so comparing their ratings mixes up calibrations: pairs derived from ratings agree
with the gold less often than direct comparisons do. That is why InstructGPT asks for rankings.
"""

import math
from dataclasses import dataclass
from itertools import combinations
from random import Random

from .flaws import applicable_flaws, flawed_response
from .oracle import gold_reward
from .tasks import families_for_split, instruction_data

DEFAULT_NOISE = 0.15


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
                   family: str = "", flaws: list = None) -> Ranking:
    """A simulated annotator ranks `responses` (Plackett-Luce on gold / noise; noise 0: exact)."""
    gold = [gold_reward(prompt, r).total for r in responses]
    keys = [g if noise == 0 else g / noise + _gumbel(rng) for g in gold]
    order = sorted(range(len(responses)), key=lambda i: -keys[i])
    return Ranking(prompt, [responses[i] for i in order], [gold[i] for i in order], family,
                   [flaws[i] for i in order] if flaws else None)


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
                    split: str = "train", families=None) -> list:
    """Rankings of K candidate responses for `n_prompts` instruction prompts of `split`."""
    rng = Random(f"preferences|{seed}|{split}")
    prompts = _prompts(seed, n_prompts, split, families)
    rankings = []
    for example in prompts:
        responses, labels = candidates(example, K, rng)
        rankings.append(rank_responses(example.prompt, responses, rng, noise, example.family, labels))
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
                levels: int = 7, split: str = "train", families=None) -> list:
    """Absolute 1..levels ratings of K candidates per prompt by miscalibrated annotators.

    shift_sd, scale_sd: spread of the annotators' shifts and (log) scales; noise: sd of each
    judgment (default: the pairwise annotators' Gumbel sd at DEFAULT_NOISE).
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
            latent = scale[a] * (g - 0.5) + 0.5 + shift[a] + rng.gauss(0.0, noise)
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
