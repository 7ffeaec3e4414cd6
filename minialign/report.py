"""The last stage: every policy measured with the same ruler, and the run's report.

    <out>/evaluate/metrics.json             base, SFT, PPO, fine-grained PPO and DPO on the same held-out prompts
    <out>/evaluate/gold_vs_kl_<kind>.png    gold reward against KL(pi || pi_SFT), one point per policy
    <out>/evaluate/components_<kind>.png    the gold reward's components, per policy
    <out>/evaluate/overoptimization.png     gold and proxy against KL: best-of-n, PPO's iterations, DPO's evaluations
    <out>/report.md                  per-stage numbers and figures, the final table, config, versions, times

The final comparison (slide 002 "DPO versus Baselines"; docs/evaluation.md). Each policy answers the same
held-out prompts of each kind (instruction prompts of the world's "test" split: seen tasks, inputs no stage
trained on; and the RL prompts PPO trained on, held-out texts) by pure sampling at one temperature; the oracle scores every answer (the gold reward, which no stage optimised),
and the SFT model scores the same tokens for the KL:

    gold(pi)            = E_x E_{y ~ pi(.|x)} [ gold(x, y) ]
    KL(pi || pi_SFT)    = E_x E_{y ~ pi(.|x)} [ sum_t log pi(y_t | x, y_<t) - log pi_SFT(y_t | x, y_<t) ]
    win rate vs SFT     = P(gold(x, y_pi) > gold(x, y_SFT)) + 1/2 P(tie), paired by prompt and seed

Every RLHF method was regularised towards pi_SFT, so KL to the SFT model is the price each paid for its
gold reward: a method is better when it reaches more gold at the same KL (the DPO paper's frontier). Once the
reward model is trained, best-of-n from pi_SFT (best_of_n.py), which trains nothing, draws that frontier's
baseline beside PPO's and DPO's trajectories (Gao et al. 2022, figure 1).

The report only reads what the stages wrote (their metrics.json, figures and stage_times.json): running
`python train.py report` rewrites it in a second, without training anything.
"""

from __future__ import annotations

import os
import re
import platform
import subprocess
import time
from dataclasses import asdict, dataclass

import numpy as np

from .config import ConfigError, read_json, write_json

# The policies of the final table: (name, stage folder). Missing stages are left out of the table.
POLICIES = [("base", "pretrain"), ("SFT", "sft"), ("PPO", "ppo"), ("fine-grained PPO", "finegrained"),
            ("DPO", "dpo")]


@dataclass
class EvalConfig:
    """The final evaluation of every policy on the same held-out prompts."""

    n_prompts: int = 256
    """Held-out prompts per kind, each answered once by every policy. Range: n_prompts >= 1."""
    prompt_kinds: str = "instruction,toxic"
    """Kinds of held-out prompts (world.rl_prompts, split 'test'): SFT, DPO and fine-grained PPO train on
    instruction prompts, PPO on PPOConfig.prompt_kind (toxic story openings by default)."""
    temperature: float = 0.7
    """Sampling temperature of every policy, and of the KL's log-probs (PPO's training temperature).
    Range: temperature > 0."""
    max_new_tokens: int = 48
    """Longest answer; an answer cut here has no <|end|> and loses the oracle's 'ends' component.
    Range: max_new_tokens >= 1."""
    bon_samples: int = 64
    """N: answers of pi_SFT per prompt for the best-of-n curve; every n = 1, 2, 4, ... N is estimated from the
    same N (best_of_n.py). Range: bon_samples >= 1."""
    bon_prompts: int = 32
    """Held-out instruction prompts of the best-of-n curve, drawn once the reward model is finished (each costs
    bon_samples answers of the SFT model). Range: bon_prompts >= 0 (0 skips the curve)."""
    tax_per_family: int = 12
    """The alignment tax: held-out problems per instruction task family that has exact answers (new inputs of
    the seen families), answered greedily by SFT and every policy tuned from it; exact match against SFT.
    Range: tax_per_family >= 0 (0 skips it)."""

    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        from .world.prompts import RL_KINDS
        kinds = [k.strip() for k in self.prompt_kinds.split(",") if k.strip()]
        if not kinds or any(k not in RL_KINDS for k in kinds):
            raise ConfigError(f"--prompt-kinds must name one or more of {', '.join(RL_KINDS)} (comma-separated), "
                              f"got {self.prompt_kinds!r}")


QUICK: dict = dict(n_prompts=16, max_new_tokens=16, bon_prompts=8, tax_per_family=1)


