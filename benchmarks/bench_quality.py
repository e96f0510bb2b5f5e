"""Train a config, then score its best checkpoint on test with greedy and beam search.

    python benchmarks/bench_quality.py --config configs/multi30k_transformer.yaml --name multi30k_deen_mle \
        task.options.path=../shared/data/multi30k
    python benchmarks/bench_quality.py --config configs/g2p_transformer.yaml --name g2p

Multi30k writes <name>_test2016_bleu_beam5, <name>_test2016_bleu_greedy, <name>_train_minutes;
G2P writes <name>_test_wer, <name>_test_per.  Results go to benchmarks/results/quality_<device>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.train.trainer import Trainer, load_model_weights


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", required=True, help="metric prefix, e.g. multi30k_deen_mle or g2p")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    over = list(args.overrides) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    cfg = load_config(args.config, over)
    trainer = Trainer(cfg)
    trainer.fit()
    load_model_weights(trainer.model, Path(cfg.run_dir) / "checkpoint_best.pt")
    command = " ".join(["python", "benchmarks/bench_quality.py", *sys.argv[1:]])
    entries = [results_io.entry(f"{args.name}_train_minutes", round(trainer.train_seconds / 60, 2), "min", command)]
    for beam, label in ((cfg.decode.beam_size, f"beam{cfg.decode.beam_size}"), (1, "greedy")):
        scores, _ = trainer.evaluate("test", beam_size=beam)
        print(label, scores)
        for metric, value in scores.items():
            if metric == "bleu":
                entries.append(results_io.entry(f"{args.name}_test2016_bleu_{label}", round(value, 2), "BLEU", command))
            elif metric in ("wer", "per") and beam == cfg.decode.beam_size:
                entries.append(results_io.entry(f"{args.name}_test_{metric}", round(value, 2), "%", command))
    trainer.close()
    if not args.no_write:
        dev = "cuda" if trainer.device.type == "cuda" else "cpu"
        print("wrote", results_io.write(f"quality_{dev}", entries))


if __name__ == "__main__":
    main()
