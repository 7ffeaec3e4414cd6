"""Sampling draws from softmax(logits / T): the distribution generate() samples from, measured.

tests/test_generate.py checks the cache, padding, stopping and the top-k/top-p filters; this file checks the
one number they do not: the temperature. A GPT whose final LayerNorm outputs the same vector everywhere has the
same logits z after any prompt, so one step of generate() on 6000 copies of a prompt draws 6000 independent
tokens from softmax(z / T), and their frequencies must match that distribution computed here by hand.
"""

import math

import torch

from minialign.generate import generate
from minialign.model import GPT, GPTConfig

Z = [2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -4.0, -4.0]     # the logits of the 8 tokens, after any prompt
PAD, STOP = 6, 7
N_SAMPLES = 6000


def constant_logits_gpt():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=len(Z), block_size=8, n_layer=1, n_head=2, n_embd=8))
    with torch.no_grad():                            # h = ln_f(x) = 0 * x_hat + e_0, whatever x is
        m.transformer.ln_f.weight.zero_()
        m.transformer.ln_f.bias.zero_()
        m.transformer.ln_f.bias[0] = 1.0
        m.transformer.wte.weight[:, 0] = torch.tensor(Z)   # tied output embedding: logits = W e_0 = Z
    return m.eval()


def softmax_at(T):
    e = [math.exp(z / T) for z in Z]
    return [x / sum(e) for x in e]


def frequencies(model, T, seed):
    out = generate(model, [[2, 3]] * N_SAMPLES, max_new_tokens=1, stop_ids=[STOP], pad_id=PAD, temperature=T,
                   generator=torch.Generator().manual_seed(seed))
    counts = [0] * len(Z)
    for ids in out.response_ids:
        counts[ids[0]] += 1
    return [c / N_SAMPLES for c in counts]


def test_sampling_draws_from_softmax_of_logits_over_temperature():
    model = constant_logits_gpt()
    for T, seed in ((0.5, 1), (2.0, 2)):
        want = softmax_at(T)
        # the test can tell T from 1: the two distributions differ by far more than the tolerance
        assert max(abs(a - b) for a, b in zip(want, softmax_at(1.0))) > 0.1
        got = frequencies(model, T, seed)
        assert max(abs(a - b) for a, b in zip(got, want)) < 0.03, (T, got, want)   # ~5 standard errors
