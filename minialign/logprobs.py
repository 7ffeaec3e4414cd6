"""Per-token log-probabilities log pi_theta(y_t | y_<t) straight from hidden states, never building (B, T, V).

Every objective in minialign is built from the same per-token quantity:
    pretraining / SFT       loss = -mean_t log pi_theta(y_t | y_<t)            (over non-ignored tokens)
    PPO (InstructGPT step 3) ratio = exp(log pi_theta - log pi_old), per-token KL = log pi_theta - log pi_ref
    DPO                      log pi_theta(y|x) - log pi_ref(y|x) = sum_t of per-token differences
so this file computes it once, for everyone.

The quantity. h_t is the final hidden state (d,), W the output embedding (V, d), tau the sampling temperature:
    z_t      = W h_t / tau                            (V,) logits
    log p_t  = z_t[y_t] - lse(z_t),   lse(z) = log sum_v exp(z_v)
    H_t      = -sum_v p_v log p_v     (entropy, optional; PPO logs it)

The gradient, in three lines (g_t = dL/dlog p_t is the upstream gradient: advantages, DPO weights, 1/#tokens):
    d lse(z) / dz      = softmax(z) = p                        (so log p_t = z[y_t] - lse needs no (V,) copy of log p)
    d log p_t / d z_t  = onehot(y_t) - p_t
    G_t = g_t (onehot(y_t) - p_t) / tau   =>   dL/dh_t = G_t W,   dL/dW = sum_t G_t^T h_t
and for the entropy dH/dz = -p (log p + H), so G_t gains -gH_t p (log p + H) / tau.

Why the naive way is expensive. `log_softmax(h @ W.T).gather(y)` keeps the logits, the log-softmax output and,
in backward, a gradient of the same size: three float32 copies of B*T*V. For GPT-2 (V = 50257) with B=8, T=1024
that is 1.6 GB *each*, for the policy and again for the reference model, while the hidden states are 25 MB.

How this kernel avoids it (a `torch.autograd.Function` in plain PyTorch: no Triton, no compiled code):
  * forward: loop over tiles of (token_tile rows) x (vocab_tile columns). For each tile compute z = h W_tile^T / tau
    and update an *online logsumexp*: a running max m (starts at -inf) and a running sum s of exp(z - m), rescaled by
    exp(m_old - m_new) whenever the max grows. At the end lse = m + log s. The target logit z[y] is picked up from
    the tile that holds it. Only (inputs, targets, lse [, H]) are saved: O(N) extra memory, never (N, V).
  * backward: recompute each tile's logits (the price: 8 N d V FLOPs instead of 6), p = exp(z - lse), form G, and
    accumulate dh += G W_tile and dW_tile = G^T h in float32.
Why tile the vocabulary and not only the tokens: the backward runs vocab-major, so each block dW[tile] is written
exactly once, instead of reading and writing the whole (V, d) dW once per token chunk (300 MB per chunk at GPT-2
size); and every GEMM stays "fat" (thousands of rows times thousands of columns), where token-only chunking of
small chunks calls thin GEMMs that run far below the machine's FLOP rate. On a 2-core CPU this is about as fast as
naive at d = 768 (0.8-1.1x, depending on how busy the machine is) and faster at small d, with 0.05-0.2x the memory
at V = 50257 (see `python -m minialign.bench`). A frozen weight (the reference model pi_ref) skips dW entirely,
half of the backward's FLOPs.

Numerics: every subtraction and sum is in float32, also for bf16/fp16 inputs (on CPU the tile operands are
upcast, since a bf16 GEMM with a float32 result is emulated and slow there; on CUDA the GEMM runs in half
precision with float32 accumulation and output). Outputs are float32 (float64 for float64 inputs, which the tests'
gradcheck uses). Ignored targets (ignore_index) give 0 and no
gradient; their rows are dropped before the projection so they cost no FLOPs.

`naive_token_logprobs` below is the readable reference (log_softmax + gather); the benchmark and the lesson compare
against it. No other file in minialign calls log_softmax(...).gather(...).
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # the project's one ignore-index constant (same as F.cross_entropy's default)

# Default tiles per device type: (token_tile, tile_elements). The vocabulary tile is tile_elements // rows, so one
# float32 tile of logits is tile_elements * 4 bytes of workspace whatever N is (twice that with entropy).
# CPU: measured on a 2-core VM. Fat tiles keep the GEMMs at full speed, and every tile costs about ten passes, each
# a wake-up of the thread pool: on a machine busy with other jobs, tiles of 2048 x 2048 ran 1.7x slower than 2048 x
# 16384 (N = 1024, V = 50257, d = 128). 48 MiB keeps the peak memory at <= 0.2x naive at V = 50257 even at d = 768.
# GPU: 256 MiB per tile, small next to a B*T*V logits tensor. MPS: in between.
DEFAULT_TILES = {"cpu": (2048, 12 * 2**20), "cuda": (8192, 64 * 2**20), "mps": (4096, 16 * 2**20)}


def default_tiles(device: torch.device | str, n_tokens: int | None = None) -> tuple[int, int]:
    """(token_tile, vocab_tile) that token_logprobs uses for n_tokens rows when called without tile sizes."""
    token_tile, tile_elements = DEFAULT_TILES.get(torch.device(device).type, DEFAULT_TILES["cpu"])
    rows = min(token_tile, n_tokens or token_tile)
    return token_tile, max(tile_elements // max(rows, 1), 256)


# ----------------------------------------------------------------------------------------------------------------
# The readable reference
# ----------------------------------------------------------------------------------------------------------------


def naive_token_logprobs(hidden, weight, targets, *, temperature=1.0, ignore_index=IGNORE_INDEX,
                         return_entropy=False):
    """Reference: log_softmax over the full (..., V) logits, then gather. Same contract as token_logprobs.

    hidden (..., d), weight (V, d), targets (...) int -> logp (...) float32 [, entropy (...) float32].
    Materializes (..., V) float32 logits and log-probs: use only for tests, benchmarks and small V.
    """
    dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)  # >= float32
    logits = (hidden.to(dtype) @ weight.to(dtype).T) / temperature  # (..., V)
    valid = targets != ignore_index
    safe = torch.where(valid, targets, 0).long()  # -100 is not a valid gather index
    logp_all = torch.log_softmax(logits, dim=-1)  # (..., V)
    logp = logp_all.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * valid
    if not return_entropy:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1) * valid
    return logp, entropy


# ----------------------------------------------------------------------------------------------------------------
# Tile math shared by the fused kernel and the logits-given kernel
# ----------------------------------------------------------------------------------------------------------------


def _online_lse_update(z, col, m, s, z_y, t=None, scratch=None):
    """Fold one tile of logits into the running logsumexp state, in place.

    z (rows, vt) float32: this tile's logits (already / tau); overwritten (used as workspace).
    col (rows,) long: target index relative to this tile's first column (outside [0, vt) = not in this tile).
    m, s, z_y (rows,) float32: running max, running sum of exp(z - m), target logit.
    t (rows,) float32 or None: running sum of exp(z - m) * (z - m), for the entropy.
    scratch: a tensor like z, needed when t is given.
    """
    vt = z.shape[1]
    in_tile = (col >= 0) & (col < vt)
    picked = z.gather(1, col.clamp(0, vt - 1).unsqueeze(1)).squeeze(1)
    z_y.copy_(torch.where(in_tile, picked, z_y))

    m_new = torch.maximum(m, z.amax(dim=1))
    alpha = torch.exp(m - m_new)  # rescales the old sum to the new max; exp(-inf) = 0 on the first tile
    z.sub_(m_new.unsqueeze(1))  # z' = z - m_new <= 0, so exp never overflows
    if t is None:
        s_tile = z.exp_().sum(dim=1)
    else:
        e = torch.exp(z, out=scratch)
        s_tile = e.sum(dim=1)
        # Entropy in the shifted form H = log s - (sum e^z' z') / s: every term is <= 0 and bounded, unlike
        # lse - sum p z, which cancels two large numbers when p is nearly one-hot.
        t_tile = e.mul_(z).sum(dim=1)
        # Re-base the old t from m to m_new: sum e^(z-m_new)(z-m_new) = alpha (t + (m - m_new) s).
        # (Guarded: on the first tile m = -inf and s = 0, and -inf * 0 would be NaN.)
        shift = torch.where(s > 0, (m - m_new) * s, 0.0)
        t.copy_(alpha * (t + shift) + t_tile)
    s.copy_(s * alpha + s_tile)
    m.copy_(m_new)


def _finish_lse(m, s, z_y, t=None):
    """Running state -> (log p of the target, lse, entropy or None), all (rows,) float32."""
    log_s = torch.log(s)
    lse = m + log_s
    # z_y <= m <= lse in exact arithmetic, and also in float since s >= 1 (the max term is exp(0) = 1); the clamp
    # guards against any rounding making a probability > 1, which would poison PPO ratios and KL (logp > 0).
    logp = (z_y - lse).clamp_(max=0.0)
    entropy = None if t is None else (log_s - t / s).clamp_(min=0.0)
    return logp, lse, entropy


def _dlogits_(z, col, lse, g, g_ent=None, entropy=None, scratch=None):
    """Overwrite a tile of logits z (rows, vt) with dL/dz (already including 1/tau through g and g_ent).

    dL/dz = g * onehot(y) - p * (g + g_ent * (log p + H)),   p = exp(z - lse).
    g, g_ent (rows,) float or None (None = that output got no gradient); lse, entropy (rows,) float.
    """
    vt = z.shape[1]
    z.sub_(lse.unsqueeze(1))  # log p
    if g_ent is None:
        z.exp_().mul_(-g.unsqueeze(1))  # -g p
    else:
        p = torch.exp(z, out=scratch)
        c = g_ent * entropy if g is None else g + g_ent * entropy  # per-row part of g + g_ent (log p + H)
        z.mul_(-g_ent.unsqueeze(1)).sub_(c.unsqueeze(1)).mul_(p)  # -p (g_ent log p + c)
    if g is not None:  # + g at the target column, for the rows whose target lies in this tile
        in_tile = (col >= 0) & (col < vt)
        z.scatter_add_(1, col.clamp(0, vt - 1).unsqueeze(1), torch.where(in_tile, g, 0.0).unsqueeze(1))
    return z


def _valid_rows(targets, ignore_index, vocab_size):
    """(M,) long indices of non-ignored rows (None when all rows are valid), after checking the target range."""
    valid = targets != ignore_index
    bad = valid & ((targets < 0) | (targets >= vocab_size))
    if bool(bad.any()):
        value = int(targets[bad][0])
        raise ValueError(f"token_logprobs: target {value} is outside the vocabulary [0, {vocab_size}) "
                         f"and is not ignore_index={ignore_index}")
    if bool(valid.all()):
        return None
    return valid.nonzero().squeeze(1)


def _upstream(grad, rows, scale, dtype):
    """Upstream gradient of the kept rows in the accumulation dtype, times scale (= 1/tau); None stays None."""
    if grad is None:
        return None
    grad = grad if rows is None else grad.index_select(0, rows)
    return grad.to(dtype) * scale


# ----------------------------------------------------------------------------------------------------------------
# The fused kernel: hidden states + output embedding -> per-token log-probs
# ----------------------------------------------------------------------------------------------------------------

_HALF = (torch.float16, torch.bfloat16)


def _dtypes(hidden, weight):
    """(GEMM operand dtype, accumulation dtype). float64 inputs stay float64 (for gradcheck); otherwise float32
    accumulation, with half-precision operands only on CUDA (tensor cores, float32 output)."""
    if torch.float64 in (hidden.dtype, weight.dtype):
        return torch.float64, torch.float64
    if weight.dtype in _HALF and weight.device.type == "cuda":
        return weight.dtype, torch.float32
    return torch.float32, torch.float32


def _matmul(a, b, out, accumulate=False):
    """out (+)= a @ b in out's dtype (float32/64). a, b have out's dtype, or half precision on CUDA."""
    if a.dtype == out.dtype:
        return out.addmm_(a, b) if accumulate else torch.mm(a, b, out=out)
    prod = torch.mm(a, b, out_dtype=torch.float32)  # half GEMM, float32 accumulate and output
    return out.add_(prod) if accumulate else out.copy_(prod)


def _logits_tile(h_rows, w_tile, inv_tau, buf):
    """z = h_rows @ w_tile^T / tau into buf: (rows, d) x (vt, d) -> (rows, vt) float32."""
    z = _matmul(h_rows, w_tile.T, out=buf[: h_rows.shape[0] * w_tile.shape[0]].view(h_rows.shape[0], -1))
    return z if inv_tau == 1.0 else z.mul_(inv_tau)


def _weight_grad_tile(dw_tile, dz, h_rows, accumulate):
    """dW[tile] (+)= dz^T h_rows: (vt, rows) x (rows, d). Its own function so tests can count the calls."""
    _matmul(dz.T.to(h_rows.dtype), h_rows, out=dw_tile, accumulate=accumulate)


def _no_autocast(device):
    """The kernel chooses its own precisions; an enclosing torch.autocast (bf16 on GPU) must not recast them."""
    return torch.autocast(device_type=device.type, enabled=False)


def _tiles(n, size):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


class _FusedLinearLogprob(torch.autograd.Function):
    """hidden (N, d), weight (V, d), targets (N,) -> logp (N,) float32 [, entropy (N,) float32]."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, inv_tau, ignore_index, want_entropy, token_tile, vocab_tile):
        ctx.set_materialize_grads(False)  # an unused output (e.g. the entropy) gives None, not a zeros tensor
        n, vocab = hidden.shape[0], weight.shape[0]
        rows = _valid_rows(targets, ignore_index, vocab)
        cdt, acc = _dtypes(hidden, weight)
        h, y = _kept_rows(hidden, targets, rows, cdt)  # (M, d), (M,): ignored rows cost no FLOPs
        m_rows = h.shape[0]

        kw = dict(dtype=acc, device=hidden.device)
        m = torch.full((m_rows,), float("-inf"), **kw)
        s, z_y = torch.zeros(m_rows, **kw), torch.zeros(m_rows, **kw)
        t = torch.zeros(m_rows, **kw) if want_entropy else None
        tile_numel = min(token_tile, max(m_rows, 1)) * min(vocab_tile, vocab)
        buf = torch.empty(tile_numel, **kw)
        scratch = torch.empty(tile_numel, **kw) if want_entropy else None
        # Vocab-major: each weight tile is read (and upcast) once; the running state is only (M,) vectors.
        for c0, c1 in _tiles(vocab, vocab_tile):
            w = weight[c0:c1].to(cdt)
            for r0, r1 in _tiles(m_rows, token_tile):
                z = _logits_tile(h[r0:r1], w, inv_tau, buf)
                _online_lse_update(z, y[r0:r1] - c0, m[r0:r1], s[r0:r1], z_y[r0:r1],
                                   None if t is None else t[r0:r1],
                                   None if scratch is None else scratch[: z.numel()].view_as(z))
        logp_rows, lse, ent_rows = _finish_lse(m, s, z_y, t)

        ctx.save_for_backward(hidden, weight, targets, lse, ent_rows)
        ctx.cfg = (inv_tau, ignore_index, token_tile, vocab_tile)
        ctx.device = hidden.device
        logp = _scatter_rows(logp_rows, rows, n)
        if not want_entropy:
            return logp
        return logp, _scatter_rows(ent_rows, rows, n)

    @staticmethod
    def backward(ctx, g_logp, g_ent=None):
        with _no_autocast(ctx.device):
            return _FusedLinearLogprob._backward(ctx, g_logp, g_ent)

    @staticmethod
    def _backward(ctx, g_logp, g_ent):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        inv_tau, ignore_index, token_tile, vocab_tile = ctx.cfg
        need_dh, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        none = (None,) * 6
        if (g_logp is None and g_ent is None) or not (need_dh or need_dw):
            return None, None, *none
        rows = _valid_rows(targets, ignore_index, weight.shape[0])
        cdt, acc = _dtypes(hidden, weight)
        g, g_ent = _upstream(g_logp, rows, inv_tau, acc), _upstream(g_ent, rows, inv_tau, acc)
        h, y = _kept_rows(hidden, targets, rows, cdt)
        dh, dw = _backward_tiles(h, weight, y, lse, g, g_ent, entropy, inv_tau, need_dh, need_dw,
                                 token_tile, vocab_tile)
        if dh is not None:
            if rows is not None:  # ignored rows get exactly zero gradient
                dh = torch.zeros(hidden.shape, dtype=acc, device=hidden.device).index_copy_(0, rows, dh)
            dh = dh.to(hidden.dtype)
        if dw is not None:
            dw = dw.to(weight.dtype)
        return dh, dw, *none


