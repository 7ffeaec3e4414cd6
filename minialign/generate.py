"""Batched sampling from the GPT with a KV cache: the one generation engine of minialign.

Used by every lesson, SFT evaluation, PPO rollouts (InstructGPT step 3: "the policy generates an
output") and DPO evaluation. What it does, per call:

1. Left-pad the prompts to a common length P, so that every row's next token sits in the same
   column; the attention mask hides the pads and positions are counted over real tokens only
   (`model.positions_from_mask`), so a padded row computes exactly what it would alone.
2. Run the padded prompts once, filling the KV cache; then feed one token per step, attending to
   the cached keys and values (O(T) per step instead of recomputing the whole prefix, O(T^2)).
3. Turn the last position's logits into a token: greedy argmax, or sampling from
   softmax(logits / temperature) restricted to the top-k tokens and/or the smallest set whose
   probability reaches top-p. PPO uses pure sampling (top_k=0, top_p=1): any truncation makes the
   sampled tokens improbable under the unmodified policy and the per-token KL negative
   (docs/ppo.md, pitfall 1).
4. A row stops when it emits one of `stop_ids` (the stop token is kept, it is part of the
   response); afterwards it receives pads with mask 0. The loop ends when every row has stopped or
   after `max_new_tokens`.

Sampling draws from an explicit `torch.Generator`, so a seed reproduces the same tokens exactly on
the same device. Callers may pass a CPU generator whatever the model's device: `generate` derives a
generator on the model's device from it (`generator_on`), the one place where seeded sampling is
made device-safe (PyTorch refuses a CPU generator for a CUDA tensor).

Precision: the forward passes run under `config.autocast(device)`, the same context as every
log-prob forward of the trainers (bf16 on a GPU, float32 on a CPU), so the policy that samples a
PPO rollout is the pi_old whose log-probs the update divides by. Logits are cast to float32 before
the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import distributed
from .chat import end_id, parse_response, prompt_ids, response_text_ids
from .config import autocast
from .model import GPT, KVCache


@dataclass
class Generation:
    """The result of `generate`.

    tokens:         (B, P + N) long; prompts left-padded to P, responses right-padded after the stop token.
    attention_mask: (B, P + N) long; 1 on real prompt and response tokens.
    response_mask:  (B, P + N) long; 1 on generated tokens, the stop token included.
    prompt_len:     P, the column where responses start.
    response_ids:   per row, the generated ids (stop token included when emitted).
    ended:          (B,) bool; True where the row emitted a stop token.
    """

    tokens: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_len: int
    response_ids: list[list[int]]
    ended: torch.Tensor


def left_pad(seqs: list[list[int]], pad_id: int, device=None,
             width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to P = max(longest, width): returns ids (B, P) and attention mask (B, P)."""
    P = max(width, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), P), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, P - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, P - len(s):] = 1
    return ids.to(device), mask.to(device)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k / top-p (nucleus) set to -inf. logits: (B, V)."""
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]          # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the first always stays).
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: torch.Tensor, *, temperature: float, top_k: int, top_p: float,
               greedy: bool, generator: torch.Generator | None, rows: range | None = None,
               total_rows: int | None = None) -> torch.Tensor:
    """Pick one token per row from last-position logits (B, V) -> (B,).

    Sampling is the exponential race: q ~ Exp(1) for every entry, token = argmax(p / q), which picks token i
    with probability p_i. torch.multinomial(probs, 1) does exactly this (the same draws, the same tokens);
    written out so that these B rows can be `rows` of a batch of `total_rows`: the noise of the whole batch
    is drawn and these rows' part used, the tokens one process sampling the whole batch would pick.
    """
    if greedy or temperature == 0.0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    if not bool(((probs >= 0) & (probs < float("inf"))).all()):     # NaN fails both (torch.multinomial's check)
        raise RuntimeError("sampling: the next-token probabilities contain NaN or inf (the model's logits are not "
                           "finite; a diverged run?)")
    rows = rows if rows is not None else range(probs.size(0))
    total_rows = total_rows if total_rows is not None else probs.size(0)
    q = torch.empty(total_rows, probs.size(1), device=probs.device).exponential_(1, generator=generator)
    return (probs / q[rows.start:rows.stop]).argmax(-1)


def generator_on(generator: torch.Generator | None, device) -> torch.Generator | None:
    """A generator that can sample on `device`: `generator` itself when it lives there, else a new one
    on `device` seeded by one draw from `generator` (deterministic, and it advances `generator`)."""
    device = torch.device(device)
    if generator is None or (generator.device.type, generator.device.index or 0) == \
            (device.type, device.index or 0):
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], *, max_new_tokens: int, stop_ids,
             pad_id: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             greedy: bool = False, generator: torch.Generator | None = None,
             use_cache: bool = True, rows: range | None = None) -> Generation:
    """Sample continuations of a batch of prompts (token id lists of different lengths).

    `stop_ids`: ids that end a row (e.g. the chat template's end token, or end-of-text).
    `use_cache=False` recomputes the whole sequence at every step: slow, kept as the obvious
    reference the cache is tested against.
    `rows`: under torchrun, the rows of `prompts` this process samples (distributed.rows_of); the
    Generation holds those rows only, with the tokens one process sampling all of `prompts` would
    give them: every process pads to the longest of all the prompts, draws the whole batch's noise
    (next_token) and steps until the rows of every process have stopped. None: every row. (On GPUs
    the logits of a smaller batch may differ in the last bit, so a near-tie can go the other way:
    distributed.py.)
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs a non-empty list of non-empty prompts")
    was_training = model.training
    model.eval()
    device = model.output_weight.device
    generator = generator_on(generator, device)
    stop = torch.tensor(sorted(set(stop_ids)), device=device)
    total_rows, width = len(prompts), max(len(p) for p in prompts)
    if rows is not None:
        prompts = prompts[rows.start:rows.stop]
    ids, mask = left_pad(prompts, pad_id, device, width)                  # (B, P)
    B, P = ids.shape
    max_new_tokens = min(max_new_tokens, model.config.block_size - P)
    if max_new_tokens <= 0:
        raise ValueError(f"prompt of {P} tokens leaves no room in block_size={model.config.block_size}")
    cache = KVCache(model.config, B, P + max_new_tokens, device,
                    model.output_weight.dtype) if use_cache else None
    ended = torch.zeros(B, dtype=torch.bool, device=device)
    resp = torch.zeros(B, 0, dtype=torch.long, device=device)
    resp_mask = torch.zeros(B, 0, dtype=torch.long, device=device)
    step_input = ids
    for _ in range(max_new_tokens):
        full_mask = torch.cat([mask, resp_mask], dim=1)                    # (B, P + t)
        with autocast(device):
            if use_cache:
                h = model(step_input, attention_mask=full_mask, cache=cache)
            else:
                h = model(torch.cat([ids, resp], dim=1), attention_mask=full_mask)
            logits = model.logits(h[:, -1]).float()                        # (B, V)
        tok = next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                         generator=generator, rows=rows, total_rows=total_rows)  # (B,)
        tok = torch.where(ended, torch.full_like(tok, pad_id), tok)
        resp = torch.cat([resp, tok[:, None]], dim=1)
        resp_mask = torch.cat([resp_mask, (~ended).long()[:, None]], dim=1)
        ended = ended | torch.isin(tok, stop)
        step_input = tok[:, None]
        done = bool(ended.all())
        if rows is not None:
            done = distributed.all_true(done)              # the other processes' rows too
        if done:
            break
    model.train(was_training)
    response_ids = [row[m.bool()].tolist() for row, m in zip(resp.cpu(), resp_mask.cpu())]
    return Generation(
        tokens=torch.cat([ids, resp], dim=1),
        attention_mask=torch.cat([mask, resp_mask], dim=1),
        response_mask=torch.cat([torch.zeros_like(mask), resp_mask], dim=1),
        prompt_len=P,
        response_ids=response_ids,
        ended=ended,
    )


