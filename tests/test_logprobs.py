"""Tests for the log-prob kernel (minialign/logprobs.py) against obvious computations written here.

The reference in this file is the textbook one: full logits, log_softmax, pick the target column. It is written
again here (not imported) so that the kernel is never checked against itself.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from minialign import logprobs as lp_mod
from minialign.logprobs import IGNORE_INDEX, logprobs_from_logits, token_logprobs

# Small tiles that divide none of the sizes below, so partial tiles at both edges are exercised.
TILES = dict(token_tile=8, vocab_tile=13)


def reference(hidden, weight, targets, temperature=1.0):
    """(logp, entropy) by the book, in the inputs' dtype: 0 at ignored positions."""
    logits = hidden @ weight.T / temperature  # (..., V)
    logp_all = torch.log_softmax(logits, dim=-1)
    valid = targets != IGNORE_INDEX
    safe = targets.clamp(min=0).long()
    logp = torch.where(valid, logp_all.gather(-1, safe.unsqueeze(-1)).squeeze(-1), 0.0)
    entropy = torch.where(valid, -(logp_all.exp() * logp_all).sum(-1), 0.0)
    return logp, entropy


def make_inputs(b=3, t=13, d=16, v=101, dtype=torch.float64, ignore_frac=0.2, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, d, generator=gen, dtype=dtype) * scale
    weight = torch.randn(v, d, generator=gen, dtype=dtype) * 0.5
    targets = torch.randint(0, v, (b, t), generator=gen)
    targets[torch.rand(b, t, generator=gen) < ignore_frac] = IGNORE_INDEX
    return hidden, weight, targets


