"""The GPT: causality, padding, both attention paths, and loading a Hugging Face GPT-2 state dict."""

import math

import pytest
import torch

from minialign.model import GPT, GPTConfig, make_config, positions_from_mask

CFG = GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=16)


def model(seed=0, cfg=CFG):
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def test_presets():
    tiny = GPT(make_config("tiny", vocab_size=2048))
    assert 0.8e6 < tiny.num_params() < 1.5e6, tiny.num_params()
    assert make_config("gpt2").n_embd == 768
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")


def test_causality_future_tokens_do_not_change_past():
    m = model()
    x = torch.randint(0, 97, (3, 12))
    h1 = m(x)
    y = x.clone()
    y[:, 7:] = torch.randint(0, 97, (3, 5))
    h2 = m(y)
    assert torch.allclose(h1[:, :7], h2[:, :7], atol=1e-6)
    assert not torch.allclose(h1[:, 7:], h2[:, 7:])


def test_manual_attention_equals_sdpa():
    m = model()
    x = torch.randint(0, 97, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, :3] = 0
    a = m(x, attention_mask=mask)
    m.set_attention(use_sdpa=False)
    b = m(x, attention_mask=mask)
    assert torch.allclose(a, b, atol=1e-5)


def test_positions_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_row_equals_row_alone(side):
    m = model()
    seq = torch.randint(0, 97, (1, 6))
    alone = m(seq)
    pad = torch.full((1, 4), 5)
    x = torch.cat([pad, seq], 1) if side == "left" else torch.cat([seq, pad], 1)
    mask = torch.ones_like(x)
    if side == "left":
        mask[:, :4] = 0
        got = m(x, attention_mask=mask)[:, 4:]
    else:
        mask[:, 6:] = 0
        got = m(x, attention_mask=mask)[:, :6]
    assert torch.allclose(alone, got, atol=1e-5)


def test_context_overflow_is_a_clear_error():
    with pytest.raises(ValueError, match="block_size"):
        model()(torch.zeros(1, 33, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Hugging Face layout: keys "transformer.h.0.attn.c_attn.weight" etc., Conv1D weights stored (in, out).
def random_hf_state_dict(n_layer=2, C=128, V=50, T=16, prefix="transformer."):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1
    sd = {prefix + "wte.weight": r(V, C), prefix + "wpe.weight": r(T, C),
          prefix + "ln_f.weight": 1 + r(C), prefix + "ln_f.bias": r(C)}
    for i in range(n_layer):
        p = f"{prefix}h.{i}."
        sd.update({
            p + "ln_1.weight": 1 + r(C), p + "ln_1.bias": r(C),
            p + "attn.c_attn.weight": r(C, 3 * C), p + "attn.c_attn.bias": r(3 * C),
            p + "attn.c_proj.weight": r(C, C), p + "attn.c_proj.bias": r(C),
            p + "ln_2.weight": 1 + r(C), p + "ln_2.bias": r(C),
            p + "mlp.c_fc.weight": r(C, 4 * C), p + "mlp.c_fc.bias": r(4 * C),
            p + "mlp.c_proj.weight": r(4 * C, C), p + "mlp.c_proj.bias": r(C),
            p + "attn.bias": torch.tril(torch.ones(T, T)).view(1, 1, T, T),  # HF buffer, ignored
        })
    if prefix:
        sd["lm_head.weight"] = sd[prefix + "wte.weight"]
    return sd


def reference_gpt2_logits(sd, ids, prefix="transformer.", n_head=None):
    """GPT-2 written out by hand, one token position and one head at a time, Conv1D as x @ W + b."""
    g = lambda k: sd[prefix + k].double()
    C = g("wte.weight").shape[1]
    H = n_head or C // 64
    D = C // H
    n_layer = 1 + max(int(k.split(".")[1 if not prefix else 2]) for k in sd if ".h." in "." + k)

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + b

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    T = len(ids)
    x = torch.stack([g("wte.weight")[t] + g("wpe.weight")[i] for i, t in enumerate(ids)])
    for layer in range(n_layer):
        p = f"h.{layer}."
        a = ln(x, g(p + "ln_1.weight"), g(p + "ln_1.bias"))
        qkv = a @ g(p + "attn.c_attn.weight") + g(p + "attn.c_attn.bias")
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        out = torch.zeros(T, C, dtype=torch.float64)
        for head in range(H):
            s = slice(D * head, D * (head + 1))
            for i in range(T):
                scores = torch.tensor([q[i, s] @ k[j, s] / math.sqrt(D) for j in range(i + 1)])
                w = torch.softmax(scores, 0)
                out[i, s] = sum(w[j] * v[j, s] for j in range(i + 1))
        x = x + out @ g(p + "attn.c_proj.weight") + g(p + "attn.c_proj.bias")
        m = ln(x, g(p + "ln_2.weight"), g(p + "ln_2.bias"))
        x = x + gelu(m @ g(p + "mlp.c_fc.weight") + g(p + "mlp.c_fc.bias")) @ g(p + "mlp.c_proj.weight") \
            + g(p + "mlp.c_proj.bias")
    x = ln(x, g("ln_f.weight"), g("ln_f.bias"))
    return x @ g("wte.weight").T


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_from_hf_gpt2_matches_written_out_gpt2(prefix, tmp_path):
    sd = random_hf_state_dict(prefix=prefix)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    write_hf_config(tmp_path, n_head=2)
    m = GPT.from_hf_gpt2(tmp_path).eval()          # a folder holding pytorch_model.bin and config.json
    assert (m.config.n_layer, m.config.n_head, m.config.n_embd, m.config.vocab_size,
            m.config.block_size) == (2, 2, 128, 50, 16)
    ids = [3, 17, 42, 8, 8, 1, 29]
    want = reference_gpt2_logits(sd, ids, prefix)
    got = m.logits(m(torch.tensor([ids]))).double()[0]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_from_hf_gpt2_reads_safetensors(tmp_path):
    import json
    import struct
    sd = random_hf_state_dict(prefix="")
    sd = {k: v.contiguous() for k, v in sd.items() if not k.endswith(".attn.bias")}
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        b = v.numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    write_hf_config(tmp_path, n_head=2)
    m = GPT.from_hf_gpt2(tmp_path / "model.safetensors")
    assert torch.equal(m.transformer.h[1].attn.c_attn.weight, sd["h.1.attn.c_attn.weight"].T)


def write_hf_config(folder, **fields):
    import json
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "activation_function": "gelu_new",
                                                    "layer_norm_epsilon": 1e-5, **fields}))


