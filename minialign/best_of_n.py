"""Best-of-n: the baseline that trains nothing. Sample n answers from pi_SFT, keep the one r_phi likes best.

Rejection sampling against the reward model (Nakano et al. 2021, WebGPT; Stiennon et al. 2020), the first
optimiser on the over-optimisation plot of Gao, Schulman and Hilton 2022 (figure 1: gold and proxy score
against the KL it costs). Its KL to pi_SFT (at the sampling temperature T; nats per response) needs no
samples (Stiennon et al. 2020):

    KL(pi_bon_n || pi_SFT) = log n - (n - 1) / n

Hilton's derivation: when r_phi(x, y) has no ties, pi_bon_n(y) = n F(r(y))^(n-1) pi_SFT(y), F the CDF of r
under pi_SFT; U = F(r(y_bon)) is the largest of n uniforms (density n u^(n-1), E[log U] = -1/n), so
KL = E[log n + (n-1) log U] = log n - (n-1)/n. With ties (a peaked pi_SFT repeats an answer) the formula
is an upper bound (Beirami et al. 2024, section 3): `distinct_samples` reports how often that happens.

The curve, for every n <= N at once, from N samples per prompt (the unbiased estimator Gao et al. use):
1. draw N answers per held-out prompt from pi_SFT at temperature T (one seeded `sample_batches` call);
2. score each with the proxy, PPO's reward without the KL: r_phi, standardised as `ppo.measure_score_norm`
   does (mean and std over the answers that ended) but on these very samples, so the ended answers of
   pi_SFT score mean 0, std 1 here; replaced by -penalty when <|end|> never came (`ppo.apply_missing_end`,
   PPO's default); and with the gold reward (the oracle);
3. sort by proxy; the i-th smallest (1-based) is the best of a uniformly random n-subset with probability
   C(i-1, n-1) / C(N, n), so E[gold of best-of-n] = sum_i C(i-1, n-1) / C(N, n) gold_(i), the same for proxy;
4. mean over prompts, with its standard error.
Ties in proxy are broken conservatively: the tied answer with the LOWER gold counts as chosen, so a lucky
tie-break never flatters best-of-n's gold (common when many answers share the missing-end penalty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .chat import prompt_ids
from .evaluation import gold_judge, mean_and_se, prompt_text
from .generate import sample_batches
from .ppo import apply_missing_end, reward_model_scores


def bon_kl(n: int) -> float:
    """KL(pi_bon_n || pi_SFT) = log n - (n - 1) / n nats per response (exact without ties, else a bound)."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def bon_weights(N: int, n: int) -> np.ndarray:
    """(N,) P(the i-th smallest of N samples is the largest of a random n-subset) = C(i-1, n-1) / C(N, n)."""
    if not 1 <= n <= N:
        raise ValueError(f"best-of-n from N samples needs 1 <= n <= N, got n = {n}, N = {N}")
    total = math.comb(N, n)
    return np.array([math.comb(i - 1, n - 1) / total for i in range(1, N + 1)])


def best_of_n_expectation(proxy, gold, n: int) -> tuple[float, float]:
    """(E[gold], E[proxy]) of the best-of-n choice among one prompt's N scored samples, n <= N.

    Sorted by proxy ascending, ties by gold descending: of tied answers, the one with the lowest gold ranks
    highest and is the one chosen (conservative). Unbiased for best-of-n from pi_SFT when the N are i.i.d.
    """
    proxy, gold = np.asarray(proxy, dtype=float), np.asarray(gold, dtype=float)
    order = np.lexsort((-gold, proxy))                       # last key first: proxy, then -gold
    w = bon_weights(len(proxy), n)
    return float(w @ gold[order]), float(w @ proxy[order])


def default_ns(N: int) -> list[int]:
    """1, 2, 4, ... up to N, and N itself: (1, 2, 4, 8, 16, 32, 64) for N = 64."""
    ns = [2 ** k for k in range(N.bit_length())]
    return ns + ([N] if ns[-1] != N else [])


# ----------------------------------------------------------------------------------------------
# Sampling and scoring the candidates
@dataclass
class Candidates:
    """N answers of pi_SFT to each of P prompts, with their scores; arrays are (P, N)."""

    texts: list[list[str]]
    """The answers, up to <|end|>."""
    ended: np.ndarray
    """True where the answer closed with <|end|>."""
    proxy: np.ndarray
    """Standardised r_phi (PPO's reward scale), -penalty where the answer has no <|end|>."""
    gold: np.ndarray | None
    """The judge's score (the oracle's gold reward); None when no judge was asked."""
    score_norm: tuple[float, float]
    """(mean, std) of raw r_phi over the answers that ended (over all when none did)."""