def value_and_grads(fn, hidden, weight, targets, upstream, **kw):
    """Run fn(hidden, weight, targets), backprop sum(out * upstream); return (outputs, d hidden, d weight)."""
    h = hidden.detach().clone().requires_grad_()
    w = weight.detach().clone().requires_grad_()
    out = fn(h, w, targets, **kw)
    outs = out if isinstance(out, tuple) else (out,)
    sum((o * u).sum() for o, u in zip(outs, upstream)).backward()
    return [o.detach() for o in outs], h.grad, w.grad


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("entropy", [False, True])
def test_matches_reference_values_and_grads(dtype, tol, temperature, entropy):
    hidden, weight, targets = make_inputs(dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    upstream = [torch.randn(targets.shape, generator=gen, dtype=dtype) for _ in range(2)]

    ours, dh, dw = value_and_grads(token_logprobs, hidden, weight, targets, upstream[: 1 + entropy],
                                   temperature=temperature, return_entropy=entropy, **TILES)

    def ref(h, w, y, temperature):
        logp, ent = reference(h, w, y, temperature)
        return (logp, ent) if entropy else logp

    want, dh_ref, dw_ref = value_and_grads(ref, hidden, weight, targets, upstream[: 1 + entropy],
                                           temperature=temperature)
    for a, b in zip(ours, want):
        assert a.dtype == dtype and a.shape == targets.shape
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    torch.testing.assert_close(dh, dh_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(dw, dw_ref, rtol=tol, atol=tol)
    assert (ours[0] <= 0).all()
    assert (ours[0][targets == IGNORE_INDEX] == 0).all()
    assert (dh[targets == IGNORE_INDEX] == 0).all()  # ignored positions get exactly no gradient


def test_gradcheck_temperature_ignore_entropy():
    hidden, weight, targets = make_inputs(b=2, t=5, d=4, v=11)
    targets[0, 1] = IGNORE_INDEX
    h = hidden.requires_grad_()
    w = weight.requires_grad_()

    def fn(h, w):
        return token_logprobs(h, w, targets, temperature=0.6, return_entropy=True, token_tile=3, vocab_tile=4)

    assert torch.autograd.gradcheck(fn, (h, w))
    # a transposed (non-contiguous) hidden goes through the same path
    h_t = hidden.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    assert not h_t.is_contiguous()
    assert torch.autograd.gradcheck(fn, (h_t, w))


def test_only_one_output_used():
    """With entropy requested but only one output in the loss, the other's gradient arrives as None."""
    hidden, weight, targets = make_inputs()
    gen = torch.Generator().manual_seed(2)
    up = torch.randn(targets.shape, generator=gen, dtype=torch.float64)
    for used in (0, 1):
        h = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        (token_logprobs(h, w, targets, return_entropy=True, **TILES)[used] * up).sum().backward()
        h2 = hidden.clone().requires_grad_()
        w2 = weight.clone().requires_grad_()
        (reference(h2, w2, targets)[used] * up).sum().backward()
        torch.testing.assert_close(h.grad, h2.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(w.grad, w2.grad, rtol=1e-10, atol=1e-10)


def test_bf16_inputs_close_to_float32_on_same_rounded_inputs():
    hidden, weight, targets = make_inputs(b=2, t=9, d=32, v=150, dtype=torch.float32, scale=2.0)
    h16, w16 = hidden.bfloat16(), weight.bfloat16()
    gen = torch.Generator().manual_seed(3)
    upstream = [torch.randn(targets.shape, generator=gen) for _ in range(2)]
    (logp, ent), dh, dw = value_and_grads(token_logprobs, h16, w16, targets, upstream, return_entropy=True,
                                          token_tile=7, vocab_tile=29)
    (logp32, ent32), dh32, dw32 = value_and_grads(
        lambda h, w, y: reference(h, w, y), h16.float(), w16.float(), targets, upstream)
    # Outputs are float32 and computed in float32 from the rounded inputs: float32-level agreement.
    assert logp.dtype == torch.float32 and ent.dtype == torch.float32
    torch.testing.assert_close(logp, logp32, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ent32, rtol=1e-5, atol=1e-5)
    # Gradients are accumulated in float32 and rounded once to bf16 (8 bits of mantissa: rel. error <= 2^-8).
    assert dh.dtype == torch.bfloat16 and dw.dtype == torch.bfloat16
    torch.testing.assert_close(dh.float(), dh32, rtol=2**-7, atol=1e-6)
    torch.testing.assert_close(dw.float(), dw32, rtol=2**-7, atol=1e-6)


def test_inside_bf16_autocast_keeps_float32_math():
    hidden, weight, targets = make_inputs(dtype=torch.float32)
    want = token_logprobs(hidden, weight, targets, **TILES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = token_logprobs(hidden, weight, targets, **TILES)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_extreme_logits_stay_finite():
    d, v = 4, 37
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(v, d, generator=gen, dtype=torch.float64)
    weight = weight / weight.norm(dim=1, keepdim=True)
    hidden = torch.stack([
        1e4 * weight[5],  # one logit at +1e4, the others spread over [-1e4, 1e4]
        -1e4 * weight[5],  # one logit at -1e4 (the target's), others up to +1e4
        torch.zeros(d),  # all logits 0: uniform
    ])
    targets = torch.tensor([5, 5, 7])
    for dtype in (torch.float64, torch.float32):
        h = hidden.to(dtype).clone().requires_grad_()
        w = weight.to(dtype).clone().requires_grad_()
        logp, ent = token_logprobs(h, w, targets, return_entropy=True, token_tile=2, vocab_tile=5)
        (logp.sum() + ent.sum()).backward()
        want_logp, want_ent = reference(hidden, weight, targets)
        assert torch.isfinite(logp).all() and torch.isfinite(ent).all()
        assert torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()
        assert (logp <= 0).all()
        torch.testing.assert_close(logp.double(), want_logp, rtol=1e-6, atol=1e-3 if dtype == torch.float32 else 1e-9)
        torch.testing.assert_close(ent.double(), want_ent, rtol=1e-6, atol=1e-3 if dtype == torch.float32 else 1e-9)
    # all logits equal to -1e4 (a negative max: the running max must start at -inf, not 0): uniform, -log V
    h = torch.zeros(1, d, dtype=torch.float64)
    h[0, 0] = -1e4
    w = torch.zeros(v, d, dtype=torch.float64)
    w[:, 0] = 1.0
    logp = token_logprobs(h, w, torch.tensor([3]), vocab_tile=5)
    torch.testing.assert_close(logp, torch.full((1,), -math.log(v), dtype=torch.float64))


def test_all_ignored_batch_gives_zeros_and_zero_grads():
    hidden, weight, targets = make_inputs()
    targets[:] = IGNORE_INDEX
    h = hidden.requires_grad_()
    w = weight.requires_grad_()
    logp, ent = token_logprobs(h, w, targets, return_entropy=True, **TILES)
    assert (logp == 0).all() and (ent == 0).all()
    (logp.sum() + ent.sum()).backward()
    assert h.grad is not None and (h.grad == 0).all()
    assert w.grad is not None and (w.grad == 0).all()


def test_frozen_weight_skips_weight_gradient(monkeypatch):
    calls = []
    original = lp_mod._weight_grad_tile
    monkeypatch.setattr(lp_mod, "_weight_grad_tile", lambda *a, **k: (calls.append(1), original(*a, **k)))
    hidden, weight, targets = make_inputs()

    h = hidden.clone().requires_grad_()
    w = weight.clone()  # frozen reference model
    token_logprobs(h, w, targets, **TILES).sum().backward()
    assert w.grad is None and calls == []
    h_ref = hidden.clone().requires_grad_()
    reference(h_ref, weight, targets)[0].sum().backward()
    torch.testing.assert_close(h.grad, h_ref.grad, rtol=1e-10, atol=1e-10)

    w = weight.clone().requires_grad_()  # trainable weight, frozen hidden: dW is computed, tile by tile
    token_logprobs(hidden, w, targets, **TILES).sum().backward()
    assert w.grad is not None and len(calls) > 0


def test_noncontiguous_hidden_and_int32_targets():
    hidden, weight, targets = make_inputs(b=3, t=14, ignore_frac=0.1)
    sliced = hidden[:, :-1]  # the usual shift: hidden states of positions 0..T-2 predict tokens 1..T-1
    y = targets[:, 1:].to(torch.int32)
    assert not sliced.is_contiguous()
    got = token_logprobs(sliced, weight, y, **TILES)
    want, _ = reference(sliced, weight, y.long())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    transposed = hidden.transpose(0, 1)  # (T, B, d) view
    got = token_logprobs(transposed, weight, targets.T, **TILES)
    torch.testing.assert_close(got, reference(transposed, weight, targets.T)[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("entropy", [False, True])
def test_logits_given_companion_matches_reference(entropy):
    hidden, weight, targets = make_inputs()
    logits = (hidden @ weight.T).detach()
    before = logits.clone()
    gen = torch.Generator().manual_seed(5)
    upstream = [torch.randn(targets.shape, generator=gen, dtype=torch.float64) for _ in range(2)]

    z = logits.clone().requires_grad_()
    out = logprobs_from_logits(z, targets, temperature=0.8, return_entropy=entropy)
    outs = out if entropy else (out,)
    sum((o * u).sum() for o, u in zip(outs, upstream)).backward()

    z_ref = logits.clone().requires_grad_()
    logp_all = torch.log_softmax(z_ref / 0.8, dim=-1)
    valid = targets != IGNORE_INDEX
    logp_ref = torch.where(valid, logp_all.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1), 0.0)
    ent_ref = torch.where(valid, -(logp_all.exp() * logp_all).sum(-1), 0.0)
    refs = (logp_ref, ent_ref) if entropy else (logp_ref,)
    sum((o * u).sum() for o, u in zip(refs, upstream)).backward()

    for a, b in zip(outs, refs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-10, atol=1e-10)
    assert torch.equal(logits, before)  # the caller's logits are never divided in place
    gradcheck_z = logits[:1, :4].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z: logprobs_from_logits(z, targets[:1, :4], temperature=0.8, return_entropy=True), (gradcheck_z,))


def test_logits_given_bf16():
    hidden, weight, targets = make_inputs(dtype=torch.float32)
    logits = (hidden @ weight.T).bfloat16()
    got = logprobs_from_logits(logits, targets)
    assert got.dtype == torch.float32
    logp_all = torch.log_softmax(logits.float(), dim=-1)  # float32 math on the same bf16 values
    picked = logp_all.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    want = torch.where(targets != IGNORE_INDEX, picked, 0.0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_next_token_loss_equals_cross_entropy():
    """Pretraining/SFT loss through the kernel: -mean over non-ignored tokens == F.cross_entropy(ignore_index=-100)."""
    b, t, d, v = 4, 12, 16, 57
    gen = torch.Generator().manual_seed(6)
    tokens = torch.randint(0, v, (b, t + 1), generator=gen)
    hidden = torch.randn(b, t + 1, d, generator=gen, dtype=torch.float64)[:, :-1]  # states predicting tokens 1..T
    weight = torch.randn(v, d, generator=gen, dtype=torch.float64)
    y = tokens[:, 1:].clone()
    y[0, :5] = IGNORE_INDEX  # e.g. prompt tokens of an SFT example
    y[2, -3:] = IGNORE_INDEX  # right padding

    h1, w1 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logp = token_logprobs(h1, w1, y, **TILES)
    loss = -logp.sum() / (y != IGNORE_INDEX).sum()
    loss.backward()

    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss_ref = F.cross_entropy((h2 @ w2.T).reshape(-1, v), y.reshape(-1), ignore_index=-100)
    loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-10, atol=1e-12)
    assert IGNORE_INDEX == -100


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                self.largest = max(self.largest, o.numel())
        return out


def test_never_allocates_an_n_by_v_tensor():
    n, d, v = 120, 4, 600  # N*V = 72k; the weight and its gradient V*d = 2.4k; one tile 32*64 = 2k
    gen = torch.Generator().manual_seed(7)
    hidden = torch.randn(n, d, generator=gen, requires_grad=True)
    weight = torch.randn(v, d, generator=gen, requires_grad=True)
    targets = torch.randint(0, v, (n,), generator=gen)
    targets[::7] = IGNORE_INDEX

    saved_shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: (saved_shapes.append(tuple(x.shape)), x)[1],
                                                  lambda x: x):
        with _LargestTensor() as mode:
            logp, ent = token_logprobs(hidden, weight, targets, return_entropy=True, token_tile=32, vocab_tile=64)
            (logp.sum() + ent.sum()).backward()
    assert mode.largest <= v * d < n * v / 10, f"largest tensor has {mode.largest} elements"
    # only the weight itself has a vocabulary-sized dimension among the saved tensors
    assert saved_shapes and sum(v in shape for shape in saved_shapes) == 1
    assert (v, d) in saved_shapes


def test_bad_inputs_raise_clear_errors():
    hidden, weight, targets = make_inputs()
    bad = targets.clone()
    bad[0, 0] = weight.shape[0]  # one past the vocabulary
    with pytest.raises(ValueError, match="outside the vocabulary"):
        token_logprobs(hidden, weight, bad)
    with pytest.raises(ValueError, match="shapes do not match"):
        token_logprobs(hidden[:, :-1], weight, targets)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(hidden, weight, targets, temperature=0.0)


def test_benchmark_smoke():
    """The benchmark's plumbing (not its timings): rows, ratios and the table, on a tiny shape."""
    from minialign.bench import format_table, run_benchmark

    rows = run_benchmark([(1, 16, 64, 8)], ["naive", "ours", "naive_ent", "ours_ent"], repeats=1, memory=False,
                         progress=False)
    by_name = {r["variant"]: r for r in rows}
    assert set(by_name) == {"naive", "ours", "naive_ent", "ours_ent"}
    assert by_name["naive"]["time_ratio"] == 1.0 and by_name["ours_ent"]["baseline"] == "naive_ent"
    assert all(len(r["times_s"]) == 1 and r["time_s"] > 0 for r in rows)
    assert "| ours |" in format_table(rows)


@pytest.mark.slow
def test_lesson_11_quick(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "lessons", "11_logprob_kernel.py"), "--quick",
                           "--out", str(tmp_path), "--device", "cpu"], cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lesson = tmp_path / "lessons" / "11_logprob_kernel"
    metrics = json.loads((lesson / "metrics.json").read_text())
    assert metrics["max_abs_diff_vs_naive"]["logp"] < 1e-4
    ours = [r for r in metrics["rows"] if r["variant"] == "ours"]
    assert ours and all(r["peak_extra_mib"] is not None for r in ours)
    assert (lesson / "memory_time_vs_vocab.png").exists()
    assert "online logsumexp" in proc.stdout
