"""Configuration and run plumbing shared by train.py, every stage and every lesson.

- Each stage's config is a dataclass whose fields carry a docstring (the attribute docstring
  right below the field). `add_dataclass_args` turns it into argparse flags with that text as help,
  so a reader can follow a value from the command line into the code (no globals, no exec).
- A field's docstring ends with its valid range, `Range: lr > 0.`, `Range: 0 <= x <= 1.` or
  `Range: kind in ('a', 'b').`, with an optional note in parentheses (for a list field, the range
  of each value). `validate` reads and enforces exactly that text, for every config dataclass: the
  range a user reads in `--help` is the range that is checked (`ConfigError`, shown as
  `error: ...` with exit code 2 by `cli_main`).
- `pick_device` chooses cuda, then mps, then cpu; `autocast` turns on bf16 autocast on GPUs only.
- `seed_everything` seeds Python, NumPy and torch; sampling code also takes explicit generators.
- `write_json` writes metrics.json atomically so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import functools
import inspect
import json
import operator
import os
import random
import sys
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
        ftype = eval(f.type, vars(inspect.getmodule(cls))) if isinstance(f.type, str) else f.type
        if ftype is bool:
            group.add_argument(flag, dest=prefix + f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif getattr(ftype, "__origin__", None) in (list, tuple):     # list[float]: --betas 0.1 0.05
            group.add_argument(flag, dest=prefix + f.name, type=ftype.__args__[0], nargs="+",
                               default=argparse.SUPPRESS, help=help_text)
        else:
            base = _base_type(ftype)
            group.add_argument(flag, dest=prefix + f.name, type=base, default=argparse.SUPPRESS,
                               help=help_text)


def _base_type(t):
    """int | None -> int."""
    args = getattr(t, "__args__", None)
    if args:
        args = [a for a in args if a is not type(None)]
        return args[0]
    return t


def from_args(cls, args: argparse.Namespace, prefix: str = "", **overrides):
    """Build `cls` from parsed flags: defaults < `overrides` < flags given on the command line; then
    `validate` it, so a bad setting stops the run before anything is built."""
    values = dict(overrides)
    for f in dataclasses.fields(cls):
        v = getattr(args, prefix + f.name, None)
        if v is not None:
            values[f.name] = v
    return validate(cls(**values), prefix)


# ----------------------------------------------------------------------------------------------
# Valid ranges, read from the field docstrings
class ConfigError(ValueError):
    """A setting outside its valid range, or settings that contradict each other."""


_OPS = {ast.Lt: (operator.lt, "<"), ast.LtE: (operator.le, "<="), ast.Gt: (operator.gt, ">"),
        ast.GtE: (operator.ge, ">="), ast.In: (lambda a, b: a in b, "in"),
        ast.NotEq: (operator.ne, "!=")}


@dataclasses.dataclass
class Range:
    """A field's valid range: a chained comparison of the field with constants, and a note."""

    name: str
    expr: str
    note: str
    terms: list      # [operand, (op, symbol), operand, ...]; an operand is a constant or None (the field)

    def holds(self, value) -> bool:
        vals = [value if t is None else t for t in self.terms[0::2]]
        return all(op(a, b) for a, (op, _), b in zip(vals, self.terms[1::2], vals[1:]))

    def describe(self) -> str:
        """'>= 0', 'in (0, 1]', 'one of 'k1', 'k3'', or the expression itself."""
        t = self.terms
        if len(t) == 3 and t[0] is None:
            if t[1][1] == "in":
                return "one of " + ", ".join(repr(c) for c in t[2])
            return f"{t[1][1]} {t[2]}"
        if len(t) == 5 and t[2] is None and {t[1][1], t[3][1]} <= {"<", "<="}:
            return f"in {'(' if t[1][1] == '<' else '['}{t[0]}, {t[4]}{')' if t[3][1] == '<' else ']'}"
        return f"such that {self.expr}"


