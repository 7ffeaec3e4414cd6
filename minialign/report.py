"""The last stage: every policy measured with the same ruler, and the run's report.

    <out>/evaluate/metrics.json             base, SFT, PPO, fine-grained PPO and DPO on the same held-out prompts
    <out>/evaluate/gold_vs_kl_<kind>.png    gold reward against KL(pi || pi_SFT), one point per policy
    <out>/evaluate/components_<kind>.png    the gold reward's components, per policy
    <out>/report.md                  per-stage numbers and figures, the final table, config, versions, times

The final comparison (slide 002 "DPO versus Baselines"; docs/evaluation.md). Each policy answers the same
held-out prompts of each kind (instruction prompts of the world's "test" split: seen tasks, inputs no stage
trained on; and the RL prompts PPO trained on, held-out texts) by pure sampling at one temperature; the oracle scores every answer (the gold reward, which no stage optimised),
and the SFT model scores the same tokens for the KL:

    gold(pi)            = E_x E_{y ~ pi(.|x)} [ gold(x, y) ]
    KL(pi || pi_SFT)    = E_x E_{y ~ pi(.|x)} [ sum_t log pi(y_t | x, y_<t) - log pi_SFT(y_t | x, y_<t) ]
    win rate vs SFT     = P(gold(x, y_pi) > gold(x, y_SFT)) + 1/2 P(tie), paired by prompt and seed

Every RLHF method was regularised towards pi_SFT, so KL to the SFT model is the price each paid for its
gold reward: a method is better when it reaches more gold at the same KL (the DPO paper's frontier).

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


    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        from .world.prompts import RL_KINDS
        kinds = [k.strip() for k in self.prompt_kinds.split(",") if k.strip()]
        if not kinds or any(k not in RL_KINDS for k in kinds):
            raise ConfigError(f"--prompt-kinds must name one or more of {', '.join(RL_KINDS)} (comma-separated), "
                              f"got {self.prompt_kinds!r}")


QUICK: dict = dict(n_prompts=16, max_new_tokens=16)


# ----------------------------------------------------------------------------------------------
# The evaluation stage
def finished_policies(run) -> list[tuple[str, str]]:
    """(name, checkpoint path) of every policy whose stage finished in this run folder."""
    from .checkpoint import load_checkpoint
    out = []
    for name, stage in POLICIES:
        path = os.path.join(run.stage_dir(stage), "ckpt.pt")
        if os.path.exists(path) and load_checkpoint(path).get("done"):
            out.append((name, path))
    return out


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
    if os.path.exists(path):
        saved = read_json(path)
        if saved.get("config") == asdict(cfg) and saved.get("policy_names") == [n for n, _ in policies]:
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


SECTIONS = [("pretrain", "Pretraining", section_pretrain, ["loss.png"]),
            ("sft", "Instruction tuning (SFT)", section_sft, ["loss.png", "scores.png"]),
            ("rm", "Reward model", section_rm, ["training.png", "calibration.png", "reward_vs_gold.png"]),
            ("ppo", "PPO with a per-token KL penalty", section_ppo, ["ppo_curves.png"]),
            ("finegrained", "Fine-grained rewards", section_finegrained,
             ["segment_rms.png", "ppo_curves.png", "comparison.png"]),
            ("dpo", "DPO", section_dpo, ["dpo_training.png"])]


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
            parts += [f"### {table['n_prompts']} held-out {kind} prompts", "", final_table(table), "",
                      _figures(run, "evaluate", [f"gold_vs_kl_{kind}.png", f"components_{kind}.png"]), ""]
    for stage, title, section, figures in SECTIONS:
        path = os.path.join(run.stage_dir(stage), "metrics.json")
        if not os.path.exists(path):
            continue
        m = read_json(path)
        parts += [f"## {title}", ""]
        try:
            parts.append(section(m))
        except (KeyError, TypeError, ValueError) as e:     # an older or partial metrics file: say so, go on
            parts.append(f"(could not read {path}: {type(e).__name__} {e})")
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
