"""Several processes, one result: the process group torchrun sets up, and the few collectives the engine needs.

torch.distributed is the engine: torchrun (or any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT) starts the processes, ``init_from_env`` joins them (NCCL on GPUs, gloo on CPUs), fine-tuning
wraps the image tower in DistributedDataParallel and evaluation shards whole batches across ranks and adds
up the counts, so every accuracy equals the one-process accuracy exactly. Rank 0 alone writes files.
"""
from __future__ import annotations

import hashlib
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist


log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> bool:
    """Join the process group described by torchrun's environment; False when there is none (one process)."""
    if not launched_by_torchrun():
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    log.info("rank %d of %d (%s backend) on %s", rank(), world_size(), backend, device)
    return True


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sum_counts(values: list[int], device: torch.device | str = "cpu") -> list[int]:
    """Integer counts added over every rank (exact: int64)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.int64, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [int(v) for v in t.cpu()]


def broadcast_from_main(obj):
    """Rank 0's ``obj`` on every rank (e.g. a decision only rank 0 can take, such as 'the output is refused')."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_agreement(state: dict[str, torch.Tensor], what: str) -> None:
    """Every rank must hold the same tensors (DDP keeps replicas equal; anything else is a bug): compares a
    digest of ``state`` across ranks and raises on the first difference."""
    if not dist.is_initialized():
        return
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().float().cpu().numpy().tobytes())
    digests: list[str | None] = [None] * world_size()
    dist.all_gather_object(digests, h.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"the ranks disagree on {what} (digests {digests}); refusing to write a result")


def _collective_device(device: torch.device | str) -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU tensors."""
    return torch.device(device) if dist.get_backend() == "nccl" else torch.device("cpu")
