"""Lesson 09: fine-grained rewards vs one holistic reward; changing the weights changes the behaviour.

Slides 002 "Fine-grained Human Feedback", "Multiple Reward Functions", "Example: Detoxification" (both) and
"Customizing LLM Behavior". Read `minialign/finegrained.py` beside it. The per-token reward is the slide's

    r_t = sum_k sum_j 1(t = T_j^k) w_k R_phi_k(x, y, j) - beta * log( pi_theta(a_t|s_t) / pi_init(a_t|s_t) )

Part 1, the pipeline's two PPO policies on instruction prompts (slide "Multiple Reward Functions"). The `ppo`
stage optimised one holistic score, r_phi(x, y) on the last token; the `finegrained` stage, with the same PPO
settings, steps and prompts, optimised r_phi plus -w_k on the last token of each sentence that a segment RM
calls toxic, irrelevant or wrong. Both (and the SFT model) answer the same held-out prompts with the same
sampling seeds, and the oracle labels every sentence: flagged sentences per answer, by label, with the paired
difference fine-grained - holistic and its standard error over prompts. The verdict is computed from it.

Part 2, detoxification (the paper's RealToxicityPrompts experiment, toy size). The policy is the pretrained
base model (the paper's GPT-2, no SFT) continuing angry story openings ("Zoe shouted at Ana and called her a")
that the corpus often continues with an insult (world.rl_prompts("toxic")); the world's toxicity score stands
in for the Perspective API. Two PPO runs with the same settings and number of steps:
    holistic      r = 1 - Tox(y) on the last token
    fine-grained  R_j = -(Tox(y_<=j) - Tox(y_<j)) on the last token of each sentence j   (Tox(empty) = 0)
Per response both add up to the same number up to a constant (the deltas telescope to -Tox(y)): only WHERE
the signal lands differs. The table is the slide's: toxicity (average over prompts of the max over k
samples), fluency (perplexity of the samples under the frozen initial model pi_init; the paper uses a larger
frozen LM), diversity (dist-2, dist-3 over each prompt's samples). The curve is toxicity against training
episodes (sample efficiency). The default, 4 iterations x 64 episodes and 3 seeds, stops where the two runs
differ most in toxicity; with --iterations 8 (about twice as long) the holistic policy also learns to say less,
and loses on fluency too, as in the slide's table.

Part 3, customization (slide: "keep factualness/completeness reward weights fixed; alternate the relevance
reward weight 0.4/0.3/0.2; the relevance reward penalizes referencing passages and auxiliary information").
The same base model continues story openings, calm and angry, with three rewards:
    relevance     -w_rel on the last token of each sentence a LEARNED relevance RM calls off topic (R_phi_rel:
                  the base trunk + a head, trained here on the oracle's sentence labels of base continuations)
    toxicity      -dTox per sentence, as in part 2                                          (weight fixed, 1)
    completeness  the share of the opening's people and things the continuation brings back, on the last
                  token (world.story_completeness; the paper's sequence-level "completeness") (weight fixed, 1)
The base model rambles: after a sentence or two about the opening's people it goes on about others (the
lesson prints the share of its sentences the oracle calls off topic). w_rel at three values
(default 0.15 / 0.1 / 0.05; --weights): what happens to the length of the continuations, their off-topic
sentences (by the oracle and by the RM PPO optimised) and their completeness? The slide's values 0.4/0.3/0.2
are relative to a completeness weight of 0.3; here one sentence's -w_rel is weighed against a completeness of 1
for bringing back everyone.
Things to try: --weights 1 0.3 0 (a large w_rel can teach the policy to stop at once, since the empty
answer has no off-topic sentence: watch the "empty" column).

Time: about 2 minutes on a quiet 2-core CPU with the pipeline's stages cached.
Builds first, if missing from <out>: the pretrained model, SFT, the reward model and the `ppo` and
`finegrained` stages (part 1 compares those stages' policies; it does not retrain them).

Run:    python lessons/09_fine_grained.py [--quick] [--iterations N] [--custom-iterations N] [--seeds N]
Writes: <out>/lessons/09_fine_grained/{metrics.json, flagged_sentences.png, detox_table.png,
        sample_efficiency.png, customization.png}
"""

import argparse
import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.config import ConfigError, add_dataclass_args, cli_main, from_args, read_json, write_json  # noqa: E402
from minialign.chat import response_text_ids  # noqa: E402
from minialign.evaluation import (clear_sign, detox_eval, mean_and_se, paired_mean_difference,  # noqa: E402
                                  sample_and_score, sample_continuations)
from minialign.finegrained import (FineGrainedConfig, FineGrainedReward, SegmentRewardModel,  # noqa: E402
                                   ToxicityReward, combine_rewards, evaluate_segment_rm, label_text_response,
                                   train_segment_rm, train_text_ppo)
from minialign.pipeline import (add_run_args, ensure_finegrained, ensure_ppo, ensure_pretrained,  # noqa: E402
                                ensure_sft, make_run)
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402
from minialign.ppo import PPOConfig, ValueModel  # noqa: E402
from minialign.world import label_sentences, rl_prompts, story_completeness, toxicity  # noqa: E402

LESSON = "09_fine_grained"
MODES = ("holistic", "fine-grained")
W_TOXICITY = 1.0          # part 3's fixed weights while w_rel varies
W_COMPLETE = 1.0
BASE = "GPT (base, pi_init)"


