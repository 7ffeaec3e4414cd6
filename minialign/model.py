"""The GPT: a GPT-2-shaped decoder-only transformer in plain PyTorch.

Slide 002 "Recap: Pre-training Decoder-only": a stack of masked self-attention blocks trained to
predict the next token, L_LM = -sum_i log p(x_i | x_<i). The shape is GPT-2's (Radford et al. 2019):

    tokens -> token embedding + learned position embedding
           -> n_layer x [ x + Attn(LN(x)),  x + MLP(LN(x)) ]      (pre-LayerNorm residual blocks)
           -> final LayerNorm -> hidden states h                   (B, T, C)
    logits  = h @ W_te^T                                          (tied input/output embedding)

Two deliberate API choices, both for the rest of minialign:
- `forward` returns the final *hidden states*, not logits. Every loss in the project gets its
  log-probs from `minialign.logprobs.token_logprobs(h, model.output_weight, y)`, which fuses the
  output projection with the log-softmax and never builds the (B, T, V) logits tensor.
  `model.logits(h)` exists for sampling the last position.
- Padding is described by an `attention_mask` (B, T) with 1 for real tokens and 0 for pads. When it
  is given and `position_ids` is not, positions are counted over real tokens only
  (cumsum(mask) - 1), so a left-padded prompt gets exactly the positions it would have alone.

GPT-2 details kept so a real checkpoint loads (`GPT.from_hf_gpt2`): GELU in its tanh form,
LayerNorm eps 1e-5, biases everywhere, residual projections initialised with
std 0.02 / sqrt(2 * n_layer). Attention has a readable manual path beside PyTorch's fused
`scaled_dot_product_attention`; both compute the same thing (tested).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError


@dataclass
class GPTConfig:
    """Hyperparameters of the GPT."""

    vocab_size: int = 2048
    """Number of token ids (BPE merges + 256 bytes + special tokens). Range: vocab_size >= 1."""
    block_size: int = 256
    """Context length: the number of learned position embeddings. Range: block_size >= 1."""
    n_layer: int = 4
    """Number of transformer blocks. Range: n_layer >= 1."""
    n_head: int = 4
    """Attention heads per block; n_embd must be divisible by it. Range: n_head >= 1."""
    n_embd: int = 128
    """Width C of the residual stream. Range: n_embd >= 1."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches. Pretraining only: post-training turns it
    off, or PPO's ratio is not 1 on the first minibatch. Range: 0 <= dropout < 1."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers, as in GPT-2."""

    def check(self) -> None:
        """Rules between fields (config.validate runs them after the ranges)."""
        if self.n_embd % self.n_head:
            raise ConfigError(f"--n-embd ({self.n_embd}) must be divisible by --n-head ({self.n_head})")

    def to_dict(self) -> dict:
        return asdict(self)


