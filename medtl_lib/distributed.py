"""One run on several processes (GPUs, or CPU processes with gloo) under ``torchrun``.

The kit's rules, so that a distributed run is the same run as a single-process one:

* **Data**: each rank trains on its shard of one shuffled order (:class:`ShardSampler`); the order
  comes from the per-epoch seed the trainer already uses, so it does not depend on the world size
  and a run resumes with any number of processes. Augmentation draws are offset per rank.
* **Decisions**: training loss and accuracy are summed over ranks; validation and test are
  evaluated whole on every rank (after rank 0's BatchNorm statistics are broadcast), so every
  rank sees the same numbers and the schedule, selector and early stop decide the same.
* **Files**: only rank 0 writes the run folder; the others wait (:meth:`Dist.main_first`) where
  they would read what rank 0 writes (split, decoded cache, checkpoints).

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) :func:`init` gives a world of one and
nothing here calls ``torch.distributed``. ``MEDTL_DIST_TIMEOUT_MIN`` (default 120) is how long a
rank waits for the others at a collective, e.g. while rank 0 decodes a large cache.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
from torch.utils.data import Sampler

#: rank offset of the per-epoch seed of the global RNGs (augmentation), not of the shuffle
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it writes), then the others (they read what it wrote)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (float64 on the CPU: gloo and NCCL both take it)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank updated its
        own on its shard, and evaluation must see one model."""
        if not self.enabled:
            return
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)

    def _device(self) -> torch.device:
        backend = torch.distributed.get_backend()
        return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
            else torch.device("cpu")


def init(device_preference: str = "auto") -> Dist:
    """The process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joined
    once: NCCL with one GPU per rank, gloo on the CPU; a world of one without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        use_nccl = device_preference != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(local)
        # rank 0 alone decodes the cache and audits the data while the others wait at a
        # barrier: minutes on a large set, beyond the default collective timeout
        minutes = float(os.environ.get("MEDTL_DIST_TIMEOUT_MIN", "120"))
        torch.distributed.init_process_group("nccl" if use_nccl else "gloo",
                                             timeout=timedelta(minutes=minutes))
    return Dist(rank, world, local)


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class ShardSampler(Sampler[int]):
    """This rank's part of one random order: ``randperm(n, generator)`` padded by wrapping to a
    multiple of the world size, then every ``world_size``-th index from ``rank``. Every rank
    draws the same order (the trainer reseeds ``generator`` per epoch), so shards never overlap
    except for the few padded indices, and the order does not depend on the world size."""

    def __init__(self, n: int, generator: torch.Generator, rank: int, world_size: int,
                 shuffle: bool = True) -> None:
        self.n, self.generator, self.rank, self.world_size = n, generator, rank, world_size
        self.shuffle = shuffle
        self.per_rank = math.ceil(n / world_size)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        order = (torch.randperm(self.n, generator=self.generator) if self.shuffle
                 else torch.arange(self.n)).tolist()
        total = self.per_rank * self.world_size
        while len(order) < total:  # wrap (more than once when n < world_size)
            order += order[: total - len(order)]
        return iter(order[self.rank:total:self.world_size])
