"""The process around a run: device, threads, determinism, RNG state, torchrun / DDP, signals."""

from __future__ import annotations

import datetime
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from resnet_cifar.errors import ConfigError
from resnet_cifar.log import logger


def resolve_device(spec: str = "auto") -> torch.device:
    """auto -> cuda if present, else mps, else cpu. An unavailable device is a ConfigError."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else
                            "mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"`device` (--device) {spec}: CUDA is not available here; use "
                              "`device` (--device) cpu")
        if device.index is not None:
            if device.index >= torch.cuda.device_count():
                raise ConfigError(f"`device` (--device) {spec}: only "
                                  f"{torch.cuda.device_count()} CUDA device(s) present")
            torch.cuda.set_device(device.index)  # else stray work holds a context on GPU 0
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"`device` (--device) {spec}: MPS is not available here; use "
                          "`device` (--device) cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def physical_cores() -> int:
    """Cores this process may use (affinity mask, else cpu_count); under torchrun, its share."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched_by_torchrun() else 1
    return max(1, cores // max(ranks, 1))


# /proc/stat's cpu line: user nice system idle iowait irq softirq steal ... Busy: all but idle,
# iowait and nice (a niced process yields its core to us at once).
_BUSY_FIELDS = (0, 2, 5, 6, 7)


def _cpu_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (Linux), or None where unknown."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    return sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields)) / ticks


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """Cores other processes kept busy since the last ``mark()``."""

    def __init__(self):
        self.mark()

    def mark(self) -> None:
        self._busy, self._own = _cpu_busy_seconds(), _own_cpu_seconds()
        self._wall = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self._wall

    def others(self) -> float | None:
        busy, wall = _cpu_busy_seconds(), time.monotonic()
        if busy is None or self._busy is None or wall - self._wall <= 0:
            return None
        own = _own_cpu_seconds() - self._own
        return max(0.0, (busy - self._busy - own) / (wall - self._wall))


def threads_for_load(cores: int, others: float | None) -> int:
    """One thread per core that other processes (``others``) leave idle: a thread waiting for a
    busy core stalls every per-op barrier of a step (docs/benchmarks.md)."""
    return cores if others is None else max(1, min(cores, cores - math.floor(others + 0.5)))


def auto_threads(sample_seconds: float = 0.2) -> tuple[int, float | None]:
    """(threads for the idle cores now, the busy cores of other processes), from a short sample."""
    meter = CpuMeter()
    time.sleep(sample_seconds)
    others = meter.others()
    return threads_for_load(physical_cores(), others), others


# How often the thread count is chosen again within an epoch
FOLLOW_SECONDS = 20.0


class ThreadFollower:
    """One thread per idle core (`threads` 0 on a CPU, not `deterministic`), chosen again before
    every epoch and every FOLLOW_SECONDS within one."""

    def __init__(self):
        _, others = auto_threads()  # a short sample now, then the meter runs between epochs
        self.meter = CpuMeter()
        self.others_busy: float | None = None  # cores other processes kept busy, last measured
        self.follow(others)

    def due(self) -> bool:
        return self.meter.seconds() >= FOLLOW_SECONDS

    def follow(self, others: float | None = None) -> tuple[int, int]:
        """Set the threads for the cores left idle since the last call. Returns (before, now)."""
        self.others_busy = self.meter.others() if others is None else others
        self.meter.mark()
        before, threads = torch.get_num_threads(), threads_for_load(physical_cores(),
                                                                    self.others_busy)
        torch.set_num_threads(threads)
        return before, threads


def configure_threads(threads: int = 0) -> int:
    """Intra-op threads: ``threads``, else one per usable core, capped with a warning at the
    usable cores. Returns what was set."""
    cores = physical_cores()
    n = threads if threads > 0 else cores
    if n > cores:
        warnings.warn(f"threads {n} capped to the {cores} usable core(s) of this machine",
                      RuntimeWarning, stacklevel=2)
        n = cores
    torch.set_num_threads(n)
    return n


def configure_inference_threads(threads: int = 0) -> int:
    """Threads for a one-off command: ``threads``, or for 0 one per idle core now."""
    if threads > 0:
        return configure_threads(threads)
    n, _ = auto_threads()
    torch.set_num_threads(n)
    return n


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Every RNG's state, as plain containers and tensors (loads with weights_only=True)."""
    np_state = np.random.get_state(legacy=False)
    numpy = {"bit_generator": np_state["bit_generator"],
             "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
             "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
             "gauss": float(np_state["gauss"])}
    state = {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's GPU: 8 GPUs resume on 1
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


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
        """Sum ``tensor`` over ranks in place."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any_rank(self, flags: torch.Tensor) -> list[bool]:
        """Each of ``flags`` (0. or 1.) set on ANY rank: every rank must leave the loop, and save,
        at the same step, or the others hang in the next collective."""
        if self.enabled:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return [bool(flag) for flag in flags.tolist()]


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def in_torchrun_job() -> bool:
    """A rank of a torchrun job of more than one process."""
    return launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device_spec: str) -> tuple[DistContext, str]:
    """Join the process group if launched by torchrun. Returns the context and this rank's device
    spec (``cuda:LOCAL_RANK`` on GPUs)."""
    if not in_torchrun_job():
        return DistContext(), device_spec
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = (device_spec == "auto" or device_spec.startswith("cuda")) and \
        torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_spec = f"cuda:{local_rank}"
    elif device_spec == "auto":
        device_spec = "cpu"
    timeout = float(os.environ.get("RESNET_CIFAR_DIST_TIMEOUT", 300))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout))
    return DistContext(rank, world_size, local_rank), device_spec


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave_rank(status: int) -> NoReturn:
    """End a torchrun rank with ``status`` through os._exit: a native race in torch's threads at
    interpreter shutdown aborts a finished rank now and then (gloo)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequested(Exception):
    """Raised by the loop after it has saved its state."""

    def __init__(self, exit_code: int, message: str):
        super().__init__(message)
        self.exit_code = exit_code


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into ``self.signal`` (None until one arrives)."""

    def __init__(self, on_signal: Callable[[str], None] | None = None):
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}
        self.on_signal = on_signal  # also given each message logged (train.log)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal, 1)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask the loop to stop, as a signal would."""
        self.signal = signal.Signals(signum)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            self._tell(f"second {name}: quitting at once; last.pt keeps its latest save")
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.request(signum)
        logger().info("")  # off the line a progress bar or the echoed ^C left
        self._tell(f"{name} received: finishing this step and saving last.pt "
                   "(Ctrl-C again to quit at once)")

    def _tell(self, message: str) -> None:
        logger().info(message)
        if self.on_signal is not None:
            self.on_signal(message)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
