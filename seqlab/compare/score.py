"""Score one checkpoint on test sets: ``python -m seqlab.compare score --checkpoint CKPT --config CFG
--tokenizers DIR --out DIR [--test] [--extra-test NAME=SRC,REF ...]``.

``seqlab compare`` runs it for the shared checkpoint (the task's test split and every extra test set, into
``OUT/start``) and for every run's best checkpoint (the extra test sets, into ``run_dir/extra``).  Extra test
sets are plain text files, one sentence per line, read as the task reads its own (same tokenizers, sources
that repeat are one multi-reference item).  Decoding follows the config's ``decode`` section, as the runs'
own test scores.  Writes ``DIR/<set>.hyp.txt`` and ``DIR/scores.json`` ({set: {metric: value}}); sets already
in ``scores.json`` are not decoded again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SCORES = "scores.json"


def read_scores(out_dir: str | Path) -> dict[str, dict[str, float]]:
    """The sets scored so far in ``out_dir`` ({} when none)."""
    path = Path(out_dir) / SCORES
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def score_checkpoint(
    checkpoint: str | Path,
    config: str | Path,
    tokenizers: str | Path,
    out_dir: str | Path,
    sets: dict[str, list[str] | None],
    device: str = "auto",
) -> dict[str, dict[str, float]]:
    """Decode ``checkpoint`` on every set (name -> [SRC, REF] files, or None for the task's test split) not yet
    in ``out_dir/scores.json``; returns every score there."""
    import seqlab.tasks  # noqa: F401  (registration)
    from seqlab.config import load_config
    from seqlab.data.corpus import read_parallel
    from seqlab.data.tasks import load_task
    from seqlab.inference import load_checkpoint_model
    from seqlab.train import checkpoint as ckpt
    from seqlab.train.evaluate import evaluate_corpus

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = read_scores(out)
    todo = {name: files for name, files in sets.items() if name not in scores}
    if not todo:
        return scores
    cfg = load_config(config)
    task = load_task(cfg.task.name, cfg.task.options, Path(tokenizers))
    loaded = load_checkpoint_model(checkpoint, device)
    for name, files in todo.items():
        corpus = task.test if files is None else read_parallel(files[0], files[1])
        result, hyps = evaluate_corpus(
            loaded.model, corpus, task.src_tokenizer, task.tgt_tokenizer, task.metrics, cfg.decode, loaded.device
        )
        (out / f"{name}.hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        scores[name] = result
        ckpt.atomic_write_text(out / SCORES, json.dumps(scores, indent=2))
    return scores


def main(argv: list[str] | None = None) -> int:
    from seqlab.compare.layout import parse_extra_test

    ap = argparse.ArgumentParser(
        prog="python -m seqlab.compare score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--config", required=True, help="the run's config (its task and decode settings)")
    ap.add_argument("--tokenizers", required=True, help="the run's tokenizers folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--test", action="store_true", help="also the task's test split (set name 'test')")
    ap.add_argument("--extra-test", action="append", default=[], metavar="NAME=SRC,REF")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    sets: dict[str, Any] = {"test": None} if args.test else {}
    sets.update(parse_extra_test(item) for item in args.extra_test)
    scores = score_checkpoint(args.checkpoint, args.config, args.tokenizers, args.out, sets, args.device)
    print(json.dumps({name: scores[name] for name in sets}))
    return 0