# ----------------------------------------------------------------------------------------------
# The evaluation stage
def finished(ckpt: str) -> bool:
    """Whether a stage's checkpoint exists and says its stage is done."""
    from .checkpoint import load_checkpoint
    return os.path.exists(ckpt) and bool(load_checkpoint(ckpt).get("done"))


def finished_policies(run) -> list[tuple[str, str]]:
    """(name, checkpoint path) of every policy whose stage finished in this run folder."""
    paths = [(name, os.path.join(run.stage_dir(stage), "ckpt.pt")) for name, stage in POLICIES]
    return [(name, path) for name, path in paths if finished(path)]


def ensure_evaluation(run, cfg: EvalConfig | None = None) -> dict:
    """Evaluate every finished policy against the SFT model; write metrics, figures and the report.

    Re-evaluates when the set of finished policies changed since the last evaluation. Returns the
    metrics dict: {"config", "policy_names", "kinds": {kind: {"n_prompts", "policies": {name: summary + win
    rate vs SFT}}}}.
    """
    from .evaluation import compare, evaluate_policy
    from .pipeline import load_model
    from .pipeline import ensure_sft
    from .world import rl_prompts

    cfg = cfg or EvalConfig(**(QUICK if run.quick else {}))
    out_dir = run.stage_dir("evaluate")
    path = os.path.join(out_dir, "metrics.json")
    sft, tok = ensure_sft(run)
    policies = finished_policies(run)
    kinds = [k.strip() for k in cfg.prompt_kinds.split(",") if k.strip()]
    bon = cfg.bon_prompts > 0 and finished(os.path.join(run.stage_dir("rm"), "ckpt.pt"))
    if os.path.exists(path):
        saved = read_json(path)
        if saved.get("config") == asdict(cfg) and saved.get("policy_names") == [n for n, _ in policies] \
                and ("best_of_n" in saved) == bon:
            write_report(run)
            return saved
    t0 = time.perf_counter()
    models = {name: sft if name == "SFT" else load_model(ckpt, run.device) for name, ckpt in policies}
    metrics = {"config": asdict(cfg), "policy_names": list(models), "kinds": {}}
    os.makedirs(out_dir, exist_ok=True)
    for kind in kinds:
        prompts = rl_prompts(kind, n=cfg.n_prompts, seed=run.seed + 1, split="test")
        print(f"[evaluate] {len(models)} policies x {len(prompts)} held-out {kind} prompts, T = {cfg.temperature}")
        results = {}
        for name, policy in models.items():
            # The same seed for every policy: paired samples for the win rate.
            results[name] = evaluate_policy(policy, sft, tok, prompts, temperature=cfg.temperature,
                                            max_new_tokens=cfg.max_new_tokens, seed=run.seed)
            print(f"  {name:17s} gold {results[name]['gold_reward']:.3f}  KL {results[name]['kl']:6.2f}")
        for name, res in results.items():
            res["win_rate_vs_sft"] = compare(res, results["SFT"], seed=run.seed)
        for res in results.values():   # one answer per prompt, in prompt order: the scores are enough
            res["scores"] = [round(x, 4) for x in res["scores"]]
            del res["groups"]
        metrics["kinds"][kind] = {"n_prompts": len(prompts), "policies": results}
        plot_gold_vs_kl(results, os.path.join(out_dir, f"gold_vs_kl_{kind}.png"), kind)
        plot_components(results, os.path.join(out_dir, f"components_{kind}.png"), kind)
        print(final_table(metrics["kinds"][kind]))
        print(flaw_table(metrics["kinds"][kind]))
    if cfg.tax_per_family > 0:
        metrics["alignment_tax"] = evaluate_alignment_tax(models, tok, cfg, run.seed)
        print(tax_table(metrics["alignment_tax"]))
    if bon:
        metrics["best_of_n"] = evaluate_best_of_n(run, cfg, sft, tok)
        plot_overoptimization(metrics["best_of_n"], *trajectories(run), os.path.join(out_dir, "overoptimization.png"))
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(path, metrics)
    write_report(run)
    return metrics