def test_from_hf_gpt2_reads_the_head_count_from_config_json(tmp_path):
    """2 heads of 32 dimensions: the 64-dimensional assumption would give 1 head and wrong logits."""
    sd = random_hf_state_dict(C=64, prefix="transformer.")
    torch.save(sd, tmp_path / "pytorch_model.bin")
    write_hf_config(tmp_path, n_head=2, n_embd=64, n_layer=2, vocab_size=50, n_positions=16)
    m = GPT.from_hf_gpt2(tmp_path).eval()
    assert m.config.n_head == 2
    ids = [3, 17, 42, 8, 8, 1, 29]
    want = reference_gpt2_logits(sd, ids, "transformer.", n_head=2)
    got = m.logits(m(torch.tensor([ids]))).double()[0]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_from_hf_gpt2_refuses_what_it_cannot_trust(tmp_path):
    sd = random_hf_state_dict(C=64, prefix="")
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="no config.json gives its head count"):
        GPT.from_hf_gpt2(tmp_path)                                  # width 64 is no OpenAI release
    write_hf_config(tmp_path, n_head=3)
    with pytest.raises(ValueError, match="'n_head' must be a positive divisor of n_embd=64, got 3"):
        GPT.from_hf_gpt2(tmp_path)
    write_hf_config(tmp_path, n_head=2, n_layer=4)
    with pytest.raises(ValueError, match="'n_layer' is 4 but the weights have 2"):
        GPT.from_hf_gpt2(tmp_path)
    write_hf_config(tmp_path, n_head=2, activation_function="relu")
    with pytest.raises(ValueError, match="activation_function"):
        GPT.from_hf_gpt2(tmp_path)


def test_from_hf_gpt2_rejects_other_state_dicts():
    with pytest.raises(ValueError, match="wte.weight"):
        GPT.from_hf_gpt2({"foo": torch.zeros(1)})
