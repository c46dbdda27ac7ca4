"""Checking one file, the same way for the daemon and for the ``validate`` command.

``check_file`` takes a file through the daemon's steps, in the daemon's order — its name, what it is
(a link, not a regular file), its encoding (checked while hashing), what its source needs, then its
header, rows and the reject limit (``pipeline``), under the rules of the source it matched — and
raises the daemon's typed errors. The daemon passes its load transaction as the ``sink``, so the
valid rows are loaded as they are checked; ``validate`` passes none (or ``Preview``, which keeps the
first rows for ``--show``), so its dry run is the real run without the writes and the two cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from sensor_etl.config import Settings
from sensor_etl.core import aggregate
from sensor_etl.core.rules import Rule
from sensor_etl.edges import files
from sensor_etl.errors import InvalidFile, NotTaken, Problem
from sensor_etl.runners import pipeline
from sensor_etl.sources import Match

IGNORED = "the daemon takes *.csv names that are not hidden or temporary"


class Sink(pipeline.Loader, Protocol):
    """Where a checked file's valid rows and statistics go: the daemon's load transaction (``load.FileLoad``)."""

    def begin(self) -> AbstractContextManager[int]:
        """Open the file's transaction and yield its file_id. A content loaded before raises
        ``AlreadyLoaded`` here, before a byte of the file is parsed; an error inside rolls back."""
        ...

    def complete(self, outcome: pipeline.Outcome) -> None:
        """What follows the rows inside the transaction, just before its commit: the rest of the
        statistics, and ``outcome.sensors``, counted from all of them."""
        ...


def check_file(
    path: Path,
    settings: Settings,
    now: datetime,
    *,
    match: Match | None = None,
    fp: files.Fingerprint | None = None,
    sink: Sink | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> pipeline.Outcome:
    """Check ``path`` as the daemon does and, with a sink, load its valid rows into it.

    ``match`` is what the file follows (``Sources.rules_for``; without it, the global settings).
    ``fp`` is the fingerprint the caller already took with the match's encoding (the daemon hashes
    a file before its ledger check); without it the file is hashed here. Raises ``NotTaken`` (the
    daemon would leave it where it is), ``InvalidFile`` (it would be quarantined), ``OSError`` (it
    cannot be read), and whatever the sink raises."""
    match = match or Match(None, settings.rules)
    if not files.is_input_name(path.name):
        raise NotTaken(IGNORED, ignored=True)
    if fp is None:  # refuses a link or anything but a regular file, like the daemon's own fingerprint
        fp = files.fingerprint(path, match.rules.encoding)
    if fp.problem is not None:
        raise InvalidFile(fp.problem)
    if match.problem is not None:
        raise InvalidFile(match.problem)
    if sink is None:
        return pipeline.run(path, match.rules, now, block_bytes=settings.read_block_bytes, should_stop=should_stop)
    with sink.begin() as file_id:
        outcome = pipeline.run(
            path,
            match.rules,
            now,
            block_bytes=settings.read_block_bytes,
            file_id=file_id,
            sink=sink,
            should_stop=should_stop,
        )
        sink.complete(outcome)
    return outcome


class Preview:
    """The sink of ``validate --show N``: keeps the first ``rows`` transformed rows, exactly as the
    daemon would store them, and writes nothing (file_id 0). Like a run without a sink, it counts the
    distinct sensor ids (the statistics it is handed are dropped)."""

    def __init__(self, rows: int) -> None:
        self.limit = rows
        self.kept: list[pa.Table] = []
        self.sensor_ids = pa.array([], pa.string())

    @contextmanager
    def begin(self) -> Iterator[int]:
        yield 0

    def rows(self, readings: pa.Table) -> None:
        self.sensor_ids = aggregate.distinct(self.sensor_ids, readings.column("sensor_id"))
        room = self.limit - sum(table.num_rows for table in self.kept)
        if room > 0:
            self.kept.append(readings.slice(0, room))

    def statistics(self, flushed: aggregate.Flushed) -> None:
        """Nothing is stored."""

    def complete(self, outcome: pipeline.Outcome) -> None:
        """Nothing follows the rows: there is no transaction."""
        outcome.sensors = len(self.sensor_ids)

    def table(self) -> pa.Table | None:
        """The rows kept, without file_id (given at the load); None: no row would be stored."""
        return pa.concat_tables(self.kept).drop_columns(["file_id"]) if self.kept else None


def internal_problem(exc: Exception) -> Problem:
    """A bug met on a file: the daemon quarantines the file with this problem, ``validate`` says so."""
    return Problem(Rule.INTERNAL_ERROR, f"unexpected {type(exc).__name__}: {exc}")
