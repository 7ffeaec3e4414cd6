"""The stage cache: every stage's output lives in one run folder, and is built only when missing.

    <out>/tokenizer/tokenizer.json     BPE trained on the pretraining corpus
    <out>/pretrain/ckpt.pt             the base model (+ metrics.json, loss.png)
    <out>/sft/ ... <out>/rm/ ... <out>/ppo/ ... <out>/dpo/ ...   (later stages, same pattern)

`ensure_<stage>(run)` returns the stage's product, training it (and, first, whatever it needs) when
its finished checkpoint is missing, and resuming it when a partial checkpoint exists. train.py and
every lesson call these functions, so a lesson run after `python train.py` reuses its models,
and a lesson run alone builds what it needs.

This file is also where each stage gathers its data (the world's comparisons, the SFT policy's ranked
samples, RL prompts) and hands it to its algorithm file (sft.py, reward.py, ppo.py, finegrained.py,
dpo.py), which imports nothing from here: an algorithm file is the algorithm.

`--quick` shrinks everything (corpus, model, steps) so a stage runs in seconds: tests and CI use it.
Its models are too small to show the lessons' effects; the default scale does.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import distributed, dpo, finegrained, grpo, ppo, reward, sft
from .chat import end_id as chat_end_id
from .chat import prompt_ids as chat_prompt_ids
from .checkpoint import CheckpointError, check_compatible, load_checkpoint, save_checkpoint
from .config import config_text, from_args, pick_device, read_json, seed_everything, write_json
from .evaluation import (SPLIT_LABELS, evaluate_reasoning, evaluate_sft, label_agreement_with_oracle,
                         paired_difference, prompt_text, sample_and_score, sentence_error_rates, summarize)
from .plotting import (plot_calibration, plot_finegrained_comparison, plot_heldout_curve, plot_pass_at_k, plot_reward_vs_gold,
                       plot_rm_training, plot_segment_rm_training)
from .loaders import DataError, load_preferences, load_text
from .model import GPT, PRESETS, GPTConfig, make_config
from .preferences import PreferenceGroup, as_groups, rank_policy_samples
from .ppo import PPOConfig, ValueModel, measure_score_norm, rm_reward_fn, train_ppo
from .pretrain import PretrainConfig, pretrain, tokens_of
from .generate import sample_batches
from .tokenizer import Tokenizer, tokenizer_from_hf_gpt2, train_bpe
from .world import (DEFAULT_BIAS, DEFAULT_NOISE, AnnotatorBias, pretraining_corpus, preference_data, reasoning_data,
                    rl_prompts)
from .world.reasoning import FAMILIES as REASONING_FAMILIES
from .world.reasoning import family_names

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
        text = load_text(run.corpus)
        return [doc for doc in text.split("\n\n") if doc.strip()]
    n_docs = CORPUS_DOCS["quick" if run.quick else run.preset if run.preset in CORPUS_DOCS else "tiny"]
    return pretraining_corpus(seed=run.seed, n_docs=n_docs)


def ensure_tokenizer(run: Run) -> Tokenizer:
    """Load `<out>/tokenizer/tokenizer.json`, training the BPE on the corpus if it is missing."""
    path = os.path.join(run.stage_dir("tokenizer"), "tokenizer.json")
    if os.path.exists(path):
        return Tokenizer.load(path)
    if distributed.is_main():       # under torchrun, rank 0 writes it and the others read its file
        if run.init_from:           # GPT-2's own BPE, so its weights fit
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
        raise CheckpointError(f"checkpoint {ckpt} was not made from {run.init_from} (it has "
                              f"init_from={state.get('init_from')!r}). Use another --out folder.")
    return load_model(state, run.device)


# ----------------------------------------------------------------------------------------------
# Instruction tuning (SFT): minialign/sft.py

def sft_config(run) -> sft.SFTConfig:
    return sft.SFTConfig(**sft.QUICK) if run.quick else sft.SFTConfig()


def ensure_sft(run, cfg: sft.SFTConfig | None = None):
    """The SFT model: `<out>/sft/ckpt.pt`, trained (or resumed) from the base model if not finished.

    Returns (GPT, Tokenizer), like `pipeline.ensure_pretrained`. Also writes metrics.json (base
    and SFT scores per split and family), loss.png and scores.png into `<out>/sft/`.
    """
    from_file = sft.sft_data(cfg, run.seed) if cfg is not None and cfg.data else None   # a bad file stops here
    base, tok = ensure_pretrained(run)
    out_dir = run.stage_dir("sft")
    ckpt = os.path.join(out_dir, "ckpt.pt")
    if os.path.exists(ckpt):
        state = load_checkpoint(ckpt)
        check_compatible(ckpt, state["model_config"], base.config.to_dict(),
                         base.config.to_dict().keys())
        if state.get("done"):
            return load_model(state, run.device), tok
    cfg = cfg or sft_config(run)
    print(f"[sft] from the base model in {run.stage_dir('pretrain')}, {run.device}\n{config_text(cfg)}")
    train, held_out = from_file or sft.sft_data(cfg, run.seed)
    base_eval = load_base_eval(ckpt)
    if not base_eval and distributed.is_main():   # the others need no scores: rank 0 plots them
        base_eval = evaluate_sft(base, tok, held_out, chat=False, max_new_tokens=cfg.max_new_tokens,
                                 batch_size=cfg.eval_batch_size)
    torch.manual_seed(run.seed)
    model, metrics = sft.train_sft(base, tok, train, cfg, out_dir=out_dir, device=run.device,
                                   eval_examples=held_out, base_eval=base_eval, seed=run.seed,
                                   extra_state={"base_eval": base_eval})
    print_sft_summary(metrics)
    return model.eval(), tok


def load_base_eval(ckpt: str) -> dict | None:
    """The base model's scores saved in a partial SFT checkpoint (so a resume does not redo them)."""
    if os.path.exists(ckpt):
        return load_checkpoint(ckpt).get("base_eval")
    return None