def _kept_rows(hidden, targets, rows, dtype):
    """The non-ignored rows (all when rows is None): h (M, d) contiguous in the GEMM dtype, y (M,) long."""
    if rows is not None:
        hidden, targets = hidden.index_select(0, rows), targets.index_select(0, rows)
    return hidden.to(dtype).contiguous(), targets.long()


def _scatter_rows(values, rows, n):
    """(M,) values of the kept rows -> (N,) with zeros at ignored rows."""
    if rows is None:
        return values
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_copy_(0, rows, values)


def _backward_tiles(h, weight, y, lse, g, g_ent, entropy, inv_tau, need_dh, need_dw, token_tile, vocab_tile):
    """Vocab-major recompute. h (M, d) compute dtype, y (M,), lse/g/g_ent/entropy (M,) in the accumulation dtype
    (float32, or float64 for float64 inputs); g and g_ent already include the 1/tau.

    Returns dL/dh (M, d) or None, dL/dW (V, d) or None, in the accumulation dtype.
    """
    m_rows, d = h.shape
    vocab = weight.shape[0]
    kw = dict(dtype=lse.dtype, device=h.device)
    dh = torch.zeros(m_rows, d, **kw) if need_dh else None
    dw = torch.empty(vocab, d, **kw) if need_dw else None
    if m_rows == 0:  # every target ignored: all gradients are zero
        return dh, None if dw is None else dw.zero_()
    tile_numel = min(token_tile, m_rows) * min(vocab_tile, vocab)
    buf = torch.empty(tile_numel, **kw)
    scratch = torch.empty(tile_numel, **kw) if g_ent is not None else None
    for c0, c1 in _tiles(vocab, vocab_tile):
        w = weight[c0:c1].to(h.dtype)  # (vt, d)
        for r0, r1 in _tiles(m_rows, token_tile):
            z = _logits_tile(h[r0:r1], w, inv_tau, buf)  # recompute: cheaper than storing (N, V)
            dz = _dlogits_(z, y[r0:r1] - c0, lse[r0:r1], None if g is None else g[r0:r1],
                           None if g_ent is None else g_ent[r0:r1],
                           None if entropy is None else entropy[r0:r1],
                           None if scratch is None else scratch[: z.numel()].view_as(z))
            if need_dw:  # written once per vocab tile (accumulated over token tiles while it is hot)
                _weight_grad_tile(dw[c0:c1], dz, h[r0:r1], accumulate=r0 > 0)
            if need_dh:
                _matmul(dz.to(h.dtype), w, out=dh[r0:r1], accumulate=True)
    return dh, dw


