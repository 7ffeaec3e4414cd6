"""Generation: KV cache == full recomputation, padding-independence, stopping, sampling filters."""

import pytest
import torch

from minialign.generate import filter_logits, generate, next_token
from minialign.model import GPT, GPTConfig

PAD, STOP = 0, 1


def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=61, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


PROMPTS = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15], [20], [30, 31, 32, 33]]


def test_kv_cache_equals_full_recomputation_greedy():
    m = model()
    a = generate(m, PROMPTS, max_new_tokens=20, stop_ids=[STOP], pad_id=PAD, greedy=True)
    b = generate(m, PROMPTS, max_new_tokens=20, stop_ids=[STOP], pad_id=PAD, greedy=True,
                 use_cache=False)
    assert torch.equal(a.tokens, b.tokens)
    assert a.response_ids == b.response_ids


def test_each_padded_row_equals_the_prompt_alone():
    m = model()
    batch = generate(m, PROMPTS, max_new_tokens=15, stop_ids=[STOP], pad_id=PAD, greedy=True)
    for i, p in enumerate(PROMPTS):
        alone = generate(m, [p], max_new_tokens=15, stop_ids=[STOP], pad_id=PAD, greedy=True)
        assert batch.response_ids[i] == alone.response_ids[0]


def test_sampling_is_reproducible_with_a_seed_and_cache_agnostic():
    m = model()
    run = lambda seed, cache=True: generate(
        m, PROMPTS, max_new_tokens=12, stop_ids=[STOP], pad_id=PAD, temperature=1.3,
        top_k=20, top_p=0.9, generator=torch.Generator().manual_seed(seed), use_cache=cache)
    assert torch.equal(run(1).tokens, run(1).tokens)
    assert torch.equal(run(1).tokens, run(1, cache=False).tokens)
    assert not torch.equal(run(1).tokens, run(2).tokens)


def test_sampling_draws_what_torch_multinomial_draws_and_a_row_slice_what_its_rows_draw():
    """next_token's exponential race picks the tokens of torch.multinomial (same seed, same draws), and
    rows 1..2 of a batch of 4, drawing the whole batch's noise, pick what those rows pick in the batch."""
    logits = torch.randn(4, 61, generator=torch.Generator().manual_seed(3)) * 2
    kw = dict(temperature=0.8, top_k=0, top_p=1.0, greedy=False)
    g1, g2, g3 = (torch.Generator().manual_seed(9) for _ in range(3))
    for _ in range(50):
        want = torch.multinomial(torch.softmax(logits / 0.8, -1), 1, generator=g1).squeeze(-1)
        assert torch.equal(next_token(logits, generator=g2, **kw), want)
        part = next_token(logits[1:3], generator=g3, rows=range(1, 3), total_rows=4, **kw)
        assert torch.equal(part, want[1:3])


def test_sampling_refuses_probabilities_that_are_not_finite():
    """torch.multinomial refused NaN or inf; the exponential race must too (argmax would quietly pick token 0)."""
    logits = torch.zeros(2, 5)
    logits[1, 3] = float("nan")
    with pytest.raises(RuntimeError, match="NaN or inf"):
        next_token(logits, temperature=1.0, top_k=0, top_p=1.0, greedy=False, generator=torch.Generator())


def test_generating_some_rows_of_a_batch_gives_those_rows_of_the_whole_batch():
    """generate(rows=...) (one process's share under torchrun) pads to the whole batch's longest prompt
    and returns exactly the rows that sampling the whole batch gives them."""
    m = model()
    run = lambda rows=None: generate(m, PROMPTS, max_new_tokens=12, stop_ids=[STOP], pad_id=PAD,  # noqa
                                     temperature=1.3, generator=torch.Generator().manual_seed(4), rows=rows)
    whole, part = run(), run(range(1, 3))
    assert part.prompt_len == whole.prompt_len and part.response_ids == whole.response_ids[1:3]
    assert torch.equal(part.tokens, whole.tokens[1:3, :part.tokens.size(1)])


