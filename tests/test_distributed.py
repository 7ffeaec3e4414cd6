"""Data-parallel training (minialign.distributed): 2 processes with DistributedDataParallel over
Gloo, on the CPU, end with the weights and the logged losses of 1 process on the same global
batches, for pretraining, SFT, the reward model, DPO, PPO and GRPO.

The runs are tiny, and chosen so that the ranks' slices are UNEQUAL: a global batch of 5 windows
(2 + 3), SFT's per-token mean over responses of different lengths with a last batch of 1 example
(rank 1 then holds no example and joins with weight 0), reward-model batches of 5 prompts with 2
or 3 responses, DPO batches of 4 pairs and a last one of 1. Plain DDP (each rank's mean loss, no
weight) is wrong on all of these; the test checks that it is measurably wrong, so that a missing
weight cannot pass. PPO samples a batch of 5 prompts (2 + 3 per rank) and GRPO 3 problems' groups
(1 + 2): each rank samples, scores and evaluates its share, then both hold the whole batch, and
the rewards, KL, losses and weights match one process; sampling each rank's share with its own
noise instead (each rank drawing as if it were alone) measurably does not. The 2 processes are
spawned once and run every stage (~15 s).
"""

import os
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from minialign import distributed
from minialign import generate as generate_module
from minialign.dpo import DPOConfig, train_dpo
from minialign.grpo import GRPOConfig, train_grpo
from minialign.ppo import PPOConfig, ValueModel, place_scores, train_ppo
from minialign.preferences import PreferenceGroup
from minialign.model import GPT, GPTConfig
from minialign.pretrain import PretrainConfig, pretrain
from minialign.preferences import group_from_ranking
from minialign.reward import RewardModel, RMConfig, train_reward_model
from minialign.sft import SFTConfig, train_sft
from minialign.tokenizer import Tokenizer

TOK = Tokenizer([])   # bytes only: no training needed
# Measured here: at most 1e-6 apart (plain DDP: 5e-2). The all-reduce adds in another order, so
# float32 rounding differs by ~1e-7 per step, and Adam carries that on.
TOL = dict(rtol=1e-4, atol=1e-5)
# Parameters whose gradient is 0 in exact arithmetic follow rounding noise, not the data: Adam
# divides a gradient by its own running size, so noise of 1e-10 becomes a step of ~lr/100 whose
# sign is the noise's. So the tiny models have no biases (a key bias shifts every attention score
# of a query alike, and softmax ignores that), and the reward head's bias is not compared (the
# Bradley-Terry loss sees only r_w - r_l, which a bias leaves unchanged).
NOISE_ONLY = {"head.bias"}


def tiny_gpt(seed: int = 0, vocab: int = TOK.vocab_size, block: int = 128) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16,
                         bias=False))


# ----------------------------------------------------------------------------------------------
# The four tiny stages: each trains and returns (model, the logged training losses)
def run_pretrain(out: str, batch_size: int = 5):
    model = tiny_gpt(0, vocab=50, block=32)
    stream = np.random.default_rng(0).integers(0, 50, 4000).astype(np.int32)
    cfg = PretrainConfig(steps=8, batch_size=batch_size, seq_len=16, lr=1e-2, warmup_steps=2,
                         eval_every=4, ckpt_every=4)
    pretrain(model, stream, cfg, out_dir=out, device="cpu", seed=3)
    state = torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)   # rank 0 wrote it
    return model, state["history"]["loss"]


SFT_PAIRS = [("Hi", "Hello!"), ("Name a fruit.", "An apple, or a pear if you like."),
             ("2+2?", "4."), ("Say yes.", "Yes."), ("Tell a story.", "Tom found a red ball."),
             ("Colour of the sky?", "Blue, on a clear day."), ("Bye", "Goodbye, see you soon!")]


def run_sft(out: str):
    model = tiny_gpt(1)
    cfg = SFTConfig(epochs=2, batch_size=3, lr=3e-3, warmup_steps=1, loss_average="token",
                    bucket_batches=1, ckpt_every=100, eval_loss_every=0)   # batches of 3, 3, 1
    model, _ = train_sft(model, TOK, SFT_PAIRS, cfg, out_dir=out, device="cpu", seed=2)
    state = torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)
    return model, state["history"]["loss"]


