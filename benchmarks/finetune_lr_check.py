"""Does fine-tuning an MLE checkpoint with a sample-based algorithm collapse at a given learning rate?

    OMP_NUM_THREADS=1 python benchmarks/finetune_lr_check.py --compare-dir .devdata/cmp/m30k --lrs 2e-4 2e-5

Builds the comparison's task on the CPU from its shared checkpoint (``DIR/pretrain``), runs ``--steps``
training steps of ``--algorithm`` on the same batches at each learning rate (bf16 off) and prints the mean sample
reward of every step.  ``--init-state model`` (default): fresh Adam, constant lr after 20 warm-up steps;
``--init-state full``: the comparison's protocol, continuing the checkpoint's Adam moments and inverse-sqrt
schedule with the given peak lr.  ``--set`` passes more config overrides (named in the entries by ``--tag``).
Writes ``<algo>_lr<lr>[_full][_<tag>]_reward_first`` / ``_reward_last`` (the mean of the first / last three
steps) to benchmarks/results/finetune_lr_check.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.data.batching import collate
from seqlab.train.trainer import Trainer


def rewards_at(
    compare_dir: Path,
    algorithm: str,
    lr: float,
    steps: int,
    max_tokens: int,
    init_state: str = "model",
    overrides: tuple[str, ...] = (),
) -> list[float]:
    run = Path(tempfile.mkdtemp(prefix="seqlab_lr_check_"))
    shutil.copytree(compare_dir / "pretrain" / "tokenizers", run / "tokenizers")
    cfg = load_config(
        str(compare_dir / "task.yaml"),
        [
            f"run_dir={run}",
            f"algorithm.name={algorithm}",
            "train.device=cpu",
            f"train.max_tokens={max_tokens}",
            "train.tensorboard=false",
            "train.progress_bar=false",
            "train.bf16=false",
            f"train.init_from={compare_dir / 'pretrain' / 'checkpoint_best.pt'}",
            f"train.lr={lr}",
            *(["train.scheduler=constant", "train.warmup_steps=20"] if init_state == "model" else []),
            f"train.init_state={init_state}",
            *overrides,
        ],
    )
    trainer = Trainer(cfg, console=False)
    trainer.sampler.set_epoch(0)
    batches = iter(trainer.sampler)
    out = []
    for step in range(steps):
        stats = trainer.train_step(collate(trainer.train_data, next(batches)))
        out.append(float(stats["reward"]))
        print(f"lr {lr:g} step {step}: reward {out[-1]:.4f}", flush=True)
    trainer.close()
    shutil.rmtree(run, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare-dir", type=Path, required=True)
    ap.add_argument("--algorithm", default="pg")
    ap.add_argument("--lrs", nargs="+", type=float, default=[2e-4, 2e-5])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=600)
    ap.add_argument("--init-state", choices=("model", "full"), default="model")
    ap.add_argument("--set", nargs="*", default=[], help="more config overrides, e.g. algorithm.options.baseline=mean")
    ap.add_argument("--tag", default="", help="added to the entry names (say what --set changed)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    entries = []
    for lr in args.lrs:
        r = rewards_at(
            args.compare_dir, args.algorithm, lr, args.steps, args.max_tokens, args.init_state, tuple(args.set)
        )
        tag = ("_full" if args.init_state == "full" else "") + (f"_{args.tag}" if args.tag else "")
        for name, part in (("first", r[:3]), ("last", r[-3:])):
            entries.append(
                results_io.entry(
                    f"{args.algorithm}_lr{lr:g}{tag}_reward_{name}",
                    round(sum(part) / len(part), 4),
                    "mean sample reward (sentence BLEU)",
                )
            )
    print(results_io.write("finetune_lr_check", entries))


if __name__ == "__main__":
    main()