@dataclass
class LessonConfig:
    """The lesson's settings (the shared run flags, --quick, --out, --device, --seed ..., come from
    pipeline.add_run_args). Defaults are the full lesson's; --quick uses LESSON_QUICK."""

    # --- part 1: fine-grained vs holistic PPO on instruction prompts ---------------------------------------------
    n_compare: int = 256
    """Held-out prompts (of the PPO stages' prompt kind, test split) answered by both PPO policies (--quick: 8).
    Range: n_compare >= 1."""
    k_compare: int = 4
    """Answers per held-out prompt, one per sampling seed, the same seeds for every policy (--quick: 1).
    Range: k_compare >= 1."""
    # --- part 2: detoxification ---------------------------------------------------------------------------------
    iterations: int = 4
    """PPO iterations of each detoxification run (--quick: 2). Range: iterations >= 1."""
    batch_size: int = 64
    """Episodes per PPO iteration (detoxification; --quick: 8). Range: batch_size >= 1."""
    max_new_tokens: int = 24
    """Continuation length budget (detoxification; --quick: 12). Range: max_new_tokens >= 1."""
    n_train: int = 512
    """Toxic prompts to train on (--quick: 32). Range: n_train >= 1."""
    n_eval: int = 64
    """Held-out toxic prompts of the table (--quick: 6). Range: n_eval >= 1."""
    k: int = 8
    """Samples per held-out prompt (RealToxicityPrompts: 25; --quick: 2). Range: k >= 1."""
    eval_every: int = 1
    """Held-out toxicity every this many iterations (the sample-efficiency curve). Range: eval_every >= 1."""
    seeds: int = 3
    """Seeds per detoxification run; the table averages them (--quick: 1). Range: seeds >= 1."""
    # --- part 3: customization -----------------------------------------------------------------------------------
    custom_iterations: int = 12
    """PPO iterations per relevance weight (--quick: 2). Range: custom_iterations >= 1."""
    custom_batch_size: int = 64
    """Episodes per PPO iteration (customization; --quick: 8). Range: custom_batch_size >= 1."""
    custom_max_new_tokens: int = 32
    """Continuation budget (customization; --quick: 16). Range: custom_max_new_tokens >= 1."""
    custom_lr: float = 5e-5
    """PPO learning rate of the customization runs. Range: custom_lr > 0."""
    n_custom_train: int = 512
    """Story openings to train on (customization; --quick: 32). Range: n_custom_train >= 1."""
    n_custom_eval: int = 64
    """Held-out story openings (customization; --quick: 6). Range: n_custom_eval >= 1."""
    k_custom: int = 4
    """Samples per held-out opening (customization; --quick: 2). Range: k_custom >= 1."""
    n_rm_prompts: int = 512
    """Openings whose continuations train the relevance RM (--quick: 16). Range: n_rm_prompts >= 1."""
    weights: list[float] = field(default_factory=lambda: [0.15, 0.1, 0.05])
    """Relevance weights w_rel, one PPO run each, e.g. --weights 0.15 0.1 0.05 (slide: 0.4 0.3 0.2).
    Range: weights >= 0."""
    skip_custom: bool = False
    """Skip the customization part (part 3)."""

    def check(self) -> None:
        """Rules between values (config.validate runs them after the ranges)."""
        if len(set(self.weights)) < len(self.weights):
            raise ConfigError(f"--weights must be distinct values (each names one run), got {self.weights}")


# --quick: a seconds-long smoke run.
LESSON_QUICK = dict(n_compare=8, k_compare=1, iterations=2, batch_size=8, max_new_tokens=12, n_train=32, n_eval=6,
                    k=2, seeds=1, custom_iterations=2, custom_batch_size=8, custom_max_new_tokens=16, n_custom_train=32,
                    n_custom_eval=6, k_custom=2, n_rm_prompts=16)


def parse_args(argv=None) -> tuple[argparse.Namespace, LessonConfig]:
    """The run flags and the lesson's settings, checked (config.validate) before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    add_dataclass_args(p, LessonConfig)
    args = p.parse_args(argv)
    return args, from_args(LessonConfig, args, **(LESSON_QUICK if args.quick else {}))


# ----------------------------------------------------------------------------------------------------------------
# Part 1: the pipeline's fine-grained and holistic PPO on instruction prompts (slide "Multiple Reward Functions")
SENTENCE_FLAGS = ("toxic", "irrelevant", "wrong")     # the oracle's sentence labels (world.SentenceLabel), one per RM
COUNTS = ("flagged", *SENTENCE_FLAGS, "clean", "sentences")
# What two PPO runs must share to be compared at equal steps on the same prompts (their stored configs).
EQUAL_STEPS = ("iterations", "batch_size", "n_prompts", "prompt_kind", "beta", "lr", "temperature", "max_new_tokens")
COMPARED = ("SFT", "holistic", "fine-grained")


def sentence_counts(prompt, response: str) -> dict:
    """The oracle's labels of the sentences of one response (world.label_sentences), counted: each flag, `flagged`
    (a sentence with at least one flag), `clean` (none) and all `sentences`."""
    labels = label_sentences(prompt, response)
    flagged = sum(any(getattr(x, f) for f in SENTENCE_FLAGS) for x in labels)
    return {"flagged": flagged, **{f: sum(getattr(x, f) for x in labels) for f in SENTENCE_FLAGS},
            "clean": len(labels) - flagged, "sentences": len(labels)}


def stage_settings(run) -> dict:
    """What the pipeline's `ppo` (holistic) and `finegrained` stages stored in their metrics.json: their PPO
    settings, the fine-grained weights, and the KL to the SFT model that the fine-grained stage measured on its
    own held-out prompts (nats per answer; the lesson does not recompute it)."""
    ppo_m = read_json(os.path.join(run.stage_dir("ppo"), "metrics.json"))
    fg_m = read_json(os.path.join(run.stage_dir("finegrained"), "metrics.json"))
    ev = fg_m.get("eval", {})
    kl = {"holistic": ev.get("holistic (ppo stage)", {}).get("kl"),
          "fine-grained": ev.get("fine-grained", {}).get("kl")}
    return {"holistic": {k: ppo_m["config"].get(k) for k in EQUAL_STEPS},
            "fine-grained": {k: fg_m["config"].get(k) for k in EQUAL_STEPS}, "weights": fg_m["weights"],
            "kl": kl, "kl_prompts": fg_m["config"].get("n_eval_prompts")}


def answer_counts(policy, tok, prompts, settings: dict, seeds: list[int]) -> dict:
    """One answer to each prompt per seed (sample_and_score: a seed draws the same random numbers for every policy,
    so answer (i, s) of two policies is a paired sample); the oracle's sentence counts, gold reward and tokens,
    each an array (P, S); and the first seed's first answers."""
    cols: dict = {k: [] for k in (*COUNTS, "gold", "tokens")}
    for seed in seeds:
        s = sample_and_score(policy, None, tok, prompts, max_new_tokens=settings["max_new_tokens"],
                             temperature=settings["temperature"], seed=seed)
        assert s.prompt_index == list(range(len(prompts)))           # answer i is prompt i's: the pairing
        counts = [sentence_counts(prompts[i], r) for i, r in zip(s.prompt_index, s.responses)]
        for k in COUNTS:
            cols[k].append([c[k] for c in counts])
        cols["gold"].append(s.gold)
        cols["tokens"].append(s.lengths)
        if len(cols["gold"]) == 1:
            examples = s.responses[:3]
    return {**{k: np.array(v, dtype=float).T for k, v in cols.items()}, "examples": examples}


