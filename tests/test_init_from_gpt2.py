"""Starting the pipeline from real GPT-2 files (`--init-from`): GPT-2's tokenizer read from vocab.json,
its weights with rows added for our special tokens. The test writes a small folder in GPT-2's format."""

import json
import os
import subprocess
import sys

import torch

from minialign.model import GPT
from minialign.tokenizer import gpt2_byte_to_unicode, tokenizer_from_hf_gpt2, train_bpe
from test_model import random_hf_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ["Mia found a red ball in the garden.", "Leo has a dog. The dog is brown.",
        "Ana lives in Pinewood and likes to read.", "What is the capital of Grelland?"] * 20


def test_gpt2_byte_alphabet():
    m = gpt2_byte_to_unicode()
    assert len(set(m.values())) == 256
    # the spellings every GPT-2 vocab.json shows: space = 'Ġ', newline = 'Ċ', printable bytes as themselves
    assert m[ord(" ")] == "\u0120" and m[ord("\n")] == "\u010a" and m[ord("a")] == "a" and m[ord("!")] == "!"


def write_gpt2_folder(folder, source):
    """vocab.json spelled like GPT-2's (ids = ranks, <|endoftext|> last) from `source`'s tokens, and
    random weights in Hugging Face's layout with one row per vocab.json entry."""
    spell = gpt2_byte_to_unicode()
    n = 256 + len(source.merges)
    vocab = {"".join(spell[b] for b in source.token_bytes(i)): i for i in range(n)}
    vocab["<|endoftext|>"] = n
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    sd = random_hf_state_dict(n_layer=2, C=64, V=n + 1, T=256)
    torch.save(sd, os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(folder, "config.json"), "w") as f:    # as in every HF folder: the head count
        json.dump({"model_type": "gpt2", "n_head": 2, "n_embd": 64, "n_layer": 2}, f)
    return n, sd


def test_tokenizer_from_vocab_json_encodes_like_the_source(tmp_path):
    source = train_bpe(TEXT, vocab_size=300, progress=False)
    n, _ = write_gpt2_folder(tmp_path, source)
    tok = tokenizer_from_hf_gpt2(str(tmp_path))
    for text in ["Mia found a dog in Pinewood.\nWhat is it?", "unseen wörds, 123!"]:
        assert tok.encode(text) == source.encode(text)      # same ranks -> the same ids
        assert tok.decode(tok.encode(text)) == text
    assert tok.eot_id == n                                   # GPT-2's <|endoftext|> keeps its id
    assert tok.pad_id == n + 1 and tok.vocab_size == n + 6   # our other specials follow


def test_resize_vocab_keeps_old_logits_and_adds_mean_rows():
    m = GPT.from_hf_gpt2(random_hf_state_dict(n_layer=1, C=64, V=40, T=16), hf_config={"n_head": 2}).eval()
    ids = torch.tensor([[1, 5, 7, 39]])
    before = m.logits(m(ids))
    old_mean = m.output_weight.mean(0).clone()
    m.resize_vocab(45)
    after = m.logits(m(ids))
    assert after.shape[-1] == 45 and torch.allclose(after[..., :40], before, atol=1e-6)
    assert torch.allclose(m.output_weight[40:], old_mean.expand(5, -1))


def test_train_py_init_from_runs_sft_on_gpt2_weights(tmp_path):
    source = train_bpe(TEXT, vocab_size=300, progress=False)
    folder = tmp_path / "gpt2"
    n, sd = write_gpt2_folder(folder, source)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "sft", "--quick", "--init-from", str(folder), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPT-2's tokenizer from" in proc.stdout and "GPT-2 weights from" in proc.stdout
    state = torch.load(out / "pretrain" / "ckpt.pt", weights_only=False)
    # the base model holds GPT-2's tensors (Conv1D transposed) and 5 new rows for the specials
    assert state["model_config"]["vocab_size"] == n + 6 and state["model_config"]["n_layer"] == 2
    assert torch.equal(state["model"]["transformer.wte.weight"][:n + 1], sd["transformer.wte.weight"])
    assert torch.equal(state["model"]["transformer.h.0.attn.c_attn.weight"], sd["transformer.h.0.attn.c_attn.weight"].T)
    assert json.load(open(out / "sft" / "metrics.json"))["steps"] > 0