def plot_gold_vs_kl(results: dict, path: str, kind: str = "") -> str:
    """Gold reward (with its standard error) against KL(pi || pi_SFT), one labelled point per policy."""
    from .plotting import new_figure, save_figure
    fig, axes = new_figure(1, 1, width=5.5, height=4.2)
    ax = axes[0, 0]
    for name, r in results.items():
        ax.errorbar(r["kl"], r["gold_reward"], xerr=r.get("kl_se", 0), yerr=r["gold_reward_se"], fmt="o",
                    capsize=3, label=name)
    # symlog: the base model sits hundreds of nats away, the RLHF policies within a few
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("KL(pi || pi_SFT), nats per response (symlog scale)")
    ax.set_ylabel(f"gold reward (oracle), held-out {kind} prompts")
    ax.set_title("what each method paid in KL for its gold reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_components(results: dict, path: str, kind: str = "") -> str:
    """The gold reward's components (mean where they apply), grouped bars: one group per component."""
    from .plotting import new_figure, save_figure
    names = sorted({k for r in results.values() for k in r["components"]})
    fig, axes = new_figure(1, 1, width=max(6.0, 1.1 * len(names) + 2), height=4.0)
    ax = axes[0, 0]
    width = 0.8 / max(1, len(results))
    for i, (policy, r) in enumerate(results.items()):
        x = np.arange(len(names)) + (i - (len(results) - 1) / 2) * width
        ax.bar(x, [r["components"].get(n, np.nan) for n in names], width, label=policy)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean component score")
    ax.set_title(f"the oracle's components of the gold reward, per policy ({kind} prompts)")
    ax.legend(fontsize=8, ncol=min(5, len(results)))
    return save_figure(fig, path)


def evaluate_alignment_tax(models: dict, tok, cfg: EvalConfig, seed: int) -> dict:
    """Deck 002, "Limitations of PPO Methods": "performance on tasks may suffer" (InstructGPT's alignment tax).

    Exact match of greedy answers to held-out task problems with a checkable answer, per policy (the base model
    is left out: it does not answer in the chat format), and each policy's paired difference from SFT on the
    same problems, with standard errors over problems."""
    from .evaluation import generate_answers, mean_and_se, score_answer
    from .world import instruction_data
    examples = [ex for ex in instruction_data(seed=seed + 1, n_per_family=cfg.tax_per_family, splits="test")
                if ex.answers]
    prompts = [ex.prompt for ex in examples]
    hits = {}
    for name, model in models.items():
        if name == "base":
            continue
        answers = generate_answers(model, tok, prompts, max_new_tokens=cfg.max_new_tokens)
        hits[name] = np.array([float(score_answer(ex, a["text"])["exact_match"]) for ex, a in zip(examples, answers)])
    out = {"n_problems": len(examples), "families": len({ex.family for ex in examples}), "policies": {}}
    for name, h in hits.items():
        em, se = mean_and_se(h)
        d, d_se = mean_and_se(h - hits["SFT"]) if "SFT" in hits else (float("nan"), float("nan"))
        out["policies"][name] = {"exact_match": em, "se": se, "vs_sft": d, "vs_sft_se": d_se}
    return out


def tax_table(tax: dict) -> str:
    """Exact match per policy and the paired difference from SFT (the alignment tax when negative)."""
    rows = [[name, f"{r['exact_match']:.3f} ± {r['se']:.3f}",
             "" if name == "SFT" else f"{r['vs_sft']:+.3f} ± {r['vs_sft_se']:.3f}"]
            for name, r in tax["policies"].items()]
    return _table(["policy", "exact match", "minus SFT (paired)"], rows)


def evaluate_best_of_n(run, cfg: EvalConfig, sft, tok) -> dict:
    """The best-of-n curve of pi_SFT with the finished reward model, on held-out instruction prompts."""
    from .best_of_n import best_of_n_curve
    from .ppo import PPOConfig
    from .reward import load_reward_model
    from .world import rl_prompts
    rm = load_reward_model(os.path.join(run.stage_dir("rm"), "ckpt.pt"), run.device)
    prompts = rl_prompts("instruction", n=cfg.bon_prompts, seed=run.seed + 1, split="test")
    print(f"[evaluate] best-of-n: {cfg.bon_samples} answers of SFT to each of {len(prompts)} held-out instruction "
          f"prompts, scored by the reward model and the oracle")
    out = best_of_n_curve(sft, rm, tok, prompts, N=cfg.bon_samples, temperature=cfg.temperature,
                          max_new_tokens=cfg.max_new_tokens, seed=run.seed,
                          missing_end_penalty=PPOConfig.missing_end_penalty)
    for p in out["points"]:
        print(f"  best-of-{p['n']:<3d} KL {p['kl']:5.2f}  gold {p['gold']:.3f} ± {p['gold_se']:.3f}  "
              f"proxy {p['proxy']:+.2f} ± {p['proxy_se']:.2f}")
    return out


def trajectories(run) -> tuple[dict | None, dict | None]:
    """PPO's and DPO's metrics.json, when they hold a trajectory: PPO's per-iteration history (kl, gold_reward,
    proxy_reward), DPO's evaluations (eval_history: kl, gold_reward)."""
    ppo, dpo = (os.path.join(run.stage_dir(s), "metrics.json") for s in ("ppo", "dpo"))
    ppo = read_json(ppo) if os.path.exists(ppo) else None
    dpo = read_json(dpo) if os.path.exists(dpo) else None
    if ppo is not None and not all(ppo.get("history", {}).get(k) for k in ("kl", "gold_reward", "proxy_reward")):
        ppo = None
    if dpo is not None and not (dpo.get("eval_history") and dpo.get("eval_reference")):
        dpo = None
    return ppo, dpo


def align_zeros(*axes) -> None:
    """Set the y-limits of twin axes so that 0 sits at the same height on each, every curve still in view."""
    lims = [(min(a.get_ylim()[0], 0.0), max(a.get_ylim()[1], 0.0)) for a in axes]
    below = float(np.mean([-lo / (hi - lo) if hi > lo else 0.5 for lo, hi in lims]))   # height share under 0
    for a, (lo, hi) in zip(axes, lims):
        span = max(-lo / below if below > 0 else 0.0, hi / (1 - below) if below < 1 else 0.0) or 1.0
        a.set_ylim(-below * span, (1 - below) * span)


def plot_overoptimization(bon: dict, ppo: dict | None, dpo: dict | None, path: str) -> str:
    """Gold (solid, left axis) and proxy (dashed, right axis) against KL(pi || pi_SFT): best-of-n, PPO's iterations,
    DPO's evaluations. Each curve is relative to its own start, pi_SFT on the prompts it was measured on."""
    from .plotting import new_figure, save_figure
    fig, axes = new_figure(1, 1, width=6.5, height=4.5)
    ax = axes[0, 0]
    right = ax.twinx()
    pts = bon["points"]
    kl = [p["kl"] for p in pts]
    ax.plot(kl, [p["gold"] - pts[0]["gold"] for p in pts], "-o", color="C0", label="best-of-n gold")
    right.plot(kl, [p["proxy"] - pts[0]["proxy"] for p in pts], "--o", color="C0", mfc="none", label="best-of-n proxy")
    for p in pts:
        ax.annotate(f"{p['n']}", (p["kl"], p["gold"] - pts[0]["gold"]), textcoords="offset points", xytext=(0, 6),
                    fontsize=7, color="C0", ha="center")
    if ppo is not None:
        h = ppo["history"]
        ax.plot(h["kl"], [g - h["gold_reward"][0] for g in h["gold_reward"]], "-", color="C1", lw=1, label="PPO gold")
        right.plot(h["kl"], [r - h["proxy_reward"][0] for r in h["proxy_reward"]], "--", color="C1", lw=1,
                   label="PPO proxy")
    if dpo is not None:
        start = dpo["eval_reference"]["gold_reward"]
        e = [{"kl": 0.0, "gold_reward": start}] + [x for x in dpo["eval_history"] if x.get("step")]
        ax.plot([x["kl"] for x in e], [x["gold_reward"] - start for x in e], "-s", color="C2", ms=4, label="DPO gold")
    # Gao et al. plot against d = sqrt(KL): the same here, the ticks still read KL (a negative k1 estimate sits at 0)
    for a in (ax, right):
        a.set_xscale("function", functions=(lambda x: np.sqrt(np.maximum(x, 0)), np.square))
    ax.set_xlim(left=0)
    align_zeros(ax, right)
    ax.set_xlabel("KL(pi || pi_SFT), nats per response (square-root scale)")
    ax.set_ylabel("gold reward - pi_SFT's (solid)")
    right.set_ylabel("proxy (standardised r_phi) - pi_SFT's (dashed)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("over-optimisation: what each optimiser buys per nat")
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    extra = right.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=7, loc="upper left")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# The report
def _f(x, digits: int = 3) -> str:
    """A number for a table: fixed digits, 'n/a' when missing."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def final_table(metrics: dict) -> str:
    """The final comparison as a markdown table (also printed by the evaluate stage)."""
    results = metrics["policies"]
    names = sorted({k for r in results.values() for k in r["components"]})
    header = ["policy", "gold reward", *names, "KL to SFT", "win rate vs SFT", "distinct answers", "distinct-2",
              "tokens"]
    rows = []
    for name, r in results.items():
        w = r["win_rate_vs_sft"]
        rows.append([name, f"{r['gold_reward']:.3f} ± {r['gold_reward_se']:.3f}",
                     *[r["components"].get(n) for n in names], f"{r['kl']:.2f}",
                     f"{w['win_rate']:.2f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}]", r.get("distinct_responses"),
                     r.get("distinct_2"), f"{r['response_tokens']:.1f}"])
    return _table(header, rows)


def flaw_table(metrics: dict) -> str:
    """Each demonstrator flaw's rate (world.response_flaws) in each policy's answers, one column per policy."""
    results = {name: r for name, r in metrics["policies"].items() if r.get("flaw_rates")}
    if not results:
        return ""
    flaws = list(next(iter(results.values()))["flaw_rates"])
    rows = [[flaw, *[f"{r['flaw_rates'][flaw]:.3f}" for r in results.values()]] for flaw in flaws]
    return _table(["flaw", *results], rows)


def _figures(run, stage: str, names: list[str]) -> str:
    """Markdown image links to the stage's figures that exist, relative to report.md."""
    return "\n".join(f"![{stage} {n}]({stage}/{n})" for n in names
                     if os.path.exists(os.path.join(run.stage_dir(stage), n)))


def _config_block(config: dict | None) -> str:
    if not config:
        return ""
    body = "\n".join(f"{k} = {v!r}" for k, v in config.items())
    return f"\n<details><summary>configuration</summary>\n\n```\n{body}\n```\n</details>\n"


def _code(text: str) -> str:
    """`text` as an inline code span that no character of a model's output can break: the fence is one
    backtick longer than the longest run inside (CommonMark), padded with spaces, on one line."""
    text = repr(text)
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence} {text} {fence}"