def _constant(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.Tuple):
        return tuple(_constant(e) for e in node.elts)
    raise ValueError(f"not a constant: {ast.dump(node)}")


def parse_range(name: str, doc: str) -> Range | None:
    """The `Range: ...` sentence at the end of a field docstring, or None if it has none.

    The text is a chained comparison of the field with constants, optionally followed by a note in
    parentheses: `Range: beta >= 0 (0 turns the penalty off).`
    """
    at = doc.rfind("Range:")
    if at < 0:
        return None
    text = doc[at + len("Range:"):].strip().rstrip(".").strip()
    candidates = [(text, "")]
    if text.endswith(")"):                       # a trailing "(note)": find its opening parenthesis
        depth, i = 0, len(text) - 1
        for i in range(len(text) - 1, -1, -1):
            depth += (text[i] == ")") - (text[i] == "(")
            if depth == 0:
                break
        if i > 0 and text[i - 1] == " ":
            candidates.insert(0, (text[:i].strip(), text[i + 1:-1].strip()))
    for expr, note in candidates:
        try:
            return Range(name, expr, note, _range_terms(name, expr))
        except (SyntaxError, ValueError):
            continue
    raise ValueError(f"field {name!r}: cannot read the range {text!r} (write e.g. 'Range: {name} > 0.')")


def _range_terms(name: str, expr: str) -> list:
    node = ast.parse(expr, mode="eval").body
    if not isinstance(node, ast.Compare):
        raise ValueError(f"{expr!r} is not a comparison")
    terms = []
    for i, operand in enumerate([node.left, *node.comparators]):
        if i:
            terms.append(_OPS[type(node.ops[i - 1])])
        if isinstance(operand, ast.Name):
            if operand.id != name:
                raise ValueError(f"{expr!r} names {operand.id!r}, not {name!r}")
            terms.append(None)
        else:
            terms.append(_constant(operand))
    if None not in terms:
        raise ValueError(f"{expr!r} does not name {name!r}")
    return terms


@functools.lru_cache(maxsize=None)
def field_ranges(cls) -> dict[str, Range]:
    """{field: Range} for every field of a config dataclass whose docstring states one."""
    return {name: r for name, doc in field_docs(cls).items() if (r := parse_range(name, doc)) is not None}


def validate(cfg, prefix: str = ""):
    """Check every field against its documented range, then the config's own `check()` (cross-field
    rules), if it has one. Returns cfg; raises ConfigError naming the flag, the range and the value."""
    for name, rng in field_ranges(type(cfg)).items():
        value = getattr(cfg, name)
        values = value if isinstance(value, (list, tuple)) else [value]     # a list: each of its values
        bad = [v for v in values if v is not None and not rng.holds(v)]
        if bad:
            note = f" ({rng.note})" if rng.note else ""
            each = "each value of " if values is value else ""
            raise ConfigError(f"{each}--{prefix}{name.replace('_', '-')} must be {rng.describe()}{note}, "
                              f"got {bad[0]!r}")
    check = getattr(cfg, "check", None)
    if check is not None:
        check()
    return cfg


def cli_main(main, argv=None) -> int:
    """Run a command-line `main(argv)` the way every minialign command ends: a user error (bad setting,
    bad data file, unusable checkpoint) prints `error: ...` with exit code 2 and no traceback; Ctrl-C
    prints how to resume and exits 130."""
    from .checkpoint import CheckpointError
    from .loaders import DataError
    try:
        return main(argv) or 0
    except (ConfigError, CheckpointError, DataError) as e:
        # What is wrong and what to do, without a traceback: every earlier checkpoint is untouched
        # (they are written atomically), so fixing the input and re-running goes on from there.
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted. The last checkpoint of the running stage is intact (written atomically); "
              "run the same command again to resume from it.", file=sys.stderr)
        return 130


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
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: MPS is not available on this machine; use --device cpu")
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
