"""Several GPUs (or CPU processes) with torchrun and PyTorch's DistributedDataParallel (DDP).

    torchrun --nproc_per_node N train.py pretrain|sft|rm|dpo|ppo|grpo ...    (N GPUs, one machine)
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 train.py sft --quick --device cpu   (2 CPU ranks)

torchrun starts N copies of the program, the "ranks", and tells each who it is through environment
variables: WORLD_SIZE = N, RANK = 0..N-1, and LOCAL_RANK = its GPU on this machine. `setup(run)`
reads them and joins the ranks into one process group (NCCL between GPUs, Gloo between CPU
processes). Without torchrun everything here is a no-op and the stages run as before.

What DDP does, in plain words:
1. Every rank holds a whole copy of the model. Wrapping it in DDP broadcasts rank 0's weights, so
   the copies start equal.
2. Every rank builds the same global batch (same data, same seed, same order) and keeps only its
   slice of it (`shard`): with N ranks each forwards about 1/N of the examples.
3. During backward DDP all-reduces the gradients: each bucket of gradients, as soon as it is ready,
   is summed over the ranks and divided by N, while backward goes on with the rest. After backward
   every rank holds the same gradient, the average of the N ranks' gradients.
4. Every rank takes the same optimizer step from the same gradient, so the copies stay equal
   without weights ever being sent again.

When is that the update of one process on the whole global batch? One process minimises a MEAN
over the n items of the global batch, L = (1/n) sum_i l_i ("item": whatever the loss averages over,
an example, a response token, a prompt, a preference pair). DDP gives (1/N) sum_r grad L_r. So rank
r, holding n_r of the items, must use

    L_r = N * (1/n) sum_{i in r} l_i = w_r * mean_{i in r} l_i,        w_r = N n_r / n

and then (1/N) sum_r grad L_r = grad L exactly. Our loss functions return the mean over the batch
they are given, so `shard` returns w_r beside the slice and each stage multiplies its loss by it.
The plain recipe (each rank's mean, no weight) is exact only when every rank holds the same number
of items: the ragged last batch of an epoch, or SFT's per-token mean over responses of different
lengths, would otherwise weigh the items of the smaller slice more. Every rank knows n without
communication, because every rank built the whole global batch. A rank left without items (a last
batch smaller than N) still forwards one item, with weight 0: DDP's all-reduce waits for every rank.

Not bit-for-bit equal to one process: the all-reduce adds the ranks' gradients in another order
than one backward adds them, so float32 rounding differs (~1e-7 relative per step);
tests/test_distributed.py checks that 2 Gloo processes end within 1e-5 of one process (measured:
1e-6). Parameters whose true gradient is 0, such as an attention key bias (softmax ignores a shift
shared by all keys), follow rounding noise, which Adam scales up to steps of ~lr/100: with biases
the --quick models differ by ~1e-4 after SFT, as much as one process on 1 thread and on 2 threads
does. Dropout (off in every preset) would draw other masks: runs then agree only in distribution.

Reinforcement learning (ppo.py, grpo.py) has a step before the loss: the batch is sampled from the policy.
Each rank samples its share of the prompts (`rows_of`), scores them and computes their log-probs, then
`gather_rows` hands every rank the whole batch: whitening, group statistics, the KL controller and the
minibatch order then see exactly what one process sees, and each minibatch is `shard`ed like any batch.
The samples are those of one process too: generate.py draws the noise of the whole batch on every rank
and each rank uses its rows' (generate's `rows`). Exactly so on CPU processes (tested); on GPUs a rank's
forward over its few rows may round the last bit of a logit differently from one over the whole batch (the
matrix-multiply kernels depend on the shapes, bf16 more so), and at a near-tie that picks another token, after
which that response goes its own way: GPU runs agree with one process in distribution, not token for token.

Who does what: every rank trains. Rank 0 alone writes checkpoints, metrics.json and figures, runs
the evaluations by generation, and prints (`setup` mutes `print` on the other ranks, as PyTorch's
reference training scripts do; tqdm bars take `disable=not is_main()`). The others wait at a
`barrier()` where they must read what rank 0 wrote (the end of a stage: the next stage loads its
checkpoint), and `broadcast_object` hands them rank 0's metrics, so every rank returns the same.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import functools
import os
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

# Rank 0 evaluates (generation) while the others wait at a barrier; on a big preset that can take
# minutes, longer than NCCL's default 10-minute timeout.
TIMEOUT = timedelta(minutes=60)


# ----------------------------------------------------------------------------------------------
# Joining and leaving the process group
def setup(run) -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise do nothing.

    CUDA: backend NCCL, and `run.device` becomes cuda:LOCAL_RANK (one GPU per rank, whatever
    --device index was given). CPU: backend Gloo. Registers `cleanup` to run at exit.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_distributed():
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(run.device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SystemExit(f"torchrun started {world} processes on this machine but it has "
                             f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node "
                             f"{torch.cuda.device_count()} or fewer")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise SystemExit(f"--device {device}: torchrun runs on CUDA GPUs (NCCL) or on CPU "
                         f"processes (Gloo); use --device cuda or --device cpu")
    dist.init_process_group(backend, timeout=TIMEOUT)
    run.device = device
    atexit.register(cleanup)
    if not is_main():
        _mute_print()
    print(f"[distributed] {world} processes, backend {backend}, rank 0 on {device}")


def cleanup() -> None:
    """Leave the process group (safe to call twice, and without one)."""
    if is_distributed():
        dist.destroy_process_group()


def _mute_print() -> None:
    """Make `print` do nothing on this rank (as `setup_for_distributed` in PyTorch's torchvision
    reference scripts does): N copies of every line help nobody. Errors still reach stderr."""
    builtins.print = lambda *args, **kwargs: None


# ----------------------------------------------------------------------------------------------
# Who am I
def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """N, the number of ranks (1 without torchrun)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank, 0..N-1 (0 without torchrun)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on the rank that writes files and prints (rank 0; the only one without torchrun)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a checkpoint)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


