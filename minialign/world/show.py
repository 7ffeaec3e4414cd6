"""Print a tour of the world: corpus samples, examples of every family and split, a ranking.

`python train.py data` calls show_world(); so does `python -m minialign.world` (add --bench to
measure how many gold rewards the oracle computes per second).
"""

import argparse
import time
from random import Random

from .corpus import QUICK_DOCS, pretraining_corpus
from .oracle import gold_reward, label_sentences
from .preferences import DEFAULT_NOISE, preference_data
from .tasks import SPLITS, instruction_data, parse_prompt, task_families


def _indent(text: str, pad: str = "      ") -> str:
    return pad + text.replace("\n", "\n" + pad)


def show_world(seed: int = 0, n: int = 2) -> None:
    """Print n examples of every family in each of its splits, corpus samples, and a ranking."""
    families = task_families()
    seen = [f for f in families if f.seen]
    print(f"== The world: {len(families)} task families ({len(seen)} seen, "
          f"{len(families) - len(seen)} held out), splits {', '.join(SPLITS)}")
    print("\n== Pretraining corpus (3 documents)")
    for doc in pretraining_corpus(seed, QUICK_DOCS)[:3]:
        print(_indent(doc))
    examples = instruction_data(seed, n, splits=SPLITS)
    for family in families:
        print(f"\n== {family.name} ({family.category}, {'seen' if family.seen else 'HELD OUT'}, "
              f"{len(family.templates)} templates, held-out templates {list(family.heldout_templates)})")
        for ex in (e for e in examples if e.family == family.name):
            print(f"  [{ex.split}, template {ex.template_id}]")
            print(_indent(ex.prompt))
            print(_indent("-> " + ex.response + (f"   (answers: {ex.answers})" if ex.answers else "")))
    _show_ranking(seed)


def _show_ranking(seed: int) -> None:
    ranking = preference_data(seed, n_prompts=1, K=5)[0]
    print(f"\n== A preference ranking (annotator noise T = {DEFAULT_NOISE}), best first")
    print(_indent(ranking.prompt))
    for response, flaw in zip(ranking.responses, ranking.flaws):
        gold = gold_reward(ranking.prompt, response)
        parts = " ".join(f"{k}={v:.2f}" for k, v in gold.components.items())
        print(f"  gold {gold.total:.3f} [{flaw}] {response!r}\n      {parts}")
        for label in label_sentences(ranking.prompt, response):
            flags = [k for k in ("toxic", "irrelevant", "wrong") if getattr(label, k)]
            if flags:
                print(f"      sentence {label.text!r}: {', '.join(flags)}")


def benchmark_oracle(n: int = 20000, seed: int = 0) -> float:
    """Gold rewards per CPU-second on a preference-like workload (K=4 responses per prompt).

    CPU time, not wall time, so that a busy shared machine does not understate the speed.
    """
    rankings = preference_data(seed, n_prompts=max(1, n // 4), K=4)
    pairs = [(r.prompt, resp) for r in rankings for resp in r.responses]
    rng = Random(seed)
    rng.shuffle(pairs)
    parse_prompt.cache_clear()  # count the parsing of each prompt too, not only cached lookups
    start = time.process_time()
    for prompt, response in pairs:
        gold_reward(prompt, response)
    return len(pairs) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples shown")
    parser.add_argument("--n", type=int, default=2, help="examples per family and split")
    parser.add_argument("--bench", action="store_true", help="measure oracle scores per second")
    args = parser.parse_args()
    if args.bench:
        print(f"oracle: {benchmark_oracle(seed=args.seed):,.0f} gold rewards per CPU-second")
    else:
        show_world(args.seed, args.n)