def print_sft_summary(metrics: dict) -> None:
    """Base vs SFT scores per split, in words."""
    ev, base = metrics.get("eval"), metrics.get("base_eval")
    if not ev:
        return
    print("[sft] task score (exact match where the task has answers, else the oracle's correctness grade):")
    for split, s in ev["splits"].items():
        b = (base or {}).get("splits", {}).get(split, {})
        print(f"  {SPLIT_LABELS.get(split, split).replace(chr(10), ' '):32s} "
              f"base {_fmt_score(b.get('score'))}  ->  SFT {_fmt_score(s['score'])}   "
              f"(exact match {_fmt_score(b.get('exact_match'))} -> {_fmt_score(s['exact_match'])}, "
              f"gold {_fmt_score(b.get('gold'))} -> {_fmt_score(s['gold'])})")
    for split, samples in ev["samples"].items():
        for x in samples[:2]:
            print(f"  [{split} / {x['family']}] {x['prompt']!r} -> {x['response']!r}")


def _fmt_score(v) -> str:
    return "  -  " if v is None else f"{v:.3f}"



# ----------------------------------------------------------------------------------------------
# The reward model: minialign/reward.py

def rating_groups(ratings, k: int | None = None) -> list[PreferenceGroup]:
    """The world's absolute ratings (`minialign.world.rating_data`: one per response, each by one of
    several miscalibrated annotators, the K responses of a prompt in a row) as one group per
    prompt (a new group also starts after `k` responses), for the ratings-regression variant."""
    groups: list[PreferenceGroup] = []
    for r in ratings:
        if not groups or groups[-1].prompt != r.prompt or len(groups[-1].responses) == k:
            groups.append(PreferenceGroup(r.prompt, [], ratings=[], gold=[]))
        groups[-1].responses.append(r.response)
        groups[-1].ratings.append(float(r.rating))
        groups[-1].gold.append(r.gold)
    return groups


def world_noise(cfg: reward.RMConfig) -> float:
    """The annotators' Bradley-Terry temperature T: cfg.annotator_noise, or the world's default."""
    return DEFAULT_NOISE if cfg.annotator_noise < 0 else cfg.annotator_noise


def annotator_bias(cfg) -> AnnotatorBias:
    """The world's annotators as a stage's config asks for them: biased (the default) or judging the gold."""
    return DEFAULT_BIAS if cfg.annotator_bias else AnnotatorBias.off()


def noise_ceiling(groups: list[PreferenceGroup], noise: float) -> dict:
    """How often noisy annotators agree with the gold ordering, measured and predicted.

    Bradley-Terry annotators who perceive p (the gold g when unbiased) put a above b with probability
    sigma((p_a - p_b) / T), so over the pairs with g_a != g_b the expected agreement with the gold is
        E[ sigma(sign(g_a - g_b) (p_a - p_b) / T) ]                  (the "noise ceiling")
    which is E[sigma(|g_a - g_b| / T)] for unbiased annotators. Biased ones can sit below 1/2 on the pairs
    where they perceive the worse answer as better. A reward model that knew what the annotators perceive
    would score this accuracy against the oracle on these pairs; against the oracle an unbiased RM can do
    better than its annotators: it averages their noise away over many comparisons.
    """
    margins = [(1 if g.gold[a] > g.gold[b] else -1) * ((g.perceived or g.gold)[a] - (g.perceived or g.gold)[b])
               for g in groups if g.gold is not None for a, b in g.pairs if g.gold[a] != g.gold[b]]
    if not margins:
        return {}
    expected = (float(np.mean([1.0 / (1.0 + math.exp(-m / noise)) for m in margins])) if noise > 0 else
                float(np.mean([1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins])))
    return {"annotator_noise": noise, "noise_ceiling_expected": expected,
            "annotators_vs_oracle": label_agreement_with_oracle(groups)}


def preference_groups(run, cfg: reward.RMConfig) -> tuple[list, list, str]:
    """(train, held-out, description): PreferenceGroups from a preference JSONL (cfg.data) or the world's rankings."""
    if cfg.data:
        groups = as_groups(load_preferences(cfg.data))   # Rankings, best first, no gold
        n_eval = max(1, int(round(len(groups) * cfg.eval_fraction)))
        if len(groups) < 2:
            raise DataError(cfg.data, None, None, f"{len(groups)} usable prompt(s); at least 2 are needed "
                            f"to hold one out for evaluation")
        return groups[:-n_eval], groups[-n_eval:], cfg.data
    noise, bias = world_noise(cfg), annotator_bias(cfg)
    train = as_groups(preference_data(seed=run.seed, n_prompts=cfg.n_train_prompts, K=cfg.k,
                                      noise=noise, split="train", bias=bias))
    held = as_groups(preference_data(seed=run.seed, n_prompts=cfg.n_eval_prompts, K=cfg.k,
                                     noise=noise, split="test", bias=bias))
    return train, held, "world"


def normalization_prompts(run, cfg: reward.RMConfig, held: list[PreferenceGroup]) -> list[str]:
    """Prompts on which SFT samples set the normalisation: the world's RL prompts (PPO's own: the
    prompts of cfg.rl_prompt_kind, train split), else the held-out preference prompts (for a file)."""
    if not cfg.data:
        return [ex.prompt for ex in rl_prompts(cfg.rl_prompt_kind, n=cfg.normalize_samples, seed=run.seed,
                                               split="train")]
    prompts = [g.prompt for g in held]
    return [prompts[i % len(prompts)] for i in range(cfg.normalize_samples)]