# ----------------------------------------------------------------------------------------------
# The model and the batch
class _LossModule(torch.nn.Module):
    """`loss_fn(model, *args)` as the forward of a module, so that DDP can wrap the whole loss."""

    def __init__(self, model: torch.nn.Module, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, *args, **kwargs):
        return self.loss_fn(self.model, *args, **kwargs)


def wrap(model: torch.nn.Module, loss_fn):
    """The training loss as a function of the batch: `loss_of(*args) = loss_fn(model, *args)`.

    One process: exactly `loss_fn(model, *args)`. Under torchrun: the same call, made as the
    forward of DDP(...), so that backward all-reduces the gradients of `model`'s parameters.
    Why not simply DDP(model)? Our losses do more than call the model: they read attributes of it
    (the fused log-prob kernel takes `model.output_weight`, not logits; `model.config`), and a DDP
    wrapper does not pass attribute reads through to the model it wraps. With the whole loss as
    the forward, every loss function stays as it is. The optimizer, gradient clipping and
    checkpoints keep using `model` itself (whose state_dict has no "module." prefix).
    device_ids=None: each stage moves its own tensors to the device; DDP then leaves inputs as
    they are (it would otherwise walk through every argument looking for tensors to move).
    """
    if not is_distributed():
        return functools.partial(loss_fn, model)
    return DDP(_LossModule(model, loss_fn), device_ids=None)


def shard(items, count=None) -> tuple[list, float]:
    """This rank's slice of a global batch, and the weight w_r that makes its mean loss exact.

    items: the whole global batch (a list, the same on every rank), e.g. example indices.
    count: item -> how many terms of the loss's mean it holds (default 1: the loss is a mean over
      items; SFT's per-token mean passes the trained tokens of each example).
    The slice is contiguous: rank r gets items[r*n//N : (r+1)*n//N], so slice sizes differ by at
    most one. w_r = N * (terms in the slice) / (terms in the global batch); multiply the slice's
    mean loss by it (module docstring). A rank whose slice is empty gets items[:1] with w_r = 0.
    One process: (items, 1.0), and loss * 1.0 is exactly loss.
    """
    items = list(items)
    N, n = world_size(), len(items)
    if N == 1:
        return items, 1.0
    rows = _my_rows(n)
    mine = items[rows.start:rows.stop]
    if not mine:
        return items[:1], 0.0
    count = count or (lambda item: 1)
    total = sum(count(i) for i in items)
    return mine, mean_weight(sum(count(i) for i in mine), total)


