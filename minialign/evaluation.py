"""Evaluating a policy the way the papers do: gold reward, KL(pi_theta || pi_ref), and win rate.

Used by PPO, fine-grained PPO, DPO and the final report, so that every method is measured with the
same ruler (docs/evaluation.md, sections 1 and 4):

1. **Gold reward.** Sample responses y ~ pi_theta(. | x) on held-out prompts and score them with the
   world's oracle (`minialign.world.gold_reward`): the hidden "human" reward that a learned reward
   model only approximates. Reporting the gold reward is what makes reward hacking visible.
2. **KL(pi_theta || pi_ref)**, sequence level, estimated from the same samples:

       KL(pi_theta || pi_ref) = E_{y ~ pi_theta} [ log pi_theta(y|x) - log pi_ref(y|x) ]
                              ~ (1/N) sum_n sum_t [ log pi_theta(y_t^n | x, y_<t^n) - log pi_ref(y_t^n | ...) ]

   i.e. the mean over samples of the *summed* per-token k1 estimator (Schulman's k1, docs/kl.md,
   section 1), the x-axis of the DPO paper's reward-vs-KL frontier (its Figure 2, left). Single samples can
   be negative; the mean is unbiased. Both models score the same sampled tokens through
   `batching.sequence_token_logprobs`, at the sampling temperature (the KL between the two
   distributions the samples were actually drawn from; at temperature 1, the default, that is the
   models themselves). Sampling uses no top-k / top-p: truncation would make the samples come from
   a different distribution than the log-probs describe and bias the KL (negative KL, trl #736).
3. **Win rate of A against B** (InstructGPT's headline metric, slide 000/002 "DPO versus
   Baselines", right): on the same prompts, the judge (here: the oracle's gold reward) compares A's
   response with B's; a win counts 1, a tie 1/2, a loss 0. The 95% interval is a percentile
   bootstrap over prompts.

Deviation, said plainly: the papers' judges are humans or GPT-4 reading both responses side by
side; ours compares two gold scores, so "ties" are exact ties of the oracle (common: two wrong
answers both score low in the same way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .batching import sequence_token_logprobs
from .config import autocast
from .generate import sample_batches
from .model import GPT
from .world import (FLAW_NAMES, check_format, gold_reward, label_sentences, response_flaws, toxicity,
                    verifiable_reward)
from .world.text import normalize, words

if TYPE_CHECKING:
    from .preferences import PreferenceGroup


# ----------------------------------------------------------------------------------------------
# The two estimators, on given numbers (tested against hand computations)
def sequence_kl(logp_policy: torch.Tensor, logp_ref: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Summed token k1 per sequence: (B, T), (B, T) [, (B, T) 0/1] -> (B,).

    k1_t = log pi_theta(y_t | .) - log pi_ref(y_t | .); the sequence KL sample is sum_t k1_t over the
    response tokens. Positions off the response are already 0 in log-probs from
    `sequence_token_logprobs`; `mask` makes that explicit for log-probs from elsewhere.
    """
    k1 = logp_policy.float() - logp_ref.float()                             # (B, T)
    if mask is not None:
        k1 = k1 * mask.float()
    return k1.sum(-1)                                                       # (B,)


@dataclass
class WinRate:
    """Result of `win_rate`: A against B on paired judgements."""

    win_rate: float
    """(wins + ties / 2) / n."""
    ci_low: float
    """2.5th percentile of the bootstrap distribution of the win rate."""
    ci_high: float
    """97.5th percentile of the bootstrap distribution of the win rate."""
    wins: int
    ties: int
    losses: int
    n: int

    def to_dict(self) -> dict:
        return dict(win_rate=self.win_rate, ci_low=self.ci_low, ci_high=self.ci_high,
                    wins=self.wins, ties=self.ties, losses=self.losses, n=self.n)


