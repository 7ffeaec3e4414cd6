"""The stage cache: every stage's output lives in one run folder, and is built only when missing.

    <out>/tokenizer/tokenizer.json     BPE trained on the pretraining corpus
    <out>/pretrain/ckpt.pt             the base model (+ metrics.json, loss.png)
    <out>/sft/ ... <out>/rm/ ... <out>/ppo/ ... <out>/dpo/ ...   (later stages, same pattern)

`ensure_<stage>(run)` returns the stage's product, training it (and, first, whatever it needs) when
its finished checkpoint is missing, and resuming it when a partial checkpoint exists. train.py and
every lesson call these functions, so a lesson run after `python train.py` reuses its models,
and a lesson run alone builds what it needs.

`--quick` shrinks everything (corpus, model, steps) so a stage runs in seconds: tests and CI use it.
Its models are too small to show the lessons' effects; the default scale does.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch

from .checkpoint import check_compatible, load_checkpoint
from .config import config_text, from_args, pick_device, seed_everything
from .model import GPT, PRESETS, make_config
from .pretrain import PretrainConfig, pretrain, tokens_of
from .tokenizer import Tokenizer, train_bpe

# BPE vocabulary size per preset (the real GPT-2 shape keeps its own 50257).
VOCAB_SIZE = {"tiny": 2048, "small": 4096, "gpt2": 50257}
QUICK_VOCAB_SIZE = 512
# --quick: a 2-layer, 64-wide model and a few steps, so the whole stage takes seconds.
QUICK_MODEL = dict(n_layer=2, n_head=2, n_embd=64, block_size=256)
QUICK_PRETRAIN = dict(steps=40, batch_size=8, seq_len=64, eval_every=20, ckpt_every=20,
                      warmup_steps=5)
# Number of pretraining documents of the embedded world, per scale.
CORPUS_DOCS = {"quick": 100, "tiny": 8_000, "small": 40_000}


@dataclass
class Run:
    """Where a run writes, and on what it runs."""

    out: str
    preset: str
    device: torch.device
    seed: int
    quick: bool
    corpus: str | None = None
    """Plain-text pretraining corpus; None = the embedded world."""
    init_from: str | None = None
    """A Hugging Face GPT-2 folder (weights + vocab.json): its model and tokenizer replace the
    tokenizer and pretraining stages; None = train both here."""

    def stage_dir(self, stage: str) -> str:
        return os.path.join(self.out, stage)


def add_run_args(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """The flags every stage and lesson shares.

    `suppress=True` (for subcommands) leaves flags that are not given out of the namespace, so
    `train.py --quick pretrain` and `train.py pretrain --quick` mean the same.
    """
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    parser.add_argument("--preset", default=d("tiny"), choices=sorted(PRESETS),
                        help="model size: tiny (~1M params, CPU), small (~20M, one GPU), gpt2 (124M)")
    parser.add_argument("--device", default=d("auto"),
                        help="auto (cuda, then mps, then cpu), or cpu / cuda / cuda:1 / mps")
    parser.add_argument("--out", default=d(None),
                        help="run folder (default runs/default, or runs/quick with --quick)")
    parser.add_argument("--seed", type=int, default=d(0), help="seed for data, init and sampling")
    parser.add_argument("--quick", action="store_true", default=d(False),
                        help="a seconds-long run at toy scale (what tests call)")
    parser.add_argument("--corpus", default=d(None),
                        help="a plain-text file (documents separated by blank lines) to train the "
                             "tokenizer and pretrain on, instead of the embedded world")
    parser.add_argument("--init-from", default=d(None), metavar="DIR",
                        help="start from real GPT-2 weights: a Hugging Face GPT-2 folder (pytorch_model.bin "
                             "or model.safetensors, and vocab.json) on disk; replaces the tokenizer and "
                             "pretraining stages")


def make_run(args: argparse.Namespace, default_out: str = "runs/default") -> Run:
    out = args.out or ("runs/quick" if args.quick else default_out)
    seed_everything(args.seed)
    return Run(out=out, preset=args.preset, device=pick_device(args.device), seed=args.seed,
               quick=args.quick, corpus=getattr(args, "corpus", None),
               init_from=getattr(args, "init_from", None))


# ----------------------------------------------------------------------------------------------
# Stage 0: the corpus and the tokenizer
def corpus(run: Run) -> list[str]:
    """The pretraining documents: a plain-text file (--corpus), or the embedded world's corpus."""
    if run.corpus:
        from .loaders import load_text
        text = load_text(run.corpus)
        return [doc for doc in text.split("\n\n") if doc.strip()]
    from .world import pretraining_corpus
    n_docs = CORPUS_DOCS["quick" if run.quick else run.preset if run.preset in CORPUS_DOCS else "tiny"]
    return pretraining_corpus(seed=run.seed, n_docs=n_docs)