def standardise(raw: torch.Tensor, ended: torch.Tensor, penalty: float) -> tuple[torch.Tensor, tuple[float, float]]:
    """(raw - mean) / std over the ended answers (std floored at 1e-3, as `ppo.measure_score_norm`), then the
    missing-end replacement by -penalty. raw, ended: (B,) -> (B,), (mean, std)."""
    kept = raw[ended] if bool(ended.any()) else raw
    mean, std = kept.mean().item(), max(kept.std().item() if len(kept) > 1 else 1.0, 1e-3)
    return apply_missing_end((raw - mean) / std, ended, "replace", penalty), (mean, std)


@torch.no_grad()
def sample_candidates(policy, reward_model, tok, prompts: list, N: int, *, temperature: float,
                      max_new_tokens: int, seed: int, judge=gold_judge, missing_end_penalty: float = 1.0,
                      batch_size: int = 256) -> Candidates:
    """Steps 1-2: N answers per prompt from `policy` (pi_SFT), scored by r_phi and, when given, `judge`.

    prompts: strs or world prompt objects (the judge receives them as given). r_phi reads the token ids the
    sampler produced, re-packed right-padded (`ppo.reward_model_scores`): exactly what PPO's reward reads.
    `batch_size` rows are sampled at once (256: about twice as fast as 64 on a 2-core CPU for the tiny model).
    """
    device = policy.output_weight.device
    texts = [[] for _ in prompts]
    raw, ended, gold = [], [], [[] for _ in prompts]
    encoded = [prompt_ids(tok, prompt_text(p)) for p in prompts]
    for b in sample_batches(policy, tok, [prompt_text(p) for p in prompts], n=N, max_new_tokens=max_new_tokens,
                            temperature=temperature, seed=seed, batch_size=batch_size):
        raw.append(reward_model_scores(reward_model, [encoded[i] for i in b.rows], b.gen.response_ids,
                                       tok.pad_id, device).cpu())
        ended += b.ended
        for i, text in zip(b.rows, b.texts):
            texts[i].append(text)
            if judge is not None:
                gold[i].append(judge(prompts[i], text)[0])
    proxy, norm = standardise(torch.cat(raw), torch.tensor(ended), missing_end_penalty)
    shape = (len(prompts), N)            # rows are prompt-major: row i * N + s is sample s of prompt i
    return Candidates(texts, np.array(ended).reshape(shape), proxy.double().numpy().reshape(shape),
                      np.array(gold, dtype=float) if judge is not None else None, norm)


# ----------------------------------------------------------------------------------------------
# The curve and the answers
def curve(c: Candidates, ns) -> list[dict]:
    """Steps 3-4 for each n: mean over prompts of the best-of-n gold and proxy, with standard errors."""
    points = []
    for n in ns:
        per_prompt = np.array([best_of_n_expectation(p, g, n) for p, g in zip(c.proxy, c.gold)])  # (P, 2)
        gold, gold_se = mean_and_se(per_prompt[:, 0])
        proxy, proxy_se = mean_and_se(per_prompt[:, 1])
        points.append({"n": n, "kl": bon_kl(n), "gold": gold, "gold_se": gold_se, "proxy": proxy,
                       "proxy_se": proxy_se})
    return points


def best_of_n_curve(policy, reward_model, tok, prompts: list, *, N: int = 64, ns=None, temperature: float,
                    max_new_tokens: int, seed: int, judge=gold_judge, missing_end_penalty: float = 1.0) -> dict:
    """Gold and proxy of best-of-n from `policy` (pi_SFT) for every n in `ns` (default 1, 2, 4, ... N).

    Returns {"N", "n_prompts", "temperature", "score_norm": {"mean", "std"}, "distinct_samples" (mean over
    prompts of the fraction of distinct answers among the N: 1 = no ties, the analytic KL is exact),
    "ended_fraction" (the rest share the proxy -penalty: ties),
    "points": [{"n", "kl" (analytic, nats), "gold", "gold_se", "proxy", "proxy_se"}]}.
    """
    c = sample_candidates(policy, reward_model, tok, prompts, N, temperature=temperature,
                          max_new_tokens=max_new_tokens, seed=seed, judge=judge,
                          missing_end_penalty=missing_end_penalty)
    return {"N": N, "n_prompts": len(prompts), "temperature": temperature,
            "score_norm": {"mean": c.score_norm[0], "std": c.score_norm[1]},
            "distinct_samples": float(np.mean([len(set(t)) / N for t in c.texts])),
            "ended_fraction": float(c.ended.mean()),
            "points": curve(c, ns or default_ns(N))}


def best_of_n_answers(policy, reward_model, tok, prompts: list, n: int, *, temperature: float,
                      max_new_tokens: int, seed: int, missing_end_penalty: float = 1.0) -> list[str]:
    """The best-of-n answer to each prompt: of n samples of `policy`, the first with the highest proxy."""
    c = sample_candidates(policy, reward_model, tok, prompts, n, temperature=temperature,
                          max_new_tokens=max_new_tokens, seed=seed, judge=None,
                          missing_end_penalty=missing_end_penalty)
    return [texts[int(np.argmax(p))] for texts, p in zip(c.texts, c.proxy)]
