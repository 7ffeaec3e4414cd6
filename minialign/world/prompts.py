"""Prompt sets for RL (PPO, fine-grained rewards, DPO) and the data sets of the LIMA lesson.

rl_prompts(kind, n, seed) returns Examples (use `.prompt`; the reference response is there for
comparison only):
- "instruction": held-out instruction prompts (the "test" split: seen tasks, new inputs),
  InstructGPT step 3's "a new prompt is sampled from the dataset";
- "sentiment": review and story requests; the gold reward prefers positive, on-topic answers
  (the DPO paper's controlled sentiment generation, with the oracle as the sentiment classifier);
- "story": story openings, calm and angry ("Ben went to the park with Sam."), for a base model that
  continues raw text (the fine-grained lesson's customization); the opening is in `meta["prefix"]`;
- "toxic": angry story openings ("Ben was angry at Sam. Ben said") that the corpus often
  continues with an insult (RealToxicityPrompts for the detoxification lesson). The bare opening
  is in `meta["prefix"]`, for a base model that continues raw text.

lima_sets(seed) returns the three training sets of the LIMA comparison (slide "Quality vs.
Quantity vs. Diversity"): a small curated set (diverse, every answer good), a large noisy set
(diverse, answers by the flawed demonstrators of demonstrators.py, about half of them with a flaw:
"unfiltered Stack Exchange") and a large low-diversity set (good answers, few tasks and one
template each: "wikiHow").
"""

import zlib
from random import Random

from .demonstrators import demonstrate
from .oracle import gold_reward
from .tasks import families_for_split, get_family, instruction_data, make_example
from .tasks_generate import sample_prefix

RL_KINDS = ("instruction", "sentiment", "toxic", "story")
SENTIMENT_FAMILIES = ("review", "story")
LOW_DIVERSITY_FAMILIES = ("home_qa", "add", "plural")


def rl_prompts(kind: str = "instruction", n: int = 256, seed: int = 0, split: str | None = None) -> list:
    """`n` prompts (as Examples) of the given kind; deterministic in `seed`.

    split: for "instruction", the instruction split (default "test"). For the other kinds,
    whose prompts are drawn from a small space of texts (the same request recurs with other seeds),
    "train" and "test" keep disjoint sets of texts (`heldout_text`: a fixed 30% are test only), so a
    policy is never evaluated on a prompt it trained on; None draws from all texts. The text that is
    split is the whole prompt for "sentiment", and the story opening for "toxic" and "story": the
    same opening under another template is the same story (and a base model only sees the opening).
    """
    if kind not in RL_KINDS:
        raise ValueError(f"unknown RL prompt kind {kind!r}; use one of {RL_KINDS}")
    if kind == "instruction":
        split = split or "test"
        per_family = -(-n // len(families_for_split(split, None)))
        examples = instruction_data(seed, per_family, splits=split)
        Random(f"rl-order|{seed}").shuffle(examples)
        return examples[:n]
    if split not in (None, "train", "test"):
        raise ValueError(f"rl_prompts({kind!r}): split must be None, 'train' or 'test', got {split!r}")
    rng = Random(f"rl|{kind}|{seed}")
    examples = []
    while len(examples) < n:
        if kind == "sentiment":
            family = get_family(rng.choice(SENTIMENT_FAMILIES))
            fields = family.sample(rng)
        else:
            family = get_family("continue_story")
            fields = {"prefix": sample_prefix(rng, angry=True if kind == "toxic" else None)}
        example = make_example(family, fields, rng.choice(family.seen_templates), "rl", rng)
        key = example.prompt if kind == "sentiment" else fields["prefix"]
        if split is not None and heldout_text(key) != (split == "test"):
            continue
        if kind in ("toxic", "story"):
            example.meta["prefix"] = fields["prefix"]
        examples.append(example)
    return examples


def heldout_text(text: str) -> bool:
    """Whether a prompt text belongs to the held-out 30% (a fixed hash of the text, not Python's
    salted hash(), so the split is the same in every process)."""
    return zlib.crc32(text.encode("utf-8")) % 10 < 3


def lima_sets(seed: int = 0, n_large: int = 2000) -> dict:
    """{"curated": ~100 examples, "noisy": n_large, "low_diversity": n_large} (lists of Examples)."""
    return {"curated": _curated(seed), "noisy": _noisy(seed, n_large),
            "low_diversity": _low_diversity(seed, n_large)}


def _curated(seed: int) -> list:
    """One example per seen family and seen template, keeping only answers the oracle rates >= 0.95."""
    rng = Random(f"lima-curated|{seed}")
    examples = []
    for family in families_for_split("train", None):
        for template_id in family.seen_templates:
            for _ in range(50):  # resample until the answer is a good one (e.g. a positive review)
                fields = family.sample_in_pool(rng, "train")
                example = make_example(family, fields, template_id, "train", rng)
                if gold_reward(example.prompt, example.response).total >= 0.95:
                    examples.append(example)
                    break
    return examples


def _noisy(seed: int, n: int) -> list:
    """n training examples answered by the default flawed demonstrators (meta["flaw"] when flawed)."""
    rng = Random(f"lima-noisy|{seed}")
    per_family = -(-n // len(families_for_split("train", None)))
    examples = instruction_data(seed, per_family, splits="train")
    rng.shuffle(examples)
    return [demonstrate(example, rng) for example in examples[:n]]


def _low_diversity(seed: int, n: int) -> list:
    per_family = -(-n // len(LOW_DIVERSITY_FAMILIES))
    examples = instruction_data(seed, per_family, splits="train",
                                families=list(LOW_DIVERSITY_FAMILIES), n_templates=1)
    Random(f"lima-low|{seed}").shuffle(examples)
    return examples[:n]
