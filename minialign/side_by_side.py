"""`python train.py compare`: every finished policy's answer to your prompts, side by side, with its gold reward.

For instructors: type a prompt, see what pretraining, SFT, PPO, fine-grained PPO and DPO each made of it, and
what best-of-n from the SFT model with the reward model picks (best_of_n.py), each answer with the oracle's
gold reward and its components:

    python train.py compare --prompt "Translate to French: the cat" --prompt "Tell me a story about Mia."
    python train.py compare --prompts-file prompts.txt --greedy

Steps: 1. the prompts (repeatable --prompt, or --prompts-file with one per line); 2. every finished policy of
the run folder, loaded from its checkpoint (nothing is trained); 3. one answer per prompt and policy through
the chat template, sampled at EvalConfig's temperature with the same seed for every policy (paired, like the
evaluate stage), or greedy with --greedy; best-of-n always samples (n greedy answers would be one answer);
4. the oracle scores each answer; one block per prompt, one aligned row per policy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import ConfigError
from .evaluation import gold_judge
from .generate import sample_batches


@dataclass
class CompareConfig:
    """What `python train.py compare` shows (the prompts themselves are --prompt, repeatable)."""

    prompts_file: str = ""
    """A text file with one prompt per line (blank lines are skipped), instead of or beside --prompt."""
    best_of: int = 16
    """n of the best-of-n row: the SFT model's best answer of n by the reward model (when the reward model is
    trained). Range: best_of >= 0 (0 leaves the row out)."""
    greedy: bool = False
    """Greedy answers (argmax at every token) instead of sampling at EvalConfig's temperature."""


def read_prompts(prompts: list[str] | None, prompts_file: str = "") -> list[str]:
    """The --prompt values, then the lines of `prompts_file`; no prompt at all is a ConfigError."""
    out = [p for p in (prompts or []) if p.strip()]
    if prompts_file:
        if not os.path.isfile(prompts_file):
            raise ConfigError(f"--prompts-file {prompts_file}: no such file")
        with open(prompts_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        if not any(lines):
            raise ConfigError(f"--prompts-file {prompts_file}: the file holds no prompt (write one prompt per line)")
        out += [line for line in lines if line]
    if not out:
        raise ConfigError("no prompt given: pass --prompt TEXT (repeatable) or --prompts-file FILE (one prompt "
                          "per line)")
    return out


def answers_of(model, tok, prompts: list[str], *, greedy: bool, temperature: float, max_new_tokens: int,
               seed: int) -> list[str]:
    """One chat answer per prompt, in prompt order."""
    out = [""] * len(prompts)
    for b in sample_batches(model, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                            greedy=greedy, seed=seed):
        for i, text in zip(b.rows, b.texts):
            out[i] = text
    return out


def all_answers(run, prompts: list[str], cfg: CompareConfig, temperature: float, max_new_tokens: int) -> dict:
    """Steps 2-3: {policy name: [answer per prompt]} for every finished policy of `run`, best-of-n last."""
    from .best_of_n import best_of_n_answers
    from .pipeline import ensure_tokenizer, load_model
    from .report import finished, finished_policies
    from .reward import load_reward_model
    policies = finished_policies(run)
    if not policies:
        raise ConfigError(f"no finished policy in {run.out}: build one first (`python train.py --out {run.out}`, "
                          f"or `python train.py sft --out {run.out}`), or point --out at a run folder")
    tok = ensure_tokenizer(run)       # a finished policy means its tokenizer is there: this only loads it
    kw = dict(temperature=temperature, max_new_tokens=max_new_tokens, seed=run.seed)
    out, sft = {}, None
    for name, ckpt in policies:                      # one model in memory at a time (and pi_SFT for best-of-n)
        model = load_model(ckpt, run.device)
        out[name] = answers_of(model, tok, prompts, greedy=cfg.greedy, **kw)
        sft = model if name == "SFT" else sft
    rm_ckpt = os.path.join(run.stage_dir("rm"), "ckpt.pt")
    if cfg.best_of > 0 and sft is not None and finished(rm_ckpt):
        out[f"best-of-{cfg.best_of} (SFT + RM)"] = best_of_n_answers(
            sft, load_reward_model(rm_ckpt, run.device), tok, prompts, cfg.best_of, **kw)
    return out


def format_blocks(prompts: list[str], answers: dict[str, list[str]], judge=gold_judge) -> str:
    """Step 4: one block per prompt; in it one row per policy: name, gold, the oracle's components (those that
    apply to the prompt; '-' where one does not), and the answer as a Python string literal (quotes show an
    empty answer, escapes show line breaks)."""
    blocks = []
    for i, prompt in enumerate(prompts):
        scored = {name: judge(prompt, texts[i]) for name, texts in answers.items()}
        names = sorted({c for _, comps in scored.values() for c in comps})
        header = ["policy", "gold", *names, "answer"]
        rows = [[name, f"{total:.3f}", *[f"{comps[c]:.2f}" if c in comps else "-" for c in names],
                 repr(answers[name][i])] for name, (total, comps) in scored.items()]
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header) - 1)]
        lines = [f"=== prompt {i + 1}: {prompt!r}"]
        lines += ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in [header, *rows]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def compare(run, prompts: list[str] | None, cfg: CompareConfig, temperature: float, max_new_tokens: int) -> str:
    """Steps 1-4: the side-by-side text for `prompts` (the --prompt values) and cfg.prompts_file."""
    prompts = read_prompts(prompts, cfg.prompts_file)
    answers = all_answers(run, prompts, cfg, temperature, max_new_tokens)
    how = "greedy" if cfg.greedy else f"sampled at temperature {temperature} (seed {run.seed})"
    if cfg.greedy and any(name.startswith("best-of") for name in answers):
        how += f"; best-of-n samples at temperature {temperature} (seed {run.seed})"
    return (f"{len(answers)} policies of {run.out}, answers {how}, at most {max_new_tokens} tokens; gold reward "
            f"and its components by the oracle\n\n" + format_blocks(prompts, answers))