def ensure_rm(run, cfg: reward.RMConfig | None = None, stage: str = "rm"):
    """The reward model: `<out>/<stage>/ckpt.pt` (default `rm`), trained (or resumed) from the SFT model if not
    finished. Another `stage` keeps a variant (e.g. one from unbiased annotators) beside the pipeline's.

    Returns (RewardModel, Tokenizer). Steps: 1. the SFT model (ensure_sft); 2. the comparisons;
    3. train r_phi (1 epoch of BT); 4. normalise on SFT samples; 5. held-out metrics, figures,
    metrics.json and the final checkpoint.
    """
    cfg = cfg or reward.RMConfig(**(reward.QUICK if run.quick else {}))
    from_file = preference_groups(run, cfg) if cfg.data else None    # a bad file stops before any stage is built
    out_dir = run.stage_dir(stage)
    ckpt = os.path.join(out_dir, "ckpt.pt")
    sft_model, tok = ensure_sft(run)
    if os.path.exists(ckpt):
        state = load_checkpoint(ckpt)
        if state.get("done"):
            return reward.load_reward_model(ckpt, run.device), tok
        check_compatible(ckpt, state.get("rm_config", {}), asdict(cfg),
                         ["n_train_prompts", "k", "batch_prompts", "epochs", "data", "annotator_noise",
                          "rl_prompt_kind", "policy_sample_prompts", "annotator_bias"])
    t0 = time.perf_counter()
    # 1-2. the SFT model and the comparisons
    train, held, source = from_file or preference_groups(run, cfg)
    if not cfg.data and cfg.policy_sample_prompts:   # + the SFT policy's own answers, ranked
        train = train + ranked_sft_samples(run, cfg, sft_model, tok, cfg.policy_sample_prompts, run.seed, "train")
        source = f"world + {cfg.rl_prompt_kind} samples of pi_SFT"
    print(f"[rm] {len(train)} training prompts ({sum(len(g.pairs) for g in train)} comparisons), "
          f"{len(held)} held out, from {source}\n{config_text(cfg)}")
    # 3. r_phi from pi^SFT, trained on every pair
    torch.manual_seed(run.seed)
    model = reward.RewardModel.from_sft(sft_model).to(run.device)
    hist = reward.train_reward_model(model, tok, train, cfg, device=run.device, eval_groups=held,
                                     seed=run.seed, ckpt_path=ckpt, desc="rm")
    t_train = time.perf_counter() - t0
    if not distributed.is_main():   # steps 4-5 are rank 0's; the others wait for its checkpoint
        distributed.barrier()
        return reward.load_reward_model(ckpt, run.device), tok
    # 4. normalisation on responses sampled from pi^SFT
    norm = reward.fit_normalization(model, sft_model, tok, normalization_prompts(run, cfg, held),
                                    max_new_tokens=cfg.max_new_tokens, seed=run.seed)
    # 5. metrics and figures
    enc = reward.encode_groups(tok, held, model.trunk.config.block_size)
    metrics = reward.evaluate_reward_model(model, tok, held, run.device, encoded=enc)
    metrics.update(normalization=norm, n_train_prompts=len(train), data=source,
                   n_train_comparisons=sum(len(g.pairs) for g in train),
                   train_seconds=round(t_train, 1), total_seconds=round(time.perf_counter() - t0, 1),
                   final_train_loss=float(np.mean(hist["loss"][-20:])))
    if not cfg.data:
        metrics.update(noise_ceiling([e.group for e in enc], world_noise(cfg)))
        if cfg.sft_sample_prompts:     # the RM on the policy's own samples: what PPO will show it
            groups = ranked_sft_samples(run, cfg, sft_model, tok, cfg.sft_sample_prompts, run.seed + 1, "test")
            if groups:
                m = reward.evaluate_reward_model(model, tok, groups, run.device)
                metrics["sft_samples"] = {k: m[k] for k in ("accuracy_vs_annotators", "accuracy_vs_oracle",
                                                            "pearson_vs_gold", "spearman_vs_gold",
                                                            "annotators_vs_oracle", "n_eval_prompts", "n_eval_pairs")}
    plot_rm_training(os.path.join(out_dir, "training.png"), hist, metrics.get("annotators_vs_oracle"))
    plot_calibration(os.path.join(out_dir, "calibration.png"), metrics["calibration"])
    kept = [e.group for e in enc]
    r = reward.rewards_of(model, enc, tok.pad_id, run.device)
    if any(g.gold is not None for g in kept):
        plot_reward_vs_gold(os.path.join(out_dir, "reward_vs_gold.png"), r, kept)
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    reward.save_reward_model(ckpt, model, done=True, metrics=metrics, history=hist, rm_config=asdict(cfg))
    print_rm_summary(metrics, out_dir)
    distributed.barrier()
    return reward.load_reward_model(ckpt, run.device), tok


def ranked_sft_samples(run, cfg: reward.RMConfig, sft_model: GPT, tok, n: int, seed: int,
                       split: str) -> list[PreferenceGroup]:
    """K samples of pi_SFT on n RL prompts of cfg.rl_prompt_kind, ranked by the annotators."""
    groups, _ = rank_policy_samples(sft_model, tok, rl_prompts(cfg.rl_prompt_kind, n, seed, split=split),
                                    k=cfg.k, temperature=cfg.sft_sample_temperature,
                                    max_new_tokens=cfg.max_new_tokens, noise=world_noise(cfg), seed=run.seed,
                                    bias=annotator_bias(cfg))
    return groups