def _samples(samples: list[dict], n: int = 3) -> str:
    return "\n".join(f"- {_code(s['prompt'])} -> {_code(s['response'])}" for s in samples[:n])


def section_pretrain(m: dict) -> str:
    return "\n".join([
        f"- {m['n_params'] / 1e6:.2f}M parameters, {m['steps']} steps, {m['tokens_seen']:,} tokens seen "
        f"({m['train_tokens']:,} training tokens of text)",
        f"- final loss: train {_f(m['final_train_loss'])}, validation {_f(m['final_val_loss'])} nats/token "
        f"(perplexity {_f(m['val_perplexity'], 1)})",
        f"- training speed: {_f(m.get('tokens_per_s_median'), 0)} tokens/s (median)"])


def section_sft(m: dict) -> str:
    rows = []
    for split, after in m["eval"]["splits"].items():
        before = m.get("base_eval", {}).get("splits", {}).get(split, {})
        rows.append([split, before.get("score"), after.get("score"), before.get("exact_match"),
                     after.get("exact_match"), before.get("gold"), after.get("gold")])
    loss = ", ".join(f"{k} {_f(v)}" for k, v in m.get("heldout_loss", {}).items())
    return "\n".join([
        f"- {m['steps']} steps on {m['n_examples']:,} examples; final training loss {_f(m['final_train_loss'])}; "
        f"held-out loss: {loss}",
        "", "Task score (exact match where the task has an answer, else the oracle's correctness grade), before "
        "(base model) and after SFT:", "",
        _table(["split", "score base", "score SFT", "exact base", "exact SFT", "gold base", "gold SFT"], rows)])


