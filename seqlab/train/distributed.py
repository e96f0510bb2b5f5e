"""DDP through torchrun: rank / world size from the environment, gloo on CPU and NCCL on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    return bool(broadcast_value(float(flag), info, device)) if info.enabled else flag


def broadcast_value(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (e.g. a validation score only rank 0 computed)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


#: steps between the ranks' agreements on per-rank decisions (e.g. the wall-clock budget): one all-reduce each
AGREE_EVERY = 10


def agree_any(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (one all-reduce): decisions every rank must take at
    the same step, such as stopping on a per-rank clock."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