def test_rows_stop_at_the_stop_token_and_masks_describe_the_layout():
    m = model()
    out = generate(m, PROMPTS, max_new_tokens=30, stop_ids=[STOP], pad_id=PAD,
                   temperature=5.0, generator=torch.Generator().manual_seed(0))
    P = out.prompt_len
    assert P == max(map(len, PROMPTS))
    for i, ids in enumerate(out.response_ids):
        resp = out.tokens[i, P:]
        n = len(ids)
        assert resp[:n].tolist() == ids
        assert out.response_mask[i, P:P + n].tolist() == [1] * n
        assert out.response_mask[i, P + n:].sum() == 0 and (resp[n:] == PAD).all()
        assert out.response_mask[i, :P].sum() == 0
        assert bool(out.ended[i]) == (STOP in ids)
        if STOP in ids:
            assert ids.index(STOP) == n - 1           # nothing after the stop token
        assert out.attention_mask[i, :P].sum() == len(PROMPTS[i])


def test_every_row_stops_when_the_stop_token_dominates():
    m = model()
    with torch.no_grad():  # every hidden state becomes e_0, and only the stop row points along it
        m.transformer.ln_f.weight.zero_()
        m.transformer.ln_f.bias.zero_()
        m.transformer.ln_f.bias[0] = 1.0
        m.transformer.wte.weight[STOP, 0] = 100.0
    out = generate(m, PROMPTS, max_new_tokens=10, stop_ids=[STOP], pad_id=PAD, greedy=True)
    assert out.ended.all()
    assert out.response_ids == [[STOP]] * len(PROMPTS)
    assert out.tokens.shape[1] == out.prompt_len + 1      # the loop ended as soon as all stopped


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    k2 = filter_logits(logits, top_k=2)
    assert torch.isinf(k2[0, 2:]).all() and torch.isfinite(k2[0, :2]).all()
    p = filter_logits(logits, top_p=0.7)      # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: keep the first two
    assert torch.isfinite(p[0, :2]).all() and torch.isinf(p[0, 2:]).all()
    p1 = filter_logits(logits, top_p=0.4)     # the first alone reaches 0.4
    assert torch.isfinite(p1[0, 0]) and torch.isinf(p1[0, 1:]).all()


def test_sample_batches_is_generate_on_the_rendered_prompts_prompt_major():
    """The one sampling helper: chat prompts rendered by chat.prompt_ids, n copies of each in a row, one
    generator seeded once for every batch, texts cut at <|end|>."""
    from minialign.chat import end_id, parse_response, prompt_ids
    from minialign.generate import sample_batches
    from minialign.tokenizer import Tokenizer
    tok = Tokenizer([])
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    prompts = ["Hi there?", "A", "Tell me a story."]
    batches = list(sample_batches(m, tok, prompts, n=2, max_new_tokens=8, seed=3, batch_size=4))
    assert [b.rows for b in batches] == [[0, 0, 1, 1], [2, 2]]
    g = torch.Generator().manual_seed(3)
    jobs = [prompt_ids(tok, p) for p in prompts for _ in range(2)]
    kw = dict(max_new_tokens=8, stop_ids=[end_id(tok)], pad_id=tok.pad_id, generator=g)
    want = [generate(m, jobs[:4], **kw), generate(m, jobs[4:], **kw)]
    for b, w in zip(batches, want):
        assert b.gen.response_ids == w.response_ids
        assert b.texts == [parse_response(tok, ids)[0] for ids in w.response_ids]
    # greedy, shortest prompt first: rows say which prompt each answer belongs to
    [b] = list(sample_batches(m, tok, prompts, greedy=True, max_new_tokens=8, shortest_first=True))
    assert b.rows == [1, 0, 2]
    for i, ids in zip(b.rows, b.gen.response_ids):
        alone = generate(m, [prompt_ids(tok, prompts[i])], greedy=True, max_new_tokens=8,
                         stop_ids=[end_id(tok)], pad_id=tok.pad_id)
        assert ids == alone.response_ids[0]
