"""Run a command and measure its wall time and its peak memory as the kernel counts it.

Peak memory is the kernel's maximum resident set size (what ``/usr/bin/time -v`` reports), not a
sample: the ``rusage`` that ``wait4`` returns for the command, which covers the command and every
descendant it waited for, and gives the largest single one. Sampling RSS every 50 ms missed short
peaks (about 280 MB reported where the kernel saw 426 MB for a 2.36 GB file). With WORKERS > 1 the
daemon's memory is the sum over its processes: each worker and the supervisor log their own peak
at exit (``worker_stopped`` / ``daemon_stopped`` ``peak_rss_mb=``, at LOG_LEVEL=INFO), and the sum
of those lines is used when there are worker lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
_PEAKS = re.compile(r" (?:worker_stopped|daemon_stopped) .*?peak_rss_mb=(\d+)")


@dataclass
class Measurement:
    """One run of one command."""

    seconds: float
    peak_rss_bytes: int
    returncode: int
    stderr_tail: str


def peak_of(stderr: str, largest: int) -> int:
    """The daemon's peak: the sum of its processes' own peaks when it ran workers, else ``largest``."""
    if " worker_stopped " not in stderr:
        return largest
    return sum(int(mb) for mb in _PEAKS.findall(stderr)) * MB


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
    assert process.stderr is not None
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)  # reaped here, with its rusage (Popen.wait would drop it)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    return Measurement(seconds, peak_of(stderr, usage.ru_maxrss * 1024), process.returncode, stderr[-2000:])
