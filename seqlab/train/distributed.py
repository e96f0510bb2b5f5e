"""DDP through torchrun: rank / world size from the environment, gloo on CPU and NCCL on CUDA."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


def all_ranks(info: DistInfo, device: torch.device, flag: bool) -> bool:
    """Whether ``flag`` holds on every rank (one all-reduce and a host read: for rare decisions only)."""
    if not info.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


#: steps between the ranks' agreements on per-rank decisions (e.g. the wall-clock budget): one all-reduce each
AGREE_EVERY = 10


class DeferredAgreement:
    """Decisions every rank takes at the same step (stopping on a per-rank clock or on a signal) without draining
    the device queue.  Each :meth:`exchange` posts this rank's flags (one all-reduce, max) and returns the agreement
    the previous exchange posted, by then long copied to the host.  Reading a collective's result at once
    (``.item()``) made the host wait for every queued kernel at each agreement, which the shortest steps (MLE) paid
    most for under DDP.  The decisions come one exchange late, on every rank alike."""

    def __init__(self, device: torch.device, reduce: Callable[[torch.Tensor], Any] | None = None):
        self.device = device
        self.reduce = reduce or (lambda t: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None

    def exchange(self, flags: Sequence[bool]) -> tuple[bool, ...]:
        """Post ``flags``; the flags agreed at the previous exchange (all False at the first)."""
        previous = self._read(len(flags))
        cuda = self.device.type == "cuda"
        values = torch.tensor([int(f) for f in flags], dtype=torch.int32)
        posted = values.pin_memory().to(self.device, non_blocking=True) if cuda else values.to(self.device)
        self.reduce(posted)
        host = torch.empty_like(values, pin_memory=cuda)
        host.copy_(posted, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        self._pending = (host, event)
        return previous

    def _read(self, count: int) -> tuple[bool, ...]:
        if self._pending is None:
            return (False,) * count
        host, event = self._pending
        if event is not None:
            event.synchronize()  # recorded an exchange ago: long done, unless the device is that far behind
        return tuple(bool(v) for v in host.tolist())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
