"""Phase timing: wall clock on CPU, CUDA events with synchronization on GPU."""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

PHASES = ("local_train", "attack", "defense", "aggregate", "evaluate")


class PhaseTimer:
    """Accumulates seconds per phase for the current round and for the whole run."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.round: dict[str, float] = defaultdict(float)
        self.total: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name``."""
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1000.0
                self._add(name, seconds)
        else:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self._add(name, time.perf_counter() - t0)

    def _add(self, name: str, seconds: float) -> None:
        self.round[name] += seconds
        self.total[name] += seconds

    def pop_round(self) -> dict[str, float]:
        """Return this round's phase times (0 for a phase that did not run) and reset."""
        out = {p: self.round.get(p, 0.0) for p in PHASES}
        out.update({k: v for k, v in self.round.items() if k not in out})
        self.round = defaultdict(float)
        return out


def _vm_hwm() -> int | None:
    """Linux: this process's peak resident set size (``VmHWM``) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's peak statistics, or on Linux the process's ``VmHWM``.

    Linux resets the resident-set high-water mark when a process writes ``5`` to
    ``/proc/self/clear_refs``; elsewhere (or if that is not allowed) the CPU peak stays the
    process's peak since it started.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory: CUDA max allocated on GPU, else the process's peak resident set size.

    On Linux the CPU peak is ``VmHWM`` from ``/proc/self/status`` (since the last
    :func:`reset_peak_memory`); ``getrusage``'s ``ru_maxrss`` is not used there because Linux
    carries it over from the parent across ``fork`` and ``exec``, so a worker process would
    report the launcher's peak.
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _vm_hwm()
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; validates ``cuda:N``."""
    from flarena.core.errors import SpecError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpecError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise SpecError(f"invalid device {name!r}: must be auto, cpu, cuda or cuda:N")
