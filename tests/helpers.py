"""Shared helpers of the trainer-level tests: a tiny symbol-reversal task and the overrides that train on it.

Test files import helpers from modules like this one (``helpers``, ``tiny``, ``tiny_task``, ``hf_tiny``,
``algorithm_golden``), never from another ``test_*.py`` file (``tests/test_layout.py`` checks it).
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "{d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.1}"


def write_reverse_task(root: Path, n_train: int = 240, seed: int = 0, n_eval: int = 30) -> dict:
    """Symbol sequences -> their reversal (a task small models learn quickly): text files under ``root`` and the
    ``parallel`` task's train / valid / test specs (``n_eval`` examples in valid and in test)."""
    rng = random.Random(seed)
    letters = "abcdefgh"
    paths = {}
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        src, tgt = [], []
        for _ in range(n):
            word = [rng.choice(letters) for _ in range(rng.randint(2, 6))]
            src.append(" ".join(word))
            tgt.append(" ".join(reversed(word)))
        (root / f"{split}.src").write_text("\n".join(src) + "\n")
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
        paths[split] = {"src": str(root / f"{split}.src"), "tgt": str(root / f"{split}.tgt")}
    return paths


def tiny_overrides(tmp_path: Path, run: str, **extra: str) -> list[str]:
    """``section.key=value`` overrides: the reversal task under ``tmp_path/data``, a tiny Transformer, CPU."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    paths = write_reverse_task(data)
    task = json.dumps({**paths, "tokenizer": "symbol", "metrics": ["wer", "per"]})
    base = {
        "run_dir": str(tmp_path / run),
        "task.name": "parallel",
        "task.options": task,
        "model.arch": "transformer",
        "model.options": TINY_MODEL,
        "train.device": "cpu",
        "train.max_tokens": 200,
        "train.lr": 0.003,
        "train.warmup_steps": 10,
        "train.progress_bar": "false",
        "train.tensorboard": "false",
        "train.log_every_steps": 5,
        "decode.beam_size": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def write(path: Path, text: str | bytes, gz: bool = False) -> Path:
    """Write ``text`` to ``path``, gzip-compressed when ``gz``; returns ``path``."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def load_script(name: str):
    """A script of benchmarks/ as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses of the script look their module up
    spec.loader.exec_module(module)
    return module
