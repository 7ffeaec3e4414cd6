"""minialign's command line: one subcommand per stage, or the whole pipeline with none.

    python train.py                      # every stage, in order, on the embedded world
    python train.py tokenizer            # train the BPE tokenizer
    python train.py pretrain [--corpus F]  # next-token pretraining of the GPT
    python train.py sft | rm | ppo | finegrained | dpo   # one post-training stage
    python train.py sft_reasoning | grpo   # worked-step SFT on verifiable problems, then GRPO
    python train.py evaluate             # every finished policy on held-out prompts, and report.md
    python train.py report               # rewrite <out>/report.md from what the stages wrote
    python train.py sample --prompt "Mia went to"
    python train.py compare --prompt "..." [--prompts-file F] [--greedy]   # every finished policy's answer
    python train.py data                 # look at the embedded world and its oracle

    torchrun --nproc_per_node N train.py pretrain | sft | rm | dpo | ppo | sft_reasoning | grpo   # N GPUs (DDP)

Shared flags: --preset tiny|small|gpt2, --device auto|cpu|cuda|mps, --out DIR, --seed N, --quick.
Each stage writes into <out>/<stage>/ (checkpoint, metrics.json, figures), resumes from its
checkpoint when re-run, and builds the stages it needs when they are missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time

import torch

from minialign import distributed
from minialign.checkpoint import catch_interrupts
from minialign.config import ConfigError, add_dataclass_args, cli_main, from_args, read_json, write_json
from minialign.generate import generate
from minialign.pipeline import (Run, add_run_args, ensure_pretrained, ensure_tokenizer, make_run,
                                pretrain_config)


def cmd_tokenizer(run: Run, args) -> None:
    tok = ensure_tokenizer(run)
    sample = "Mia found a red ball in the garden. <|endoftext|>"
    ids = tok.encode(sample)
    print(f"[tokenizer] {tok.vocab_size} tokens; {sample!r} -> {len(ids)} ids: {ids}")


def cmd_pretrain(run: Run, args) -> None:
    cfg = pretrain_config(run, args)
    model, tok = ensure_pretrained(run, cfg)
    print_samples(run, model, tok, ["Once upon a time", "Mia went to the", "Translate to French:"])


def cmd_sample(run: Run, args) -> None:
    model, tok = ensure_pretrained(run)
    print_samples(run, model, tok, args.prompt or ["Once upon a time"], n_tokens=args.max_new_tokens,
                  temperature=args.temperature)


def cmd_data(run: Run, args) -> None:
    from minialign.world import show_world
    show_world(seed=run.seed)


def cmd_compare(run: Run, args) -> None:
    from minialign.report import QUICK, EvalConfig
    from minialign.side_by_side import CompareConfig, compare
    ev = from_args(EvalConfig, args, **(QUICK if run.quick else {}))
    print(compare(run, args.prompt, from_args(CompareConfig, args), ev.temperature, ev.max_new_tokens))


def cmd_report(run: Run, args) -> None:
    from minialign.report import write_report
    write_report(run)


def print_samples(run: Run, model, tok, prompts, n_tokens: int = 40, temperature: float = 0.8):
    """Sample a continuation of each prompt from the base model and print it."""
    out = generate(model, [tok.encode(p) for p in prompts], max_new_tokens=n_tokens,
                   stop_ids=[tok.eot_id], pad_id=tok.pad_id, temperature=temperature,
                   generator=torch.Generator().manual_seed(run.seed))
    for p, ids in zip(prompts, out.response_ids):
        print(f"--- {p!r} ->\n{p}{tok.decode([i for i in ids if i != tok.eot_id])}")


def cmd_stage(module_name: str, config_name: str, ensure_name: str, ensure_module: str = "minialign.pipeline",
              quick_name: str = "QUICK"):
    """A subcommand for a post-training stage: its config (from the algorithm module, built from the flags, over the
    module's `quick_name` settings with --quick) and the stage function that builds it (`pipeline.ensure_<stage>`)."""
    def run_stage(run: Run, args) -> None:
        module = importlib.import_module(module_name)
        cls = getattr(module, config_name)
        cfg = from_args(cls, args, **(getattr(module, quick_name) if run.quick else {}))
        getattr(importlib.import_module(ensure_module), ensure_name)(run, cfg)
    return run_stage


# name: (function, what it does, config dataclass for its flags as (module, class) or None)
STAGES = {
    "tokenizer": (cmd_tokenizer, "train the byte-level BPE tokenizer", None),
    "pretrain": (cmd_pretrain, "next-token pretraining of the GPT", ("minialign.pretrain", "PretrainConfig")),
    "sft": (cmd_stage("minialign.sft", "SFTConfig", "ensure_sft"),
            "instruction tuning (SFT) on the world's task mixture", ("minialign.sft", "SFTConfig")),
    "rm": (cmd_stage("minialign.reward", "RMConfig", "ensure_rm"),
           "Bradley-Terry reward model from ranked comparisons", ("minialign.reward", "RMConfig")),
    "ppo": (cmd_stage("minialign.ppo", "PPOConfig", "ensure_ppo"),
            "PPO against the reward model with a per-token KL penalty", ("minialign.ppo", "PPOConfig")),
    "finegrained": (cmd_stage("minialign.finegrained", "FineGrainedConfig", "ensure_finegrained"),
                    "PPO with fine-grained segment rewards", ("minialign.finegrained", "FineGrainedConfig")),
    "dpo": (cmd_stage("minialign.dpo", "DPOConfig", "ensure_dpo"),
            "direct preference optimization from the SFT model", ("minialign.dpo", "DPOConfig")),
    "sft_reasoning": (cmd_stage("minialign.sft", "ReasoningSFTConfig", "ensure_sft_reasoning",
                                quick_name="REASONING_QUICK"),
                      "SFT on worked-step demonstrations of verifiable problems (GRPO's start)",
                      ("minialign.sft", "ReasoningSFTConfig")),
    "grpo": (cmd_stage("minialign.grpo", "GRPOConfig", "ensure_grpo"),
             "GRPO on the verifiable reward, from the sft_reasoning model", ("minialign.grpo", "GRPOConfig")),
    "evaluate": (cmd_stage("minialign.report", "EvalConfig", "ensure_evaluation", "minialign.report"),
                 "every policy on the same held-out prompts; writes report.md", ("minialign.report", "EvalConfig")),
}
# Stages that train with DistributedDataParallel under torchrun (the others run on one process).
DDP_STAGES = ("tokenizer", "pretrain", "sft", "rm", "dpo", "ppo", "sft_reasoning", "grpo")
EXTRA = {
    "sample": (cmd_sample, "sample from the pretrained model", None),
    "data": (cmd_data, "print examples of the embedded world with the oracle's scores", None),
    "report": (cmd_report, "rewrite <out>/report.md from the stages' outputs (trains nothing)", None),
    "compare": (cmd_compare, "every finished policy's answer to your prompts side by side, with its gold reward",
                ("minialign.side_by_side", "CompareConfig")),
}


def available(stages: dict) -> dict:
    """The stages whose module exists in this checkout."""
    out = {}
    for name, (fn, what, conf) in stages.items():
        if conf is None or importlib.util.find_spec(conf[0]) is not None:
            out[name] = (fn, what, conf)
    return out


def output_stamp(run: Run, name: str) -> float | None:
    """When the stage's main output was last written (None: not yet). A stage found finished only loads
    it, so an unchanged stamp after the stage ran means it trained nothing."""
    file = {"tokenizer": "tokenizer.json", "evaluate": "metrics.json"}.get(name, "ckpt.pt")
    path = os.path.join(run.stage_dir(name), file)
    return os.path.getmtime(path) if os.path.exists(path) else None


def cmd_all(run: Run, args) -> None:
    """Run every stage in order, with an overall progress line above each stage's bar, then the report."""
    from minialign.report import write_report
    start = time.perf_counter()
    stages = available(STAGES)
    times_path = os.path.join(run.out, "stage_times.json")
    times = read_json(times_path) if os.path.exists(times_path) else {}
    for i, (name, (fn, what, _)) in enumerate(stages.items(), 1):
        print(f"\n=== stage {i}/{len(stages)}: {name} ({what}) — "
              f"{time.perf_counter() - start:.0f}s so far ===", flush=True)
        stamp = output_stamp(run, name)
        t0 = time.perf_counter()
        fn(run, args)
        # A stage found finished only loads its output: keep the time it took when it ran.
        if name not in times or output_stamp(run, name) != stamp:
            times[name] = round(time.perf_counter() - t0, 1)
        write_json(times_path, times)
    write_report(run)      # again, now with the time of every stage
    print(f"\nall stages done in {time.perf_counter() - start:.0f}s; outputs in {run.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    sub = parser.add_subparsers(dest="command")
    for name, (fn, what, conf) in {**available(STAGES), **EXTRA}.items():
        p = sub.add_parser(name, help=what, description=what)
        add_run_args(p, suppress=True)
        if conf is not None:
            add_dataclass_args(p, getattr(importlib.import_module(conf[0]), conf[1]))
        if name == "sample":
            p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
            p.add_argument("--max-new-tokens", type=int, default=60)
            p.add_argument("--temperature", type=float, default=0.8)
        if name == "compare":
            p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
            from minialign.report import EvalConfig
            add_dataclass_args(p, EvalConfig, skip=("n_prompts", "prompt_kinds", "bon_samples", "bon_prompts"))
        p.set_defaults(fn=fn)
    return parser


def main(argv=None) -> int:
    """The command line; user errors print `error: ...` and exit 2, Ctrl-C exits 130 (config.cli_main)."""
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run = make_run(args)
    distributed.setup(run)
    fn = getattr(args, "fn", None) or cmd_all
    if distributed.is_distributed() and fn is not cmd_all and args.command not in DDP_STAGES:
        raise ConfigError(f"train.py {args.command}: only {', '.join(DDP_STAGES)} run under torchrun "
                          f"(DistributedDataParallel); run it as one process: python train.py {args.command}")
    if distributed.is_distributed() and fn is cmd_all:
        raise ConfigError("the whole pipeline runs as one process (fine-grained PPO and the evaluation are not "
                          "distributed): run `torchrun ... train.py pretrain|sft|rm|dpo|ppo|sft_reasoning|grpo`, "
                          "then `python train.py`")
    print(f"[minialign] out={run.out} preset={run.preset} device={run.device} seed={run.seed}"
          f"{' (quick)' if run.quick else ''}")
    catch_interrupts()
    try:
        fn(run, args)
    except KeyboardInterrupt:
        print(f"\ninterrupted. The last checkpoint of the running stage is intact (written atomically); "
              f"run the same command again to resume from it. Outputs: {run.out}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