def generate_in_batches(model: GPT, prompts: list[list[int]], *, batch_size: int, **kwargs):
    """`generate` over many prompts, `batch_size` at a time, with the same keyword arguments (one generator
    throughout, so a seed fixes every batch): yields (index of the batch's first prompt, Generation)."""
    for start in range(0, len(prompts), batch_size):
        yield start, generate(model, prompts[start:start + batch_size], **kwargs)


@dataclass
class Sampled:
    """One batch of `sample_batches`: which prompt each row answers, the Generation, and the texts.

    rows:  (B,) index into the caller's prompt list of each row.
    texts: per row, the response text (chat: up to <|end|>; raw text: up to <|endoftext|>).
    ended: per row, True where the response closed with its stop token.
    """

    rows: list[int]
    gen: Generation
    texts: list[str]
    ended: list[bool]


@torch.no_grad()
def sample_batches(model: GPT, tok, prompts: list, *, chat: bool = True, n: int = 1, system: str | None = None,
                   max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
                   seed: int = 0, batch_size: int = 64, shortest_first: bool = False):
    """The one sampling helper: `n` responses per prompt, `batch_size` rows at a time; yields `Sampled`.

    chat=True: `prompts` are texts, rendered in the chat template (with `system`, if any) and answered up to
    <|end|>. chat=False: `prompts` are token id lists continued as raw text up to <|endoftext|>. Rows are
    prompt-major (row i * n + s is sample s of prompt i); `shortest_first` sorts them by prompt length first
    (less left padding; greedy evaluation). One generator seeded with `seed` draws every batch, so two
    models sampled with the same seed answer the same prompts in the same order.
    """
    encoded = [prompt_ids(tok, p, system) for p in prompts] if chat else [list(p) for p in prompts]
    rows = [i for i in range(len(prompts)) for _ in range(n)]
    if shortest_first:
        rows.sort(key=lambda i: len(encoded[i]))
    stop = end_id(tok) if chat else tok.eot_id
    for start, gen in generate_in_batches(model, [encoded[i] for i in rows], batch_size=batch_size,
                                          max_new_tokens=max_new_tokens, stop_ids=[stop], pad_id=tok.pad_id,
                                          temperature=temperature, top_p=top_p, greedy=greedy,
                                          generator=torch.Generator().manual_seed(seed)):
        if chat:
            texts, ended = map(list, zip(*(parse_response(tok, ids) for ids in gen.response_ids)))
        else:
            texts = [tok.decode(response_text_ids(tok, ids)) for ids in gen.response_ids]
            ended = [stop in ids for ids in gen.response_ids]
        yield Sampled(rows[start:start + batch_size], gen, texts, ended)
