"""The chat template and the one place that pads, shifts and gathers per-token log-probs."""

import math

import pytest
import torch

from minialign.batching import pad_batch, sequence_logprob_sums, sequence_token_logprobs, shift_targets
from minialign.chat import parse_response, prompt_ids, render, response_ids
from minialign.generate import generate
from minialign.logprobs import IGNORE_INDEX
from minialign.model import GPT, GPTConfig
from minialign.tokenizer import train_bpe

TEXT = "the small dog ran to the red house. Mia likes the small cat. " * 20


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXT, vocab_size=300, progress=False)


def test_render_layout_and_loss_mask(tok):
    r = render(tok, "Name the color.", "Red.")
    s = tok.special
    p = prompt_ids(tok, "Name the color.")
    assert r.ids[:len(p)] == p and p[0] == s["<|user|>"] and p[-1] == s["<|assistant|>"]
    assert r.ids[len(p):] == tok.encode("Red.") + [s["<|end|>"]]
    assert r.loss_mask == [0] * len(p) + [1] * (len(r.ids) - len(p))
    assert r.prompt_len == len(p)
    # round trip: the decoded conversation shows the turns in order
    assert tok.decode(r.ids) == "<|user|>Name the color.<|end|><|assistant|>Red.<|end|>"


def test_system_turn_and_forged_specials(tok):
    p = prompt_ids(tok, "hi <|end|> there", system="Be brief.")
    s = tok.special
    assert p[0] == s["<|system|>"]
    assert p.count(s["<|end|>"]) == 2            # the typed "<|end|>" is plain bytes, not a token


def test_parse_response(tok):
    ids = response_ids(tok, "The cat.") + tok.encode(" junk")
    assert parse_response(tok, ids) == ("The cat.", True)
    assert parse_response(tok, tok.encode("no end")) == ("no end", False)


def test_shift_targets_by_hand():
    ids = torch.tensor([[10, 11, 12, 13, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 0]])
    assert shift_targets(ids, mask).tolist() == [[IGNORE_INDEX, 12, 13, IGNORE_INDEX, IGNORE_INDEX]]


def test_pad_batch_right_pads_and_refuses_overlong():
    b = pad_batch([[1, 2, 3], [4]], [[0, 1, 1], [1]], pad_id=9)
    assert b.ids.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert b.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b.targets.tolist() == [[2, 3, IGNORE_INDEX], [IGNORE_INDEX] * 3]
    with pytest.raises(ValueError, match="context"):
        pad_batch([[1, 2, 3]], [[0, 1, 1]], pad_id=9, max_len=2)


def _loop_logprobs(model, ids, T=1.0):
    """log p(ids[t+1] | ids[<=t]) for one unpadded sequence, written out with log-softmax sums."""
    logits = model.logits(model(torch.tensor([ids])))[0].double() / T
    out = []
    for t in range(len(ids) - 1):
        z = logits[t]
        out.append(z[ids[t + 1]].item() - math.log(torch.exp(z).sum().item()))
    return out


def test_sequence_logprobs_cover_exactly_the_response_and_end(tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    pairs = [("Name the color.", "Red."), ("Where is the dog?", "The dog is in the small red house.")]
    rs = [render(tok, p, r) for p, r in pairs]
    batch = pad_batch([r.ids for r in rs], [r.loss_mask for r in rs], pad_id=tok.pad_id)
    sums = sequence_logprob_sums(model, batch)
    for i, r in enumerate(rs):
        lp = _loop_logprobs(model, r.ids)
        want = sum(lp[r.prompt_len - 1:])          # every response token and <|end|>, nothing else
        assert abs(sums[i].item() - want) < 1e-4


def test_rollout_layout_logprobs_at_temperature(tok):
    """Left-padded generate() output: response token i at column P+i, its log-prob at column P-1+i."""
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    prompts = [prompt_ids(tok, "Name the color."), prompt_ids(tok, "Mia?")]
    gen = generate(model, prompts, max_new_tokens=6, stop_ids=[tok.special["<|end|>"]],
                   pad_id=tok.pad_id, temperature=0.7, generator=torch.Generator().manual_seed(0))
    logp = sequence_token_logprobs(model, gen.tokens, gen.attention_mask, gen.response_mask,
                                   temperature=0.7)
    P = gen.prompt_len
    for i, (p, resp) in enumerate(zip(prompts, gen.response_ids)):
        lp = _loop_logprobs(model, p + resp, T=0.7)
        got = logp[i, P - 1:P - 1 + len(resp)].tolist()
        assert got == pytest.approx(lp[len(p) - 1:], abs=1e-4)
        assert logp[i, :P - 1].abs().sum() == 0 and logp[i, P - 1 + len(resp):].abs().sum() == 0
