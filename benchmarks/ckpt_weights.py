"""Shrink a checkpoint to its model weights in bfloat16, so it travels between device calls.

    python benchmarks/ckpt_weights.py CKPT            # rewrites CKPT in place (keeps CKPT.full)
    python benchmarks/ckpt_weights.py --critic CKPT|DIR ...  # each becomes its critic's weights alone, in bf16
                                                             # (DIR: every DIR/*/checkpoint_last.pt, e.g. OUT/critics)

``--critic`` is for a comparison's shared critic (``OUT/critics/<label>/checkpoint_last.pt``, a whole trainer
checkpoint of several hundred MB): the critic's weights alone (``algorithm.critic.*``, e.g. 7.8M parameters, 14.9
MiB in bf16 with its shared embeddings stored once) come back from one device call in one file and, put back in
place, are what the next call's runs load (``critic_from`` reads a bare state dict too). Every seed then starts from
the same rounded critic.

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


def bf16_shared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with the floating ones in bf16; tensors that share storage (tied embeddings) stay shared, so
    ``torch.save`` writes them once."""
    converted: dict[int, torch.Tensor] = {}
    out = {}
    for name, tensor in tensors.items():
        key = tensor.untyped_storage().data_ptr() + tensor.storage_offset()
        if key not in converted:
            converted[key] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        out[name] = converted[key]
    return out


def weights_only_bf16(state: dict) -> dict:
    """The checkpoint's model weights in bf16 (floating tensors only), shared tensors kept shared."""
    return {"model": bf16_shared(state["model"]), **{k: state[k] for k in KEEP if k in state}}


def critic_weights_bf16(path: Path) -> dict[str, torch.Tensor] | None:
    """The critic of a trainer checkpoint, its floating tensors in bf16, its shared embeddings stored once (None:
    already a bare critic state dict)."""
    from seqlab.credit.critic import critic_state
    from seqlab.train.checkpoint import load

    state = load(path)  # once: a trainer checkpoint holds the model and optimizers too
    if "algorithm" not in state:
        return None
    return bf16_shared(critic_state(state, path))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--critic", action="store_true", help="keep the critic's weights alone (a shared critic)")
    args = ap.parse_args(argv)
    for path in args.checkpoints:
        for checkpoint in sorted(path.glob("*/checkpoint_last.pt")) if path.is_dir() else [path]:
            shrink(checkpoint, args.critic)


def shrink(path: Path, critic: bool) -> None:
    """Rewrite ``path`` as its bf16 weights (``critic``: its critic's alone), the original kept as ``.full``."""
    if critic:
        shrunk = critic_weights_bf16(path)
        if shrunk is None:
            print(f"{path}: already a critic's weights alone")
            return
    else:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if all(t.dtype == torch.bfloat16 for t in state["model"].values() if t.is_floating_point()):
            print(f"{path}: already bf16 weights")
            return
        shrunk = weights_only_bf16(state)
    shutil.copy2(path, path.with_name(path.name + ".full"))
    tmp = path.with_name(path.name + ".tmp")
    torch.save(shrunk, tmp)
    tmp.replace(path)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB of bf16 weights")


if __name__ == "__main__":
    main()