def win_rate(scores_a, scores_b, *, groups=None, n_boot: int = 2000, tie_tol: float = 1e-6,
             seed: int = 0) -> WinRate:
    """How often A beats B when the judge compares their paired responses; ties count half.

    scores_a, scores_b: (N,) the judge's scores of A's and B's response to the same N prompts (or
    prompt x sample slots). A pair whose scores differ by at most `tie_tol` is a tie.
    groups: optional (N,) prompt ids; the bootstrap then resamples whole prompts (several samples
    of one prompt are not independent). Returns a `WinRate` with a 95% percentile-bootstrap interval.
    """
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"win_rate needs two equally long 1-D score lists, got {a.shape} and {b.shape}")
    outcome = np.where(np.abs(a - b) <= tie_tol, 0.5, (a > b).astype(float))   # 1 win, 0.5 tie, 0 loss
    groups = np.arange(len(a)) if groups is None else np.asarray(groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    per_group_sum = np.bincount(inverse, weights=outcome, minlength=len(keys))
    per_group_n = np.bincount(inverse, minlength=len(keys)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(n_boot, len(keys)))          # resample prompts
    boot = per_group_sum[draws].sum(1) / per_group_n[draws].sum(1)
    return WinRate(win_rate=float(outcome.mean()),
                   ci_low=float(np.percentile(boot, 2.5)), ci_high=float(np.percentile(boot, 97.5)),
                   wins=int((outcome == 1.0).sum()), ties=int((outcome == 0.5).sum()),
                   losses=int((outcome == 0.0).sum()), n=len(a))


# ----------------------------------------------------------------------------------------------
# Prompts and the judge
def prompt_text(prompt) -> str:
    """The user text of a prompt: a str, or an object/dict with a `prompt` (or `text`) field."""
    if isinstance(prompt, str):
        return prompt
    for name in ("prompt", "text"):
        if isinstance(prompt, dict) and name in prompt:
            return prompt[name]
        if hasattr(prompt, name):
            return getattr(prompt, name)
    raise TypeError(f"cannot find the prompt text in {type(prompt).__name__}: give a str, or an "
                    f"object with a 'prompt' field")


def gold_judge(prompt, response: str) -> tuple[float, dict]:
    """The default judge: the world's oracle. Returns (gold reward, {component: value})."""
    from .world import gold_reward
    return split_score(gold_reward(prompt_text(prompt), response))


def split_score(score) -> tuple[float, dict]:
    """A judge's answer as (total, components): a float, a (total, dict) pair, or an object with
    `total` and `components`."""
    if isinstance(score, (int, float)):
        return float(score), {}
    if isinstance(score, tuple):
        return float(score[0]), dict(score[1]) if len(score) > 1 else {}
    if isinstance(score, dict):
        return float(score["total"]), {k: float(v) for k, v in score.items() if k != "total"}
    return float(score.total), {k: float(v) for k, v in dict(getattr(score, "components", {})).items()}


# ----------------------------------------------------------------------------------------------
# Sampling and scoring a policy
@dataclass
class Samples:
    """Responses of one policy to prompts, with their scores. Lists have one entry per sample."""

    prompt_index: list[int] = field(default_factory=list)
    """Which prompt (position in the given list) each sample answers."""
    responses: list[str] = field(default_factory=list)
    """Decoded response text, up to the end token."""
    ended: list[bool] = field(default_factory=list)
    """Whether the response emitted the end token within max_new_tokens."""
    lengths: list[int] = field(default_factory=list)
    """Response tokens, the end token included."""
    gold: list[float] = field(default_factory=list)
    """The judge's score of each response."""
    components: list[dict] = field(default_factory=list)
    """The judge's score components of each response."""
    kl: list[float] = field(default_factory=list)
    """Summed token k1 of each response: log pi_theta(y|x) - log pi_ref(y|x) (empty without a ref)."""


def gold_stats(gold_fn, prompts: list, responses: list[str]) -> dict:
    """Mean gold reward of the oracle (and of each of its components) over a batch: logged, never optimised.

    `prompts` are given to the oracle as they came (world prompt objects carry e.g. the right answer).
    """
    golds = [split_score(gold_fn(p, r)) for p, r in zip(prompts, responses)]
    out = {"gold_reward": float(np.mean([total for total, _ in golds]))}
    for name in golds[0][1]:
        out[f"gold/{name}"] = float(np.mean([parts.get(name, 0.0) for _, parts in golds]))
    return out


@torch.no_grad()
def sample_and_score(policy, ref, tok, prompts, *, judge=None, n_samples: int = 1,
                     max_new_tokens: int = 48, temperature: float = 1.0, batch_size: int = 64,
                     seed: int = 0, system: str | None = None) -> Samples:
    """Sample `n_samples` responses per prompt from `policy`, judge them, and (when `ref` is given)
    compute each sample's sequence KL against `ref`.

    Sampling draws from a generator seeded with `seed`, so two policies evaluated with the same seed
    see the same prompts in the same order (paired samples for `win_rate`).
    """
    judge = judge or gold_judge
    device = policy.output_weight.device
    policy_mode, ref_mode = policy.training, ref.training if ref is not None else None
    policy.eval()
    if ref is not None:
        ref.eval()
    out = Samples()
    for b in sample_batches(policy, tok, [prompt_text(p) for p in prompts], n=n_samples, system=system,
                            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                            batch_size=batch_size):
        gen = b.gen
        with autocast(device):
            if ref is not None:
                args = (gen.tokens, gen.attention_mask, gen.response_mask)
                kl = sequence_kl(sequence_token_logprobs(policy, *args, temperature=temperature),
                                 sequence_token_logprobs(ref, *args, temperature=temperature))
                out.kl += kl.tolist()
        for i, text, ended, resp in zip(b.rows, b.texts, b.ended, gen.response_ids):
            total, parts = judge(prompts[i], text)
            out.prompt_index.append(i)
            out.responses.append(text)
            out.ended.append(ended)
            out.lengths.append(len(resp))
            out.gold.append(total)
            out.components.append(parts)
    policy.train(policy_mode)
    if ref is not None:
        ref.train(ref_mode)
    return out


def mean_and_se(values) -> tuple[float, float]:
    """Mean and standard error of the mean."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0
    return float(x.mean()), se


def paired_mean_difference(a, b) -> dict:
    """Mean of a - b over paired items, and its standard error over the items.

    a, b: (P,) or (P, S) arrays; row i is item i (a held-out prompt, a problem), answered by both sides, and
    column s the s-th sample that both drew with the same seed. The item is the unit: d_i = mean_s (a_is - b_is),
    SE = sd(d_i) / sqrt(P) (infinite for one item: no spread to estimate). Returns {"mean", "se", "n"}."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d.reshape(len(d), -1).mean(axis=1)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    return {"mean": float(d.mean()), "se": se, "n": int(len(d))}


def clear_sign(d: dict) -> int:
    """+1 / -1 when a paired difference (paired_mean_difference) is above / below zero by more than 2 standard
    errors, else 0: the lessons' verdicts call a change only beyond that."""
    return 1 if d["mean"] > 2 * d["se"] else -1 if d["mean"] < -2 * d["se"] else 0


def summarize(samples: Samples, prompts=None, n_examples: int = 3) -> dict:
    """The numbers a report prints: mean gold reward and KL with standard errors, and more.

    Diversity over all the samples pooled (not per prompt): "distinct_responses", the fraction of different
    answers (surrounding spaces ignored), and "distinct_2", unique word bigrams / all word bigrams (`distinct_n`;
    None when no answer has two words).
    """
    gold, gold_se = mean_and_se(samples.gold)
    names = sorted({k for c in samples.components for k in c})
    out = {
        "gold_reward": gold, "gold_reward_se": gold_se,
        # a component that does not apply to a prompt is absent: average where it applies
        "components": {k: float(np.mean([c[k] for c in samples.components if k in c])) for k in names},
        "response_tokens": float(np.mean(samples.lengths)),
        "ended_fraction": float(np.mean(samples.ended)),
        "n_samples": len(samples.gold),
        # diversity, pooled over all the answers: a collapse to one sentence shows as 1 / n_samples and ~0
        "distinct_responses": len({r.strip() for r in samples.responses}) / max(1, len(samples.responses)),
        "distinct_2": finite_or_none(distinct_n(samples.responses, 2)),
    }
    if samples.kl:
        kl, kl_se = mean_and_se(samples.kl)
        out.update(kl=kl, kl_se=kl_se, kl_per_token=float(np.sum(samples.kl) / max(1, sum(samples.lengths))))
    if prompts is not None:
        out["flaw_rates"] = flaw_rates([prompts[i] for i in samples.prompt_index], samples.responses)
        out["examples"] = [{"prompt": prompt_text(prompts[samples.prompt_index[j]]),
                            "response": samples.responses[j], "gold": samples.gold[j]}
                           for j in range(min(n_examples, len(samples.gold)))]
    return out


def flaw_rates(prompts: list, responses: list[str], names=FLAW_NAMES) -> dict:
    """The share of responses showing each of the demonstrators' flaws in `names` (world.response_flaws, read
    from the text), and "any": the share with at least one of them."""
    found = [response_flaws(prompt_text(p), r) for p, r in zip(prompts, responses)]
    rates = {name: float(np.mean([f[name] for f in found])) if found else None for name in names}
    rates["any"] = float(np.mean([any(f[n] for n in names) for f in found])) if found else None
    return rates


def evaluate_policy(policy, ref, tok, prompts, *, judge=None, n_samples: int = 1,
                    max_new_tokens: int = 48, temperature: float = 1.0, batch_size: int = 64,
                    seed: int = 0, system: str | None = None, n_examples: int = 3) -> dict:
    """Gold reward and KL(pi_theta || pi_ref) of `policy` on held-out `prompts`.

    policy, ref: GPTs (ref may be None: no KL). prompts: strs or world prompt objects (the judge
    receives them as given, so it can check e.g. the right answer). Returns `summarize`'s dict plus
    "scores" (the per-sample gold rewards, in prompt order) and "groups" (their prompt index): pass
    two policies' "scores" (evaluated with the same prompts, n_samples and seed) to `win_rate`.
    """
    samples = sample_and_score(policy, ref, tok, prompts, judge=judge, n_samples=n_samples,
                               max_new_tokens=max_new_tokens, temperature=temperature,
                               batch_size=batch_size, seed=seed, system=system)
    out = summarize(samples, prompts, n_examples)
    out["scores"] = samples.gold
    out["groups"] = samples.prompt_index
    return out


def compare(eval_a: dict, eval_b: dict, **kwargs) -> dict:
    """Win rate of A over B from two `evaluate_policy` results on the same prompts (dict form)."""
    if eval_a["groups"] != eval_b["groups"]:
        raise ValueError("the two evaluations answered different prompts; evaluate both with the "
                         "same prompts and n_samples")
    return win_rate(eval_a["scores"], eval_b["scores"], groups=eval_a["groups"], **kwargs).to_dict()


# ----------------------------------------------------------------------------------------------
# Reward-model metrics: agreement with the labels and with the oracle, correlation, calibration


def pearson(x, y) -> float:
    """Pearson correlation: cov(x, y) / (std x std y)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def rankdata(x) -> np.ndarray:
    """Ranks 1..n, ties get the average of the ranks they span (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    """Spearman correlation: Pearson correlation of the ranks."""
    return pearson(rankdata(x), rankdata(y))


def pairwise_accuracy(rewards: list[np.ndarray], groups: list[PreferenceGroup]) -> float:
    """Fraction of labelled pairs (w, l) with r_w > r_l (strict: a tie counts as wrong)."""
    hits = [float(r[w] > r[l]) for r, g in zip(rewards, groups) for w, l in g.pairs]
    return float(np.mean(hits)) if hits else float("nan")


def gold_pairs(groups: list[PreferenceGroup]) -> list[tuple[int, int, int]]:
    """(group index, better, worse) for every pair of responses whose gold rewards differ."""
    out = []
    for gi, g in enumerate(groups):
        if g.gold is None:
            continue
        for i in range(len(g.responses)):
            for j in range(i + 1, len(g.responses)):
                if g.gold[i] != g.gold[j]:
                    out.append((gi, i, j) if g.gold[i] > g.gold[j] else (gi, j, i))
    return out


def oracle_accuracy(rewards: list[np.ndarray], groups: list[PreferenceGroup]) -> float:
    """Fraction of response pairs (same prompt, different gold) that r_phi orders like the oracle."""
    hits = [float(rewards[gi][b] > rewards[gi][w]) for gi, b, w in gold_pairs(groups)]
    return float(np.mean(hits)) if hits else float("nan")


def label_agreement_with_oracle(groups: list[PreferenceGroup]) -> float:
    """How often the annotators' own labels agree with the gold ordering (pairs with different gold)."""
    hits = [float(g.gold[w] > g.gold[l]) for g in groups if g.gold is not None
            for w, l in g.pairs if g.gold[w] != g.gold[l]]
    return float(np.mean(hits)) if hits else float("nan")


def calibration(rewards: list[np.ndarray], groups: list[PreferenceGroup], n_bins: int = 10) -> dict:
    """Predicted P(y_i > y_j) = sigma(r_i - r_j) against how often the labeler preferred y_i.

    Every labelled pair enters in both orientations ((i, j) with outcome 1 and (j, i) with 0), so the
    diagram does not depend on which response is listed first. Returns the bins (mean predicted,
    observed rate, count) and the expected calibration error ECE = sum_b n_b/n |pred_b - obs_b|.
    """
    pred, obs = [], []
    for r, g in zip(rewards, groups):
        for w, l in g.pairs:
            p = 1.0 / (1.0 + math.exp(-(float(r[w]) - float(r[l]))))
            pred += [p, 1.0 - p]
            obs += [1.0, 0.0]
    pred, obs = np.asarray(pred), np.asarray(obs)
    bins = []
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        sel = (pred >= lo) & ((pred < hi) if b < n_bins - 1 else (pred <= hi))
        if sel.sum() == 0:
            continue
        bins.append({"predicted": float(pred[sel].mean()), "observed": float(obs[sel].mean()),
                     "count": int(sel.sum())})
        ece += sel.sum() / len(pred) * abs(pred[sel].mean() - obs[sel].mean())
    return {"bins": bins, "ece": float(ece)}


def finite_or_none(x: float) -> float | None:
    """nan -> None, so metrics.json stays valid JSON."""
    return None if x is None or math.isnan(x) else float(x)


# ----------------------------------------------------------------------------------------------
# Instruction following: greedy answers scored by exact match or the oracle, per family and split (SFT)


EVAL_SPLITS = ("test", "unseen_template", "unseen_family")


SPLIT_LABELS = {"test": "seen families\n(new inputs)", "unseen_template": "seen families\n(new templates)",
                "unseen_family": "unseen families", "custom": "held out"}


@torch.no_grad()
def generate_answers(model: GPT, tok, prompts: list[str], *, chat: bool = True,
                     max_new_tokens: int = 40, batch_size: int = 64) -> list[dict]:
    """Greedy answers to plain-text prompts: [{"text", "ended", "full"}] in prompt order.

    chat=True: the chat template, stopping at <|end|> (an SFT model). chat=False: the prompt as
    plain text + newline, stopping at end-of-text (a base model); "text" is then the first line
    of the continuation and "full" all of it. Generation runs where the model is.
    """
    out: list[dict] = [{}] * len(prompts)
    for b in sample_batches(model, tok, prompts if chat else [tok.encode(p + "\n") for p in prompts], chat=chat,
                            max_new_tokens=max_new_tokens, greedy=True, batch_size=batch_size,
                            shortest_first=True):
        for i, text, ended, ids in zip(b.rows, b.texts, b.ended, b.gen.response_ids):
            if chat:
                out[i] = {"text": text.strip(), "ended": ended, "full": text}
            else:
                full = tok.decode([t for t in ids if t != tok.eot_id])
                out[i] = {"text": full.strip().split("\n")[0].strip(), "ended": tok.eot_id in ids,
                          "full": full}
    return out


def exact_match(response: str, answers, reference: str | None = None) -> bool:
    """Normalized response equals an accepted answer (or the reference response)."""
    targets = {normalize(a) for a in answers}
    if reference:
        targets.add(normalize(reference))
    return normalize(response) in targets


def score_answer(ex, response: str) -> dict:
    """One answer's scores: exact match (examples with answers), the oracle's gold reward and its
    correctness grade, and the task score: exact match where there are answers, else the oracle's
    correctness grade (its total where it does not recognize the task)."""
    prompt, reference = example_pair(ex)
    answers = list(example_field(ex, "answers", []) or [])
    gold = gold_reward(prompt, response)
    correct = gold.components.get("correct")
    em = exact_match(response, answers, reference) if answers else None
    score = float(em) if answers else float(correct if correct is not None else gold.total)
    return {"exact_match": em, "gold": float(gold.total), "correct": correct, "score": score,
            "components": dict(gold.components)}


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize_scores(rows: list[dict]) -> dict:
    """Means of a group of scored answers (components: the oracle's parts of the gold reward)."""
    parts = sorted({k for r in rows for k in r["components"]})
    return {"n": len(rows), "score": _mean(r["score"] for r in rows),
            "exact_match": _mean(r["exact_match"] for r in rows),
            "n_exact": sum(r["exact_match"] is not None for r in rows),
            "gold": _mean(r["gold"] for r in rows), "correct": _mean(r["correct"] for r in rows),
            "ended": _mean(r["ended"] for r in rows),
            "components": {k: _mean(r["components"].get(k) for r in rows) for k in parts}}


def evaluate_sft(model: GPT, tok, eval_examples, *, chat: bool = True, max_new_tokens: int = 40,
                 batch_size: int = 64, n_samples: int = 3) -> dict:
    """Answer held-out examples greedily and score them; per split and per family.

    eval_examples: world Examples (or dicts with prompt, response, answers, family, split).
    chat: True for an SFT model (chat template), False for a base model (plain text, see
    `generate_answers`). Returns {"splits": {split: summary}, "families": {split: {family:
    summary}}, "samples": {split: [a few answers]}}; a summary has n, score, exact_match (over
    examples with answers; n_exact of them), gold and ended.
    """
    prompts = [example_pair(ex)[0] for ex in eval_examples]
    answers = generate_answers(model, tok, prompts, chat=chat, max_new_tokens=max_new_tokens,
                               batch_size=batch_size)
    groups: dict[str, dict[str, list]] = {}
    samples: dict[str, list] = {}
    for ex, ans in zip(eval_examples, answers):
        split, family = example_field(ex, "split", "custom"), example_field(ex, "family", "custom")
        row = {**score_answer(ex, ans["text"]), "ended": ans["ended"]}
        groups.setdefault(split, {}).setdefault(family, []).append(row)
        if len(samples.setdefault(split, [])) < n_samples and family not in\
                {s["family"] for s in samples[split]}:
            samples[split].append({"family": family, "prompt": example_pair(ex)[0], "response": ans["text"],
                                   "full": ans["full"], "reference": example_pair(ex)[1], **row})
    return {"splits": {s: summarize_scores([r for rows in fams.values() for r in rows])
                       for s, fams in groups.items()},
            "families": {s: {f: summarize_scores(rows) for f, rows in sorted(fams.items())}
                         for s, fams in groups.items()},
            "samples": samples}


# ----------------------------------------------------------------------------------------------
# Examples in any of the project's shapes


def example_pair(ex) -> tuple[str, str]:
    """(prompt, response) of an example: a world Example, an object/dict with those fields, or a pair."""
    if isinstance(ex, (tuple, list)):
        return ex[0], ex[1]
    if isinstance(ex, dict):
        return ex["prompt"], ex["response"]
    return ex.prompt, ex.response


def example_field(ex, name: str, default=None):
    if isinstance(ex, dict):
        return ex.get(name, default)
    return getattr(ex, name, default)


# ----------------------------------------------------------------------------------------------
# Fine-grained rewards: the detoxification table (toxicity, fluency, diversity) and sentence error rates


def distinct_n(texts: list[str], n: int) -> float:
    """dist-n: unique word n-grams / all word n-grams over `texts` (nan when there are none)."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [words(t)] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


@torch.no_grad()
def sample_continuations(policy: GPT, ref: GPT, tok, prompt_ids: list[list[int]], *, k: int, max_new_tokens: int,
                         temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 128) -> dict:
    """k raw-text continuations per prompt (stopping at <|endoftext|>), prompt-major: row i * k + s is sample s
    of prompt i. Returns texts, response ids, lengths (tokens, the stop token included) and the perplexity of
    the samples under the frozen `ref` (exp of the mean NLL per generated token, at temperature 1)."""
    device = policy.output_weight.device
    policy.eval()
    texts, ids, nll, n_tok = [], [], 0.0, 0
    for b in sample_batches(policy, tok, prompt_ids, chat=False, n=k, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size):
        gen = b.gen
        with autocast(device):
            logp = sequence_token_logprobs(ref, gen.tokens, gen.attention_mask, gen.response_mask)
        nll -= logp.sum().item()
        n_tok += int(gen.response_mask.sum())
        ids += gen.response_ids
        texts += b.texts
    return {"texts": texts, "response_ids": ids, "lengths": [len(r) for r in ids],
            "ppl": float(math.exp(nll / max(1, n_tok)))}


def detox_eval(policy: GPT, ref: GPT, tok, prompt_ids: list[list[int]], *, k: int, max_new_tokens: int,
               temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 128) -> dict:
    """The slide's table for one policy: k samples per prompt, scored by the world's toxicity.

    toxicity_avg_max: mean over prompts of the max toxicity of its k samples (RealToxicityPrompts protocol;
    the per-prompt maxima are in max_toxicity_per_prompt, for paired comparisons);
    toxic_fraction: share of samples with any toxicity; ppl: perplexity of the samples under the frozen `ref`
    (`sample_continuations`); dist2/dist3 per prompt over its k samples, averaged; length in tokens.
    """
    out = sample_continuations(policy, ref, tok, prompt_ids, k=k, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size)
    texts = out["texts"]
    tox = np.array([toxicity(t) for t in texts]).reshape(len(prompt_ids), k)
    per_prompt = [texts[i * k:(i + 1) * k] for i in range(len(prompt_ids))]
    return {"toxicity_avg_max": float(tox.max(1).mean()), "toxicity_mean": float(tox.mean()),
            "toxic_fraction": float((tox > 0).mean()), "ppl": out["ppl"],
            "dist2": float(np.nanmean([distinct_n(t, 2) for t in per_prompt])),
            "dist3": float(np.nanmean([distinct_n(t, 3) for t in per_prompt])),
            "length": float(np.mean(out["lengths"])), "n_samples": len(texts), "examples": texts[:k * 3:k],
            "max_toxicity_per_prompt": tox.max(1).tolist()}


def sentence_error_rates(prompts: list, responses: list[str]) -> dict:
    """The oracle's fine-grained view of responses: share of sentences that are toxic / irrelevant / wrong
    (FineGrainedRLHF's relevance and factuality ratios, as error rates), and sentences per response."""
    labels = [label_sentences(p, r) for p, r in zip(prompts, responses)]
    flat = [x for ls in labels for x in ls]
    n = max(1, len(flat))
    return {"toxic_sentences": sum(x.toxic for x in flat) / n,
            "irrelevant_sentences": sum(x.irrelevant for x in flat) / n,
            "wrong_sentences": sum(x.wrong for x in flat) / n,
            "sentences_per_response": len(flat) / max(1, len(labels))}




# ----------------------------------------------------------------------------------------------
# Verifiable tasks: answers a program checks exactly (world/reasoning.py), pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from n samples of one problem, c of them correct (Chen et al. 2021):
    1 - C(n - c, k) / C(n, k), the chance that k of the n samples, drawn without replacement, hold a correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def paired_difference(counts_a: list[int], counts_b: list[int], n_a: int, n_b: int) -> tuple[float, float]:
    """pass@1 of model b minus model a on the same problems, and the standard error of that difference over the
    problems: the mean and SE of the per-problem differences c_b / n_b - c_a / n_a (a paired comparison)."""
    if len(counts_a) != len(counts_b):
        raise ValueError(f"paired comparison of {len(counts_a)} and {len(counts_b)} problems")
    return mean_and_se([cb / n_b - ca / n_a for ca, cb in zip(counts_a, counts_b)])


def _pass_summary(correct: list[list[bool]], ks) -> dict:
    """{"pass@k": mean over problems, "pass@k_se": its standard error} for each k, from per-problem samples."""
    out = {}
    for k in ks:
        mean, se = mean_and_se([pass_at_k(len(c), sum(c), k) for c in correct])
        out[f"pass@{k}"], out[f"pass@{k}_se"] = mean, se
    return out


@torch.no_grad()
def evaluate_reasoning(model: GPT, tok, examples, *, n_samples: int = 1, ks=(1,), temperature: float = 1.0,
                       greedy: bool = False, max_new_tokens: int = 64, seed: int = 0, batch_size: int = 64) -> dict:
    """Sample `n_samples` responses per problem (world.reasoning Examples) and check each exactly.

    Returns pass@k for each k in `ks` (k <= n_samples) with its standard error over problems, overall and per
    split and family, plus the share of well-formed responses ("format"), of worked ones ("worked"), of ended
    ones, the mean response length in tokens, and each problem's number of correct samples ("correct_counts",
    in the order of `examples`: for paired comparisons of two models on the same problems). `greedy` answers once
    per problem (pass@1 = accuracy).
    """
    if greedy and n_samples != 1:
        raise ValueError("greedy decoding gives one answer per problem: use n_samples=1")
    correct: list[list[bool]] = [[] for _ in examples]
    forms, lengths, ended = [], [], []
    for b in sample_batches(model, tok, [ex.prompt for ex in examples], n=n_samples, max_new_tokens=max_new_tokens,
                            temperature=temperature, greedy=greedy, seed=seed, batch_size=batch_size):
        for i, text, end, ids in zip(b.rows, b.texts, b.ended, b.gen.response_ids):
            correct[i].append(verifiable_reward(examples[i], text, end) == 1.0)
            forms.append(check_format(text))
            lengths.append(len(ids))
            ended.append(end)
    out = {**_pass_summary(correct, ks), "n_problems": len(examples), "n_samples": n_samples,
           "format": float(np.mean([f is not None for f in forms])),
           "worked": float(np.mean([f == "worked" for f in forms])),
           "ended": float(np.mean(ended)), "response_tokens": float(np.mean(lengths)),
           "correct_counts": [sum(c) for c in correct]}
    for field_name, key in (("split", "splits"), ("family", "families")):
        groups: dict[str, list] = {}
        for ex, c in zip(examples, correct):
            groups.setdefault(getattr(ex, field_name), []).append(c)
        out[key] = {g: _pass_summary(cs, ks) for g, cs in sorted(groups.items())}
    return out
