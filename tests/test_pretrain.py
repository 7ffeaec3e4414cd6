"""Pretraining: the loss, the schedule, atomic checkpoints and exact resume."""

import math
import os

import numpy as np
import pytest
import torch

from minialign.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minialign.model import GPT, GPTConfig
from minialign.pretrain import PretrainConfig, get_batch, lm_loss, lr_at, pretrain

CFG = GPTConfig(vocab_size=50, block_size=32, n_layer=1, n_head=2, n_embd=16)


def test_lm_loss_equals_a_loop_over_positions():
    torch.manual_seed(0)
    m = GPT(CFG).eval()
    x = torch.randint(0, 50, (2, 7))
    y = torch.randint(0, 50, (2, 7))
    y[1, 3] = -100  # ignored target
    got = lm_loss(m, x, y)
    logits = m.logits(m(x)).double()
    total, n = 0.0, 0
    for b in range(2):
        for t in range(7):
            if y[b, t] == -100:
                continue
            z = logits[b, t]
            total += -(z[y[b, t]] - math.log(sum(math.exp(v) for v in z.tolist())))
            n += 1
    assert abs(got.item() - total / n) < 1e-5


def test_batches_are_shifted_windows():
    stream = np.arange(100, dtype=np.int32)
    x, y = get_batch(stream, 4, 10, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y - x, torch.ones_like(x))


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = PretrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5)   # half way through the cosine
    assert lr_at(100, cfg) == pytest.approx(0.1)


def _run(out_dir, max_steps=None):
    torch.manual_seed(0)
    model = GPT(CFG)
    stream = np.random.default_rng(0).integers(0, 50, 5000).astype(np.int32)
    cfg = PretrainConfig(steps=12, batch_size=4, seq_len=16, lr=1e-2, warmup_steps=2,
                         eval_every=5, ckpt_every=4)
    pretrain(model, stream, cfg, out_dir=str(out_dir), device="cpu", seed=3, max_steps=max_steps)
    return load_checkpoint(os.path.join(out_dir, "ckpt.pt"))


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    whole = _run(tmp_path / "whole")
    part = _run(tmp_path / "resumed", max_steps=6)            # "killed" after 6 of 12 steps
    assert part["step"] == 6 and not part["done"]
    resumed = _run(tmp_path / "resumed")                      # a fresh process would do the same
    assert resumed["done"] and whole["done"]
    for k, v in whole["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert whole["history"]["loss"] == resumed["history"]["loss"]
    assert os.path.exists(tmp_path / "whole" / "loss.png")
    assert os.path.exists(tmp_path / "whole" / "metrics.json")


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(str(missing))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt.*corrupt"):
        load_checkpoint(str(bad))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model={"w": torch.ones(2)}, step=1)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, model={"w": torch.zeros(2)}, step=2)
    assert load_checkpoint(path)["step"] == 1                  # the old checkpoint survives
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []


def test_adamw_decays_weight_matrices_only():
    """Weight decay on the 2-D weight matrices; none on biases, LayerNorm gains and the embeddings."""
    from minialign.training import adamw
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=8))
    opt = adamw(model, 1e-3, 0.1)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    for name, p in model.named_parameters():
        want = p.dim() == 2 and name not in ("transformer.wte.weight", "transformer.wpe.weight")
        assert (id(p) in decay) == want, name
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
