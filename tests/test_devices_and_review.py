"""What an outside review of the first wave found, each checked here: seeded sampling that is safe on any
device, the precision of each step under bf16 autocast, the 'after_end' score position as TRL >= 0.12 runs it,
one normalisation of the holistic score for PPO and fine-grained PPO, and a CUDA smoke test (skipped here)."""

import ast
import copy
import os
import subprocess
import sys

import pytest
import torch

from minialign import generate as generate_module
from minialign import ppo
from minialign.finegrained import FineGrainedReward
from minialign.pipeline import holistic_reward
from minialign.generate import generate, generator_on
from minialign.model import GPT, GPTConfig
from minialign.ppo import PPOConfig, ValueModel, compute_gae, ppo_update, value_mask
from minialign.reward import RewardModel
from minialign.tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD, END = 0, 1


def tiny_gpt(seed=0, vocab=40):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=64, n_layer=1, n_head=2, n_embd=32))


def bf16_on_cpu(device=None):
    """The project's GPU precision, on the CPU: what `config.autocast` returns on a CUDA device."""
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


# ----------------------------------------------------------------------------------------------------------------
# 1. Seeded sampling on any device
def library_files():
    for folder in ("minialign", "lessons"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                yield os.path.join(folder, name)
    yield "train.py"


def test_only_generate_draws_samples_with_a_generator():
    """Every sampling call (multinomial) is in generate.py, which moves the caller's generator to the model's
    device: no other file can hand a CPU generator to a CUDA tensor."""
    offenders = []
    for rel in library_files():
        tree = ast.parse(open(os.path.join(ROOT, rel)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("multinomial", "bernoulli", "poisson"):
                if rel != os.path.join("minialign", "generate.py"):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
    source = open(os.path.join(ROOT, "minialign", "generate.py")).read()
    assert source.count("multinomial(") == 1 and "generator = generator_on(generator, device)" in source


def test_generator_on_derives_a_seeded_generator_on_another_device(monkeypatch):
    """A CPU generator asked for 'cuda' gives a new generator made on 'cuda', seeded by one draw of the CPU one:
    the same seed, the same device generator (so the same samples), and the CPU one moves on."""
    made = []
    real = torch.Generator

    class RecordingGenerator:                      # no CUDA here: record the device, build a CPU one instead
        def __new__(cls, device="cpu"):
            made.append(torch.device(device))
            return real()

    g = torch.Generator().manual_seed(5)
    assert generator_on(g, torch.device("cpu")) is g
    assert generator_on(None, torch.device("cuda")) is None
    monkeypatch.setattr(generate_module.torch, "Generator", RecordingGenerator)
    a = generator_on(real().manual_seed(5), torch.device("cuda"))
    b = generator_on(real().manual_seed(5), torch.device("cuda"))
    assert made == [torch.device("cuda"), torch.device("cuda")]
    assert a.initial_seed() == b.initial_seed()
    want = int(torch.randint(0, 2**62, (1,), generator=real().manual_seed(5)))
    assert a.initial_seed() == want


def test_generate_samples_through_the_moved_generator(monkeypatch):
    seen = []
    real = generate_module.generator_on
    monkeypatch.setattr(generate_module, "generator_on", lambda g, d: seen.append((g, d)) or real(g, d))
    g = torch.Generator().manual_seed(0)
    generate(tiny_gpt(), [[3, 4]], max_new_tokens=2, stop_ids=[END], pad_id=PAD, generator=g)
    assert seen == [(g, torch.device("cpu"))]


# ----------------------------------------------------------------------------------------------------------------
# 2. Precision under bf16 autocast
def test_reward_and_value_heads_run_in_float32_inside_autocast():
    trunk = tiny_gpt(1)
    rm = RewardModel(trunk).eval()
    vm = ValueModel.from_reward_model(rm).eval()
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    attn = torch.ones_like(ids)
    with torch.no_grad(), bf16_on_cpu():
        h = trunk(ids, attention_mask=attn)                                   # bf16 trunk, as on a GPU
        r, v = rm(ids, attn), vm(ids, attn)
    w, b = rm.head.weight.double(), rm.head.bias.double()
    want = (h.double() @ w.T + b).squeeze(-1)                                 # the head in float64 by hand
    assert r.dtype == torch.float32 and v.dtype == torch.float32
    assert torch.allclose(r.double(), want[:, -1], atol=1e-5, rtol=0)        # a bf16 head is off by ~1e-3
    assert torch.allclose(v.double(), want, atol=1e-5, rtol=0)


def test_rollouts_are_sampled_in_the_precision_of_the_old_log_probs(monkeypatch):
    """With the GPU's bf16 autocast, the sampler's forwards run under the same autocast as pi_old's log-probs."""
    monkeypatch.setattr(generate_module, "autocast", bf16_on_cpu)
    monkeypatch.setattr(ppo, "autocast", bf16_on_cpu)
    policy = tiny_gpt(2)
    seen = {"generate": set(), "logprobs": set()}
    phase = ["generate"]
    policy.register_forward_hook(lambda m, i, o: seen[phase[0]].add(torch.is_autocast_enabled("cpu")))
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(3))
    cfg = PPOConfig(batch_size=2, max_new_tokens=4)
    ppo.prepare_models(policy, ref, None, value, torch.device("cpu"))
    r = ppo.sample_rollout(policy, [[3, 4], [5]], cfg, end_id=END, pad_id=PAD, generator=torch.Generator())
    phase[0] = "logprobs"
    ppo.add_logprobs_and_values(r, policy, ref, value, cfg)
    assert seen == {"generate": {True}, "logprobs": {True}}


# ----------------------------------------------------------------------------------------------------------------
# 3. score_position="after_end" is TRL's
def trl_advantages_and_returns(rewards_per_token, score, values, seq_len, gamma, lam):
    """TRL >= 0.12's PPOTrainer step 4-6, transcribed for one row: the score one slot after the last real token
    (or on it when the row is full), values kept up to that slot and zeroed after it, GAE over all columns."""
    N = len(values)
    end = seq_len + 1 if seq_len + 1 < N else seq_len
    v = [values[t] if t <= seq_len + 1 else 0.0 for t in range(N)]
    r = [rewards_per_token[t] if t <= seq_len else 0.0 for t in range(N)]
    r[end] += score
    adv, last = [0.0] * N, 0.0
    for t in reversed(range(N)):
        next_v = v[t + 1] if t < N - 1 else 0.0
        last = r[t] + gamma * next_v - v[t] + gamma * lam * last
        adv[t] = last
    return adv, [a + x for a, x in zip(adv, v)]


def test_after_end_gae_matches_trl_on_the_issues_example():
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    V = torch.tensor([[0.3, 0.5, 0.8, 0.1]])
    vmask = value_mask(mask, "after_end")
    rewards = torch.tensor([[-0.01, -0.02, 0.0, 0.0]]) + ppo.place_scores(torch.tensor([1.0]), mask, "after_end")
    adv, ret = compute_gae(rewards, V * vmask, vmask, 1.0, 0.95)
    want_adv, want_ret = trl_advantages_and_returns([-0.01, -0.02, 0, 0], 1.0, [0.3, 0.5, 0.8, 0.1], 1, 1.0, 0.95)
    assert adv[0].tolist() == pytest.approx(want_adv, abs=1e-6)
    assert want_adv == pytest.approx([0.6365, 0.47, 0.2, 0.0], abs=1e-9)
    assert ret[0].tolist() == pytest.approx(want_ret, abs=1e-6)


def test_after_end_rollout_keeps_the_value_after_the_end_token_in_gae_and_the_value_clip(monkeypatch):
    """A real rollout: the values stored for the update are V up to the slot after <|end|>, and the returns the
    value loss is fitted to are TRL's, row by row."""
    policy = tiny_gpt(0)
    with torch.no_grad():                                 # make <|end|> likely, so rows end at different lengths
        policy.transformer.wte.weight[END] = policy.transformer.ln_f.weight.sign() * 0.3 * torch.rand(32)
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(5))
    with torch.no_grad():
        value.head.weight.normal_(0, 0.5)
        value.head.bias.fill_(0.3)
    cfg = PPOConfig(batch_size=4, n_minibatches=1, ppo_epochs=1, max_new_tokens=12, temperature=0.7,
                    score_position="after_end", whiten_advantages="none", lam=0.9)
    ppo.prepare_models(policy, ref, None, value, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    r = ppo.collect_rollout(policy, ref, value, [[5, 6, 7], [9, 10, 11], [20], [30, 31]], cfg, end_id=END,
                            pad_id=PAD, generator=g)
    with torch.no_grad():
        full_values = ppo.response_values(value, r.tokens, r.attention_mask, r.prompt_len)
    short = (r.lengths < r.mask.size(1)).nonzero().flatten().tolist()
    assert short, "no row ended early: the slot after <|end|> is not exercised"
    for b in short:
        assert r.values[b, r.lengths[b]].item() == pytest.approx(full_values[b, r.lengths[b]].item())
    captured = {}
    real_value_loss = ppo.value_loss

    def spy(values, old_values, returns, mask, cliprange_value):
        captured.update(ret=returns.clone(), old=old_values.clone())
        return real_value_loss(values, old_values, returns, mask, cliprange_value)

    monkeypatch.setattr(ppo, "value_loss", spy)
    monkeypatch.setattr(torch, "randperm", lambda n, generator=None: torch.arange(n))   # rows in rollout order
    score = torch.tensor([1.0, -0.5, 0.25, 2.0])
    per_token = torch.randn(4, r.mask.size(1)) * r.mask * 0.1
    rewards = per_token + ppo.place_scores(score, r.mask, "after_end")
    ppo_update(policy, value, r, rewards, cfg, ppo.make_optimizer(policy, value, cfg), g)
    for b in range(4):
        seq_len = int(r.lengths[b]) - 1
        _, want_ret = trl_advantages_and_returns(per_token[b].tolist(), score[b].item(), full_values[b].tolist(),
                                                 seq_len, cfg.gamma, cfg.lam)
        n = min(seq_len + 2, r.mask.size(1))
        assert captured["ret"][b, :n].tolist() == pytest.approx(want_ret[:n], abs=1e-5)
        assert captured["old"][b, :n].tolist() == pytest.approx(full_values[b, :n].tolist(), abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# 4. One normalisation of the holistic score
class LengthRM(torch.nn.Module):
    """A stand-in reward model: 0.1 x the number of real tokens, with a GPT trunk for the value model."""

    def __init__(self, trunk):
        super().__init__()
        self.trunk, self.head = trunk, torch.nn.Linear(trunk.config.n_embd, 1)

    def forward(self, ids, attention_mask):
        return 0.1 * attention_mask.sum(1).float()


@pytest.mark.parametrize("position", ["end", "after_end"])
def test_fine_grained_sequence_reward_is_the_holistic_ppo_reward(tmp_path, position):
    """The ppo stage's normalisation (what train_ppo stores in its checkpoint) is the one the fine-grained stage
    rebuilds, and FineGrainedReward(w_sequence=1) without segment RMs gives exactly the holistic reward."""
    tok = Tokenizer([])
    sft = tiny_gpt(6, vocab=tok.vocab_size)
    rm = LengthRM(tiny_gpt(7, vocab=tok.vocab_size))
    prompts = ["ab", "hello", "xyz!", "q"]
    cfg = PPOConfig(iterations=1, batch_size=4, n_minibatches=1, ppo_epochs=1, max_new_tokens=6, norm_samples=8,
                    score_position=position, n_samples_shown=1)
    policy, ref = copy.deepcopy(sft), copy.deepcopy(sft)
    assert ppo.train_ppo(policy, ref, rm, ValueModel.from_reward_model(rm), tok, prompts, cfg, str(tmp_path),
                         torch.device("cpu"), gold_fn=lambda p, r: 0.0, seed=3, max_iterations=0) == {}
    stored = torch.load(tmp_path / "ckpt.pt", weights_only=False)["score_norm"]
    holistic, norm = holistic_reward(sft, rm, tok, prompts, cfg, seed=3)
    assert tuple(norm) == tuple(stored) and norm[1] != 1.0
    r = ppo.collect_rollout(policy, ref, ValueModel(tiny_gpt(8, vocab=tok.vocab_size)),
                            [[tok.special["<|user|>"]] + list(b"hi") for _ in range(3)], cfg,
                            end_id=tok.special["<|end|>"], pad_id=tok.pad_id, generator=torch.Generator())
    want, _ = ppo.rm_reward_fn(rm, cfg, tok.pad_id, *stored)(r)
    got, info = FineGrainedReward(tok, {}, {}, sequence_reward=holistic, w_sequence=1.0)(r)
    assert torch.equal(got, want) and "sequence_score" in info


# ----------------------------------------------------------------------------------------------------------------
# 8. On a GPU (skipped without CUDA)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_quick_pipeline_runs_on_cuda(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "--quick", "--device", "cuda", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "device=cuda" in proc.stdout


@cuda
def test_one_ppo_iteration_on_cuda_with_a_cpu_generator():
    device = torch.device("cuda")
    policy = tiny_gpt(1).to(device)
    ref, value = copy.deepcopy(policy), ValueModel(tiny_gpt(2)).to(device)
    cfg = PPOConfig(batch_size=4, n_minibatches=2, ppo_epochs=1, max_new_tokens=6)
    ppo.prepare_models(policy, ref, None, value, device)
    opt = ppo.make_optimizer(policy, value, cfg)
    reward_fn = lambda r: (ppo.place_scores(torch.ones(4, device=device), r.mask), {})
    _, stats, _ = ppo.ppo_iteration(policy, ref, value, reward_fn, [[3, 4], [5], [6, 7], [8]], cfg, 0.05, opt,
                                    end_id=END, pad_id=PAD, generator=torch.Generator().manual_seed(0))
    assert stats["first_ratio_maxdev"] < 1e-2 and torch.isfinite(torch.tensor(stats["value_loss"]))


# ----------------------------------------------------------------------------------------------------------------
# 5. The report: a model's output cannot break the markdown after it
def test_samples_with_backticks_leave_the_configuration_blocks_intact(tmp_path):
    """A sample holding backtick runs (a code fence included) is written as a code span whose fence is longer
    than any run inside it, so every configuration block after it still opens and closes its ``` fence."""
    import re
    from minialign.pipeline import Run
    from minialign.report import _code, write_report
    assert _code("a`b") == "`` 'a`b' ``" and _code("x ```y") == "```` 'x ```y' ````" and _code("z") == "` 'z' `"
    nasty = "Sure: ```\n<details> `end"
    ppo_metrics = {"iterations": 2, "seconds_per_iteration": 0.1, "initial": {}, "config": {"beta": 0.05},
                   "samples": {"before": [{"prompt": "Hi", "response": nasty}], "after": [{"prompt": "Hi",
                                                                                         "response": nasty}]}}
    run = Run(out=str(tmp_path), preset="tiny", device=torch.device("cpu"), seed=0, quick=True)
    from minialign.config import write_json
    write_json(os.path.join(run.stage_dir("ppo"), "metrics.json"), ppo_metrics)
    write_json(os.path.join(run.stage_dir("dpo"), "metrics.json"), {"config": {"beta": 0.1, "loss": "sigmoid"}})
    text = open(write_report(run)).read()
    fences = [line for line in text.split("\n") if line.startswith("```")]
    assert len(fences) % 2 == 0                                          # every fence block closes
    blocks = re.findall(r"<summary>configuration</summary>\n\n```\n(.*?)\n```\n</details>", text, re.S)
    assert "beta = 0.05" in blocks[0] and "beta = 0.1" in blocks[-1]
    sample_lines = [line for line in text.split("\n") if line.startswith("- ") and "Sure" in line]
    for line in sample_lines:                                            # one line each, the fence longer than ```
        assert line.count("````") >= 2 and "\n" not in line