# Named presets. `vocab_size` of tiny/small comes from the tokenizer that is trained for them.
PRESETS: dict[str, dict] = {
    # ~1M parameters (0.8M in the blocks, 0.26M in the embeddings): learns the embedded world's
    # language in minutes on a 2-core CPU.
    "tiny": dict(block_size=256, n_layer=4, n_head=4, n_embd=128),
    # ~20M parameters: writes readable text in the embedded world on one consumer GPU.
    "small": dict(block_size=512, n_layer=8, n_head=8, n_embd=384),
    # The real GPT-2 (124M) shape, for loading OpenAI's weights.
    "gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}


def make_config(preset: str, vocab_size: int | None = None, **overrides) -> GPTConfig:
    """The config of a named preset; `vocab_size` (from the tokenizer) and overrides win."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = dict(PRESETS[preset])
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    fields.update(overrides)
    return GPTConfig(**fields)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only: (B, T) 0/1 mask -> (B, T) long.

    A left-padded row [pad, pad, a, b] gets positions [0, 0, 0, 1], the same a and b get alone.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class KVCache:
    """Preallocated keys and values of every layer, filled left to right during generation.

    k[layer], v[layer]: (B, n_head, max_len, head_dim). `length` is how many positions are filled.
    """

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device, dtype):
        head_dim = cfg.n_embd // cfg.n_head
        shape = (batch_size, cfg.n_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, nh, T_new, hd) after the filled part; return all keys and values so far."""
        start, end = self.length, self.length + k.size(2)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def attention_bias_mask(attention_mask: torch.Tensor | None, t_new: int, t_total: int,
                        device) -> torch.Tensor:
    """Which keys each new query may attend to: (B or 1, 1, t_new, t_total) bool, True = allowed.

    The new queries are the last `t_new` of `t_total` positions. A query sees keys at or before its
    own position (causal) that are real tokens (attention_mask). A query always sees itself, so a
    pad query (whose output nobody reads) never has an empty row that would produce NaN.
    """
    q_pos = torch.arange(t_total - t_new, t_total, device=device)[:, None]   # (t_new, 1)
    k_pos = torch.arange(t_total, device=device)[None, :]                     # (1, t_total)
    causal = k_pos <= q_pos                                                   # (t_new, t_total)
    allowed = causal[None, None]                                              # (1, 1, t_new, t_total)
    if attention_mask is not None:
        keys_real = attention_mask.bool()[:, None, None, :]                   # (B, 1, 1, t_total)
        allowed = (allowed & keys_real) | (k_pos == q_pos)[None, None]
    return allowed


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.use_sdpa = True  # False: the manual path below, written out for reading

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                         # 3 x (B, T, C)
        hd = C // self.n_head
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)                # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)                # (B, nh, T, hd)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)                # (B, nh, T, hd)
        if cache is not None:
            k, v = cache.append(layer, k, v)                             # (B, nh, T_total, hd)
        drop = self.dropout if self.training else 0.0
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)
        else:
            # softmax(q k^T / sqrt(hd)) v, with disallowed keys set to -inf before the softmax.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)              # (B, nh, T, T_total)
            att = att.masked_fill(~allowed, float("-inf"))
            att = F.dropout(F.softmax(att, dim=-1), p=drop, training=self.training)
            y = att @ v                                                  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)                           # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        # GPT-2 uses the tanh approximation of GELU; the exact erf form differs by ~1e-3.
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, allowed, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), allowed, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias),
        ))
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # residual projections: GPT-2's scaled init
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def output_weight(self) -> torch.Tensor:
        """The output projection W (V, C): tied to the token embedding, as in GPT-2."""
        return self.transformer.wte.weight

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states for token ids.

        idx: (B, T) long. attention_mask: (B, T_total) with T_total = cached + T, 1 = real token.
        position_ids: (B, T); default: counted over real tokens when a mask is given, else
        cache.length + arange(T). Returns h: (B, T, C) after the final LayerNorm.
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if position_ids is None:
            if attention_mask is not None:
                position_ids = positions_from_mask(attention_mask)[:, past:]      # (B, T)
            else:
                position_ids = torch.arange(past, past + T, device=idx.device)[None]  # (1, T)
        if int(position_ids.max()) >= self.config.block_size:
            raise ValueError(f"sequence of {int(position_ids.max()) + 1} positions exceeds the "
                             f"context length block_size={self.config.block_size}")
        allowed = attention_bias_mask(attention_mask, T, past + T, idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(position_ids)        # (B, T, C)
        x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, allowed, cache, layer)
        if cache is not None:
            cache.length += T
        return self.transformer.ln_f(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) hidden states -> (B, T, V) logits. Use only for a few positions (sampling)."""
        return h @ self.output_weight.T

    def set_attention(self, use_sdpa: bool):
        """Switch every block between the fused and the manual attention path."""
        for block in self.transformer.h:
            block.attn.use_sdpa = use_sdpa

    @torch.no_grad()
    def resize_vocab(self, vocab_size: int) -> "GPT":
        """Grow the (tied) token embedding to `vocab_size` rows, e.g. for special tokens added to a
        pretrained tokenizer. New rows start at the mean of the old ones: a new token then looks like
        an average token rather than a random direction, and its logit starts near the average logit.
        Existing rows, and so every existing token's logits, are unchanged."""
        old = self.transformer.wte.weight
        if vocab_size < old.size(0):
            raise ValueError(f"resize_vocab: cannot shrink {old.size(0)} rows to {vocab_size}")
        new = nn.Embedding(vocab_size, old.size(1)).to(old.device, old.dtype)
        new.weight[:old.size(0)] = old
        new.weight[old.size(0):] = old.mean(0)
        self.transformer.wte = new
        self.config.vocab_size = vocab_size
        return self

    # ------------------------------------------------------------------------------------------
    # Loading OpenAI's GPT-2 weights from a Hugging Face checkpoint, with plain torch.
    @classmethod
    def from_hf_gpt2(cls, path_or_state_dict, hf_config: dict | None = None) -> "GPT":
        """A GPT holding the weights of a Hugging Face GPT-2 checkpoint.

        Accepts a state dict (as `torch.load("pytorch_model.bin")` returns it), a path to a
        `pytorch_model.bin` / `model.safetensors` file, or a folder holding one. Keys may carry the
        `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model). Layers, width, vocabulary and
        context length are read off the tensors; the head count cannot be, so it comes from the
        `config.json` beside the weights (or `hf_config`), checked against the tensors. Without one,
        only OpenAI's four releases are accepted, whose heads are all 64-dimensional. HF stores its
        attention and MLP weights as Conv1D, (in, out): transposed here into Linear's (out, in).
        """
        sd, source = path_or_state_dict, "the state dict"
        if not isinstance(sd, dict):
            source = os.fspath(sd)
            sd = _read_hf_state_dict(source)
            if hf_config is None:
                hf_config = _read_hf_config(source)
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        for needed in ("wte.weight", "wpe.weight", "ln_f.weight"):
            if needed not in sd:
                raise ValueError(f"not a GPT-2 state dict: key {needed!r} is missing "
                                 f"(found e.g. {sorted(sd)[:5]})")
        vocab_size, n_embd = sd["wte.weight"].shape
        n_layer = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("h."))
        cfg = GPTConfig(vocab_size=vocab_size, block_size=sd["wpe.weight"].shape[0],
                        n_layer=n_layer, n_head=_hf_n_head(hf_config, source=source, n_embd=n_embd),
                        n_embd=n_embd, dropout=0.0, bias=True)
        if hf_config is not None:
            _check_hf_config(hf_config, cfg, source)
        model = cls(cfg)
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        own = model.state_dict()
        for key in own:
            src = key.removeprefix("transformer.")
            if src not in sd:
                raise ValueError(f"GPT-2 state dict has no tensor for {src!r}")
            w = sd[src].float()
            if src.endswith(conv1d):
                w = w.T
            if w.shape != own[key].shape:
                raise ValueError(f"{src}: shape {tuple(w.shape)} != expected {tuple(own[key].shape)}")
            own[key].copy_(w)
        return model


