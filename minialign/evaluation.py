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

import numpy as np
import torch

from .batching import sequence_token_logprobs
from .chat import end_id, parse_response, prompt_ids
from .config import autocast
from .generate import generate


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
    g = torch.Generator().manual_seed(seed)         # generate() moves it to the policy's device
    jobs = [(i, p) for i, p in enumerate(prompts) for _ in range(n_samples)]
    out = Samples()
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        ids = [prompt_ids(tok, prompt_text(p), system) for _, p in chunk]
        with autocast(device):
            gen = generate(policy, ids, max_new_tokens=max_new_tokens, stop_ids=[end_id(tok)],
                           pad_id=tok.pad_id, temperature=temperature, generator=g)
            if ref is not None:
                args = (gen.tokens, gen.attention_mask, gen.response_mask)
                kl = sequence_kl(sequence_token_logprobs(policy, *args, temperature=temperature),
                                 sequence_token_logprobs(ref, *args, temperature=temperature))
                out.kl += kl.tolist()
        for (i, p), resp in zip(chunk, gen.response_ids):
            text, ended = parse_response(tok, resp)
            total, parts = judge(p, text)
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


def summarize(samples: Samples, prompts=None, n_examples: int = 3) -> dict:
    """The numbers a report prints: mean gold reward and KL with standard errors, and more."""
    gold, gold_se = mean_and_se(samples.gold)
    names = sorted({k for c in samples.components for k in c})
    out = {
        "gold_reward": gold, "gold_reward_se": gold_se,
        # a component that does not apply to a prompt is absent: average where it applies
        "components": {k: float(np.mean([c[k] for c in samples.components if k in c])) for k in names},
        "response_tokens": float(np.mean(samples.lengths)),
        "ended_fraction": float(np.mean(samples.ended)),
        "n_samples": len(samples.gold),
    }
    if samples.kl:
        kl, kl_se = mean_and_se(samples.kl)
        out.update(kl=kl, kl_se=kl_se, kl_per_token=float(np.sum(samples.kl) / max(1, sum(samples.lengths))))
    if prompts is not None:
        out["examples"] = [{"prompt": prompt_text(prompts[samples.prompt_index[j]]),
                            "response": samples.responses[j], "gold": samples.gold[j]}
                           for j in range(min(n_examples, len(samples.gold)))]
    return out


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
