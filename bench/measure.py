"""Run a command and measure its wall time and the peak RSS of its whole process tree.

Why sample the tree and not ``resource.getrusage``: RUSAGE_CHILDREN reports the largest single
process, while the daemon's memory is the sum over its worker processes.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil

SAMPLE_SECONDS = 0.05


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


def run_measured(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Measurement:
    """Run ``command`` to completion; stdout is discarded, the end of stderr kept for error reports."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with PeakRssSampler(process.pid) as sampler:
        _, stderr = process.communicate()
        seconds = time.perf_counter() - started
    tail = stderr.decode(errors="replace")[-2000:]
    return Measurement(seconds, sampler.peak, process.returncode, tail, sum(sampler.cpu.values()))
