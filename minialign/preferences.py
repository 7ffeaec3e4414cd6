"""Preference data: one type and one recipe, shared by the reward model (reward.py) and DPO (dpo.py).

Slides 000/002 "Step 2": "A prompt and several model outputs are sampled. A labeler ranks the outputs
from best to worst." A ranking of K responses gives C(K, 2) comparisons (y_w preferred to y_l); the reward
model is trained on all of them at once per prompt (InstructGPT, Ouyang et al. 2022, Eq. 1), DPO on each
comparison (Rafailov et al. 2023, Eq. 7). Both read the same `PreferenceGroup`s.

The recipe (`rank_policy_samples`): K samples of a policy (pi_SFT) per prompt, ranked by the world's
annotators (world/preferences.py). Identical samples are one response; two responses the annotators rate
exactly the same (the noiseless oracle's equal gold rewards) are a tie and give no pair; a prompt left with
fewer than two distinct samples gives no group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from random import Random

from .evaluation import Samples, prompt_text, sample_and_score
from .world import DEFAULT_BIAS, AnnotatorBias, rank_responses


@dataclass
class PreferenceGroup:
    """One prompt x with its responses and their labels; the unit a batch is made of.

    responses: the K responses y_1..y_K (the reward model forwards each once).
    pairs:     (w, l) index pairs: the labeler preferred responses[w] to responses[l].
    ratings:   absolute ratings of each response (for the ratings-regression variant), or None.
    gold:      the oracle's gold reward of each response (evaluation only, never trained on), or None.
    perceived: what the world's annotators perceived of each response (world.perceived_reward; the gold
               reward when they are unbiased), or None.
    """

    prompt: str
    responses: list[str]
    pairs: list[tuple[int, int]] = field(default_factory=list)
    ratings: list[float] | None = None
    gold: list[float] | None = None
    perceived: list[float] | None = None

    @classmethod
    def pair(cls, prompt: str, chosen: str, rejected: str) -> PreferenceGroup:
        """A single comparison (x, y_w, y_l)."""
        return cls(prompt, [chosen, rejected], [(0, 1)])

    def comparisons(self) -> list[tuple[str, str]]:
        """(y_w, y_l) texts of every pair, in order."""
        return [(self.responses[w], self.responses[l]) for w, l in self.pairs]


def group_from_ranking(prompt: str, responses: list[str], order: list[int],
                       gold: list[float] | None = None,
                       ties: list[tuple[int, int]] | None = None,
                       perceived: list[float] | None = None) -> PreferenceGroup:
    """A ranking best-to-worst (`order` lists response indices) -> all C(K, 2) pairs (w, l).

    Pairs the labeler marked as tied (`ties`, unordered) are dropped, and so are pairs of identical texts
    (a comparison of a response with itself teaches nothing).
    """
    tied = {frozenset(t) for t in (ties or [])}
    pairs = [(order[i], order[j]) for i in range(len(order)) for j in range(i + 1, len(order))
             if frozenset((order[i], order[j])) not in tied and responses[order[i]] != responses[order[j]]]
    return PreferenceGroup(prompt, list(responses), pairs, gold=gold, perceived=perceived)


def as_groups(items) -> list[PreferenceGroup]:
    """Preference data in any of the project's shapes -> PreferenceGroups.

    Accepted items (PreferenceGroups, dicts or objects such as the world's and loaders' Rankings): prompt +
    chosen + rejected (one pair); or prompt + a ranked list of responses, best first (`responses` or
    `ranked`), with their gold rewards when known (`gold`), which gives all C(K, 2) pairs.
    """
    groups = []
    for k, item in enumerate(items):
        if isinstance(item, PreferenceGroup):
            groups.append(item)
            continue
        get = (lambda n: item.get(n)) if isinstance(item, dict) else (lambda n: getattr(item, n, None))
        prompt = get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            prompt = prompt_text(prompt)
        if prompt is not None and get("chosen") is not None and get("rejected") is not None:
            groups.append(PreferenceGroup.pair(prompt, get("chosen"), get("rejected")))
            continue
        ranked = get("responses") if get("responses") is not None else get("ranked")
        if prompt is None or ranked is None:
            raise ValueError(f"preference item {k}: needs 'prompt' with 'chosen'/'rejected' or a "
                             f"ranked list 'responses' (best first); got {type(item).__name__}")
        ranked = [r if isinstance(r, str) else getattr(r, "text", r) for r in ranked]
        gold, perceived = get("gold"), get("perceived")
        groups.append(group_from_ranking(prompt, ranked, list(range(len(ranked))),
                                         gold=list(gold) if gold is not None else None,
                                         perceived=list(perceived) if perceived is not None else None))
    return groups


def rank_policy_samples(policy, tok, prompts, *, k: int, temperature: float, max_new_tokens: int,
                        noise: float, seed: int = 0,
                        bias: AnnotatorBias = DEFAULT_BIAS) -> tuple[list[PreferenceGroup], Samples]:
    """The slide's data recipe: k samples of `policy` per prompt, ranked by the world's annotators.

    This is also the distribution a reward model must judge during PPO. The annotator is
    `world.rank_responses`: Bradley-Terry noise `noise` on what the annotators perceive (the gold reward, or
    with `bias` what sounds sure and long); at noise 0 without bias it is the oracle itself (the DPO paper
    labels its sentiment pairs with the classifier), and equal gold rewards are ties.
    A sample cut at max_new_tokens is kept as it is (the oracle judged that cut text). Returns the groups
    and the scored samples (`evaluation.Samples`, every sample, duplicates included).
    """
    s = sample_and_score(policy, None, tok, prompts, n_samples=k, max_new_tokens=max_new_tokens,
                         temperature=temperature, seed=seed)
    rng = Random(f"rm-sft-samples|{seed}")       # the stream the reward model first used
    groups = []
    for i, p in enumerate(prompts):
        distinct = list(dict.fromkeys(r for r, j in zip(s.responses, s.prompt_index) if j == i))
        if len(distinct) < 2:
            continue
        ranking = rank_responses(prompt_text(p), distinct, rng, noise, bias=bias)
        ties = [(a, b) for a in range(len(distinct)) for b in range(a + 1, len(distinct))
                if noise == 0 and bias.is_off and abs(ranking.gold[a] - ranking.gold[b]) <= 1e-9]
        group = group_from_ranking(prompt_text(p), ranking.responses, list(range(len(distinct))),
                                   gold=list(ranking.gold), ties=ties, perceived=list(ranking.perceived))
        if group.pairs:
            groups.append(group)
    return groups, s