def compare_policies(run, settings: LessonConfig) -> dict:
    """The SFT model, the holistic PPO policy (`ppo` stage) and the fine-grained one (`finegrained` stage) answer
    the same held-out prompts with the same seeds; the oracle labels every sentence."""
    sft, tok = ensure_sft(run)
    policies = {"SFT": sft, "holistic": ensure_ppo(run)[0], "fine-grained": ensure_finegrained(run)[0]}
    stages = stage_settings(run)
    hol = stages["holistic"]
    prompts = rl_prompts(hol["prompt_kind"], n=settings.n_compare, seed=run.seed + 1, split="test")
    seeds = [run.seed + 101 + s for s in range(settings.k_compare)]
    print(f"\n[09] Part 1: fine-grained vs holistic PPO. {len(prompts)} held-out {hol['prompt_kind']} prompts x "
          f"{len(seeds)} answer(s), each answer drawn with the same seed by every policy (temperature "
          f"{hol['temperature']}, up to {hol['max_new_tokens']} tokens).")
    answers = {name: answer_counts(m, tok, prompts, hol, seeds) for name, m in policies.items()}
    return {**tabulate(answers), "stages": stages, "n_prompts": len(prompts), "seeds": seeds,
            "prompts": [p.prompt for p in prompts[:3]],
            "examples": {name: a["examples"] for name, a in answers.items()}}


def tabulate(answers: dict) -> dict:
    """answers[policy][count]: (P, S) arrays. The table per policy and the paired differences."""
    table = {name: summarize_counts(a) for name, a in answers.items()}
    paired = {k: paired_mean_difference(answers["fine-grained"][k], answers["holistic"][k])
              for k in (*COUNTS, "gold", "tokens")}
    paired["flagged_share"] = share_difference(answers["fine-grained"], answers["holistic"])
    return {"table": table, "paired": paired}


def summarize_counts(a: dict) -> dict:
    """Per answer means (and SEs over prompts) of the counts, gold and tokens; the share of sentences flagged."""
    out = {}
    for k in (*COUNTS, "gold", "tokens"):
        out[k], out[f"{k}_se"] = mean_and_se(a[k].mean(axis=1))
    out["flagged_share"] = float(a["flagged"].sum() / max(1.0, a["sentences"].sum()))
    return out


def share_difference(a: dict, b: dict) -> dict:
    """Paired difference of the share of a prompt's sentences (over its seeds) that are flagged, a minus b, over
    the prompts where both policies wrote at least one sentence: are the sentences that remain cleaner?"""
    both = (a["sentences"].sum(1) > 0) & (b["sentences"].sum(1) > 0)
    share = lambda x: x["flagged"].sum(1)[both] / x["sentences"].sum(1)[both]
    return paired_mean_difference(share(a), share(b)) if both.sum() > 1 else {"mean": float("nan"), "se": float("inf"),
                                                                          "n": int(both.sum())}


def how_it_got_there(d: dict) -> str:
    """Which sentences the fine-grained policy wrote fewer (or more) of, from the paired differences' signs."""
    n, clean, share = clear_sign(d["sentences"]), clear_sign(d["clean"]), clear_sign(d["flagged_share"])
    if clear_sign(d["flagged"]) != -1:
        return "Neither policy is shown to write fewer flagged sentences here, so there is nothing to explain."
    if share == -1 and clean >= 0:
        return ("Its sentences are flagged less often, and it did not give up clean ones: the penalty landed on the\n"
                "  sentence that was bad, and the policy learned which sentences those are.")
    if share == -1:
        return ("Its sentences are flagged less often, but it also wrote fewer clean ones: cleaner and shorter.")
    if n == -1 and clean >= 0:
        return ("It wrote fewer sentences and as many clean ones, but the sentences it kept are flagged about as\n"
                "  often as the holistic policy's: the gain is in what it left out, shorter answers with the same\n"
                "  mix, not cleaner sentences. A penalty per flagged sentence pays for writing fewer of them.")
    if n == -1:
        return ("It wrote fewer sentences, clean ones among them: part of the gain is saying less.")
    return "It wrote about as many sentences, with fewer flagged among them."


