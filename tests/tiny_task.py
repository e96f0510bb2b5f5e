"""A tiny symbol-reversal task (the `parallel` task) and its config file, for tests that train or compare."""

from __future__ import annotations

import json
import random
from pathlib import Path

TINY_LSTM = {"embed_dim": 16, "hidden_dim": 32, "layers": 1, "dropout": 0.0}


def write_task(root: Path, seed: int = 0, n_train: int = 120, run_dir: str = "run", log_every_steps: int = 1) -> Path:
    """Data under ``root/data`` and a config ``root/task.yaml`` (CPU, a tiny LSTM, BLEU / chrF, run_dir
    ``root/run_dir``); returns its path."""
    rng = random.Random(seed)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in (("train", n_train), ("valid", 12), ("test", 12)):
        src, tgt = [], []
        for _ in range(n):
            word = [rng.choice("abcdef") for _ in range(rng.randint(2, 5))]
            src.append(" ".join(word))
            tgt.append(" ".join(reversed(word)))
        (data / f"{split}.src").write_text("\n".join(src) + "\n")
        (data / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
        paths[split] = {"src": str(data / f"{split}.src"), "tgt": str(data / f"{split}.tgt")}
    cfg = {
        "run_dir": str(root / run_dir),
        "task": {"name": "parallel", "options": {**paths, "tokenizer": "symbol", "metrics": ["bleu", "chrf"]}},
        "model": {"arch": "lstm", "options": dict(TINY_LSTM)},
        "train": {
            "device": "cpu",
            "max_tokens": 300,
            "optimizer": "adam",
            "lr": 0.01,
            "scheduler": "constant",
            "warmup_steps": 1,
            "eval_every_steps": 4,
            "log_every_steps": log_every_steps,
            "progress_bar": False,
            "tensorboard": False,
            "label_smoothing": 0.0,
        },
        "decode": {"beam_size": 1},
    }
    path = root / "task.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path
