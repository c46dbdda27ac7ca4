"""What a person watching a run sees: the live progress line of ``--once`` and the summary at the end.

The progress line (tqdm) polls a snapshot of the run — the counters of every worker and what is left
in the inbox — so it needs nothing from the daemon's loop and counts several workers as one. Log
lines are written above it while it is shown. The summary is one table (like pgloader's) and the
fields of the one ``run_summary`` log event; both are built here from the same ``Summary``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sensor_etl.ops.logs import LOGGER
from sensor_etl.ops.metrics import OUTCOMES

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Snapshot:
    """Where a run stands: files and bytes whose fate is decided, and those still in the inbox."""

    files_done: int
    files_left: int
    bytes_done: int
    bytes_left: int
    rows: int


class ProgressLine:
    """``files 3/16, rows 1,204,311, 240,118 rows/s  40%|████  | 1.2GB/3.0GB [00:05<00:07]``: the bar and the
    ETA are over the bytes of the backlog (files that arrive meanwhile join it)."""

    def __init__(self, read: Callable[[], Snapshot], stream: TextIO) -> None:
        self._read = read
        self._started = time.monotonic()
        self._bar = tqdm(
            total=1,
            unit="B",
            unit_scale=True,
            file=stream,
            dynamic_ncols=True,
            bar_format="{desc}  {percentage:3.0f}%|{bar:20}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}]",
        )
        self._redirect = logging_redirect_tqdm(loggers=[LOGGER])
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="progress", daemon=True)

    def __enter__(self) -> ProgressLine:
        self._redirect.__enter__()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()
        self._update()
        self._bar.close()
        self._redirect.__exit__(kind, error, trace)

    def _poll(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            self._update()

    def _update(self) -> None:
        now = self._read()
        seconds = max(time.monotonic() - self._started, 1e-9)
        self._bar.total = max(now.bytes_done + now.bytes_left, 1)
        self._bar.n = now.bytes_done
        files = now.files_done + now.files_left
        self._bar.set_description_str(f"files {now.files_done}/{files}, rows {now.rows:,}, {now.rows / seconds:,.0f} rows/s", refresh=False)
        self._bar.refresh()


@dataclass(frozen=True)
class Summary:
    """What a run did: files by outcome (quarantined also by rule), files left waiting, rows, time."""

    files: dict[str, int]
    quarantined: dict[str, int]
    waiting: int
    rows_loaded: int
    rows_rejected: int
    seconds: float

    @property
    def rows_per_second(self) -> int:
        return int(self.rows_loaded / self.seconds) if self.seconds > 0 else 0

    def event_fields(self) -> dict[str, Any]:
        """The fields of the ``run_summary`` log event."""
        return {
            **{outcome: self.files.get(outcome, 0) for outcome in OUTCOMES},
            "quarantined_by_rule": ",".join(f"{rule}:{count}" for rule, count in sorted(self.quarantined.items())) or None,
            "waiting": self.waiting,
            "rows": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "seconds": round(self.seconds, 3),
            "rows_per_s": self.rows_per_second,
        }


def summary_table(summary: Summary) -> str:
    """The end-of-run table, for a terminal."""
    lines: list[tuple[str, str, str]] = [("outcome", "files", "rows")]
    for outcome in OUTCOMES:
        count = summary.files.get(outcome, 0)
        if count or outcome in ("loaded", "quarantined"):
            lines.append((outcome, f"{count:,}", ""))
        if outcome == "quarantined":
            lines += [(f"  {rule}", f"{n:,}", "") for rule, n in sorted(summary.quarantined.items())]
    lines.append(("waiting", f"{summary.waiting:,}", ""))
    lines.append(("rows loaded", "", f"{summary.rows_loaded:,}"))
    if summary.rows_rejected:
        lines.append(("rows rejected", "", f"{summary.rows_rejected:,}"))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    rule = "  ".join("-" * width for width in widths)

    def row(cells: tuple[str, str, str]) -> str:
        return f"{cells[0]:<{widths[0]}}  {cells[1]:>{widths[1]}}  {cells[2]:>{widths[2]}}".rstrip()

    body = [row(lines[0]), rule, *map(row, lines[1:]), rule]
    body.append(f"{summary.seconds:,.1f} s, {summary.rows_per_second:,} rows/s")
    return "\n".join(body)