def run_rm(out: str):
    torch.manual_seed(2)
    rm = RewardModel.from_sft(GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=128, n_layer=1,
                                            n_head=2, n_embd=16, bias=False)))
    groups = []
    for i in range(12):   # K = 2 or 3 responses: 1 or 3 pairs, each prompt weighing the same
        responses = [f"the apple {i}", f"a saw {i}", f"an axe {i}"][:2 + i % 2]
        groups.append(group_from_ranking(f"item {i}", responses, list(range(len(responses)))))
    cfg = RMConfig(lr=3e-3, batch_prompts=5, epochs=1, eval_every=100, ckpt_every=100)
    hist = train_reward_model(rm, TOK, groups, cfg, device="cpu", seed=1)
    return rm, hist["loss"]


def run_dpo(out: str):
    pairs = [PreferenceGroup.pair(f"Question {i}: answer politely.", "Yes, gladly." + " ok" * (i % 3),
                                  "No way!" + "!" * i) for i in range(13)]            # batches 4, 4, 4, 1
    cfg = DPOConfig(beta=0.5, lr=3e-3, warmup_steps=1, epochs=1, batch_size=4, eval_every=0,
                    ckpt_every=100)
    policy, ref = tiny_gpt(3), tiny_gpt(3)
    metrics = train_dpo(policy, ref, TOK, pairs, cfg, out, "cpu", quiet=True)
    return policy, [row["loss"] for row in metrics["history"]]


def letter_reward(rollout):
    """PPO's task reward: the share of ASCII letters in the response, on its last token (row by row)."""
    score = torch.tensor([sum(c.isalpha() for c in y) / max(1, len(y)) for y in rollout.responses])
    return place_scores(score, rollout.mask), {"score": score}


def run_ppo(out: str):
    """5 prompts per iteration, sampled 2 + 3 per rank; each minibatch (all 5 rows, shuffled) is trained on
    2 + 3 rows too, so that the ranks' token means have different weights."""
    policy, value = tiny_gpt(4), ValueModel(tiny_gpt(5))
    ref = tiny_gpt(4)
    cfg = PPOConfig(iterations=3, batch_size=5, n_minibatches=1, ppo_epochs=2, max_new_tokens=6, temperature=1.0,
                    lr=3e-3, beta=0.05, n_samples_shown=1, ckpt_every=100)
    prompts = [f"Say {w}." for w in ("yes", "hello there", "a word", "cat", "something long and odd", "no")]
    m = train_ppo(policy, ref, None, value, TOK, prompts, cfg, out, "cpu", reward_fn=letter_reward,
                  gold_fn=lambda p, y: float(len(y)), seed=5)
    h = m["history"]
    both = torch.nn.ModuleDict({"policy": policy, "value": value})
    return both, h["policy_loss"] + h["value_loss"] + h["proxy_reward"] + h["kl"] + h["gold_reward"]


def ascii_reward(problems, rollout):
    """GRPO's reward: 1 when the response's first token is an ASCII byte (row by row)."""
    r = torch.tensor([float(bool(ids) and ids[0] < 128) for ids in rollout.response_ids])
    return r, {"correct": r}


class Problem:
    def __init__(self, prompt):
        self.prompt = prompt


def run_grpo(out: str):
    """3 problems per iteration (the groups of 1 + 2 per rank), G = 3, token-level aggregation over minibatches
    of 4 responses, the k3 term on."""
    policy, ref = tiny_gpt(6), tiny_gpt(6)
    cfg = GRPOConfig(iterations=3, prompts_per_iteration=3, group_size=3, max_new_tokens=6, ppo_epochs=2,
                     n_minibatches=2, lr=3e-3, beta=0.04, loss_aggregation="token", n_samples_shown=1,
                     ckpt_every=100)
    problems = [Problem(p) for p in ("ab", "hello", "xyz!", "q", "long question")]
    m = train_grpo(policy, ref, TOK, problems, cfg, out, "cpu", reward_fn=ascii_reward, seed=3)
    h = m["history"]
    return policy, h["loss"] + h["reward"] + h["kl"] + h["kl_k3"] + h["clipfrac"] + h["response_length"]