def trunk_copy(model: GPT) -> GPT:
    """A copy of `model` with dropout 0, on its device: the trunk of a reward model, which starts from the SFT
    model (InstructGPT) and never uses dropout (its scores must not be random)."""
    trunk = GPT(GPTConfig(**{**model.config.to_dict(), "dropout": 0.0}))
    trunk.load_state_dict(model.state_dict())
    return trunk.to(model.output_weight.device)


def new_scalar_head(n_embd: int) -> nn.Linear:
    """A Linear(C, 1) read-out initialised as lm-human-preferences does: weight ~ N(0, 1 / (C + 1)), bias 0."""
    head = nn.Linear(n_embd, 1)
    nn.init.normal_(head.weight, std=1.0 / math.sqrt(n_embd + 1))
    nn.init.zeros_(head.bias)
    return head


def scalar_head(head: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """A scalar read-out head (reward, value) in float32, even inside bf16 autocast: (..., C) -> (...).

    Under autocast a Linear runs in bf16 whatever its input's dtype, which would round every reward and
    value to 8 bits of mantissa; the trunk before it may run in bf16, the head does not.
    """
    with torch.autocast(device_type=h.device.type, enabled=False):
        return head(h.float()).squeeze(-1)


# OpenAI's GPT-2 releases (124M, 355M, 774M, 1.5B): width -> heads, all 64-dimensional.
OPENAI_GPT2_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}


