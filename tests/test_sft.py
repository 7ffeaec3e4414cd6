"""SFT: the loss mask is applied (not only built), the loss is the hand-computed NLL, the template
round-trips, generation stops at <|end|>, training resumes exactly, and SFT teaches a tiny model
to answer instructions of seen task families.

The mask tests use a mock model whose hidden states do not depend on the input ids: then changing
ids[t+1] changes only the *target* of position t, never the context, so "the loss did not change"
means exactly "that target is not in the loss".
"""

import math
import os

import pytest
import torch

from minialign.batching import Batch
from minialign.chat import end_id, render
from minialign.model import GPT, GPTConfig
from minialign.pretrain import PretrainConfig, pretrain, tokens_of
from minialign.evaluation import evaluate_sft, exact_match, generate_answers
from minialign.sft import SFTConfig, collate, epoch_batches, render_examples, sft_loss, train_sft
from minialign.tokenizer import train_bpe
from minialign.world import instruction_data, pretraining_corpus

PAIRS = [("Where does Mia live?", "Mia lives in Oakton."),
         ("What is the plural of dog?", "Dogs."),
         ("Write a one-sentence story about Tom.", "Tom found a red ball in the park.")]


@pytest.fixture(scope="module")
def tok():
    docs = pretraining_corpus(seed=0, n_docs=100)
    docs += [p + " " + r for ex in instruction_data(seed=0, n_per_family=3) for p, r in
             [(ex.prompt, ex.response)]]
    return train_bpe(docs, vocab_size=450, progress=False)


