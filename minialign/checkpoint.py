"""Checkpoints: written atomically, read with errors that say what is wrong and what to do.

A checkpoint is one `torch.save`d dict (model and optimizer state, step, the resolved config, the
tokenizer's path, and whatever a stage adds). It is first written to a temporary file in the same
folder and then moved over the old one with `os.replace`, which is atomic on POSIX and Windows: a
run killed while saving (Ctrl-C, a full disk) leaves the previous checkpoint intact, never half a
file.

Ctrl-C is made reliable here too (`catch_interrupts`): Python turns SIGINT into a KeyboardInterrupt
wherever the main thread happens to be, and one raised inside a finalizer (`__del__`) or a callback
is printed as "Exception ignored" and lost, so a run could go on to the end after a Ctrl-C. The
handler also records the request, and the next checkpoint write (every stage writes through
`save_checkpoint`) raises it again once the checkpoint is safely on disk.
"""

from __future__ import annotations

import os
import signal
import tempfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to a different configuration."""


_interrupt_requested = False


def _on_sigint(signum, frame):
    global _interrupt_requested
    _interrupt_requested = True
    raise KeyboardInterrupt


def catch_interrupts() -> None:
    """Install the Ctrl-C handler (main thread only): a KeyboardInterrupt now, and again at the next
    checkpoint if this one is swallowed."""
    global _interrupt_requested
    _interrupt_requested = False
    signal.signal(signal.SIGINT, _on_sigint)


def save_checkpoint(path: str, **state) -> None:
    """Atomically write `state` to `path` (temporary file in the same folder, then rename).

    Raises KeyboardInterrupt after writing when a Ctrl-C came earlier and was lost on its way."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise CheckpointError(f"could not write checkpoint {path}: {e}. The previous "
                                  f"checkpoint, if any, is unchanged.") from e
        raise
    if _interrupt_requested:
        raise KeyboardInterrupt(f"interrupted (Ctrl-C); {path} is written")


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; clear errors for missing or corrupt files."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}: run the stage that writes it first "
                              f"(train.py builds missing stages on its own)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a minialign checkpoint "
                              f"({type(e).__name__}: {e}). Delete it to retrain that stage.") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} has no 'model' entry: not a minialign checkpoint. "
                              f"Delete it to retrain that stage.")
    return state


def check_compatible(path: str, saved: dict, expected: dict, keys) -> None:
    """Raise if a checkpoint's config differs from the current run's on any of `keys`."""
    diffs = [f"{k}: checkpoint has {saved.get(k)!r}, this run wants {expected.get(k)!r}"
             for k in keys if saved.get(k) != expected.get(k)]
    if diffs:
        raise CheckpointError(f"checkpoint {path} was written with a different configuration ("
                              + "; ".join(diffs) + "). Use another --out folder, or delete the "
                              "checkpoint to retrain.")
