"""Atomic checkpoints holding everything needed to resume exactly: model, optimizer, scheduler,
algorithm state, data position and every random-number generator."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto the GPU carries it there
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save ``obj`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write(path: str | Path, write: Any, binary: bool) -> None:
    """Write to a temporary file in the same directory, fsync, then rename: a crash never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: set to 1 to load checkpoints that hold arbitrary Python objects (weights_only=False): only for trusted files
TRUST_ENV = "SEQLAB_TRUST_CHECKPOINTS"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (missing, empty, truncated, not a checkpoint): one line naming the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint's path (the message lists the checkpoints its folder has)."""


def _numpy_globals() -> list[Any]:
    """The numpy objects a seqlab checkpoint holds (the RNG state of numpy), allowed under weights_only=True."""
    reconstruct = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray  # numpy 1 and 2
    return [reconstruct._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def checkpoints_in(directory: str | Path) -> list[str]:
    """The names of the ``*.pt`` files in ``directory`` (sorted), for messages about a missing checkpoint."""
    directory = Path(directory)
    return sorted(p.name for p in directory.glob("*.pt") if p.is_file()) if directory.is_dir() else []


def _resume_hint(path: Path) -> str:
    if path.name != "checkpoint_last.pt":
        return ""
    best = path.with_name("checkpoint_best.pt")
    hint = f"; to start {path.parent} over, delete it or set train.resume=false"
    if best.is_file():
        hint += f"; to continue from the best checkpoint instead: cp {best} {path}"
    return hint


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain data only: unpickling arbitrary objects
    from a ``.pt`` can run code).  Every failure is a one-line :class:`CheckpointError` naming the file (a missing
    one lists the checkpoints its folder does have)."""
    path = Path(path)
    if not path.exists():
        others = checkpoints_in(path.parent)
        have = (
            f"; {path.parent} has {', '.join(others)}"
            if others
            else (f"; {path.parent} has no checkpoints" if path.parent.is_dir() else f"; {path.parent} does not exist")
        )
        raise CheckpointNotFoundError(f"checkpoint not found: {path}{have}")
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint{_resume_hint(path)}")
    trusted = os.environ.get(TRUST_ENV) == "1"
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise CheckpointError(
                f"{path}: not a readable checkpoint (corrupt: {_first_line(e)}){_resume_hint(path)}"
            ) from None
        try:
            unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "Python objects"
        except Exception:  # noqa: BLE001  (only for the message)
            unsafe = "Python objects"
        raise CheckpointError(
            f"{path}: holds {unsafe}, which seqlab does not unpickle (a .pt can run code when "
            f"loaded); if you trust the file, set {TRUST_ENV}=1"
        ) from None
    except Exception as e:  # noqa: BLE001  (unpickling arbitrary bytes can raise any error: IndexError, TypeError, ...)
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {_first_line(e)}){_resume_hint(path)}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a seqlab checkpoint (holds a {type(state).__name__}, not a mapping)")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``directory`` (``NAME.XXXX.tmp``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [
        p
        for p in directory.glob("*.tmp")
        if p.is_file() and re.fullmatch(r".+\.(pt|json|txt|yaml)\.[^.]+\.tmp", p.name)
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def weights_digest(path: str | Path) -> str:
    """SHA-1 over a checkpoint's model weights (names, dtypes, shapes and bytes, in order): equal for the same
    weights however the rest of the checkpoint (step, wall-clock seconds, optimizer) differs."""
    h = hashlib.sha1()
    for name, tensor in load(path)["model"].items():
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
