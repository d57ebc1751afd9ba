"""torch's CPU threads matched to the cores this process may use: its CPU affinity and the container's CPU quota,
shared among the processes a launcher started on this machine, less the cores other programs keep busy (looked at
when the model loads and again before each update). Threads beyond the free cores wait on each other at every
parallel region; on a loaded machine that turned one update of minutes into half an hour.

`LLAMAGYM_NUM_THREADS` (or `OMP_NUM_THREADS`) fixes the count instead: a seeded run is then bit-for-bit the same
however busy the machine is, since the thread count decides the order of floating-point sums."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

THREADS_VARIABLE = "LLAMAGYM_NUM_THREADS"  # an explicit count wins over the one worked out here
LOCAL_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cores the container's CPU quota allows (cgroup v2 `cpu.max`, v1 `cfs_quota_us`), None if unlimited."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by the CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    return max(1, min(cores, math.floor(quota)) if quota else cores)


def local_processes() -> int:
    """Processes a launcher started on this machine (1 when started directly)."""
    for name in LOCAL_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def explicit_threads() -> int | None:
    """`LLAMAGYM_NUM_THREADS`, else `OMP_NUM_THREADS`, if set to a positive count."""
    for name in (THREADS_VARIABLE, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU-seconds of the whole machine, of this process) so far; None where /proc cannot tell."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / ticks, (int(own[11]) + int(own[12])) / ticks  # utime, stime


class ThreadBalancer:
    """Sets torch's threads to this process's share of the usable cores, less those other processes kept busy
    since the last look; fixed where `explicit_threads()` says so."""

    def __init__(self) -> None:
        self.fixed = explicit_threads()
        self.share = max(1, usable_cores() // local_processes())
        self.last = (time.monotonic(), cpu_seconds())

    def others_busy(self) -> float | None:
        """Cores other processes kept busy, on average, since the last look."""
        (then, before), now, after = self.last, time.monotonic(), cpu_seconds()
        self.last = (now, after)
        if before is None or after is None or now - then < 0.1:
            return None
        return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / (now - then))

    def threads(self) -> int:
        if self.fixed is not None:
            return self.fixed
        busy = self.others_busy()
        free = self.share if busy is None else (os.cpu_count() or 1) - busy
        return max(1, min(self.share, math.floor(free + 0.5)))

    def rebalance(self) -> int:
        """Apply `threads()` to torch; returns the count."""
        import torch

        threads = self.threads()
        if torch.get_num_threads() != threads:
            logger.info("torch threads %d -> %d (%s)", torch.get_num_threads(), threads,
                        "set by the environment" if self.fixed else "cores other processes keep busy")
            torch.set_num_threads(threads)
        return threads


_latest: ThreadBalancer | None = None  # the last balancer this process made: its look at the machine is reused


def configure_threads(sample_seconds: float = 0.25) -> ThreadBalancer:
    """Set torch's threads for a process about to load a model: its share of the cores, less those other
    processes are using now. The first call in a process takes a short look while it waits; later ones (a second
    agent, a test suite's hundreds) measure from the previous look instead of waiting again. Returns the balancer
    for later updates."""
    global _latest
    balancer = ThreadBalancer()
    if _latest is not None:
        balancer.last = _latest.last
    elif balancer.fixed is None and sample_seconds > 0:
        time.sleep(sample_seconds)
    _latest = balancer
    balancer.rebalance()
    return balancer