def print_rm_summary(metrics: dict, out_dir: str) -> None:
    """The stage's result in words: held-out accuracy against the annotators and the oracle, and on the
    policy's own samples."""
    def pct(key):
        return "n/a" if metrics.get(key) is None else f"{metrics[key]:.3f}"
    print(f"[rm] held-out accuracy: {pct('accuracy_vs_annotators')} vs annotators, "
          f"{pct('accuracy_vs_oracle')} vs the oracle (the annotators' own labels agree with the "
          f"oracle on {pct('annotators_vs_oracle')}); {metrics['total_seconds']:.0f}s -> {out_dir}")
    if metrics.get("sft_samples"):
        ss = metrics["sft_samples"]
        print(f"[rm] on samples of the SFT policy (held-out prompts): accuracy vs the oracle "
              f"{ss['accuracy_vs_oracle']:.3f}, Pearson with gold {ss['pearson_vs_gold']:.3f} "
              f"({ss['n_eval_pairs']} pairs; 0.5 and 0 = no signal)")



# ----------------------------------------------------------------------------------------------
# PPO: minialign/ppo.py

def load_value_model(state: dict) -> ppo.ValueModel:
    """The value model stored in a PPO checkpoint."""
    vm = ppo.ValueModel(GPT(GPTConfig(**state["value_config"])))
    vm.load_state_dict(state["value_model"])
    return vm


def ensure_ppo(run, cfg: ppo.PPOConfig | None = None):
    """The PPO policy: `<out>/ppo/ckpt.pt`, trained (or resumed) from the SFT model and the reward model.

    Returns (policy GPT, tokenizer).
    """
    cfg = cfg or ppo.PPOConfig(**(ppo.QUICK if run.quick else {}))
    out_dir = run.stage_dir("ppo")
    ckpt = os.path.join(out_dir, "ckpt.pt")
    sft_model, tok = ensure_sft(run)
    finished = finished_model(ckpt, run.device)
    if finished is not None:
        return finished, tok
    reward_model, _ = ensure_rm(run)
    policy, ref = copy.deepcopy(sft_model), copy.deepcopy(sft_model)
    value_model = ppo.ValueModel.from_reward_model(reward_model)
    prompts = rl_prompts(cfg.prompt_kind, n=cfg.n_prompts, seed=run.seed, split=cfg.prompt_split)
    print(f"[ppo] {len(prompts)} RL prompts, {run.device}\n{config_text(cfg)}")
    m = ppo.train_ppo(policy, ref, reward_model, value_model, tok, prompts, cfg, out_dir, run.device, seed=run.seed)
    first = m["initial"]
    print(f"[ppo] training rollouts, first iteration -> mean of the last 5: proxy reward "
          f"{first['proxy_reward']:+.2f} -> "
          f"{m['proxy_reward']:+.2f}, gold reward {first['gold_reward']:.3f} -> {m['gold_reward']:.3f}, KL "
          f"{m['kl']:.2f} nats, {m['response_length']:.1f} tokens; {m['seconds_per_iteration']:.1f}s per iteration "
          f"-> {out_dir}")
    return load_model(ckpt, run.device), tok



# ----------------------------------------------------------------------------------------------
# Fine-grained rewards: minialign/finegrained.py