def token_logprobs(hidden, weight, targets, *, temperature=1.0, ignore_index=IGNORE_INDEX, return_entropy=False,
                   token_tile=None, vocab_tile=None):
    """Per-token log pi(y_t | context) from final hidden states, without materializing the (..., V) logits.

    hidden  (B, T, d) or (N, d), any float dtype, may be non-contiguous (e.g. hidden[:, :-1])
    weight  (V, d)   output embedding (e.g. model.output_weight); may be frozen (requires_grad=False)
    targets (B, T) or (N,) integer token ids; ignore_index marks positions to skip (padding, prompt tokens)
    temperature  tau > 0: log-probs of softmax(z / tau), the same tau as sampling
    return_entropy  also return H = -sum_v p log p per token (differentiable)
    token_tile, vocab_tile  tile sizes (default: default_tiles(device, N), a fixed workspace per tile); results
        agree across tile sizes up to float32 rounding.
    Returns logp (B, T) float32, <= 0, and 0 at ignored positions [, entropy (B, T) float32, 0 at ignored].
    Gradients flow to hidden and weight; ignored positions get none.
    """
    if temperature <= 0:
        raise ValueError(f"token_logprobs: temperature must be > 0, got {temperature}")
    if hidden.shape[:-1] != targets.shape or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"token_logprobs: shapes do not match: hidden {tuple(hidden.shape)} must be "
                         f"(*targets.shape, d) = {tuple(targets.shape)} + (d,), weight {tuple(weight.shape)} (V, d)")
    if targets.is_floating_point():
        raise TypeError(f"token_logprobs: targets must be integer token ids, got {targets.dtype}")
    default_tt, default_vt = default_tiles(hidden.device, targets.numel())
    token_tile, vocab_tile = token_tile or default_tt, vocab_tile or default_vt
    if token_tile < 1 or vocab_tile < 1:
        raise ValueError(f"token_logprobs: tile sizes must be >= 1, got token_tile={token_tile}, "
                         f"vocab_tile={vocab_tile}")
    with _no_autocast(hidden.device):
        out = _FusedLinearLogprob.apply(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1),
                                        1.0 / temperature, ignore_index, return_entropy, token_tile, vocab_tile)
    if return_entropy:
        return out[0].view(targets.shape), out[1].view(targets.shape)
    return out.view(targets.shape)