def ensure_tokenizer(run: Run) -> Tokenizer:
    """Load `<out>/tokenizer/tokenizer.json`, training the BPE on the corpus if it is missing."""
    path = os.path.join(run.stage_dir("tokenizer"), "tokenizer.json")
    if os.path.exists(path):
        return Tokenizer.load(path)
    from . import distributed
    if distributed.is_main():       # under torchrun, rank 0 writes it and the others read its file
        if run.init_from:           # GPT-2's own BPE, so its weights fit
            from .tokenizer import tokenizer_from_hf_gpt2
            print(f"[tokenizer] GPT-2's tokenizer from {run.init_from}/vocab.json -> {path}")
            tok = tokenizer_from_hf_gpt2(run.init_from)
        else:
            vocab = QUICK_VOCAB_SIZE if run.quick else VOCAB_SIZE[run.preset]
            print(f"[tokenizer] training a byte-level BPE with {vocab} tokens -> {path}")
            tok = train_bpe(corpus(run), vocab_size=vocab)
        tok.save(path)
    distributed.barrier()
    return Tokenizer.load(path)


# ----------------------------------------------------------------------------------------------
# Stage 1: pretraining
def model_config(run: Run, tok: Tokenizer):
    overrides = QUICK_MODEL if run.quick else {}
    return make_config(run.preset, vocab_size=tok.vocab_size, **overrides)


def pretrain_config(run: Run, args: argparse.Namespace | None = None) -> PretrainConfig:
    base = QUICK_PRETRAIN if run.quick else {}
    return from_args(PretrainConfig, args, **base) if args is not None else PretrainConfig(**base)


def load_model(source: str | dict, device) -> GPT:
    """A GPT from a minialign checkpoint (its config is stored beside the weights): its path, or the dict
    `load_checkpoint` returned (a stage that already read it for checks does not read it twice)."""
    state = load_checkpoint(source) if isinstance(source, str) else source
    from .model import GPTConfig
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device)


def finished_model(ckpt: str, device) -> GPT | None:
    """The model of a stage's checkpoint if that stage finished (`done`), else None; the file is read once."""
    if not os.path.exists(ckpt):
        return None
    state = load_checkpoint(ckpt)
    return load_model(state, device) if state.get("done") else None


def ensure_pretrained(run: Run, cfg: PretrainConfig | None = None) -> tuple[GPT, Tokenizer]:
    """The base model: `<out>/pretrain/ckpt.pt`, trained (or resumed) if not finished."""
    tok = ensure_tokenizer(run)
    out_dir = run.stage_dir("pretrain")
    ckpt = os.path.join(out_dir, "ckpt.pt")
    if run.init_from:
        return gpt2_as_base_model(run, tok, ckpt), tok
    mcfg = model_config(run, tok)
    if os.path.exists(ckpt):
        state = load_checkpoint(ckpt)
        check_compatible(ckpt, state["model_config"], mcfg.to_dict(), mcfg.to_dict().keys())
        if state.get("done"):
            return load_model(state, run.device), tok
    cfg = cfg or pretrain_config(run)
    torch.manual_seed(run.seed)
    model = GPT(mcfg)
    print(f"[pretrain] {model.num_params() / 1e6:.2f}M parameters, {run.device}\n{config_text(cfg)}")
    stream = tokens_of(corpus(run), tok)
    print(f"[pretrain] {len(stream):,} tokens of text")
    pretrain(model, stream, cfg, out_dir=out_dir, device=run.device, seed=run.seed,
             extra_state={"tokenizer": os.path.abspath(
                 os.path.join(run.stage_dir("tokenizer"), "tokenizer.json"))})
    return load_model(ckpt, run.device), tok


def gpt2_as_base_model(run: Run, tok: Tokenizer, ckpt: str) -> GPT:
    """The base model from real GPT-2 weights (`--init-from`), saved as the pretraining stage's output
    so that every later stage loads it as usual. The embedding grows by our special tokens' rows."""
    from . import distributed
    from .checkpoint import save_checkpoint
    if not os.path.exists(ckpt):
        if distributed.is_main():
            model = GPT.from_hf_gpt2(run.init_from).resize_vocab(tok.vocab_size)
            print(f"[pretrain] GPT-2 weights from {run.init_from}: {model.num_params() / 1e6:.1f}M parameters, "
                  f"{model.config.n_layer} layers, vocabulary {tok.vocab_size} (with our special tokens)")
            save_checkpoint(ckpt, model=model.state_dict(), model_config=model.config.to_dict(), done=True,
                            init_from=os.path.abspath(run.init_from), step=0)
        distributed.barrier()
    state = load_checkpoint(ckpt)
    if state.get("init_from") != os.path.abspath(run.init_from):
        from .checkpoint import CheckpointError
        raise CheckpointError(f"checkpoint {ckpt} was not made from {run.init_from} (it has "
                              f"init_from={state.get('init_from')!r}). Use another --out folder.")
    return load_model(state, run.device)