def _read_hf_config(path: str) -> dict | None:
    """The `config.json` in the checkpoint's folder (or beside the file), or None."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    file = os.path.join(folder, "config.json")
    if not os.path.exists(file):
        return None
    try:
        with open(file) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: not a readable JSON config ({e})") from e


def _hf_n_head(hf_config: dict | None, *, source: str, n_embd: int) -> int:
    """The head count: from the HF config when there is one, else OpenAI's release of this width."""
    if hf_config is not None:
        n_head = hf_config.get("n_head", hf_config.get("num_attention_heads"))
        if not isinstance(n_head, int) or n_head <= 0 or n_embd % n_head:
            raise ValueError(f"config.json of {source}: field 'n_head' must be a positive divisor of "
                             f"n_embd={n_embd}, got {n_head!r}")
        return n_head
    if n_embd not in OPENAI_GPT2_HEADS:
        raise ValueError(f"{source}: width {n_embd} is not one of OpenAI's GPT-2 releases "
                         f"({sorted(OPENAI_GPT2_HEADS)}) and no config.json gives its head count, which "
                         f"the tensors cannot tell. Put the checkpoint's config.json beside the weights.")
    return OPENAI_GPT2_HEADS[n_embd]


def _check_hf_config(hf: dict, cfg: GPTConfig, source: str) -> None:
    """Refuse a config.json that disagrees with the tensors, or asks for a block this GPT does not have."""
    pairs = {"n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "vocab_size": cfg.vocab_size,
             "n_positions": cfg.block_size}
    for key, got in pairs.items():
        if key in hf and hf[key] != got:
            raise ValueError(f"config.json of {source}: field {key!r} is {hf[key]} but the weights have {got}")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"config.json of {source}: field 'activation_function' is {act!r}; this GPT "
                         f"implements GPT-2's tanh GELU ('gelu_new') only")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if abs(eps - 1e-5) > 1e-12:
        raise ValueError(f"config.json of {source}: field 'layer_norm_epsilon' is {eps}; this GPT uses 1e-5")


def _read_hf_state_dict(path: str) -> dict:
    """Read a state dict from a .bin / .safetensors file or a folder holding one."""
    if os.path.isdir(path):
        for name in ("pytorch_model.bin", "model.safetensors"):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise FileNotFoundError(f"{path}: no pytorch_model.bin or model.safetensors in folder")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    return torch.load(path, map_location="cpu", weights_only=True)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}


def _read_safetensors(path: str) -> dict:
    """The safetensors format is 8 bytes of header length, a JSON header, then raw tensor bytes."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[meta["dtype"]]
        t = torch.frombuffer(data, dtype=dtype, offset=start, count=(end - start) // dtype.itemsize)
        out[name] = t.reshape(meta["shape"]).clone()
    return out


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout probability to 0 (TRL `disable_dropout_in_model`): RL needs deterministic forwards."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout") and isinstance(m.dropout, float):  # attention-weight dropout of model.py
            m.dropout = 0.0
    if isinstance(getattr(model, "config", None), GPTConfig):
        model.config.dropout = 0.0
    return model


def freeze(model: nn.Module) -> nn.Module:
    """The reference and reward models: no gradients, eval mode, never updated."""
    return disable_dropout(model).requires_grad_(False).eval()