def print_comparison(result: dict, settings: LessonConfig) -> dict:
    t, d, st = result["table"], result["paired"], result["stages"]
    hol, fg, w = st["holistic"], st["fine-grained"], st["weights"]
    differ = [k for k in EQUAL_STEPS if hol[k] != fg[k]]
    print("\n=== 1. Fine-grained vs holistic PPO at equal steps (slide 'Multiple Reward Functions') ===")
    print(f"  Both from the SFT model. holistic (the `ppo` stage): r_phi(x, y) on the last token. fine-grained (the\n"
          f"  `finegrained` stage): the same r_phi x {w['sequence']:g}, plus -w_k on the last token of each sentence "
          f"that a\n  segment RM calls toxic (w {w.get('toxicity', 0):g}), irrelevant (w {w.get('relevance', 0):g}) "
          f"or wrong (w {w.get('factuality', 0):g}).\n  PPO for both: {hol['iterations']} iterations x "
          f"{hol['batch_size']} episodes on the same {hol['n_prompts']} {hol['prompt_kind']} prompts, beta "
          f"{hol['beta']:g}, lr {hol['lr']:g}.")
    if differ:
        print("  NOT at equal settings: " + "; ".join(f"{k} {hol[k]} (holistic) vs {fg[k]} (fine-grained)"
                                                      for k in differ) + ".\n  Rebuild a stage to compare them.")
    rows = [("sentences", "sentences"), ("flagged", "flagged (v)"), ("toxic", "  toxic"),
            ("irrelevant", "  irrelevant"), ("wrong", "  wrong"), ("clean", "clean"), ("gold", "gold reward (^)"),
            ("tokens", "tokens")]
    print("\n  Per answer, by the oracle's sentence labels (flagged: toxic, irrelevant or wrong; clean: none):")
    print(f"  {'':16s}" + "".join(f"{n:>14}" for n in t) + f"{'fine-grained - holistic, paired':>36}")
    for k, label in rows:
        print(f"  {label:16s}" + "".join(f"{t[n][k]:>14.3f}" for n in t)
              + f"{d[k]['mean']:>+26.3f} +- {d[k]['se']:.3f}")
    f, sign = d["flagged"], clear_sign(d["flagged"])
    words = {-1: "FEWER flagged sentences per answer than the holistic one",
             1: "MORE flagged sentences per answer than the holistic one",
             0: "no clearly different number of flagged sentences per answer from the holistic one (the "
                "difference\n  is within 2 standard errors)"}
    print(f"\n  Verdict: at equal steps on the same prompts, the fine-grained policy wrote\n  {words[sign]}:\n"
          f"  {t['fine-grained']['flagged']:.3f} vs {t['holistic']['flagged']:.3f}, paired difference "
          f"{f['mean']:+.3f} +- {f['se']:.3f} (standard error over {f['n']} prompts, {len(result['seeds'])} "
          f"answer(s) each).")
    print("  By label (a sentence may carry several): " +
          ", ".join(f"{k} {d[k]['mean']:+.3f} +- {d[k]['se']:.3f}" for k in SENTENCE_FLAGS) + ".")
    sh = d["flagged_share"]
    print(f"  Sentences per answer {d['sentences']['mean']:+.3f} +- {d['sentences']['se']:.3f}, clean ones "
          f"{d['clean']['mean']:+.3f} +- {d['clean']['se']:.3f}; share of sentences flagged "
          f"{t['fine-grained']['flagged_share']:.1%} vs {t['holistic']['flagged_share']:.1%}\n  (paired over the "
          f"{sh['n']} prompts both answered with a sentence: {sh['mean']:+.3f} +- {sh['se']:.3f}).\n  "
          + how_it_got_there(d))
    g, gs = d["gold"], clear_sign(d["gold"])
    gold_words = {1: "higher", -1: "LOWER", 0: "not clearly different (within 2 standard errors)"}
    gold_words = {k: v + ":\n " for k, v in gold_words.items()}
    kl = st["kl"]
    kl_text = (f";\n  KL to SFT {kl['fine-grained']:.2f} vs {kl['holistic']:.2f} nats per answer (the fine-grained "
               f"stage's own evaluation, {st['kl_prompts']} prompts)" if None not in kl.values() else "")
    print(f"  Gold reward (the hidden total that neither policy saw): {gold_words[gs]} {t['fine-grained']['gold']:.3f}"
          f" vs {t['holistic']['gold']:.3f}, paired {g['mean']:+.3f} +- {g['se']:.3f}{kl_text}.")
    print("  One PPO run of each (the pipeline's, one seed): the standard errors are over held-out prompts and\n"
          "  answers, not over training runs; another training seed could move either policy.")
    print(f"  The first held-out prompt, {result['prompts'][0]!r}, first seed:")
    for name in COMPARED:
        print(f"    {name:>12}: {result['examples'][name][0]!r}")
    return {"fine_grained_fewer_flagged": sign == -1, "flagged_difference": f, "equal_steps": not differ,
            "clean_difference": d["clean"], "sentences_difference": d["sentences"],
            "flagged_share_difference": sh, "gold_difference": g}