def tiny_gpt(tok, seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


class FixedHidden(torch.nn.Module):
    """A 'model' whose hidden states are fixed random vectors, whatever the input ids."""

    def __init__(self, T: int, vocab: int, d: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.h = torch.nn.Parameter(torch.randn(1, T, d, generator=g))
        self.w = torch.nn.Parameter(torch.randn(vocab, d, generator=g))

    @property
    def output_weight(self):
        return self.w

    def forward(self, ids, attention_mask=None):
        return self.h[:, :ids.shape[1]].expand(ids.shape[0], -1, -1)


def with_ids(batch: Batch, ids: torch.Tensor) -> Batch:
    return Batch(ids=ids, attention_mask=batch.attention_mask, loss_mask=batch.loss_mask,
                 targets=batch.targets)


def test_rendered_template_round_trips_and_masks_the_response(tok):
    r = render(tok, *PAIRS[0])
    assert tok.decode(r.ids) == "<|user|>Where does Mia live?<|end|><|assistant|>Mia lives in Oakton.<|end|>"
    trained = [i for i, m in zip(r.ids, r.loss_mask) if m]
    assert tok.decode(trained) == "Mia lives in Oakton.<|end|>"
    assert trained[-1] == end_id(tok)
    # the mask is one block at the end: prompt (incl. the assistant header) 0, response 1
    assert r.loss_mask == [0] * r.prompt_len + [1] * (len(r.ids) - r.prompt_len)


@pytest.mark.parametrize("average", ["token", "sequence"])
def test_mask_is_applied_prompt_and_padding_targets_do_not_count(tok, average):
    rendered, _ = render_examples(tok, PAIRS, max_len=128)
    batch = collate(rendered, tok.pad_id)
    B, T = batch.ids.shape
    model = FixedHidden(T, tok.vocab_size)
    base = sft_loss(model, batch, average).item()
    other = 7  # an ordinary byte-level token id
    for b in range(B):
        n, p = len(rendered[b].ids), rendered[b].prompt_len
        for j in range(1, T):                     # ids[j] is the target of position j - 1
            ids = batch.ids.clone()
            ids[b, j] = other if ids[b, j] != other else other + 1
            changed = sft_loss(model, with_ids(batch, ids), average).item()
            if j < p or j >= n:                   # prompt token or padding: not in the loss
                assert changed == base, (b, j)
            else:                                 # response token or the closing <|end|>
                assert abs(changed - base) > 1e-6, (b, j)


def test_mask_is_applied_no_gradient_reaches_untrained_positions(tok):
    rendered, _ = render_examples(tok, PAIRS, max_len=128)
    batch = collate(rendered, tok.pad_id)
    model = FixedHidden(batch.ids.shape[1], tok.vocab_size)
    h = model.h.expand(len(PAIRS), -1, -1).detach().clone().requires_grad_(True)
    model.forward = lambda ids, attention_mask=None: h
    sft_loss(model, batch).backward()
    for b, r in enumerate(rendered):
        for t in range(batch.ids.shape[1]):
            trained = t + 1 < len(r.ids) and r.loss_mask[t + 1] == 1
            assert (h.grad[b, t].abs().sum() > 0) == trained, (b, t)


def test_end_token_is_trained(tok):
    rendered, _ = render_examples(tok, PAIRS[:1], max_len=128)
    batch = collate(rendered, tok.pad_id)
    model = FixedHidden(batch.ids.shape[1], tok.vocab_size)
    last = len(rendered[0].ids) - 1
    assert batch.ids[0, last] == end_id(tok)
    ids = batch.ids.clone()
    ids[0, last] = 7
    assert sft_loss(model, with_ids(batch, ids)).item() != sft_loss(model, batch).item()


def test_padding_does_not_leak_into_a_real_model(tok):
    rendered, _ = render_examples(tok, PAIRS, max_len=128)
    batch = collate(rendered, tok.pad_id)
    model = tiny_gpt(tok)
    ids = batch.ids.clone()
    pads = batch.attention_mask == 0
    ids[pads] = 11                                # change every pad to some other token
    assert pads.any()
    assert torch.allclose(sft_loss(model, with_ids(batch, ids)), sft_loss(model, batch), atol=1e-6)


def test_sft_loss_equals_hand_computed_nll(tok):
    rendered, _ = render_examples(tok, PAIRS, max_len=128)
    batch = collate(rendered, tok.pad_id)
    model = tiny_gpt(tok)
    logits = model.logits(model(batch.ids, attention_mask=batch.attention_mask)).double()
    per_seq, total, count = [], 0.0, 0
    for b, r in enumerate(rendered):
        nll, n = 0.0, 0
        for t in range(len(r.ids) - 1):
            if r.loss_mask[t + 1] != 1:
                continue
            z = logits[b, t].tolist()
            m = max(z)
            log_softmax_y = z[r.ids[t + 1]] - (m + math.log(sum(math.exp(v - m) for v in z)))
            nll, n = nll - log_softmax_y, n + 1
        assert n == len(r.ids) - r.prompt_len       # every response token and <|end|>, nothing else
        per_seq.append(nll / n)
        total, count = total + nll, count + n
    assert sft_loss(model, batch, "token").item() == pytest.approx(total / count, abs=1e-5)
    assert sft_loss(model, batch, "sequence").item() == pytest.approx(sum(per_seq) / len(per_seq),
                                                                      abs=1e-5)


def test_bucketed_batches_cover_every_example_once_and_pad_less():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 200, (1000,), generator=g).tolist()

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    plain = epoch_batches(lengths, 16, 1, torch.Generator().manual_seed(1))
    bucketed = epoch_batches(lengths, 16, 8, torch.Generator().manual_seed(1))
    for batches in (plain, bucketed):
        assert sorted(i for b in batches for i in b) == list(range(1000))
    assert padded(bucketed) < 0.8 * padded(plain)


def test_exact_match_normalizes_and_accepts_the_reference():
    assert exact_match("positive.", ["positive"])
    assert exact_match("  Oakton ", ["Oakton"])
    assert exact_match("Mia lives in Oakton.", ["Oakton"], reference="Mia lives in Oakton.")
    assert not exact_match("Mia lives in Riverby.", ["Oakton"], reference="Mia lives in Oakton.")


def test_sft_learns_to_answer_and_generation_stops_at_end(tok):
    model = tiny_gpt(tok, n_layer=2, n_embd=48)
    cfg = SFTConfig(steps=60, batch_size=4, lr=1e-2, warmup_steps=5, eval_loss_every=0)
    train_sft(model, tok, PAIRS[:2], cfg, device="cpu")
    answers = generate_answers(model, tok, [PAIRS[1][0], PAIRS[0][0]], max_new_tokens=20)
    assert [a["text"] for a in answers] == [PAIRS[1][1], PAIRS[0][1]]
    assert all(a["ended"] for a in answers)       # stopped at <|end|>, not at the token budget


def test_interrupted_and_resumed_sft_ends_with_the_same_weights(tok, tmp_path):
    cfg = SFTConfig(steps=8, batch_size=2, lr=3e-3, warmup_steps=2, ckpt_every=3,
                    eval_loss_every=0)

    def run(out, max_steps=None):
        model = tiny_gpt(tok)
        train_sft(model, tok, PAIRS, cfg, out_dir=str(out), device="cpu", seed=1,
                  max_steps=max_steps)
        return torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)

    whole = run(tmp_path / "whole")
    part = run(tmp_path / "resumed", max_steps=5)
    assert part["step"] == 5 and not part["done"]
    resumed = run(tmp_path / "resumed")
    assert resumed["done"] and whole["history"]["loss"] == resumed["history"]["loss"]
    for k, v in whole["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert os.path.exists(tmp_path / "whole" / "loss.png")
    assert os.path.exists(tmp_path / "whole" / "metrics.json")


@pytest.mark.slow
def test_sft_raises_exact_match_on_seen_families_above_the_base_model(tok, tmp_path):
    # --quick scale: a 2-layer GPT briefly pretrained on the world's corpus is the base model
    model = tiny_gpt(tok, n_layer=2, n_embd=64)
    stream = tokens_of(pretraining_corpus(seed=0, n_docs=100), tok)
    pretrain(model, stream, PretrainConfig(steps=40, batch_size=8, seq_len=64, warmup_steps=5,
                                           eval_every=40, ckpt_every=40),
             out_dir=str(tmp_path / "pretrain"), device="cpu")
    families = ["sentiment", "topic", "extract_town", "extract_name"]
    train = instruction_data(seed=0, n_per_family=150, families=families)
    held_out = instruction_data(seed=0, n_per_family=12, splits="test", families=families)
    base = evaluate_sft(model, tok, held_out, chat=False, max_new_tokens=8)
    cfg = SFTConfig(steps=300, batch_size=16, lr=3e-3, warmup_steps=10, eval_loss_every=0)
    torch.manual_seed(0)
    _, metrics = train_sft(model, tok, train, cfg, device="cpu", eval_examples=held_out)
    before = base["splits"]["test"]["exact_match"]
    after = metrics["eval"]["splits"]["test"]["exact_match"]
    assert after > before + 0.3, (before, after, metrics["eval"]["families"]["test"])
