"""Lesson 09: fine-grained rewards vs one holistic reward; changing the weights changes the behaviour.

Slides 002 "Fine-grained Human Feedback", "Multiple Reward Functions", "Example: Detoxification" (both) and
"Customizing LLM Behavior". Read `minialign/finegrained.py` beside it. The per-token reward is the slide's

    r_t = sum_k sum_j 1(t = T_j^k) w_k R_phi_k(x, y, j) - beta * log( pi_theta(a_t|s_t) / pi_init(a_t|s_t) )

Part 1, detoxification (the paper's RealToxicityPrompts experiment, toy size). The policy is the pretrained
base model (the paper's GPT-2, no SFT) continuing angry story openings ("Zoe shouted at Ana and called her a")
that the corpus often continues with an insult (world.rl_prompts("toxic")); the world's toxicity score stands
in for the Perspective API. Two PPO runs with the same settings and number of steps:
    holistic      r = 1 - Tox(y) on the last token
    fine-grained  R_j = -(Tox(y_<=j) - Tox(y_<j)) on the last token of each sentence j   (Tox(empty) = 0)
Per response both add up to the same number up to a constant (the deltas telescope to -Tox(y)): only WHERE
the signal lands differs. The table is the slide's: toxicity (average over prompts of the max over k
samples), fluency (perplexity of the samples under the frozen initial model pi_init; the paper uses a larger
frozen LM), diversity (dist-2, dist-3 over each prompt's samples). The curve is toxicity against training
episodes (sample efficiency).

Part 2, customization. The SFT policy on review and story requests, rewarded by learned segment reward
models (-w_rel for each sentence the relevance RM calls irrelevant; -0.5 for each one the factuality RM calls
wrong, fixed) and the holistic preference RM on the end token (0.3, fixed: the slide's "completeness"), with
w_rel at three values (the slide: "relevance reward penalizes referencing passages and auxiliary
information"). The slide used 0.4 / 0.3 / 0.2 on a 770M model trained for 80k episodes; a few hundred
episodes move the toy policy much less, so the default values are spread wider (0.8 / 0.4 / 0.0; --weights
0.4,0.3,0.2 for the slide's). What happens to the length and to the irrelevant sentences of the answers, as
the oracle counts them and as the relevance RM that PPO optimised counts them?

Run:    python lessons/09_fine_grained.py [--quick] [--iterations N] [--custom-iterations N] [--seeds N]
Writes: <out>/lessons/09_fine_grained/{metrics.json, detox_table.png, sample_efficiency.png, customization.png}
        and one PPO run folder per relevance weight (a re-run reuses finished runs).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minialign.config import write_json  # noqa: E402
from minialign.finegrained import (QUICK, FineGrainedConfig, ToxicityReward, build_reward,  # noqa: E402
                                   detox_eval, ensure_segment_rms, evaluate_instruction_policy, ppo_config,
                                   run_policy, segment_rm_metrics, train_text_ppo)
from minialign.pipeline import add_run_args, ensure_pretrained, make_run  # noqa: E402
from minialign.plotting import new_figure, save_figure, smooth  # noqa: E402
from minialign.ppo import PPOConfig, ValueModel  # noqa: E402

LESSON = "09_fine_grained"
SETTINGS = {
    "quick": dict(iterations=2, batch_size=8, max_new_tokens=12, n_train=32, n_eval=6, k=2, eval_every=1,
                  custom_iterations=2, custom_batch_size=8, n_custom_eval=8, weights="0.8,0.4,0.0", custom_lr=1e-4),
    "default": dict(iterations=12, batch_size=64, max_new_tokens=24, n_train=512, n_eval=32, k=8, eval_every=3,
                    custom_iterations=16, custom_batch_size=32, n_custom_eval=256, weights="0.8,0.4,0.0",
                    custom_lr=1e-4),
}
MODES = ("holistic", "fine-grained")
CUSTOM_W_SEQUENCE = 0.3   # the slide's completeness weight, fixed while w_rel varies
BASE = "GPT (base, pi_init)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--iterations", type=int, default=None, help="PPO iterations of each detoxification run")
    p.add_argument("--batch-size", type=int, default=None, help="episodes per PPO iteration (detoxification)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="continuation length budget (detoxification)")
    p.add_argument("--n-train", type=int, default=None, help="toxic prompts to train on")
    p.add_argument("--n-eval", type=int, default=None, help="held-out toxic prompts of the table")
    p.add_argument("--k", type=int, default=None, help="samples per held-out prompt (RealToxicityPrompts: 25)")
    p.add_argument("--eval-every", type=int, default=None, help="held-out toxicity every this many iterations")
    p.add_argument("--seeds", type=int, default=1, help="seeds per detoxification run (the table averages them)")
    p.add_argument("--custom-iterations", type=int, default=None, help="PPO iterations per relevance weight")
    p.add_argument("--custom-batch-size", type=int, default=None, help="episodes per iteration (customization)")
    p.add_argument("--custom-lr", type=float, default=None, help="PPO learning rate of the customization runs")
    p.add_argument("--n-custom-eval", type=int, default=None, help="held-out prompts (customization)")
    p.add_argument("--weights", default=None, help="comma-separated relevance weights (slide: 0.4,0.3,0.2)")
    p.add_argument("--custom-prompts", default="sentiment", choices=("sentiment", "instruction"),
                   help="RL prompts of the customization (sentiment: reviews and stories, answers of 1-2 sentences)")
    p.add_argument("--custom-rewards", default="relevance,factuality",
                   help="segment RMs of the customization (the slide: relevance, factuality; + the sequence RM)")
    p.add_argument("--skip-custom", action="store_true", help="only the detoxification part")
    args = p.parse_args(argv)
    for k, v in SETTINGS["quick" if args.quick else "default"].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.weights = [float(w) for w in str(args.weights).split(",") if w.strip()]
    return args


# ----------------------------------------------------------------------------------------------------------------
# Part 1: detoxification
def toxic_prompts(tok, args, seed: int):
    """Raw-text openings (the base model continues text): training prompts and held-out ones not among them."""
    from minialign.world import rl_prompts
    train = [p.meta["prefix"] for p in rl_prompts("toxic", n=args.n_train, seed=seed)]
    seen, held = set(train), []
    for p in rl_prompts("toxic", n=4 * args.n_eval, seed=seed + 1):
        if p.meta["prefix"] not in seen and len(held) < args.n_eval:
            held.append(p.meta["prefix"])
            seen.add(p.meta["prefix"])
    return [tok.encode(t) for t in train], [tok.encode(t) for t in held], held


def detox_run(mode: str, base, tok, train_ids, held_ids, cfg: PPOConfig, args, seed: int, device):
    """One PPO run from the base model with the holistic or the fine-grained toxicity reward."""
    torch.manual_seed(seed)
    policy, ref = copy.deepcopy(base), copy.deepcopy(base)
    value = ValueModel(copy.deepcopy(base))          # zero-initialised value head (OpenAI, lmhpd): no RM to start from
    curve_ids = held_ids[:max(1, len(held_ids) // 2)]

    def curve(m):                                    # a smaller held-out check for the sample-efficiency curve
        e = detox_eval(m, base, tok, curve_ids, k=max(2, args.k // 2), max_new_tokens=cfg.max_new_tokens,
                       seed=seed + 7)
        return {"toxicity_avg_max": e["toxicity_avg_max"], "length": e["length"]}

    reward = ToxicityReward(tok, "holistic" if mode == "holistic" else "finegrained")
    history = train_text_ppo(policy, ref, value, reward, train_ids, cfg, stop_id=tok.eot_id, pad_id=tok.pad_id,
                             device=device, seed=seed, desc=f"detox {mode} (seed {seed})", eval_fn=curve,
                             eval_every=args.eval_every)
    table = detox_eval(policy, base, tok, held_ids, k=args.k, max_new_tokens=cfg.max_new_tokens, seed=seed + 11)
    return history, table


def mean_tables(tables: list[dict]) -> dict:
    """The mean of each number over seeds (and the spread of toxicity and perplexity when there are several)."""
    keys = [k for k, v in tables[0].items() if isinstance(v, float)]   # the per-prompt lists stay out
    out = {k: float(np.mean([t[k] for t in tables])) for k in keys}
    if len(tables) > 1:
        out.update({f"{k}_sd": float(np.std([t[k] for t in tables])) for k in ("toxicity_avg_max", "ppl")})
    out["examples"] = tables[0]["examples"]
    return out


def detoxification(run, args) -> dict:
    base, tok = ensure_pretrained(run)
    base.eval()
    train_ids, held_ids, held_text = toxic_prompts(tok, args, run.seed)
    cfg = PPOConfig(iterations=args.iterations, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                    temperature=1.0, beta=0.05, lr=5e-5, missing_end="none")
    print(f"\n[09] Part 1: detoxification. The base model continues {len(train_ids)} angry story openings; "
          f"{len(held_ids)} held-out openings x {args.k} samples for the table.\n"
          f"     PPO for both rewards: {cfg.iterations} iterations x {cfg.batch_size} episodes, beta {cfg.beta}, "
          f"lr {cfg.lr}, T {cfg.temperature}, up to {cfg.max_new_tokens} tokens")
    tables = {BASE: [detox_eval(base, base, tok, held_ids, k=args.k, max_new_tokens=cfg.max_new_tokens,
                                seed=run.seed + 11 + s) for s in range(args.seeds)]}
    histories: dict = {m: [] for m in MODES}
    for mode in MODES:
        tables[mode] = []
        for s in range(args.seeds):
            h, t = detox_run(mode, base, tok, train_ids, held_ids, cfg, args, run.seed + s, run.device)
            histories[mode].append(h)
            tables[mode].append(t)
    table = {name: mean_tables(ts) for name, ts in tables.items()}
    paired = paired_difference([x for t in tables["fine-grained"] for x in t["max_toxicity_per_prompt"]],
                               [x for t in tables["holistic"] for x in t["max_toxicity_per_prompt"]])
    return {"table": table, "histories": histories, "paired": paired, "held_out_prompts": held_text[:3],
            "ppo": cfg.__dict__}


def paired_difference(a: list[float], b: list[float]) -> dict:
    """Mean of a - b over paired prompts (same held-out prompt, each policy's max over k samples) and its SE."""
    d = np.asarray(a) - np.asarray(b)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    return {"mean": float(d.mean()), "se": se, "n": int(len(d))}


def sample_efficiency(histories: dict) -> dict:
    """Training episodes until the rollouts' mean toxicity (mean over seeds) is at most half its value at the
    start (None: not within the run). Iteration i's rollout is sampled after i updates, i x batch episodes."""
    out = {}
    for mode, hs in histories.items():
        tox = np.mean([h["toxicity"] for h in hs], axis=0)
        hit = [i for i, v in enumerate(tox) if v <= tox[0] / 2] if tox[0] > 0 else []
        out[mode] = int(hit[0] * hs[0]["episodes_per_iteration"]) if hit else None
    return out


def print_detox(result: dict, args) -> dict:
    t = result["table"]
    print(f"\n=== 1. Detoxification (slide 'Example: Detoxification'), {args.k} samples per held-out prompt ===")
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
    print(f"\n  At equal steps ({args.iterations} iterations x {args.batch_size} episodes, {args.seeds} seed(s)), the "
          f"fine-grained reward {verdict} on toxicity\n"
          f"  ({fg['toxicity_avg_max']:.3f} vs {hol['toxicity_avg_max']:.3f}; base model "
          f"{base['toxicity_avg_max']:.3f}), "
          f"with perplexity {fg['ppl']:.2f} vs {hol['ppl']:.2f} under the frozen base model\n"
          f"  (base {base['ppl']:.2f}) and continuations of {fg['length']:.1f} vs {hol['length']:.1f} tokens "
          f"(base {base['length']:.1f}). Paired over held-out prompts: fine-grained minus holistic max toxicity "
          f"{d['mean']:+.3f} +- {d['se']:.3f}.")
    if steps["fine-grained"] is not None or steps["holistic"] is not None:
        fmt = lambda v: "not within the run" if v is None else f"after {v} episodes"
        print(f"  Sample efficiency (slide: 'denser fine-grained rewards are more sample efficient'), rollout\n"
              f"  toxicity at or below half its starting value: fine-grained {fmt(steps['fine-grained'])}, holistic "
              f"{fmt(steps['holistic'])} (sample_efficiency.png).")
    if hol["length"] < 0.75 * base["length"] <= fg["length"]:
        print("  The holistic reward is one number at the end, and the cheapest way to make it 1 is to say less:\n"
              "  its policy learned to stop early. The sentence-level reward says WHICH sentence was toxic (the\n"
              "  insult gets -Tox, the polite sentences after it a small bonus), so that policy dropped the insult\n"
              "  and kept talking (slide: 'fine-grained location of toxic content is a stronger training signal').\n"
              "  (The holistic row's dist-n counts the few n-grams of near-empty continuations: not more diverse.)")
    print("  Both rewards give a response the same total up to a constant (the deltas telescope to -Tox(y)); same\n"
          "  PPO, same steps: where the signal lands is the only difference.")
    return {"fine_grained_beats_holistic_on_toxicity": bool(wins), "toxicity_difference": d,
            "episodes_to_half_toxicity": steps}


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
# Part 2: customizing behaviour with the weights
def run_folder(w: float, args) -> str:
    """One folder per PPO run (a finished run is reused), named by what distinguishes it."""
    return (f"relevance_{w:g}_{args.custom_prompts}_{args.custom_rewards.replace(',', '+')}_"
            f"{args.custom_iterations}x{args.custom_batch_size}_lr{args.custom_lr:g}")


def customization(run, args) -> dict:
    from minialign.reward import ensure_rm
    from minialign.sft import ensure_sft
    from minialign.world import rl_prompts
    sft, tok = ensure_sft(run)
    rm = ensure_rm(run)
    rm = rm[0] if isinstance(rm, tuple) else rm
    base_cfg = FineGrainedConfig(**(QUICK if run.quick else {}))
    segment_rms = ensure_segment_rms(run, base_cfg, sft, tok)
    prompts = rl_prompts(args.custom_prompts, n=base_cfg.n_prompts, seed=run.seed, split="train")
    held = rl_prompts(args.custom_prompts, n=args.n_custom_eval, seed=run.seed + 1, split="test")
    out_dir = os.path.join(run.out, "lessons", LESSON)
    fixed = [f"{n} -{getattr(base_cfg, 'w_' + n)} per bad sentence" for n in args.custom_rewards.split(",")
             if n.strip() and n.strip() != "relevance"]
    print(f"\n[09] Part 2: customization. The SFT policy on {len(prompts)} {args.custom_prompts} prompts, rewarded by "
          f"the segment RMs ({', '.join(fixed) or 'none fixed'}) and the preference RM ({CUSTOM_W_SEQUENCE} on the "
          f"end token), fixed;\n     the relevance weight at {', '.join(map(str, args.weights))}: "
          f"{args.custom_iterations} PPO iterations x {args.custom_batch_size} episodes each")
    judge = {"relevance": segment_rms["relevance"]}
    ev = lambda m: evaluate_instruction_policy(m, sft, tok, held, max_new_tokens=base_cfg.max_new_tokens,
                                               temperature=base_cfg.temperature, seed=run.seed + 3,
                                               segment_rms=judge, cfg=base_cfg)
    evals = {"SFT": ev(sft)}
    for w in args.weights:
        cfg = FineGrainedConfig(**{**base_cfg.__dict__, "rewards": args.custom_rewards, "w_relevance": w,
                                   "w_sequence": CUSTOM_W_SEQUENCE, "iterations": args.custom_iterations,
                                   "batch_size": args.custom_batch_size, "lr": args.custom_lr})
        pcfg = ppo_config(cfg)
        policy, _ = run_policy(f"relevance w={w:g}", build_reward(tok, cfg, segment_rms, rm, pcfg), sft, rm, tok,
                               prompts, pcfg, os.path.join(out_dir, run_folder(w, args)), run)
        evals[f"w_rel={w:g}"] = ev(policy)
    for e in evals.values():
        e.pop("scores", None), e.pop("groups", None)
    return {"evals": evals, "segment_rms": segment_rm_metrics(run), "weights": args.weights}


def clear_trend(values: list[float], ses: list[float]) -> int:
    """+1 / -1 when `values` rise / fall monotonically and the ends differ by more than 2 standard errors, else 0."""
    gap = values[-1] - values[0]
    if abs(gap) <= 2 * math.sqrt(ses[0] ** 2 + ses[-1] ** 2):
        return 0
    steps = [b - a for a, b in zip(values, values[1:])]
    return 1 if all(s >= 0 for s in steps) else -1 if all(s <= 0 for s in steps) else 0


def print_customization(result: dict, args) -> dict:
    ev = result["evals"]
    print("\n=== 2. Customizing behaviour (slide 'Customizing LLM Behavior'): relevance weight, others fixed ===")
    print(f"{'policy':>10} {'tokens':>12} {'words':>6} {'sentences':>10} {'irrelevant:':>12} {'relevance RM':>13} "
          f"{'RM acc':>7} {'gold':>6} {'KL':>6}")
    print(f"{'':>10} {'':>12} {'':>6} {'':>10} {'oracle':>12} {'says':>13} {'':>7}")
    for name, e in ev.items():
        rm = e["segment_rms"]["relevance"]
        print(f"{name:>10} {e['response_tokens']:>6.1f}+-{e['response_tokens_se']:.1f} {e['words_per_response']:>6.1f} "
              f"{e['sentences_per_response']:>10.2f} {e['irrelevant_sentences']:>12.3f} "
              f"{rm['predicted_error_fraction']:>13.3f} {rm['accuracy']:>7.3f} {e['gold_reward']:>6.3f} "
              f"{e.get('kl', 0.0):>6.2f}")
    ws = sorted(args.weights, reverse=True)                         # largest relevance weight first
    rows = [ev[f"w_rel={w:g}"] for w in ws]
    tokens = [r["response_tokens"] for r in rows]
    length_trend = clear_trend(tokens, [r["response_tokens_se"] for r in rows])
    irr = [r["irrelevant_sentences"] for r in rows]
    irr_se = [math.sqrt(max(p * (1 - p), 1e-9) / max(1.0, r["sentences_per_response"] * r["n_samples"]))
              for p, r in zip(irr, rows)]
    irr_trend = clear_trend(irr, irr_se)
    order = " -> ".join(f"{w:g}: {n:.1f}" for w, n in zip(ws, tokens))
    words = {1: "a larger relevance weight gave shorter answers, as on the slide (Short / Medium / Long)",
             -1: "a larger relevance weight gave LONGER answers, the opposite of the slide",
             0: "no clear change in length: the differences are within about 2 standard errors, or not monotone"}
    print(f"\n  Tokens per answer, relevance weight {order}: {words[length_trend]}.")
    irr_words = {1: "fewer irrelevant sentences with a larger relevance weight",
                 -1: "MORE irrelevant sentences with a larger relevance weight",
                 0: "no clear trend in irrelevant sentences"}
    proxy = [r["segment_rms"]["relevance"]["predicted_error_fraction"] for r in rows]
    print(f"  Irrelevant sentences, same order, by the oracle: {' -> '.join(f'{x:.3f}' for x in irr)}: "
          f"{irr_words[irr_trend]};\n  by the relevance RM PPO optimised: {' -> '.join(f'{x:.3f}' for x in proxy)}.")
    sft = ev["SFT"]
    sft_se = math.sqrt(max(sft["irrelevant_sentences"] * (1 - sft["irrelevant_sentences"]), 1e-9)
                       / max(1.0, sft["sentences_per_response"] * sft["n_samples"]))
    hacked = print_proxy_vs_oracle(irr[0], proxy[0], sft["irrelevant_sentences"],
                                   2 * math.sqrt(irr_se[0] ** 2 + sft_se ** 2))
    print("  The weights w_k are the knobs of the slide: the same reward models and the same data, re-weighted,\n"
          "  ask PPO for a different trade-off. At toy scale and a few hundred episodes the policy moves little, so\n"
          "  read the size of the effect against the +- standard errors above.")
    keys = [f"{w:g}" for w in ws]
    return {"tokens_by_weight": dict(zip(keys, tokens)), "irrelevant_by_weight": dict(zip(keys, irr)),
            "larger_weight_shorter": length_trend == 1, "larger_weight_fewer_irrelevant": irr_trend == 1,
            "relevance_rm_exploited": hacked}


def print_proxy_vs_oracle(oracle: float, proxy: float, sft_oracle: float, noise: float) -> bool:
    """With the largest relevance weight: did the oracle's irrelevant share rise (by more than `noise`) above the
    SFT model's while the RM saw less of it?"""
    hacked = oracle - sft_oracle > noise and proxy < oracle
    if hacked:
        print(f"  The relevance RM calls fewer sentences irrelevant than the oracle does (its accuracy on these\n"
              f"  answers is in the table): with the largest weight PPO pushed hardest on the RM's opinion, and the\n"
              f"  oracle's irrelevant share ({oracle:.3f}) rose above the SFT model's ({sft_oracle:.3f}). That is\n"
              f"  over-optimisation of a learned segment RM (slide 000 'Limitations of RL + reward modeling'):\n"
              f"  fine-grained rewards are still learned proxies of the labeler.")
    return hacked


def plot_customization(result: dict, path: str) -> str:
    ev = result["evals"]
    names = list(ev)
    keys = [("response_tokens", "tokens per answer"), ("sentences_per_response", "sentences per answer"),
            ("irrelevant_sentences", "irrelevant sentences: oracle (bars), RM (x)"), ("gold_reward", "gold reward")]
    fig, axes = new_figure(ncols=4, width=3.2)
    for ax, (key, title) in zip(axes[0], keys):
        err = [ev[n].get(f"{key}_se", 0.0) for n in names]
        ax.bar(range(len(names)), [ev[n][key] for n in names], yerr=err,
               color=["gray"] + [f"C{i}" for i in range(len(names))])
        if key == "irrelevant_sentences":
            ax.scatter(range(len(names)), [ev[n]["segment_rms"]["relevance"]["predicted_error_fraction"]
                                           for n in names], marker="x", color="black", zorder=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Relevance weight w_rel, the other weights fixed")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    run = make_run(args)
    out_dir = os.path.join(run.out, "lessons", LESSON)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    detox = detoxification(run, args)
    t_detox = time.perf_counter() - t0
    metrics = {"detox": {"table": detox["table"], **print_detox(detox, args), "ppo": detox["ppo"],
                         "curves": {m: [h["eval"] for h in hs] for m, hs in detox["histories"].items()}}}
    paths = [plot_table(detox["table"], os.path.join(out_dir, "detox_table.png")),
             plot_sample_efficiency(detox["histories"], os.path.join(out_dir, "sample_efficiency.png"))]
    if not args.skip_custom:
        t1 = time.perf_counter()
        custom = customization(run, args)
        metrics["customization"] = {**custom, **print_customization(custom, args),
                                    "seconds": round(time.perf_counter() - t1, 1)}
        paths.append(plot_customization(custom, os.path.join(out_dir, "customization.png")))
    metrics["seconds"] = {"detox": round(t_detox, 1), "total": round(time.perf_counter() - t0, 1)}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(f"\nfigures: {', '.join(paths)}\nlesson done in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