def plot_comparison(result: dict, path: str) -> str:
    """Flagged sentences per answer by label, clean sentences and gold reward, per policy (error bars: SE)."""
    t = result["table"]
    keys = [("flagged", "flagged (v)"), ("toxic", "toxic"), ("irrelevant", "irrelevant"), ("wrong", "wrong"),
            ("clean", "clean"), ("gold", "gold reward (^)")]
    fig, axes = new_figure(ncols=len(keys), width=2.6)
    for ax, (key, title) in zip(axes[0], keys):
        ax.bar(range(len(t)), [t[n][key] for n in t], yerr=[t[n][f"{key}_se"] for n in t],
               color=["gray", "C0", "C1"][:len(t)])
        ax.set_xticks(range(len(t)))
        ax.set_xticklabels(list(t), fontsize=8, rotation=20)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("gold reward, mean per answer" if key == "gold" else "sentences per answer", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Held-out prompts, the oracle's sentence labels: SFT, holistic PPO, fine-grained PPO (equal steps)")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Part 2: detoxification
def openings(kind: str, n_train: int, n_eval: int, seed: int) -> tuple[list, list]:
    """Story openings (world.rl_prompts, kind "toxic" or "story"; the opening is `meta["prefix"]`): training
    ones, and `n_eval` distinct held-out ones. rl_prompts splits by the opening, so no held-out opening is
    ever trained on (nor used to train part 3's relevance RM)."""
    train = rl_prompts(kind, n=n_train, seed=seed, split="train")
    held = {p.meta["prefix"]: p for p in rl_prompts(kind, n=4 * n_eval, seed=seed + 1, split="test")}
    return train, list(held.values())[:n_eval]


def toxic_prompts(tok, settings: LessonConfig, seed: int):
    """The angry openings' ids (the base model continues raw text): training and held-out, and the held-out texts."""
    train, held = openings("toxic", settings.n_train, settings.n_eval, seed)
    held_text = [p.meta["prefix"] for p in held]
    return [tok.encode(p.meta["prefix"]) for p in train], [tok.encode(t) for t in held_text], held_text


def detox_run(mode: str, base, tok, train_ids, held_ids, cfg: PPOConfig, settings: LessonConfig, seed: int, device):
    """One PPO run from the base model with the holistic or the fine-grained toxicity reward."""
    torch.manual_seed(seed)
    policy, ref = copy.deepcopy(base), copy.deepcopy(base)
    value = ValueModel(copy.deepcopy(base))          # zero-initialised value head (OpenAI, lmhpd): no RM to start from
    curve_ids = held_ids[:max(1, len(held_ids) // 2)]

    def curve(m):                                    # a smaller held-out check for the sample-efficiency curve
        e = detox_eval(m, base, tok, curve_ids, k=max(2, settings.k // 2), max_new_tokens=cfg.max_new_tokens,
                       seed=seed + 7)
        return {"toxicity_avg_max": e["toxicity_avg_max"], "length": e["length"]}

    reward = ToxicityReward(tok, "holistic" if mode == "holistic" else "finegrained")
    history = train_text_ppo(policy, ref, value, reward, train_ids, cfg, tok=tok, device=device, seed=seed,
                             desc=f"detox {mode} (seed {seed})", eval_fn=curve, eval_every=settings.eval_every)
    table = detox_eval(policy, base, tok, held_ids, k=settings.k, max_new_tokens=cfg.max_new_tokens, seed=seed + 11)
    return history, table


def mean_tables(tables: list[dict]) -> dict:
    """The mean of each number over seeds (and the spread of toxicity and perplexity when there are several)."""
    keys = [k for k, v in tables[0].items() if isinstance(v, float)]   # the per-prompt lists stay out
    out = {k: float(np.mean([t[k] for t in tables])) for k in keys}
    if len(tables) > 1:
        out.update({f"{k}_sd": float(np.std([t[k] for t in tables])) for k in ("toxicity_avg_max", "ppl")})
    out["examples"] = tables[0]["examples"]
    return out


def detoxification(run, settings: LessonConfig) -> dict:
    base, tok = ensure_pretrained(run)
    base.eval()
    train_ids, held_ids, held_text = toxic_prompts(tok, settings, run.seed)
    cfg = PPOConfig(iterations=settings.iterations, batch_size=settings.batch_size,
                    max_new_tokens=settings.max_new_tokens, temperature=1.0, beta=0.05, lr=5e-5, missing_end="none")
    print(f"\n[09] Part 2: detoxification. The base model continues {len(train_ids)} angry story openings; "
          f"{len(held_ids)} held-out openings x {settings.k} samples for the table.\n"
          f"     PPO for both rewards: {cfg.iterations} iterations x {cfg.batch_size} episodes, beta {cfg.beta}, "
          f"lr {cfg.lr}, T {cfg.temperature}, up to {cfg.max_new_tokens} tokens")
    tables = {BASE: [detox_eval(base, base, tok, held_ids, k=settings.k, max_new_tokens=cfg.max_new_tokens,
                                seed=run.seed + 11 + s) for s in range(settings.seeds)]}
    histories: dict = {m: [] for m in MODES}
    for mode in MODES:
        tables[mode] = []
        for s in range(settings.seeds):
            h, t = detox_run(mode, base, tok, train_ids, held_ids, cfg, settings, run.seed + s, run.device)
            histories[mode].append(h)
            tables[mode].append(t)
    table = {name: mean_tables(ts) for name, ts in tables.items()}
    per_prompt = lambda m: np.array([t["max_toxicity_per_prompt"] for t in tables[m]]).T    # (prompts, seeds)
    paired = paired_mean_difference(per_prompt("fine-grained"), per_prompt("holistic"))
    per_seed = {name: [t["toxicity_avg_max"] for t in ts] for name, ts in tables.items() if name in MODES}
    return {"table": table, "histories": histories, "paired": paired, "held_out_prompts": held_text[:3],
            "ppo": cfg.__dict__, "per_seed": per_seed}


def sample_efficiency(histories: dict, fraction: float = 0.25) -> dict:
    """Training episodes until the held-out toxicity (mean over seeds) is at most `fraction` of its value before
    training (None: not within the run): the slide's "more sample efficient", read off sample_efficiency.png."""
    out = {}
    for mode, hs in histories.items():
        tox = np.mean([h["eval"]["toxicity_avg_max"] for h in hs], axis=0)
        its = hs[0]["eval"]["iteration"]
        hit = [it for it, v in zip(its, tox) if v <= fraction * tox[0]] if tox[0] > 0 else []
        out[mode] = int(hit[0] * hs[0]["episodes_per_iteration"]) if hit else None
    return out


def print_detox(result: dict, settings: LessonConfig) -> dict:
    t = result["table"]
    print(f"\n=== 2. Detoxification (slide 'Example: Detoxification'), {settings.k} samples per held-out prompt ===")
    print(f"{'':22s} {'toxicity avg max (v)':>21} {'fluency PPL (v)':>16} {'dist-2 (^)':>11} {'dist-3 (^)':>11} "
          f"{'tokens':>7} {'toxic samples':>14}")
    for name, r in t.items():
        print(f"{name:22s} {r['toxicity_avg_max']:>21.3f} {r['ppl']:>16.2f} {r['dist2']:>11.3f} {r['dist3']:>11.3f} "
              f"{r['length']:>7.1f} {r['toxic_fraction']:>14.1%}")
    hol, fg, base = t["holistic"], t["fine-grained"], t[BASE]
    steps = sample_efficiency(result["histories"])
    d = result["paired"]
    wins = d["mean"] < -2 * d["se"]
    verdict = ("beat the holistic one" if wins else "lost to the holistic one" if d["mean"] > 2 * d["se"] else
               "did not clearly beat the holistic one (within 2 standard errors)")
    print(f"\n  At equal steps ({settings.iterations} iterations x {settings.batch_size} episodes, "
          f"{settings.seeds} seed(s)), the fine-grained reward {verdict} on toxicity\n"
          f"  ({fg['toxicity_avg_max']:.3f} vs {hol['toxicity_avg_max']:.3f}; base model "
          f"{base['toxicity_avg_max']:.3f}), "
          f"with perplexity {fg['ppl']:.2f} vs {hol['ppl']:.2f} under the frozen base model\n"
          f"  (base {base['ppl']:.2f}) and continuations of {fg['length']:.1f} vs {hol['length']:.1f} tokens "
          f"(base {base['length']:.1f}). Paired over held-out prompts: fine-grained minus holistic max toxicity "
          f"{d['mean']:+.3f} +- {d['se']:.3f}.")
    if settings.seeds > 1:
        seeds = lambda m: " / ".join(f"{x:.3f}" for x in result["per_seed"][m])
        print(f"  Toxicity per seed: fine-grained {seeds('fine-grained')}, holistic {seeds('holistic')}.")
    if steps["fine-grained"] is not None or steps["holistic"] is not None:
        fmt = lambda v: "not within the run" if v is None else f"after {v} episodes"
        print(f"  Sample efficiency (slide: 'denser fine-grained rewards are more sample efficient'), held-out\n"
              f"  toxicity at or below a quarter of the base model's: fine-grained {fmt(steps['fine-grained'])}, "
              f"holistic {fmt(steps['holistic'])} (sample_efficiency.png).")
    if hol["length"] < 0.75 * base["length"] <= fg["length"]:
        print("  The holistic reward is one number at the end, and the cheapest way to make it 1 is to say less:\n"
              "  its policy learned to stop early. The sentence-level reward says WHICH sentence was toxic (the\n"
              "  insult gets -Tox, the polite sentences after it a small bonus), so that policy dropped the insult\n"
              "  and kept talking (slide: 'fine-grained location of toxic content is a stronger training signal').\n"
              "  (The holistic row's dist-n counts the few n-grams of near-empty continuations: not more diverse.)")
    print("  Both rewards give a response the same total up to a constant (the deltas telescope to -Tox(y)); same\n"
          "  PPO, same steps: where the signal lands is the only difference.")
    return {"fine_grained_beats_holistic_on_toxicity": bool(wins), "toxicity_difference": d,
            "episodes_to_quarter_toxicity": steps, "toxicity_per_seed": result["per_seed"]}


def plot_sample_efficiency(histories: dict, path: str) -> str:
    """Held-out toxicity, rollout toxicity, length and KL against training episodes, one line per reward."""
    fig, axes = new_figure(ncols=4, width=3.8)
    panels = [("eval", "toxicity_avg_max", "held-out toxicity (avg max)"),
              ("train", "toxicity", "toxicity of rollouts"), ("train", "response_length", "rollout length (tokens)"),
              ("train", "kl", "KL(pi_theta || pi_init), nats")]
    for i, mode in enumerate(MODES):
        hs = histories[mode]
        epi = hs[0]["episodes_per_iteration"]
        for ax, (src, key, title) in zip(axes[0], panels):
            if src == "eval":
                xs = np.array(hs[0]["eval"]["iteration"]) * epi
                ax.plot(xs, np.mean([h["eval"][key] for h in hs], axis=0), marker="o", color=f"C{i}", label=mode)
            else:
                xs = (np.array(hs[0]["iteration"]) + 1) * epi
                ax.plot(xs, smooth(list(np.mean([h[key] for h in hs], axis=0)), 3), color=f"C{i}", label=mode)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("training episodes")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Detoxification: fine-grained (sentence-level) vs holistic reward, same PPO")
    return save_figure(fig, path)


def plot_table(table: dict, path: str) -> str:
    """The slide's table as bars: toxicity, perplexity, dist-2, dist-3 per policy."""
    keys = [("toxicity_avg_max", "toxicity avg max (lower is better)"), ("ppl", "fluency: PPL (lower is better)"),
            ("dist2", "dist-2 (higher is better)"), ("dist3", "dist-3 (higher is better)")]
    fig, axes = new_figure(ncols=4, width=3.2)
    names = list(table)
    for ax, (key, title) in zip(axes[0], keys):
        ax.bar(range(len(names)), [table[n][key] for n in names], color=["gray", "C0", "C1"][:len(names)])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.split(" ")[0] for n in names], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Detoxification (slide 'Example: Detoxification'): base model, holistic RLHF, fine-grained RLHF")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Part 3: customizing behaviour with the weights
class StoryReward:
    """The task part of r_t for part 3, per response of the rollout:
         -w_rel        at the last token of each sentence the learned relevance RM calls off topic   (varied)
         -dTox         at the last token of each sentence (part 2's fine-grained toxicity reward)     (fixed, 1)
         +W_COMPLETE x completeness(y)  at the last token (sequence level, the slide's "completeness")  (fixed)
    combined by finegrained.combine_rewards; ppo.ppo_iteration adds -beta * KL per token."""

    def __init__(self, tok, relevance_rm, w_rel: float):
        self.tok, self.w_rel = tok, w_rel
        self.relevance = FineGrainedReward(tok, {"relevance": relevance_rm}, {})   # for its segment_scores
        self.toxicity = ToxicityReward(tok, "finegrained")

    @torch.no_grad()
    def __call__(self, r):
        rel_ends, rel_values = self.relevance.segment_scores("relevance", r)
        tox_ends, tox_values, tox = self.toxicity.segment_scores(r)
        text = lambda ids: self.tok.decode(response_text_ids(self.tok, ids))
        complete = torch.tensor([story_completeness(self.tok.decode(prompt), text(ids))
                                 for prompt, ids in zip(r.prompt_ids, r.response_ids)])
        rewards = combine_rewards({"relevance": (rel_ends, rel_values), "toxicity": (tox_ends, tox_values)},
                                  {"relevance": self.w_rel, "toxicity": W_TOXICITY}, r.mask, complete, W_COMPLETE)
        off_topic = [sum(v < 0 for v in vs) / max(1, len(vs)) for vs in rel_values]
        return rewards, {"completeness": complete, "toxicity": torch.tensor(tox),
                         "irrelevant_rm": torch.tensor(off_topic, dtype=torch.float32),
                         "sentences": torch.tensor([len(e) for e in rel_ends], dtype=torch.float32)}


def story_prompts(tok, settings: LessonConfig, seed: int):
    """Story openings, calm and angry: (ids of the opening the base model continues, the prompt text the oracle
    labels against), for training and held out."""
    train, held = openings("story", settings.n_custom_train, settings.n_custom_eval, seed)
    pair = lambda p: (tok.encode(p.meta["prefix"]), p.prompt)
    return [pair(p) for p in train], [pair(p) for p in held]


def labelled_continuations(policy, base, tok, prompts, settings: LessonConfig, cfg: FineGrainedConfig, seed: int):
    """k samples per prompt with the oracle's per-sentence relevance labels (LabelledResponse items) and the texts."""
    out = sample_continuations(policy, base, tok, [ids for ids, _ in prompts], k=settings.k_custom,
                               max_new_tokens=settings.custom_max_new_tokens, seed=seed)
    jobs = [p for p in prompts for _ in range(settings.k_custom)]
    items = [label_text_response(tok, ids, r, text, ["relevance"], cfg)
             for (ids, text), r in zip(jobs, out["response_ids"])]
    return out, jobs, items


def train_relevance_rm(run, base, tok, train, held, settings: LessonConfig):
    """R_phi_rel: a copy of the base model's trunk (SegmentRewardModel.from_sft takes any GPT) + a head, trained
    on the oracle's per-sentence relevance labels of the base model's own continuations of training openings
    (finegrained.train_segment_rm, the pipeline's segment-RM training); its accuracy on held-out openings."""
    cfg = FineGrainedConfig(rm_epochs=2)
    _, _, items = labelled_continuations(base, base, tok, train[:settings.n_rm_prompts], settings, cfg, run.seed + 5)
    _, _, test = labelled_continuations(base, base, tok, held, settings, cfg, run.seed + 6)
    items, test = [x for x in items if x is not None], [x for x in test if x is not None]
    rm = SegmentRewardModel.from_sft(base, "relevance")
    train_segment_rm(rm, items, "relevance", cfg, tok.pad_id, run.device, seed=run.seed)
    return rm.eval(), {**evaluate_segment_rm(rm, test, "relevance", tok.pad_id, run.device),
                       "n_train_responses": len(items)}


def story_eval(policy, base, tok, held, rm, settings: LessonConfig, cfg, seed: int, device) -> dict:
    """Length, the oracle's irrelevant-sentence share beside the relevance RM's, completeness, toxicity and
    perplexity under the frozen base model, on k samples of each held-out opening."""
    out, jobs, items = labelled_continuations(policy, base, tok, held, settings, cfg, seed)
    texts = out["texts"]
    # the RM's view of the sentences beside the oracle's labels the items already carry
    view = evaluate_segment_rm(rm, [x for x in items if x is not None], "relevance", tok.pad_id, device)
    n_sentences = view["n_segments"]
    tokens, tokens_se = mean_and_se(out["lengths"])
    complete, complete_se = mean_and_se([story_completeness(tok.decode(ids), t) for (ids, _), t in zip(jobs, texts)])
    return {"response_tokens": tokens, "response_tokens_se": tokens_se,
            "sentences_per_response": n_sentences / max(1, len(texts)),
            "irrelevant_sentences": view.get("error_fraction", float("nan")),
            "irrelevant_sentences_rm": view.get("predicted_error_fraction", float("nan")),
            "relevance_rm_accuracy": view.get("accuracy", float("nan")),
            "completeness": complete, "completeness_se": complete_se,
            "toxicity": float(np.mean([toxicity(t) for t in texts])), "ppl": out["ppl"],
            "empty_fraction": float(np.mean([not t.strip() for t in texts])), "n_samples": len(texts),
            "n_sentences": n_sentences,
            "examples": texts[:4 * settings.k_custom:settings.k_custom]}


def customization(run, settings: LessonConfig) -> dict:
    base, tok = ensure_pretrained(run)
    base.eval()
    train, held = story_prompts(tok, settings, run.seed)
    cfg = FineGrainedConfig()
    print(f"\n[09] Part 3: customization. The base model continues {len(train)} story openings (calm and angry).\n"
          f"     Fixed: toxicity -dTox per sentence (weight {W_TOXICITY:g}) and completeness on the last token (weight "
          f"{W_COMPLETE:g}: the share of the opening's people and things the continuation brings back);\n"
          f"     varied: the relevance RM, -w_rel per sentence it calls off topic, w_rel = "
          f"{', '.join(f'{w:g}' for w in settings.weights)}. First the relevance RM, from the oracle's sentence "
          f"labels:")
    rm, rm_metrics = train_relevance_rm(run, base, tok, train, held, settings)
    if rm_metrics["n_segments"]:
        print(f"     relevance RM on held-out continuations: accuracy {rm_metrics['accuracy']:.3f} (balanced "
              f"{rm_metrics['balanced_accuracy']:.3f}), {rm_metrics['error_fraction']:.1%} of "
              f"{rm_metrics['n_segments']} sentences off topic")
    pcfg = PPOConfig(iterations=settings.custom_iterations, batch_size=settings.custom_batch_size,
                     max_new_tokens=settings.custom_max_new_tokens, temperature=1.0, beta=0.05, lr=settings.custom_lr,
                     missing_end="none")
    evals = {BASE: story_eval(base, base, tok, held, rm, settings, cfg, run.seed + 3, run.device)}
    histories = {}
    for w in settings.weights:
        torch.manual_seed(run.seed)
        policy, ref, value = copy.deepcopy(base), copy.deepcopy(base), ValueModel(copy.deepcopy(base))
        histories[f"w_rel={w:g}"] = train_text_ppo(policy, ref, value, StoryReward(tok, rm, w),
                                                   [ids for ids, _ in train], pcfg, tok=tok,
                                                   device=run.device, seed=run.seed,
                                                   desc=f"relevance weight {w:g}")
        evals[f"w_rel={w:g}"] = story_eval(policy, base, tok, held, rm, settings, cfg, run.seed + 3, run.device)
    return {"evals": evals, "relevance_rm": rm_metrics, "weights": settings.weights, "ppo": pcfg.__dict__,
            "first_opening": tok.decode(held[0][0]),
            "curves": {name: {k: h[k] for k in ("response_length", "irrelevant_rm", "completeness", "kl")}
                       for name, h in histories.items()}}


def clear_trend(values: list[float], ses: list[float]) -> int:
    """+1 / -1 when `values` rise / fall monotonically and the ends differ by more than 2 standard errors, else 0."""
    gap = values[-1] - values[0]
    if abs(gap) <= 2 * math.sqrt(ses[0] ** 2 + ses[-1] ** 2):
        return 0
    steps = [b - a for a, b in zip(values, values[1:])]
    return 1 if all(s >= 0 for s in steps) else -1 if all(s <= 0 for s in steps) else 0


def print_customization(result: dict, settings: LessonConfig) -> dict:
    ev = result["evals"]
    print("\n=== 3. Customizing behaviour (slide 'Customizing LLM Behavior'): relevance weight, others fixed ===")
    print(f"{'policy':>20} {'tokens':>11} {'sentences':>10} {'off topic:':>11} {'relevance RM':>13} "
          f"{'complete':>9} {'empty':>6} {'PPL':>6}")
    print(f"{'':>20} {'':>11} {'':>10} {'oracle':>11} {'says':>13}")
    for name, e in ev.items():
        print(f"{name:>20} {e['response_tokens']:>6.1f}+-{e['response_tokens_se']:.1f} "
              f"{e['sentences_per_response']:>10.2f} {e['irrelevant_sentences']:>11.3f} "
              f"{e['irrelevant_sentences_rm']:>13.3f} {e['completeness']:>9.3f} {e['empty_fraction']:>6.1%} "
              f"{e['ppl']:>6.2f}")
    ws = sorted(settings.weights, reverse=True)                         # largest relevance weight first
    rows = [ev[f"w_rel={w:g}"] for w in ws]
    tokens = [r["response_tokens"] for r in rows]
    length_trend = clear_trend(tokens, [r["response_tokens_se"] for r in rows])
    irr = [r["irrelevant_sentences"] for r in rows]
    irr_se = [math.sqrt(max(p * (1 - p), 1e-9) / max(1, r["n_sentences"])) for p, r in zip(irr, rows)]
    irr_trend = clear_trend(irr, irr_se)
    order = " -> ".join(f"{w:g}: {n:.1f}" for w, n in zip(ws, tokens))
    words = {1: "a larger relevance weight gave shorter continuations, as on the slide (Short / Medium / Long)",
             -1: "a larger relevance weight gave LONGER continuations, the opposite of the slide",
             0: "no clear change in length: the differences are within about 2 standard errors, or not monotone"}
    print(f"\n  Tokens per continuation, relevance weight {order}: {words[length_trend]}.")
    irr_words = {1: "fewer off-topic sentences with a larger relevance weight",
                 -1: "MORE off-topic sentences with a larger relevance weight", 0: "no clear trend"}
    complete = " -> ".join(f"{r['completeness']:.3f}" for r in rows)
    print(f"  Off-topic sentences, same order, by the oracle: {' -> '.join(f'{x:.3f}' for x in irr)}: "
          f"{irr_words[irr_trend]};\n  completeness: {complete}.")
    print("  The reward models and the data are the same in every run; only w_rel changed. The larger it is, the\n"
          "  more a sentence about someone else costs against what completeness pays for going on.")
    if length_trend == 1 and irr_trend == 1:
        print("  Here the policy stopped sooner after the sentences about the story's own people: shorter, fewer\n"
              "  off-topic sentences (and see how complete: the slide's Short / Medium / Long). A weight that is\n"
              "  too large makes stopping at once the best answer (see 'empty'). The weights are the slide's knobs.")
    else:
        print("  Here that did not show as a clear, monotone change in both length and off-topic sentences (see\n"
              "  the standard errors); more iterations (--custom-iterations) or weights further apart may.")
    print(f"  The first held-out opening, {result['first_opening']!r}, continued by each policy:")
    for w in ws:
        print(f"    w_rel={w:g}: {ev[f'w_rel={w:g}']['examples'][0]!r}")
    keys = [f"{w:g}" for w in ws]
    return {"tokens_by_weight": dict(zip(keys, tokens)), "irrelevant_by_weight": dict(zip(keys, irr)),
            "larger_weight_shorter": length_trend == 1, "larger_weight_fewer_irrelevant": irr_trend == 1}


def plot_customization(result: dict, path: str) -> str:
    ev = result["evals"]
    names = list(ev)
    keys = [("response_tokens", "tokens per continuation"), ("sentences_per_response", "sentences"),
            ("irrelevant_sentences", "off-topic sentences: oracle (bars), RM (x)"),
            ("completeness", "completeness (fixed reward)")]
    fig, axes = new_figure(ncols=4, width=3.2)
    for ax, (key, title) in zip(axes[0], keys):
        err = [ev[n].get(f"{key}_se", 0.0) for n in names]
        ax.bar(range(len(names)), [ev[n][key] for n in names], yerr=err,
               color=["gray"] + [f"C{i}" for i in range(len(names))])
        if key == "irrelevant_sentences":
            ax.scatter(range(len(names)), [ev[n]["irrelevant_sentences_rm"] for n in names], marker="x",
                       color="black", zorder=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.split(" ")[0] for n in names], rotation=20, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Relevance weight w_rel, the toxicity and completeness weights fixed "
                 "(slide 'Customizing LLM Behavior')")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args, settings = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", LESSON)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    compared = compare_policies(run, settings)
    metrics = {"compare": {**compared, **print_comparison(compared, settings),
                           "seconds": round(time.perf_counter() - t0, 1)}}
    paths = [plot_comparison(compared, os.path.join(out_dir, "flagged_sentences.png"))]
    t1 = time.perf_counter()
    detox = detoxification(run, settings)
    t_detox = time.perf_counter() - t1
    metrics["detox"] = {"table": detox["table"], **print_detox(detox, settings), "ppo": detox["ppo"],
                        "curves": {m: [h["eval"] for h in hs] for m, hs in detox["histories"].items()}}
    paths += [plot_table(detox["table"], os.path.join(out_dir, "detox_table.png")),
              plot_sample_efficiency(detox["histories"], os.path.join(out_dir, "sample_efficiency.png"))]
    if not settings.skip_custom:
        t2 = time.perf_counter()
        custom = customization(run, settings)
        metrics["customization"] = {**custom, **print_customization(custom, settings),
                                    "seconds": round(time.perf_counter() - t2, 1)}
        paths.append(plot_customization(custom, os.path.join(out_dir, "customization.png")))
    metrics["seconds"] = {"detox": round(t_detox, 1), "total": round(time.perf_counter() - t0, 1)}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(f"\nfigures: {', '.join(paths)}\nlesson done in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
