"""Configuration and run plumbing shared by train.py, every stage and every lesson.

- Each stage's config is a dataclass whose fields carry a docstring (the attribute docstring
  right below the field). `add_dataclass_args` turns it into argparse flags with that text as help,
  so a reader can follow a value from the command line into the code (no globals, no exec).
- `pick_device` chooses cuda, then mps, then cpu; `autocast` turns on bf16 autocast on GPUs only.
- `seed_everything` seeds Python, NumPy and torch; sampling code also takes explicit generators.
- `write_json` writes metrics.json atomically so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import inspect
import json
import os
import random
import tempfile
import textwrap

import numpy as np
import torch


# ----------------------------------------------------------------------------------------------
# Dataclass <-> argparse
def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of a dataclass: {field name: text}."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def add_dataclass_args(parser: argparse.ArgumentParser, cls, prefix: str = "",
                       skip=()) -> None:
    """Add one `--name` flag per dataclass field (underscores become dashes).

    Flags that are not given stay absent from the namespace (argparse.SUPPRESS), so the same flag
    may appear before and after a subcommand without one erasing the other.
    """
    docs = field_docs(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{docs.get(f.name, '')} (default: {default})"
        ftype = f.type if isinstance(f.type, type) else eval(f.type, vars(inspect.getmodule(cls)))
        if ftype is bool:
            group.add_argument(flag, dest=prefix + f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            base = _base_type(ftype)
            group.add_argument(flag, dest=prefix + f.name, type=base, default=argparse.SUPPRESS,
                               help=help_text)


def _base_type(t):
    """int | None -> int; tuple/list types are not supported as flags."""
    args = getattr(t, "__args__", None)
    if args:
        args = [a for a in args if a is not type(None)]
        return args[0]
    return t


def from_args(cls, args: argparse.Namespace, prefix: str = "", **overrides):
    """Build `cls` from parsed flags: defaults < `overrides` < flags given on the command line."""
    values = dict(overrides)
    for f in dataclasses.fields(cls):
        v = getattr(args, prefix + f.name, None)
        if v is not None:
            values[f.name] = v
    return cls(**values)


def config_text(cfg) -> str:
    """A readable multi-line dump of a dataclass config, printed at the start of a stage."""
    lines = [f"{type(cfg).__name__}:"]
    for f in dataclasses.fields(cfg):
        lines.append(f"  {f.name:24s} = {getattr(cfg, f.name)!r}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Devices, precision, seeds
def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; any other name is used as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA (and MPS); plain float32 on CPU, where bf16 matmuls are slow."""
    device = torch.device(device)
    if device.type in ("cuda", "mps"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded the same way (CPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Files
def write_json(path: str, obj) -> str:
    """Write JSON atomically (temporary file, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _json_default(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)