def section_rm(m: dict) -> str:
    return "\n".join([
        f"- {m['n_train_comparisons']:,} comparisons from {m['n_train_prompts']:,} prompts ({m['data']}); "
        f"final training loss {_f(m['final_train_loss'])}",
        f"- held-out pairwise accuracy: {_f(m['accuracy_vs_annotators'])} vs the annotators, "
        f"{_f(m['accuracy_vs_oracle'])} vs the oracle's gold order (the annotators themselves agree with the "
        f"oracle on {_f(m.get('annotators_vs_oracle'))}; Bradley-Terry predicts {_f(m.get('noise_ceiling_expected'))})",
        f"- correlation with the gold reward: Pearson {_f(m.get('pearson_vs_gold'))}, "
        f"Spearman {_f(m.get('spearman_vs_gold'))}; calibration error (ECE) {_f(m['calibration'].get('ece'))}",
        *([f"- on responses sampled from the SFT model (what PPO will see): accuracy vs the oracle "
           f"{_f(m['sft_samples'].get('accuracy_vs_oracle'))}, Pearson with gold "
           f"{_f(m['sft_samples'].get('pearson_vs_gold'))}"] if m.get("sft_samples") else []),
        f"- normalisation on {m['normalization']['n_samples']} SFT samples: gain {_f(m['normalization']['gain'])}, "
        f"bias {_f(m['normalization']['bias'])}"])


