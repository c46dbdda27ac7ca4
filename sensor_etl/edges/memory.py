"""The memory a worker process may use (WORKER_MEMORY_LIMIT), and what it used.

Why RLIMIT_AS and not a cgroup: it works for any user on any Linux (a cgroup needs a delegated
cgroup v2 hierarchy, which containers and plain services rarely give), it is per process, so it
applies to each worker and never to the embedded PostgreSQL (a separate process tree, started
before any limit is set), and going over it fails an allocation (MemoryError, or a crash) in that
worker only. What it counts is address space, not resident memory: a worker reserves about 1.4 GiB
of it at start-up (Arrow's allocator alone reserves 1 GiB) while 120 MB of it are resident, and
thread stacks count whole. So the limit is an upper bound of the worker's resident memory, and the
smallest useful limit is its start-up address space plus some room (``check``).
"""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path

from sensor_etl.errors import ConfigError

GiB = 1 << 30
HEADROOM = 512 << 20  # the least room a limit must leave above the start-up address space: a load of a usual file needs ~250 MB
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))  # cgroup v2, v1


def machine_memory() -> int:
    """Physical memory, or the memory limit of this process's cgroup when it is lower (a container)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def address_space() -> int:
    """This process's address space now, bytes (VmSize)."""
    match = re.search(r"^VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def worker_limit(configured: int | None, workers: int) -> int | None:
    """The limit for each worker in bytes (None: no limit). ``configured`` is WORKER_MEMORY_LIMIT (None
    for auto, 0 for off). auto: half the machine's memory shared by the workers, so that together they
    leave the other half to PostgreSQL and the system, but never less than the start-up address space
    plus 1 GiB. A configured limit without room above the start-up address space is a ConfigError.
    Called in the process that starts the workers, which has their start-up address space."""
    if configured == 0:
        return None
    start = address_space()
    if configured is None:
        return max(machine_memory() // 2 // workers, start + GiB)
    if configured < start + HEADROOM:
        raise ConfigError(
            "WORKER_MEMORY_LIMIT",
            size_text(configured),
            f"at least {size_text(start + HEADROOM)}: a worker's address space is {size_text(start)} at start-up",
        )
    return configured


def limit(limit_bytes: int | None) -> None:
    """Cap this process's address space (RLIMIT_AS, soft limit); processes it starts inherit the cap."""
    if limit_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, resource.getrlimit(resource.RLIMIT_AS)[1]))


def current_limit() -> int | None:
    """This process's RLIMIT_AS, or None when there is none."""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def peak_rss() -> int:
    """The most resident memory this process has had, bytes (the kernel's maximum RSS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def size_text(size: int) -> str:
    return f"{size / GiB:.1f} GiB" if size >= GiB else f"{size >> 20} MiB"