# ----------------------------------------------------------------------------------------------------------------
# The logits-given companion (for callers that already hold (..., V) logits)
# ----------------------------------------------------------------------------------------------------------------


def _acc_dtype(logits):
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


class _LogitsLogprob(torch.autograd.Function):
    """logits (N, V) -> logp (N,) float32 [, entropy (N,)], in row chunks upcast to float32.

    Saves the caller's logits (no copy) and per-row lse; the only (N, V) tensor it creates is the gradient itself.
    """

    @staticmethod
    def forward(ctx, logits, targets, inv_tau, ignore_index, want_entropy, row_tile):
        ctx.set_materialize_grads(False)
        n, vocab = logits.shape
        valid = targets != ignore_index
        _valid_rows(targets, ignore_index, vocab)  # range check only
        y = torch.where(valid, targets, 0).long()
        kw = dict(dtype=_acc_dtype(logits), device=logits.device)
        logp, lse = torch.empty(n, **kw), torch.empty(n, **kw)
        ent = torch.empty(n, **kw) if want_entropy else None
        for r0, r1 in _tiles(n, row_tile):
            # A float32 copy, scaled: the caller's logits are never modified in place.
            z = logits[r0:r1].to(kw["dtype"]).mul(inv_tau)
            m = torch.full((r1 - r0,), float("-inf"), **kw)
            s, z_y = torch.zeros(r1 - r0, **kw), torch.zeros(r1 - r0, **kw)
            t = torch.zeros(r1 - r0, **kw) if want_entropy else None
            _online_lse_update(z, y[r0:r1], m, s, z_y, t, torch.empty_like(z) if want_entropy else None)
            logp[r0:r1], lse[r0:r1], e = _finish_lse(m, s, z_y, t)
            if want_entropy:
                ent[r0:r1] = e
        logp.mul_(valid)
        ctx.save_for_backward(logits, y, valid, lse, ent)
        ctx.cfg = (inv_tau, row_tile)
        ctx.device = logits.device
        if not want_entropy:
            return logp
        return logp, ent.mul_(valid)

    @staticmethod
    def backward(ctx, g_logp, g_ent=None):
        with _no_autocast(ctx.device):
            return _LogitsLogprob._backward(ctx, g_logp, g_ent)

    @staticmethod
    def _backward(ctx, g_logp, g_ent):
        logits, y, valid, lse, entropy = ctx.saved_tensors
        inv_tau, row_tile = ctx.cfg
        if (g_logp is None and g_ent is None) or not ctx.needs_input_grad[0]:
            return (None,) * 6
        acc = _acc_dtype(logits)
        g = None if g_logp is None else g_logp.to(acc) * valid * inv_tau  # ignored rows: zero gradient
        g_e = None if g_ent is None else g_ent.to(acc) * valid * inv_tau
        dlogits = torch.empty_like(logits)
        for r0, r1 in _tiles(logits.shape[0], row_tile):
            z = logits[r0:r1].to(acc).mul(inv_tau)
            dz = _dlogits_(z, y[r0:r1], lse[r0:r1], None if g is None else g[r0:r1],
                           None if g_e is None else g_e[r0:r1], None if entropy is None else entropy[r0:r1],
                           torch.empty_like(z) if g_e is not None else None)
            dlogits[r0:r1] = dz
        return dlogits, *(None,) * 5


def logprobs_from_logits(logits, targets, *, temperature=1.0, ignore_index=IGNORE_INDEX, return_entropy=False):
    """Per-token log-probs from logits you already have. logits (..., V), targets (...) -> logp (...) float32.

    Same contract as token_logprobs (0 and no gradient at ignore_index, optional entropy). Works in row chunks
    upcast to float32, so bf16 logits are fine, and never divides the caller's logits in place.
    """
    if temperature <= 0:
        raise ValueError(f"logprobs_from_logits: temperature must be > 0, got {temperature}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logprobs_from_logits: logits {tuple(logits.shape)} must be (*targets.shape, V), "
                         f"targets {tuple(targets.shape)}")
    vocab = logits.shape[-1]
    row_tile = max(1, (8 << 20) // vocab)  # about 32 MiB of float32 workspace per chunk
    with _no_autocast(logits.device):
        out = _LogitsLogprob.apply(logits.reshape(-1, vocab), targets.reshape(-1), 1.0 / temperature,
                                   ignore_index, return_entropy, row_tile)
    if return_entropy:
        return out[0].view(targets.shape), out[1].view(targets.shape)
    return out.view(targets.shape)