def run_rl_one_row_minibatches(out: str):
    """PPO (3 prompts, 3 minibatches) and GRPO (2 problems x G = 2, 4 minibatches): minibatches of one row, so
    in every step one rank holds none of it and joins with weight 0 (DDP waits for every rank)."""
    policy, value, ref = tiny_gpt(7), ValueModel(tiny_gpt(8)), tiny_gpt(7)
    cfg = PPOConfig(iterations=2, batch_size=3, n_minibatches=3, ppo_epochs=1, max_new_tokens=5, lr=3e-3,
                    n_samples_shown=0, ckpt_every=100)
    h = train_ppo(policy, ref, None, value, TOK, ["Say yes.", "Hi", "Name a fruit."], cfg, os.path.join(out, "ppo"),
                  "cpu", reward_fn=letter_reward, gold_fn=lambda p, y: float(len(y)), seed=1)["history"]
    g_policy, g_ref = tiny_gpt(9), tiny_gpt(9)
    gcfg = GRPOConfig(iterations=2, prompts_per_iteration=2, group_size=2, n_minibatches=4, ppo_epochs=1,
                      max_new_tokens=5, lr=3e-3, n_samples_shown=0, ckpt_every=100)
    g = train_grpo(g_policy, g_ref, TOK, [Problem(p) for p in ("ab", "hello", "q")], gcfg, os.path.join(out, "grpo"),
                   "cpu", reward_fn=ascii_reward, seed=2)["history"]
    models = torch.nn.ModuleDict({"policy": policy, "value": value, "grpo": g_policy})
    return models, h["policy_loss"] + h["value_loss"] + h["ratio_maxdev"] + g["loss"] + g["ratio_maxdev"]


STAGES = {"pretrain": run_pretrain, "sft": run_sft, "rm": run_rm, "dpo": run_dpo, "ppo": run_ppo,
          "grpo": run_grpo, "rl_one_row_minibatches": run_rl_one_row_minibatches}


def own_noise_only(logits, *, rows=None, total_rows=None, **kw):
    """The naive split: each rank samples its rows as if they were the whole batch (its own noise)."""
    return exact_next_token(logits, **kw)


exact_next_token = generate_module.next_token


# ----------------------------------------------------------------------------------------------
# Two processes, as torchrun would start them
def _worker(rank: int, world: int, port: int, root: str) -> None:
    """One rank: torchrun's environment variables, `distributed.setup`, then every stage; rank 0
    saves the weights and losses. Last, plain DDP (weight 1 on every rank) on pretraining."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.setup(SimpleNamespace(device=torch.device("cpu")))
    try:
        for name, fn in STAGES.items():
            model, losses = fn(os.path.join(root, name))
            if rank == 0:
                torch.save({"state": model.state_dict(), "loss": losses},
                           os.path.join(root, f"{name}.pt"))
        exact_shard = distributed.shard
        distributed.shard = lambda items, count=None: (exact_shard(items, count)[0], 1.0)
        model, losses = run_pretrain(os.path.join(root, "pretrain_plain_ddp"))
        if rank == 0:
            torch.save({"state": model.state_dict(), "loss": losses},
                       os.path.join(root, "pretrain_plain_ddp.pt"))
        generate_module.next_token = own_noise_only
        model, losses = run_ppo(os.path.join(root, "ppo_own_noise"))
        if rank == 0:
            torch.save({"state": model.state_dict(), "loss": losses}, os.path.join(root, "ppo_own_noise.pt"))
    finally:
        distributed.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(world: int, root: str, timeout_s: float = 300) -> None:
    """Run `_worker` on `world` processes; fail (not hang) if they take longer than `timeout_s`."""
    ctx = mp.start_processes(_worker, args=(world, free_port(), root), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {world} processes did not finish within {timeout_s:.0f}s")


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ddp"))
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"   # 2 processes on a 2-core machine: no oversubscription
    try:
        spawn(2, root)
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old
    return root


@pytest.fixture
def one_thread():
    """The one-process runs on one thread too: 2 threads on a busy 2-core machine crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("stage", list(STAGES))
def test_two_processes_equal_one_process_on_the_same_global_batch(two_processes, one_thread,
                                                                   tmp_path, stage):
    got = torch.load(os.path.join(two_processes, f"{stage}.pt"))
    model, losses = STAGES[stage](str(tmp_path / stage))    # one process, the same global batches
    want = model.state_dict()
    assert got["state"].keys() == want.keys()               # saved unwrapped: no "module." prefix
    for k, v in want.items():
        if k in NOISE_ONLY:
            continue
        assert torch.allclose(got["state"][k], v, **TOL), (k, (got["state"][k] - v).abs().max())
    # the logged loss is the whole batch's, not rank 0's slice
    assert np.allclose(got["loss"], losses, rtol=1e-5, atol=1e-6)