@torch.no_grad()
def segment_rm_data(run, sft_model: GPT, tok, cfg: finegrained.FineGrainedConfig, names: list[str], *, split: str,
                    n_prompts: int, n_rl: int) -> list[finegrained.LabelledResponse]:
    """Labelled responses: the world's K ranked responses per prompt (a reference answer and flawed variants:
    toxic, off topic, verbose, repetitive, wrong, ...), `rm_policy_samples` samples of the SFT policy per prompt,
    and one SFT sample for each of `n_rl` RL prompts (instruction and cfg.prompt_kind, half each): feedback on the
    policy's own answers to the prompts PPO will train on, as the paper collects it."""
    rankings = preference_data(seed=run.seed, n_prompts=n_prompts, K=4, split=split)
    pairs = [(r.prompt, resp) for r in rankings for resp in r.responses]
    prompts = [r.prompt for r in rankings for _ in range(cfg.rm_policy_samples)]
    rl_seed = run.seed if split == "train" else run.seed + 1
    kinds = ("instruction", cfg.prompt_kind if cfg.prompt_kind != "instruction" else "sentiment")
    prompts += [p.prompt for kind in kinds
                for p in rl_prompts(kind, n=n_rl // 2, seed=rl_seed, split=split)] if n_rl >= 2 else []
    if prompts:
        texts = [t for b in sample_batches(sft_model, tok, prompts, max_new_tokens=cfg.max_new_tokens,
                                           seed=run.seed + 17) for t in b.texts]
        pairs += list(zip(prompts, texts))
    items = [finegrained.label_response(tok, p, r, names, cfg) for p, r in pairs]
    max_len = sft_model.config.block_size
    return [x for x in items if x is not None and len(x.ids) <= max_len]


def ensure_segment_rms(run, cfg: finegrained.FineGrainedConfig | None = None, sft_model: GPT | None = None,
                       tok=None) -> dict:
    """The segment reward models {name: SegmentRewardModel}: `<out>/finegrained/segment_rms.pt`, trained if missing.

    Trained from the SFT model on oracle-labelled segments (see `segment_rm_data`); held-out accuracy per type
    is stored with them and in the stage's metrics.json.
    """
    cfg = cfg or finegrained.FineGrainedConfig(**(finegrained.QUICK if run.quick else {}))
    names = finegrained.reward_names(cfg)
    path = os.path.join(run.stage_dir("finegrained"), "segment_rms.pt")
    if sft_model is None or tok is None:
        sft_model, tok = ensure_sft(run)
    data_cfg = {k: getattr(cfg, k) for k in finegrained.RM_DATA_FIELDS}
    if os.path.exists(path):
        state = load_checkpoint(path)
        if all(n in state["model"] for n in names) and state.get("rm_data") == data_cfg:
            return _load_segment_rms(state, names, run.device)
    t0 = time.perf_counter()
    train = segment_rm_data(run, sft_model, tok, cfg, names, split="train", n_prompts=cfg.rm_prompts,
                            n_rl=cfg.rm_rl_prompts)
    held = segment_rm_data(run, sft_model, tok, cfg, names, split="test", n_prompts=cfg.rm_eval_prompts,
                           n_rl=cfg.rm_rl_prompts // 4)
    print(f"[finegrained] segment RMs {names}: {len(train)} labelled responses, {len(held)} held out")
    models, metrics, hists = {}, {}, {}
    for i, name in enumerate(names):
        torch.manual_seed(run.seed + i)
        model = finegrained.SegmentRewardModel.from_sft(sft_model, name).to(run.device)
        hists[name] = finegrained.train_segment_rm(model, train, name, cfg, tok.pad_id, run.device, seed=run.seed + i)
        metrics[name] = finegrained.evaluate_segment_rm(model, held, name, tok.pad_id, run.device)
        print(f"[finegrained] {name} RM: held-out accuracy {metrics[name]['accuracy']:.3f}, balanced "
              f"{metrics[name]['balanced_accuracy']:.3f} ({metrics[name]['n_segments']} segments, "
              f"{metrics[name]['error_fraction']:.1%} with an error)")
        models[name] = model.eval()
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    save_checkpoint(path, model={n: m.state_dict() for n, m in models.items()},
                    model_config=sft_model.config.to_dict(), rm_data=data_cfg, metrics=metrics, history=hists)
    plot_segment_rm_training(hists, os.path.join(run.stage_dir("finegrained"), "segment_rms.png"))
    return models


def _load_segment_rms(state: dict, names: list[str], device) -> dict:
    out = {}
    for n in names:
        model = finegrained.SegmentRewardModel(GPT(GPTConfig(**state["model_config"])), n)
        model.load_state_dict(state["model"][n])
        out[n] = model.to(device).eval()
    return out


def segment_rm_metrics(run) -> dict:
    """The held-out metrics stored with the segment RMs ({} if they are not trained yet)."""
    path = os.path.join(run.stage_dir("finegrained"), "segment_rms.pt")
    return load_checkpoint(path).get("metrics", {}) if os.path.exists(path) else {}


def build_finegrained_reward(tok, cfg: finegrained.FineGrainedConfig, segment_rms: dict, holistic):
    """The fine-grained reward_fn of a config: its segment RMs with their weights, plus the holistic reward."""
    names = finegrained.reward_names(cfg)
    return finegrained.FineGrainedReward(tok, {n: segment_rms[n] for n in names}, finegrained.weights_of(cfg),
                                         sequence_reward=holistic, w_sequence=cfg.w_sequence,
                                         reward_form=cfg.reward_form,
                                         kinds={n: finegrained.segment_kind_of(n, cfg) for n in names})


def holistic_reward(sft: GPT, sequence_rm, tok, prompts, pcfg: PPOConfig, seed: int):
    """The `ppo` stage's reward, rebuilt: r_phi normalised on the SFT policy's samples exactly as ppo.train_ppo
    normalises it (same prompts, seed and temperature). Returns (reward_fn, (mean, std))."""
    prompt_ids = [chat_prompt_ids(tok, prompt_text(p)) for p in prompts]
    norm = measure_score_norm(sft, sequence_rm, prompt_ids, pcfg, end_id=chat_end_id(tok), pad_id=tok.pad_id,
                              seed=seed)
    return rm_reward_fn(sequence_rm, pcfg, tok.pad_id, *norm), norm


def run_finegrained_policy(name: str, reward_fn, sft: GPT, sequence_rm, norm, tok, prompts, pcfg: PPOConfig,
                           out_dir: str, run):
    """PPO from the SFT model with `reward_fn`, via ppo.train_ppo (resumes; a finished run is reloaded)."""
    policy, ref = copy.deepcopy(sft), copy.deepcopy(sft)
    value = ValueModel.from_reward_model(sequence_rm)        # V starts as the holistic RM score, normalised as
    value.rescale_(*norm)                                    # the reward is (as train_ppo does for the ppo stage)
    metrics = train_ppo(policy, ref, None, value, tok, prompts, pcfg, out_dir, run.device, reward_fn=reward_fn,
                        seed=run.seed, desc=name)
    return policy, metrics


def ensure_finegrained(run, cfg: finegrained.FineGrainedConfig | None = None):
    """The fine-grained PPO policy: `<out>/finegrained/ckpt.pt`, trained (or resumed) if not finished.

    Returns (policy GPT, tokenizer). Steps: 1. the SFT model and the holistic RM (ensure_sft, ensure_rm);
    2. the segment RMs (ensure_segment_rms); 3. PPO with the combined reward (ppo.train_ppo); 4. held-out
    evaluation of SFT, fine-grained PPO (and the holistic baseline when asked): gold reward, KL, sentence
    error rates; metrics.json and comparison.png.
    """
    cfg = cfg or finegrained.FineGrainedConfig(**(finegrained.QUICK if run.quick else {}))
    out_dir = run.stage_dir("finegrained")
    ckpt, metrics_path = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "metrics.json")
    sft, tok = ensure_sft(run)
    if os.path.exists(metrics_path) and read_json(metrics_path).get("stage") == "finegrained":
        finished = finished_model(ckpt, run.device)
        if finished is not None:
            return finished, tok
    t0 = time.perf_counter()
    rm, _ = ensure_rm(run)
    segment_rms = ensure_segment_rms(run, cfg, sft, tok)
    pcfg = finegrained.ppo_config(cfg)
    prompts = rl_prompts(cfg.prompt_kind, n=cfg.n_prompts, seed=run.seed, split="train")
    print(f"[finegrained] {len(prompts)} RL prompts, {run.device}\n{config_text(cfg)}")
    holistic, norm = holistic_reward(sft, rm, tok, prompts, pcfg, run.seed)
    reward_fn = build_finegrained_reward(tok, cfg, segment_rms, holistic)
    policy, train_metrics = run_finegrained_policy("finegrained", reward_fn, sft, rm, norm, tok, prompts, pcfg, out_dir,
                                                   run)
    held = rl_prompts(cfg.prompt_kind, n=cfg.n_eval_prompts, seed=run.seed + 1, split="test")
    ev = lambda m: evaluate_instruction_policy(m, sft, tok, held, max_new_tokens=cfg.max_new_tokens,
                                               temperature=pcfg.temperature, seed=run.seed + 1)
    evals = {"SFT": ev(sft), "fine-grained": ev(policy)}
    ppo_ckpt = os.path.join(run.stage_dir("ppo"), "ckpt.pt")
    ppo_policy = finished_model(ppo_ckpt, run.device)               # the holistic PPO stage, if built
    if ppo_policy is not None:
        evals["holistic (ppo stage)"] = ev(ppo_policy)
    if cfg.holistic_baseline:
        baseline, _ = run_finegrained_policy("holistic", holistic, sft, rm, norm, tok, prompts, pcfg,
                                             os.path.join(out_dir, "holistic"), run)
        evals["holistic"] = ev(baseline)
    plot_finegrained_comparison(evals, os.path.join(out_dir, "comparison.png"))
    metrics = {"stage": "finegrained", "eval": evals, "segment_rms": segment_rm_metrics(run),
               "weights": {**finegrained.weights_of(cfg), "sequence": cfg.w_sequence},
               "train": {k: v for k, v in train_metrics.items() if k != "history"},
               "config": asdict(cfg), "total_seconds": round(time.perf_counter() - t0, 1)}
    write_json(metrics_path, metrics)
    for name, e in evals.items():
        print(f"[finegrained] {name:13s} gold {e['gold_reward']:.3f}  KL {e.get('kl', 0):.2f}  toxic "
              f"{e['toxic_sentences']:.3f}  irrelevant {e['irrelevant_sentences']:.3f}  wrong "
              f"{e['wrong_sentences']:.3f}  sentences {e['sentences_per_response']:.2f}")
    return load_model(ckpt, run.device), tok



# ----------------------------------------------------------------------------------------------
# DPO: minialign/dpo.py

def dpo_pairs(run, cfg: dpo.DPOConfig, sft_model=None, tok=None) -> list[PreferenceGroup]:
    """The training comparisons without a data file: the world's preference data, or 4 samples of the SFT
    model per prompt ranked by the world's annotators, the reward model's recipe (cfg.pairs_from)."""
    rankings = preference_data(seed=run.seed, n_prompts=cfg.n_prompts, noise=cfg.annotator_noise,
                               bias=annotator_bias(cfg))
    if cfg.pairs_from == "world":
        return as_groups(rankings)
    if cfg.pairs_from == "sft_samples":     # pure sampling of pi_ref (temperature 1), as in the DPO paper
        groups, _ = rank_policy_samples(sft_model, tok, [r.prompt for r in rankings], k=4, temperature=1.0,
                                        max_new_tokens=cfg.max_new_tokens, noise=cfg.annotator_noise,
                                        seed=run.seed, bias=annotator_bias(cfg))
        return groups
    raise ValueError(f"unknown pairs_from {cfg.pairs_from!r}: use 'world' or 'sft_samples'")


def dpo_held_out_prompts(run, n: int):
    """Held-out prompts for evaluation: instruction prompts of the world's "test" split (seen tasks,
    new inputs; the preference pairs come from the "train" split)."""
    return rl_prompts("instruction", n, run.seed, split="test")


def ensure_dpo(run, cfg: dpo.DPOConfig | None = None):
    """The DPO policy: `<out>/dpo/ckpt.pt`, trained (or resumed) from the SFT model if not finished.

    Returns (GPT, Tokenizer). pi_ref is a frozen copy of the SFT model.
    """
    cfg = cfg or dpo.DPOConfig(**(dpo.QUICK if run.quick else {}))
    from_file = as_groups(load_preferences(cfg.data)) if cfg.data else None   # a bad file stops here
    out_dir = run.stage_dir("dpo")
    ckpt = os.path.join(out_dir, "ckpt.pt")
    sft_model, tok = ensure_sft(run)
    finished = finished_model(ckpt, run.device)
    if finished is not None:
        return finished, tok
    policy = copy.deepcopy(sft_model)
    ref = sft_model.eval().requires_grad_(False)
    # rank 0 builds the pairs (sampling pi_ref) and sends them: every rank needs the same list
    pairs = from_file or distributed.broadcast_object(dpo_pairs(run, cfg, sft_model, tok)
                                                      if distributed.is_main() else None)
    metrics = dpo.train_dpo(policy, ref, tok, pairs, cfg, out_dir, run.device, seed=run.seed,
                            eval_prompts=dpo_held_out_prompts(run, cfg.eval_prompts))
    print_dpo_summary(metrics)
    return load_model(ckpt, run.device), tok


def print_dpo_summary(metrics: dict) -> None:
    """The stage's result in words: implicit-reward accuracy, gold reward, KL and win rate."""
    f, e, b, w = (metrics.get(k) for k in ("final", "eval", "eval_reference", "win_rate_vs_reference"))
    print(f"[dpo] implicit reward accuracy {f['rewards/accuracy']:.0%}, margin {f['rewards/margins']:.2f} "
          f"(last 10% of steps)")
    if e and b and w:
        print(f"[dpo] gold reward on held-out prompts: SFT {b['gold_reward']:.3f} -> DPO "
              f"{e['gold_reward']:.3f} at KL(pi_theta || pi_ref) = {e['kl']:.2f} nats; DPO wins "
              f"{w['win_rate']:.0%} of comparisons with SFT (95% CI {w['ci_low']:.0%}-{w['ci_high']:.0%})")


def evaluate_instruction_policy(policy: GPT, ref: GPT, tok, prompts: list, *, max_new_tokens: int,
                                temperature: float, seed: int, segment_rms: dict | None = None,
                                cfg: finegrained.FineGrainedConfig | None = None) -> dict:
    """Gold reward, KL to the reference, length and the oracle's sentence error rates on held-out prompts.

    With `segment_rms`, also each segment RM's view of the same answers beside the oracle's ("segment_rms":
    its predicted error share, the oracle's, and its accuracy on them): does the proxy still agree with the
    labeler on the policy's own samples, or is PPO exploiting it? (The answers are re-rendered from their text.)
    """
    s = sample_and_score(policy, ref, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                         seed=seed)
    out = summarize(s, prompts, n_examples=3)
    texts = [prompt_text(prompts[i]) for i in s.prompt_index]
    out.update(sentence_error_rates(texts, s.responses))
    if segment_rms:
        items = [finegrained.label_response(tok, p, r, list(segment_rms), cfg or finegrained.FineGrainedConfig())
                 for p, r in zip(texts, s.responses)]
        items = [x for x in items if x is not None and len(x.ids) <= policy.config.block_size]
        device = policy.output_weight.device
        out["segment_rms"] = {n: finegrained.evaluate_segment_rm(m, items, n, tok.pad_id, device)
                              for n, m in segment_rms.items()}
    n_words = [len(r.split()) for r in s.responses]
    se = lambda x: float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
    out.update(words_per_response=float(np.mean(n_words)), words_per_response_se=se(n_words),
               response_tokens_se=se(s.lengths))
    return out



# ----------------------------------------------------------------------------------------------
# Reasoning with verifiable rewards: SFT on worked steps (minialign/sft.py), then GRPO (minialign/grpo.py)

def reasoning_held_out(run, per_family: int, families=None, hard: bool = True) -> list:
    """Held-out problems: `per_family` of the test pool per family (problems no stage trains on), and, with
    `hard`, half as many of the harder band (more digits, longer lists) that no split trains on."""
    out = reasoning_data(seed=run.seed, n_per_family=per_family, splits="test", families=families)
    if hard:
        out += reasoning_data(seed=run.seed, n_per_family=max(1, per_family // 2), splits="hard", families=families)
    return out


def print_reasoning_eval(tag: str, ev: dict) -> None:
    """Accuracy per split and family, in words."""
    splits = ", ".join(f"{s} {v['pass@1']:.3f} ± {v['pass@1_se']:.3f}" for s, v in ev["splits"].items())
    fams = ", ".join(f"{f} {v['pass@1']:.2f}" for f, v in ev["families"].items())
    print(f"[{tag}] held-out accuracy: {splits} (families: {fams}); {ev['worked']:.0%} worked answers, "
          f"{ev['response_tokens']:.1f} tokens")


def ensure_sft_reasoning(run, cfg: sft.ReasoningSFTConfig | None = None, stage: str = "sft_reasoning"):
    """The model GRPO starts from: `<out>/<stage>/ckpt.pt` (default `sft_reasoning`), the base model fine-tuned on
    demonstrations of the world's verifiable problems (worked steps by default), trained (or resumed) if not
    finished. Another `stage` keeps a variant (lesson 12's answer-only model) beside the pipeline's.

    Returns (GPT, Tokenizer). Also writes metrics.json (greedy accuracy on held-out problems of the test pool and
    the hard band, per family) and loss.png into `<out>/<stage>/`.
    """
    cfg = cfg or sft.ReasoningSFTConfig(**(sft.REASONING_QUICK if run.quick else {}))
    base, tok = ensure_pretrained(run)
    out_dir = run.stage_dir(stage)
    ckpt, metrics_path = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "metrics.json")
    if os.path.exists(metrics_path) and read_json(metrics_path).get("stage") == "sft_reasoning":
        finished = finished_model(ckpt, run.device)
        if finished is not None:
            return finished, tok
    families = family_names(cfg.families)
    data = reasoning_data(seed=run.seed, n_per_family=cfg.n_per_family, splits="train", form=cfg.form,
                          families=families)
    print(f"[{stage}] {len(data)} {cfg.form} demonstrations, {run.device}\n{config_text(cfg)}")
    t0 = time.perf_counter()
    torch.manual_seed(run.seed)
    model, m = sft.train_sft(copy.deepcopy(base), tok, data, cfg.sft_config(), out_dir=out_dir, device=run.device,
                             seed=run.seed, desc=stage)
    t_train = time.perf_counter() - t0
    if distributed.is_main():                   # under torchrun rank 0 evaluates; the others wait for it
        ev = evaluate_reasoning(model.eval(), tok, reasoning_held_out(run, cfg.eval_per_family, families),
                                greedy=True, max_new_tokens=cfg.max_new_tokens, seed=run.seed)
        write_json(metrics_path, {"stage": "sft_reasoning", "form": cfg.form, "steps": cfg.steps,
                                  "n_examples": len(data), "final_train_loss": m.get("final_train_loss"),
                                  "eval": ev, "train_seconds": round(t_train, 1),
                                  "total_seconds": round(time.perf_counter() - t0, 1), "config": asdict(cfg)})
        print_reasoning_eval(stage, ev)
    distributed.barrier()
    return model, tok


def grpo_problems(run, cfg: grpo.GRPOConfig) -> list:
    """GRPO's training problems: cfg.n_problems from the train pool, an equal share per family, drawn with another
    seed than the SFT demonstrations (so that RL mostly meets problems SFT did not show)."""
    families = family_names(cfg.families)
    per_family = max(1, cfg.n_problems // len(families or REASONING_FAMILIES))
    return reasoning_data(seed=run.seed + 1, n_per_family=per_family, splits="train", families=families)


def ensure_grpo(run, cfg: grpo.GRPOConfig | None = None, stage: str = "grpo"):
    """The GRPO policy: `<out>/<stage>/ckpt.pt` (default `grpo`), trained (or resumed) from the `sft_reasoning`
    model on the verifiable reward, if not finished. Another `stage` keeps a variant (lesson 12's beta = 0 run).

    Returns (policy GPT, tokenizer). Steps: 1. the SFT model (ensure_sft_reasoning), pi_ref a frozen copy;
    2. held-out pass@k of pi_SFT (cfg.eval_samples samples per problem at temperature T); 3. grpo.train_grpo,
    with held-out pass@1 every cfg.eval_every iterations; 4. held-out pass@k of the policy, the paired
    difference in pass@1 with its standard error, passk.png, metrics.json.
    """
    cfg = cfg or grpo.GRPOConfig(**(grpo.QUICK if run.quick else {}))
    out_dir = run.stage_dir(stage)
    ckpt, metrics_path = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "metrics.json")
    sft_model, tok = ensure_sft_reasoning(run)
    if os.path.exists(metrics_path) and read_json(metrics_path).get("stage") == "grpo":
        finished = finished_model(ckpt, run.device)
        if finished is not None:
            return finished, tok
    t0 = time.perf_counter()
    # 1. pi_theta and pi_ref start as the SFT model (pi_ref also at beta = 0: the KL is logged either way)
    policy, ref = copy.deepcopy(sft_model), copy.deepcopy(sft_model)
    problems = grpo_problems(run, cfg)
    held = reasoning_held_out(run, cfg.eval_problems, family_names(cfg.families), hard=False)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= cfg.eval_samples]
    pass_k = lambda m: evaluate_reasoning(m, tok, held, n_samples=cfg.eval_samples, ks=ks,  # noqa: E731
                                          temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                          seed=run.seed + 1)
    print(f"[{stage}] {len(problems)} training problems, {len(held)} held out, {run.device}\n{config_text(cfg)}")
    main = distributed.is_main()                # under torchrun rank 0 evaluates (steps 2 and 4); all train
    # 2. pi_SFT on the held-out problems
    before = pass_k(sft_model) if main else None
    # 3. GRPO, with held-out pass@1 (2 samples per problem) along the way
    eval_fn = lambda m: {"pass@1": evaluate_reasoning(m, tok, held, n_samples=2, temperature=cfg.temperature,  # noqa
                                                      max_new_tokens=cfg.max_new_tokens, seed=run.seed + 2)["pass@1"]}
    m = grpo.train_grpo(policy, ref, tok, problems, cfg, out_dir, run.device, seed=run.seed, eval_fn=eval_fn,
                        eval_every=cfg.eval_every, desc=stage)
    if not main:
        distributed.barrier()                   # wait for rank 0's evaluation
        return load_model(ckpt, run.device), tok
    # 4. the policy on the same held-out problems, with the same samples' seed
    after = pass_k(policy.eval())
    diff, diff_se = paired_difference(before["correct_counts"], after["correct_counts"], cfg.eval_samples,
                                      cfg.eval_samples)
    plot_pass_at_k({"SFT (start)": before, "GRPO": after}, ks, os.path.join(out_dir, "passk.png"))
    if "eval" in m:
        plot_heldout_curve(m["eval"], before, os.path.join(out_dir, "heldout.png"), top_k=min(8, ks[-1]))
    metrics = {"stage": "grpo", **{k: v for k, v in m.items() if k != "history"},
               "heldout": {"sft": before, "grpo": after, "pass@1_gain": diff, "pass@1_gain_se": diff_se, "ks": ks},
               "n_problems": len(problems), "config": asdict(cfg), "history": m["history"],
               "total_seconds": round(time.perf_counter() - t0, 1)}
    write_json(metrics_path, metrics)
    print(f"[{stage}] held-out pass@1 (T = {cfg.temperature}, {cfg.eval_samples} samples per problem): "
          f"SFT {before['pass@1']:.3f} -> GRPO {after['pass@1']:.3f} ({diff:+.3f} ± {diff_se:.3f}, paired over "
          f"{len(held)} problems); pass@{ks[-1]} {before[f'pass@{ks[-1]}']:.3f} -> {after[f'pass@{ks[-1]}']:.3f}; "
          f"{metrics['total_seconds']:.0f}s -> {out_dir}")
    distributed.barrier()
    return load_model(ckpt, run.device), tok
