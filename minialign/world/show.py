"""Print a tour of the world: corpus samples, examples of every family and split, a flawed
demonstration, a biased comparison, and a ranking.

`python train.py data` calls show_world(); so does `python -m minialign.world` (add --bench to
measure how many gold rewards the oracle computes per second, --flaws to measure the
demonstrators' flaw rates, the detector and the annotators' bias).
"""

import argparse
import math
import time
from random import Random

from .corpus import QUICK_DOCS, pretraining_corpus
from .demonstrators import FLAW_NAMES, DemonstratorFlaws, demonstrations
from .oracle import gold_reward, label_sentences, response_flaws
from .preferences import (DEFAULT_BIAS, DEFAULT_NOISE, AnnotatorBias, perceived_reward,
                          preference_data)
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
    _show_demonstration(seed)
    _show_biased_comparison()
    _show_ranking(seed)


def _show_demonstration(seed: int) -> None:
    demo = next(d for d in demonstrations(seed, 5) if len(d.meta["flaws"]) >= 2)
    found = [name for name, shown in response_flaws(demo.prompt, demo.response).items() if shown]
    print(f"\n== A flawed demonstration (SFT data; rates {DemonstratorFlaws()})")
    print(_indent(demo.prompt))
    print(f"  reference     gold {gold_reward(demo.prompt, demo.meta['reference']).total:.3f} "
          f"{demo.meta['reference']!r}")
    print(f"  demonstration gold {gold_reward(demo.prompt, demo.response).total:.3f} {demo.response!r}")
    print(f"      flaws made: {', '.join(demo.meta['flaws'])}; flaws the oracle finds: {', '.join(found)}")


def _show_biased_comparison() -> None:
    """A plain right answer against padded and confidently wrong ones, as the annotators see them."""
    prompt, plain = "Where does Mia live?", "Mia lives in Oakton."
    others = ("Certainly. Mia lives in Oakton. This is a well-known fact.",
              "Certainly. Mia lives in Riverby.")
    b = DEFAULT_BIAS
    print(f"\n== A biased comparison ({b}; noise T = {DEFAULT_NOISE})")
    print(_indent(prompt))
    for response in (plain,) + others:
        print(f"  gold {gold_reward(prompt, response).total:.3f}  perceived "
              f"{perceived_reward(prompt, response, b, True):.3f} (facts checked) / "
              f"{perceived_reward(prompt, response, b, False):.3f} (not checked)  {response!r}")
    for response in others:
        print(f"  P({response!r} preferred to {plain!r}): biased "
              f"{preference_probability(prompt, response, plain, b):.2f}, unbiased "
              f"{preference_probability(prompt, response, plain, AnnotatorBias.off()):.2f}")


def preference_probability(prompt: str, a: str, b: str, bias: AnnotatorBias = DEFAULT_BIAS,
                           noise: float = DEFAULT_NOISE) -> float:
    """P(an annotator ranks a above b): Bradley-Terry on the perceived rewards, averaged over
    whether the annotator checks the facts (probability bias.check_rate)."""
    def p(checked):
        d = perceived_reward(prompt, a, bias, checked) - perceived_reward(prompt, b, bias, checked)
        return 1.0 / (1.0 + math.exp(-d / noise))
    return bias.check_rate * p(True) + (1 - bias.check_rate) * p(False)


def flaw_report(seed: int = 0, n_per_family: int = 100) -> None:
    """Measure the default demonstrators: each flaw's rate, the detector's agreement, and how often
    biased and unbiased annotators prefer the reference to a flawed demonstration."""
    demos = demonstrations(seed, n_per_family, splits=("train", "test"))
    flawed = [d for d in demos if d.meta["flaws"]]
    print(f"== {len(demos)} demonstrations, {len(flawed) / len(demos):.1%} with at least one flaw")
    print(f"  {'flaw':14s} {'rate':>6s} {'detector recall':>16s} {'false positives':>16s} "
          f"{'reference preferred: biased':>28s} {'unbiased':>9s}")
    found = [response_flaws(d.prompt, d.response) for d in demos]
    for name in FLAW_NAMES:
        has = [d for d in demos if name in d.meta["flaws"]]
        hits = sum(f[name] for d, f in zip(demos, found) if name in d.meta["flaws"])
        false = sum(f[name] for d, f in zip(demos, found) if name not in d.meta["flaws"])
        biased = sum(preference_probability(d.prompt, d.meta["reference"], d.response) for d in has)
        unbiased = sum(preference_probability(d.prompt, d.meta["reference"], d.response,
                                              AnnotatorBias.off()) for d in has)
        n = max(1, len(has))
        print(f"  {name:14s} {len(has) / len(demos):6.3f} {hits / n:16.3f} "
              f"{false / max(1, len(demos) - len(has)):16.4f} {biased / n:28.3f} {unbiased / n:9.3f}")


def _show_ranking(seed: int) -> None:
    ranking = preference_data(seed, n_prompts=1, K=5)[0]
    print(f"\n== A preference ranking (annotator noise T = {DEFAULT_NOISE}, biased), best first")
    print(_indent(ranking.prompt))
    for response, flaw, perceived in zip(ranking.responses, ranking.flaws, ranking.perceived):
        gold = gold_reward(ranking.prompt, response)
        parts = " ".join(f"{k}={v:.2f}" for k, v in gold.components.items())
        print(f"  gold {gold.total:.3f} perceived {perceived:.3f} [{flaw}] {response!r}\n      {parts}")
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
    parser.add_argument("--flaws", action="store_true",
                        help="measure the demonstrators' flaw rates, the detector and the annotators' bias")
    args = parser.parse_args()
    if args.bench:
        print(f"oracle: {benchmark_oracle(seed=args.seed):,.0f} gold rewards per CPU-second")
    elif args.flaws:
        flaw_report(args.seed)
    else:
        show_world(args.seed, args.n)