def test_plain_ddp_and_another_global_batch_give_other_weights(two_processes, one_thread, tmp_path):
    """The comparison can fail: without the slice weights (each rank's mean loss over its 2 or 3
    windows), or with a global batch of 4 windows instead of 5, the weights differ by far more
    than the tolerance."""
    exact = torch.load(os.path.join(two_processes, "pretrain.pt"))["state"]
    plain = torch.load(os.path.join(two_processes, "pretrain_plain_ddp.pt"))["state"]
    other_batch = run_pretrain(str(tmp_path / "b4"), batch_size=4)[0].state_dict()
    assert max_diff(plain, exact) > 1e-4
    assert max_diff(other_batch, exact) > 1e-3


def test_rl_ranks_sampling_with_their_own_noise_give_other_samples(two_processes):
    """The RL comparison can fail: ranks that sample their share with their own noise (not their rows of
    the whole batch's) draw other responses, so rewards and weights differ from one process's."""
    exact = torch.load(os.path.join(two_processes, "ppo.pt"))
    own = torch.load(os.path.join(two_processes, "ppo_own_noise.pt"))
    assert max_diff(own["state"], exact["state"]) > 1e-3
    assert not np.allclose(own["loss"], exact["loss"], rtol=1e-3)


def test_one_process_is_untouched():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard([4, 5, 6]) == ([4, 5, 6], 1.0)
    assert distributed.all_reduce_mean({"a": 1.5}) == {"a": 1.5}
    assert distributed.broadcast_object("x") == "x"
    assert distributed.rows_of(5) == range(5) and distributed.all_true(False) is False
    batch = (torch.ones(2, 3), ["a", "b"], {"x": None})
    assert distributed.gather_rows(batch) is batch and distributed.all_reduce_max({"m": 2.0}) == {"m": 2.0}


def test_shard_gives_contiguous_slices_whose_weights_average_to_one(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    slices = {}
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        slices[r] = distributed.shard([10, 11, 12, 13, 14])
        slices[r, "tokens"] = distributed.shard([10, 11, 12, 13, 14], count=lambda i: i - 9)
        slices[r, "one"] = distributed.shard([10])
    assert slices[0] == ([10, 11], 2 * 2 / 5) and slices[1] == ([12, 13, 14], 2 * 3 / 5)
    assert slices[0, "tokens"] == ([10, 11], 2 * 3 / 15) and slices[1, "tokens"][1] == 2 * 12 / 15
    # a rank without items still forwards one, with weight 0 (DDP waits for every rank)
    assert slices[0, "one"] == ([10], 0.0)
    assert slices[1, "one"] == ([10], 2.0)


# ----------------------------------------------------------------------------------------------
# The command line, as a user runs it
# What each command trains, and a logged number per stage that rounding noise does not move
COMMANDS = {"sft": {"pretrain": "loss", "sft": "loss"},
            "grpo": {"sft_reasoning": "loss", "grpo": "response_length"},
            "ppo": {"rm": "loss", "ppo": "policy_loss"}}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_torchrun_train_py_matches_one_process(tmp_path, command):
    """`torchrun --nproc_per_node 2 train.py <command> --quick` (with the stages it builds first) on 2
    Gloo processes logs the numbers of `train.py <command> --quick` on 1. The quick model has biases,
    so its weights differ by ~1e-4 here (Adam on rounding noise, see NOISE_ONLY; 1 process on 1 or on
    2 threads differs as much), and the stages after the first inherit that: logged numbers, which the
    noise moves by less than 1e-3 (relative), are compared instead."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for n in (1, 2):
        out = str(tmp_path / f"n{n}")
        launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(n),
                    "--master_port", str(free_port())] if n > 1 else []
        proc = subprocess.run([sys.executable, *launcher, "train.py", command, "--quick", "--device",
                               "cpu", "--out", out], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        outs[n] = out
    assert "[distributed] 2 processes, backend gloo" in proc.stdout   # train.py called setup
    for stage, key in COMMANDS[command].items():
        one, two = (torch.load(os.path.join(outs[n], stage, "ckpt.pt"), weights_only=False)
                    for n in (1, 2))
        assert two["done"] and one["model"].keys() == two["model"].keys()
        assert np.allclose(one["history"][key], two["history"][key], rtol=1e-3, atol=1e-5), stage
        assert os.path.exists(os.path.join(outs[2], stage, "metrics.json"))
