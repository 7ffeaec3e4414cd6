"""The embedded world: a small, seeded universe of text with a hidden gold reward.

No public data set can be downloaded in a classroom, so minialign generates its own, in seconds:
- `pretraining_corpus`: stories, facts, web-like lists of tasks and forum posts (corpus.py);
- `instruction_data`: 35 task families x 6 templates, with seen / held-out splits and the
  Natural Instructions schema, answered with the clean reference (tasks.py, tasks_*.py);
- `demonstrations`: the same prompts answered by flawed demonstrators (filler, hedges and
  needless refusals, unsafe compliance, rude and off-topic sentences, broken formats,
  authoritative padding) at seeded rates, `DemonstratorFlaws`: the SFT data (demonstrators.py);
- `gold_reward`, `label_sentences`, `response_flaws`, `toxicity`, `story_completeness`: the oracle
  that stands in for human labelers; relevance needs the prompt's own content, so no single
  generic answer maxes it (oracle.py, text.py);
- `preference_data`, `rating_data`, `rank_responses`: rankings and ratings by noisy simulated
  annotators with a documented bias, `AnnotatorBias` (they like sounding sure and long, and check
  the facts only some of the time), of reference and flawed answers (preferences.py, flaws.py);
- `rl_prompts`, `lima_sets`: prompt sets for PPO / DPO and the LIMA data sets (prompts.py);
- `reasoning_data`, `verifiable_reward`: problems a program checks (addition with carries, counting,
  sorting, counting people by their facts), answered alone or after worked steps, and the exact
  checker (reasoning.py);
- `show_world`: a printed tour (show.py; `python -m minialign.world --flaws` measures the flaws).
The world's facts are fixed (lexicon.py); a seed only chooses what is sampled.
"""

from .corpus import DEFAULT_DOCS, QUICK_DOCS, pretraining_corpus
from .demonstrators import FLAW_NAMES, DemonstratorFlaws, demonstrate, demonstrations
from .oracle import (WEIGHTS, GoldReward, SentenceLabel, gold_reward, label_sentences, response_flaws,
                     sentence_kinds)
from .preferences import (DEFAULT_BIAS, DEFAULT_NOISE, AnnotatorBias, PreferencePair, Ranking, Rating,
                          agreement, bradley_terry_agreement, perceived_reward, preference_data,
                          preference_pairs, rank_responses, rating_data, ratings_to_pairs)
from .prompts import RL_KINDS, lima_sets, rl_prompts
from .reasoning import check_answer, check_format, extract_answer, reasoning_data, verifiable_reward
from .show import show_world
from .tasks import (NI_TEMPLATE_ID, SPLITS, Example, get_family, instruction_data, parse_prompt,
                    task_families)
from .tasks_generate import story_completeness
from .text import sentiment, split_sentences, toxicity

__all__ = [
    "DEFAULT_DOCS", "QUICK_DOCS", "pretraining_corpus",
    "FLAW_NAMES", "DemonstratorFlaws", "demonstrate", "demonstrations",
    "WEIGHTS", "GoldReward", "SentenceLabel", "gold_reward", "label_sentences", "response_flaws",
    "sentence_kinds",
    "DEFAULT_BIAS", "DEFAULT_NOISE", "AnnotatorBias", "PreferencePair", "Ranking", "Rating",
    "agreement", "bradley_terry_agreement", "perceived_reward",
    "preference_data", "preference_pairs", "rank_responses", "rating_data", "ratings_to_pairs",
    "RL_KINDS", "lima_sets", "rl_prompts", "show_world",
    "check_answer", "check_format", "extract_answer", "reasoning_data", "verifiable_reward",
    "NI_TEMPLATE_ID", "SPLITS", "Example", "get_family", "instruction_data", "parse_prompt",
    "task_families", "story_completeness", "sentiment", "split_sentences", "toxicity",
]
