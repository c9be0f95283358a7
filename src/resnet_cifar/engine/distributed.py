"""torchrun / DistributedDataParallel: set up from the environment, or stay single-process.

Under ``torchrun`` the variables RANK, WORLD_SIZE and LOCAL_RANK are set; we then join a process
group (nccl on CUDA, gloo on CPU) with a timeout, so that a rank that dies cannot hang the others
forever. Without them, everything is a no-op and single-process behaviour is unchanged.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum ``tensor`` over ranks in place (a no-op in a single process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def in_torchrun_job() -> bool:
    """A rank of a torchrun job of more than one process."""
    return launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device_spec: str, timeout_s: float | None = None) -> tuple[DistContext, str]:
    """Join the process group if launched by torchrun. Returns the context and the device spec
    this rank must use (``cuda:LOCAL_RANK`` on GPUs)."""
    if not in_torchrun_job():
        return DistContext(), device_spec
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device_spec in ("auto", "cuda") or device_spec.startswith("cuda")
    use_cuda = use_cuda and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_spec = f"cuda:{local_rank}"
    elif device_spec == "auto":
        device_spec = "cpu"
    timeout = timeout_s or float(os.environ.get("RESNET_CIFAR_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout),
        )
    return DistContext(rank, world_size, local_rank), device_spec


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave_rank(status: int) -> NoReturn:
    """End a torchrun rank's process with ``status``, skipping the interpreter's finalization.

    About one launch in 100 (2 CPU ranks, gloo), a rank that has finished everything, its process
    group destroyed and its files written, aborts while the interpreter shuts down ("terminate
    called without an active exception", SIGABRT, no Python frame left): a native race in
    torch's threads at exit. torchrun then reports the finished job as failed and stops the other
    rank. Leaving through os._exit after flushing skips the stage where that race lives.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