def section_ppo(m: dict) -> str:
    first = m.get("initial", {})
    rows = [[k, first.get(k), m.get(k)] for k in ("proxy_reward", "gold_reward", "kl", "response_length")]
    return "\n".join([
        f"- {m['iterations']} iterations, beta {_f(m.get('beta'))}, {_f(m['seconds_per_iteration'], 2)} s/iteration; "
        f"last iterations: clip fraction {_f(m.get('clipfrac'))}, approx KL old/new {_f(m.get('approxkl'), 4)}, "
        f"explained variance {_f(m.get('explained_variance'))}, entropy {_f(m.get('entropy'))}",
        "", "Training batches, first iteration -> mean of the last five:", "",
        _table(["", "first", "last"], rows),
        "", "Answers before PPO:", _samples(m.get("samples", {}).get("before", [])),
        "", "after PPO:", _samples(m.get("samples", {}).get("after", []))])


def section_finegrained(m: dict) -> str:
    rms = [[k, v.get("accuracy"), v.get("balanced_accuracy"), v.get("error_fraction")]
           for k, v in m.get("segment_rms", {}).items() if isinstance(v, dict)]
    ev = [[k, v["gold_reward"], v.get("kl"), v.get("toxic_sentences"), v.get("irrelevant_sentences"),
           v.get("wrong_sentences"), v.get("response_tokens")] for k, v in m.get("eval", {}).items()]
    w = ", ".join(f"w_{k} = {v}" for k, v in m.get("weights", {}).items())
    return "\n".join([f"Weights: {w}.", "", "Segment reward models (held-out segments):", "",
                      _table(["reward", "accuracy", "balanced accuracy", "error fraction"], rms), "",
                      "Held-out evaluation:", "",
                      _table(["policy", "gold", "KL", "toxic sent.", "irrelevant sent.", "wrong sent.", "tokens"], ev)])


def section_dpo(m: dict) -> str:
    f, l = m.get("first_step", {}), m.get("final", {})
    keys = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracy", "logps/chosen",
            "logps/rejected")
    w = m.get("win_rate_vs_reference", {})
    ev = m.get("eval", {})
    return "\n".join([
        f"- {m['steps']} steps on {m['pairs']:,} pairs (beta {m['config']['beta']}, loss {m['config']['loss']}), "
        f"{_f(m.get('seconds_per_step'), 3)} s/step",
        f"- held-out: gold {_f(ev.get('gold_reward'))} (SFT {_f(m.get('eval_reference', {}).get('gold_reward'))}), "
        f"KL {_f(ev.get('kl'))}, win rate vs SFT {_f(w.get('win_rate'))}",
        "", _table(["", "first step", "last"], [[k, f.get(k), l.get(k)] for k in keys])])


def _reasoning_rows(ev: dict) -> list[list]:
    """One row per split and family of an `evaluate_reasoning` result: accuracy (pass@1) ± its standard error."""
    rows = [[f"split: {k}", f"{v['pass@1']:.3f} ± {v['pass@1_se']:.3f}"] for k, v in ev["splits"].items()]
    return rows + [[f"family: {k}", f"{v['pass@1']:.3f} ± {v['pass@1_se']:.3f}"] for k, v in ev["families"].items()]


def section_sft_reasoning(m: dict) -> str:
    ev = m["eval"]
    return "\n".join([
        f"- {m['steps']} steps on {m['n_examples']:,} {m['form']} demonstrations; final training loss "
        f"{_f(m.get('final_train_loss'))}; {_f(m.get('train_seconds'), 0)} s of training",
        f"- greedy answers to {ev['n_problems']} held-out problems (the test pool: problems no stage trained on; the "
        f"hard band: more digits and longer lists than any training problem), exact answers only; "
        f"{ev['worked']:.0%} of the answers worked steps, {ev['response_tokens']:.1f} tokens on average",
        "", _table(["held-out problems", "accuracy ± s.e."], _reasoning_rows(ev))])