def rows_of(n: int) -> range:
    """This rank's contiguous rows of a global batch of n rows (shard's split); all of them in one process.
    RL samples a share of the prompts on each rank, so every rank needs at least one: n >= N."""
    if n < world_size():
        raise ValueError(f"a batch of {n} prompts cannot be shared by {world_size()} processes: use a batch of at "
                         f"least {world_size()}")
    return _my_rows(n)


def _my_rows(n: int) -> range:
    """Rank r's rows of n: r*n//N .. (r+1)*n//N - 1 (contiguous; the slices' sizes differ by at most one)."""
    N, r = world_size(), rank()
    return range(r * n // N, (r + 1) * n // N)


def mean_weight(n_mine: float, n_all: float) -> float:
    """w_r = N * n_mine / n_all: the weight of a mean over n_mine of the n_all terms of a global
    mean (0 when there are none). all_reduce_mean(w_r * mean_r) is then the global mean."""
    return world_size() * n_mine / n_all if n_all else 0.0


# ----------------------------------------------------------------------------------------------
# Numbers and objects between ranks
def all_reduce_mean(values):
    """The mean over ranks of a float, or of each value of a dict of floats (one all-reduce).

    For logging: with `values` = w_r * (mean over this rank's slice), the result is the mean over
    the global batch. One process: `values` unchanged.
    """
    if not is_distributed():
        return values
    keys = list(values) if isinstance(values, dict) else None
    flat = [values[k] for k in keys] if keys is not None else [values]
    t = torch.tensor(flat, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    out = (t / world_size()).tolist()
    return dict(zip(keys, out)) if keys is not None else out[0]


def all_reduce_max(values: dict) -> dict:
    """The maximum over ranks of each value of a dict of floats (for logging, e.g. the largest ratio deviation)."""
    if not is_distributed():
        return values
    t = torch.tensor([values[k] for k in values], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return dict(zip(values, t.tolist()))


def _reduce_device() -> torch.device:
    """Where a collective's tensor must live: the current GPU under NCCL (it reduces GPU tensors only), else CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_true(flag: bool) -> bool:
    """True when `flag` is true on every rank (one all-reduce); `flag` itself in one process."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_rows(x):
    """Every rank's rows, concatenated in rank order, on every rank: the whole batch from the ranks' shares.

    x: a tensor or numpy array (rows along dim 0), a list (one entry per row), a dict or tuple of those, or None;
    a dataclass (e.g. ppo.Rollout) field by field. Anything else (an int such as a prompt width, a 0-dim tensor)
    is not per row: it must be the same on every rank.
    Tensors come back on the device they left. One process: x unchanged. Sent by pickling (all_gather_object):
    simple, and at the sizes of a rollout (token ids, per-token log-probs) cheap next to sampling it.
    """
    if not is_distributed():
        return x
    out = [None] * world_size()
    dist.all_gather_object(out, _to_cpu(x))
    return _concat(out, x)


def _to_cpu(x):
    if torch.is_tensor(x):
        return x.detach().cpu()
    if dataclasses.is_dataclass(x):
        return {f.name: _to_cpu(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_to_cpu(v) for v in x)
    return x


def _concat(parts: list, like):
    """Concatenate the ranks' `parts` (as `_to_cpu` sent them) into the type and device of `like`."""
    if like is None:
        return None
    if torch.is_tensor(like) and like.dim() > 0:
        return torch.cat(parts).to(like.device)
    if isinstance(like, np.ndarray) and like.ndim > 0:
        return np.concatenate(parts)
    if isinstance(like, list):
        return [item for part in parts for item in part]
    if dataclasses.is_dataclass(like):
        return type(like)(**{f.name: _concat([p[f.name] for p in parts], getattr(like, f.name))
                             for f in dataclasses.fields(like)})
    if isinstance(like, dict):
        return {k: _concat([p[k] for p in parts], v) for k, v in like.items()}
    if isinstance(like, tuple):
        return tuple(_concat([p[i] for p in parts], v) for i, v in enumerate(like))
    if any(not _equal(p, parts[0]) for p in parts):
        raise ValueError(f"gather_rows: {type(like).__name__} differs between ranks: {parts}")
    return parts[0].to(like.device) if torch.is_tensor(like) else parts[0]


def _equal(a, b) -> bool:
    if torch.is_tensor(a) or isinstance(a, np.ndarray):
        return bool((a == b).all())
    return a == b


def broadcast_object(obj):
    """Rank 0's `obj` (any picklable object) on every rank; the others pass anything (None)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
