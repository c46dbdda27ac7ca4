"""Run a command and measure its wall time, its peak memory and its CPU time.

Peak memory is first the kernel's own figure (what ``/usr/bin/time -v`` reports): the maximum
resident set size of the command, which covers it and every descendant it waited for and gives the
largest single one. The command runs as the only child of a fresh interpreter that reports it
(RUSAGE_CHILDREN), because Linux counts in a process's maximum RSS what the process that started it
had mapped at the exec: run from the bench (about 120 MB), a 10 MB psql showed 120 MB. Sampling RSS
every 50 ms alone missed short peaks (about 280 MB reported where the kernel saw 426 MB for a
2.36 GB file). The
daemon's memory with WORKERS > 1 is the sum over its processes: each worker and the supervisor log
their own kernel figure at exit (``worker_stopped`` / ``daemon_stopped`` ``peak_rss_mb=``, at
LOG_LEVEL=INFO), and their sum is used when there are worker lines. A process tree that logs no such
lines (a Spark job: a JVM and the Python workers it starts, which it does not all wait for) is also
sampled every 50 ms, and the sampled sum over the tree counts when it is the larger figure. CPU time
is sampled per process of the tree, for the same reason.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil

SAMPLE_SECONDS = 0.05
MB = 1024 * 1024
_PEAKS = re.compile(r" (?:worker_stopped|daemon_stopped) .*?peak_rss_mb=(\d+)")
# Runs argv[1:] with stdout discarded and stderr inherited; prints its peak RSS (KiB) on stdout.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


@dataclass
class Measurement:
    """One run of one command."""

    seconds: float
    peak_rss_bytes: int
    returncode: int
    stderr_tail: str
    cpu_seconds: float = 0.0  # user + system of the whole tree, as last sampled per process


def tree_rss(process: psutil.Process, cpu: dict[int, float] | None = None) -> int:
    """Summed RSS of a process and all its descendants (processes that vanish are skipped); with
    ``cpu``, each one's CPU seconds so far are recorded in it by pid."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
            if cpu is not None:
                times = member.cpu_times()
                cpu[member.pid] = times.user + times.system
    return total


class PeakRssSampler:
    """Samples ``tree_rss`` every 50 ms in a thread, so the main thread can time the process exactly."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds at its last sample (a JVM's Python workers are not reaped by us)
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss(self._process, self.cpu))
            if self._stop.wait(SAMPLE_SECONDS):
                return


def peak_of(stderr: str, largest: int) -> int:
    """The daemon's kernel figure: the sum of its processes' own peaks when it ran workers, else ``largest``."""
    if " worker_stopped " not in stderr:
        return largest
    return sum(int(mb) for mb in _PEAKS.findall(stderr)) * MB


def run_measured(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Measurement:
    """Run ``command`` to completion; stdout is discarded, the end of stderr kept for error reports."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, *command],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with PeakRssSampler(process.pid) as sampler:
        out, err = process.communicate()
        seconds = time.perf_counter() - started
    stderr = err.decode(errors="replace")
    kernel = int(out.split()[-1]) * 1024 if out.split() else 0
    peak = max(peak_of(stderr, kernel), sampler.peak)
    return Measurement(seconds, peak, process.returncode, stderr[-2000:], sum(sampler.cpu.values()))