def section_grpo(m: dict) -> str:
    h, c = m["heldout"], m["config"]
    before, after, ks = h["sft"], h["grpo"], h["ks"]
    rows = [[f"pass@{k}", f"{before[f'pass@{k}']:.3f} ± {before[f'pass@{k}_se']:.3f}",
             f"{after[f'pass@{k}']:.3f} ± {after[f'pass@{k}_se']:.3f}"] for k in ks]
    rows += [["response tokens", before["response_tokens"], after["response_tokens"]],
             ["well-formed answers", before["format"], after["format"]]]
    first = m.get("initial", {})
    k8 = 8 if 8 in ks else ks[-1]
    gap = before[f"pass@{k8}"] - before["pass@1"]
    bar = min(0.10, gap / 2)
    return "\n".join([
        f"- {m['iterations']} iterations of {c['prompts_per_iteration']} problems x G = {c['group_size']} samples "
        f"(temperature {c['temperature']}, beta {c['beta']}, lr {c['lr']}) on {m['n_problems']} training problems; "
        f"{_f(m['seconds_per_iteration'], 2)} s/iteration",
        f"- training batches, first iteration -> mean of the last five: reward {_f(first.get('reward'))} -> "
        f"{_f(m.get('reward'))}, all-equal groups {_f(m.get('frac_equal_groups'))}, response length "
        f"{_f(first.get('response_length'), 1)} -> {_f(m.get('response_length'), 1)} tokens, KL to pi_ref "
        f"{_f(m.get('kl'))} nats",
        f"- held-out pass@1 gain over the SFT start: **{h['pass@1_gain']:+.3f} ± {h['pass@1_gain_se']:.3f}** (paired "
        f"over {after['n_problems']} problems of the test pool, {after['n_samples']} samples each at temperature "
        f"{c['temperature']}); the SFT model's own pass@1 -> pass@{k8} gap is {gap:.3f}, so the bar min(0.10, gap / 2) "
        f"= {bar:.3f} is " + ("met" if h["pass@1_gain"] >= bar and h["pass@1_gain"] > 2 * h["pass@1_gain_se"]
                              else "not met") + " (the gain must also exceed two standard errors)",
        "", _table(["held-out", "SFT (start)", "GRPO"], rows),
        "", "Answers before GRPO:", _samples(m.get("samples", {}).get("before", [])),
        "", "after GRPO:", _samples(m.get("samples", {}).get("after", []))])


def section_best_of_n(bon: dict, ppo: dict | None, dpo: dict | None) -> str:
    """The over-optimisation figure's numbers: best-of-n's end points and what differs between the curves."""
    pts = bon["points"]
    best = max(pts, key=lambda p: p["gold"])
    rows = [p for p in pts if p is pts[0] or p is best or p is pts[-1]]
    label = lambda p: f"{p['n']}" + (" (pi_SFT)" if p is pts[0] else "") + (" (highest gold)" if p is best else "")
    table = _table(["n", "KL (analytic)", "gold reward", "proxy"],
                   [[label(p), p["kl"], f"{p['gold']:.3f} ± {p['gold_se']:.3f}",
                     f"{p['proxy']:+.2f} ± {p['proxy_se']:.2f}"] for p in rows])
    others = []
    if ppo is not None:
        c = ppo.get("config", {})
        others.append(f"PPO's is the sampled k1 estimate on its training batches ({c.get('prompt_kind')} prompts, "
                      f"temperature {c.get('temperature')})")
    if dpo is not None:
        others.append("DPO's the sampled k1 estimate on its own held-out instruction prompts (temperature 1)")
    return "\n".join([
        f"Best-of-n from the SFT model, the reward model as the proxy: {bon['N']} answers to each of "
        f"{bon['n_prompts']} held-out instruction prompts at temperature {bon['temperature']}, every n <= "
        f"{bon['N']} estimated from the same answers without bias (a tie in proxy goes to the lower gold). The proxy "
        f"is PPO's reward without its KL term: r_phi standardised over these answers that ended (mean 0, std 1), "
        f"-1 for an answer without <|end|> ({1 - bon.get('ended_fraction', np.nan):.0%} of them here: tied at -1, "
        f"where the lowest gold counts, so with few ended answers a small n can lose gold). When the dashed proxy "
        f"keeps rising while the solid gold stalls or falls, the policy is over-optimising the reward model (Gao et "
        f"al. 2022).", "",
        table, "",
        "What differs between the curves:", "",
        f"- KL, in nats per response (summed over its tokens) to the SFT model: best-of-n's is analytic, "
        f"log n - (n - 1)/n, exact only when the SFT model never repeats an answer, else an upper bound (here "
        f"{bon['distinct_samples']:.0%} of the {bon['N']} answers to a prompt are distinct)"
        + "".join(f"; {o}" for o in others) + ".",
        "- Gold and proxy are drawn relative to each curve's start, the SFT model on the prompts that curve was "
        "measured on: PPO's prompts need not be best-of-n's, and their gold sits at another level (the table above "
        "and the final comparison give absolute values).",
        "- Proxy: best-of-n's and PPO's are the same standardised r_phi (PPO standardised it on the SFT model's "
        "answers to its own prompts at the start); DPO optimises no proxy and has only a gold curve."])


SECTIONS = [("pretrain", "Pretraining", section_pretrain, ["loss.png"]),
            ("sft", "Instruction tuning (SFT)", section_sft, ["loss.png", "scores.png"]),
            ("rm", "Reward model", section_rm, ["training.png", "calibration.png", "reward_vs_gold.png"]),
            ("ppo", "PPO with a per-token KL penalty", section_ppo, ["ppo_curves.png"]),
            ("finegrained", "Fine-grained rewards", section_finegrained,
             ["segment_rms.png", "ppo_curves.png", "comparison.png"]),
            ("dpo", "DPO", section_dpo, ["dpo_training.png"]),
            ("sft_reasoning", "SFT on worked steps (time to think)", section_sft_reasoning, ["loss.png"]),
            ("grpo", "GRPO on a verifiable reward", section_grpo, ["heldout.png", "passk.png", "grpo_curves.png"])]


