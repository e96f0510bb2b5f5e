"""Shrink a checkpoint to its model weights in bfloat16, so it travels between device calls.

    python benchmarks/ckpt_weights.py CKPT            # rewrites CKPT in place (keeps CKPT.full)

Device calls bring files back through a 16 MiB-per-file channel and carry at most 64 MiB, so a
comparison that spans calls keeps its shared MLE checkpoint as bf16 weights only (tied weights stored
once), split with ``split -b 15M``.  Rounding happens before any run starts from the checkpoint, so every
run of the comparison, in any call, starts from the same weights.  Optimizer state, sampler position and
RNG are dropped: fine-tuning runs load weights only (``train.init_from``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

KEEP = ("step", "epoch", "config", "best_score")


def weights_only_bf16(state: dict) -> dict:
    """The checkpoint's model weights in bf16 (floating tensors only), shared tensors kept shared."""
    converted: dict[int, torch.Tensor] = {}
    model = {}
    for name, tensor in state["model"].items():
        key = tensor.untyped_storage().data_ptr() + tensor.storage_offset()
        if key not in converted:
            converted[key] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        model[name] = converted[key]
    return {"model": model, **{k: state[k] for k in KEEP if k in state}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    args = ap.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if all(t.dtype == torch.bfloat16 for t in state["model"].values() if t.is_floating_point()):
        print(f"{args.checkpoint}: already bf16 weights")
        return
    shutil.copy2(args.checkpoint, args.checkpoint.with_name(args.checkpoint.name + ".full"))
    tmp = args.checkpoint.with_name(args.checkpoint.name + ".tmp")
    torch.save(weights_only_bf16(state), tmp)
    tmp.replace(args.checkpoint)
    print(f"{args.checkpoint}: {args.checkpoint.stat().st_size / 2**20:.1f} MiB of bf16 weights")


if __name__ == "__main__":
    main()