def versions() -> dict:
    """Python, library and code versions, for the report's reproducibility section."""
    import matplotlib
    import tiktoken
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "tiktoken": tiktoken.__version__, "matplotlib": matplotlib.__version__,
           "platform": platform.platform()}
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out["git commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                                           text=True, timeout=5).stdout.strip() or "n/a"
    except (OSError, subprocess.SubprocessError):
        out["git commit"] = "n/a"
    return out


def _section(section, path: str, *metrics) -> str:
    """section(*metrics), or a line saying that `path` could not be read (an older or partial metrics file)."""
    try:
        return section(*metrics)
    except (KeyError, TypeError, ValueError) as e:
        return f"(could not read {path}: {type(e).__name__} {e})"


def write_report(run) -> str:
    """`<out>/report.md` from whatever the stages wrote; returns its path."""
    parts = [f"# minialign run report: `{run.out}`", "",
             f"Preset **{run.preset}**{' (--quick)' if run.quick else ''}, device **{run.device}**, seed **{run.seed}**, "
             f"written {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    ev_path = os.path.join(run.stage_dir("evaluate"), "metrics.json")
    if os.path.exists(ev_path):
        ev = read_json(ev_path)
        c = ev["config"]
        parts += ["## Final comparison", "",
                  f"Held-out prompts of each kind, one sample each at temperature {c['temperature']}; gold reward "
                  f"and its components from the oracle; KL to the SFT model in nats per response; win rate against "
                  f"SFT on the same prompts (ties count half) with a 95% bootstrap interval; diversity over the "
                  f"policy's answers to all the prompts pooled: the fraction of distinct answers and distinct-2 "
                  f"(unique word bigrams / all bigrams), so that a collapse to one sentence shows as 1/n and near "
                  f"0. SFT and DPO "
                  f"trained on instruction data; PPO and fine-grained PPO on the RL prompts of their configs "
                  f"(`prompt_kind`, in their sections below).", ""]
        for kind, table in ev["kinds"].items():
            parts += [f"### {table['n_prompts']} held-out {kind} prompts", "", final_table(table), ""]
            flaws = flaw_table(table)
            if flaws:
                parts += ["The demonstrators' flaws in each policy's answers (share of answers showing each, read "
                          "from the text by `world.response_flaws`; 'any' = at least one):", "", flaws, ""]
            parts += [_figures(run, "evaluate", [f"gold_vs_kl_{kind}.png", f"components_{kind}.png"]), ""]
        if ev.get("alignment_tax"):
            tax = ev["alignment_tax"]
            parts += ["## The alignment tax", "",
                      f"Greedy answers to {tax['n_problems']} held-out problems of {tax['families']} task families "
                      f"with a checkable answer (new inputs of the seen families); exact match, and each policy "
                      f"minus SFT on the same problems (deck 002, 'Limitations of PPO Methods': 'performance on "
                      f"tasks may suffer'). Standard errors over problems.", "", tax_table(tax), ""]
        if ev.get("best_of_n"):
            parts += ["## Over-optimisation: best-of-n, PPO and DPO against KL", "",
                      _figures(run, "evaluate", ["overoptimization.png"]), "",
                      _section(section_best_of_n, ev_path, ev["best_of_n"], *trajectories(run)), ""]
    for stage, title, section, figures in SECTIONS:
        path = os.path.join(run.stage_dir(stage), "metrics.json")
        if not os.path.exists(path):
            continue
        m = read_json(path)
        parts += [f"## {title}", "", _section(section, path, m)]
        parts += ["", _figures(run, stage, figures), _config_block(m.get("config")), ""]
    times_path = os.path.join(run.out, "stage_times.json")
    if os.path.exists(times_path):
        times = read_json(times_path)
        parts += ["## Time per stage", "",
                  _table(["stage", "seconds"], [[k, f"{v:.0f}"] for k, v in times.items()] +
                         [["total", f"{sum(times.values()):.0f}"]]), ""]
    parts += ["## Versions", "", _table(["", ""], [[k, str(v)] for k, v in versions().items()]), ""]
    path = os.path.join(run.out, "report.md")
    os.makedirs(run.out, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(parts))
    os.replace(tmp, path)
    print(f"[report] {path}")
    return path
