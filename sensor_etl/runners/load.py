"""The daemon's sink for ``check.check_file``: one file's load transaction, fenced before its commit."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.config import Settings
from sensor_etl.core.aggregate import Flushed
from sensor_etl.core.rules import Rule
from sensor_etl.edges import overlaps, reports
from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Database, FileMeta, Load
from sensor_etl.edges.inbox import Candidate, Fetched, Inbox
from sensor_etl.edges.overlaps import Overlap
from sensor_etl.errors import InvalidFile, Problem
from sensor_etl.runners.pipeline import Outcome
from sensor_etl.sources import Match

# Test-only hook (docs/operations.md "How it is tested"): the worker loading the file of this name kills itself
# (SIGKILL) once it has sent the file's first rows, as a crash would.
CRASH_ON = os.environ.get("SENSOR_ETL_TEST_CRASH_ON")


class FileLoad:
    """Rows go by COPY into the file's transaction (``Database.load``: the ledger row first; a content
    whose attempts ended abnormally MAX_FILE_ATTEMPTS times is refused there, rule worker_died), and
    the statistics as they are flushed. Just before the commit: the rest of the metrics, the overlap
    with other files (ON_OVERLAP), the counts and the planned archive path, the check that the file
    did not change, the claim fence, and a partial load's rejects file. After the commit, ``file_id``,
    ``overlap`` and ``rejects`` say what was committed."""

    def __init__(
        self,
        database: Database,
        claims: Claims,
        settings: Settings,
        inbox: Inbox[Any],
        candidate: Candidate,
        fetched: Fetched,
        match: Match,
        *,
        planned: str,
        started: datetime,
        worker: str,
    ) -> None:
        self.db, self.claims, self.inbox = database, claims, inbox
        self.candidate, self.fetched, self.planned = candidate, fetched, planned
        self.rules = match.rules
        self.max_attempts = settings.max_file_attempts
        self.lock_buckets: set[int] = set()  # the overlap locks of the file's sensors, gathered chunk by chunk (at most 1,024)
        fp = fetched.fp
        modified = datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC)
        self.meta = FileMeta(inbox.location, candidate.name, fp.sha256, fp.size, modified, started, worker, match.source)
        self.file_id = 0
        self.overlap = Overlap()
        self.rejects: str | None = None
        self._load: Load | None = None

    @contextmanager
    def begin(self) -> Iterator[int]:
        with self.db.load(self.meta) as load:
            if len(load.failures) >= self.max_attempts:
                details = reports.attempts_details(load.failures, self.max_attempts)
                problem = Problem(Rule.WORKER_DIED, "not tried again, so that it cannot take down another worker (see attempts)")
                raise InvalidFile(problem, details=details)
            self._load, self.file_id = load, load.file_id
            try:
                yield load.file_id
            finally:
                self._load = None

    def rows(self, readings: pa.Table) -> None:
        self._open().copy_readings(readings)
        self.lock_buckets |= overlaps.buckets(pc.unique(readings.column("sensor_id")).to_pylist())
        if self.candidate.name == CRASH_ON:
            os.kill(os.getpid(), signal.SIGKILL)

    def statistics(self, flushed: Flushed) -> None:
        load = self._open()
        load.write_metrics(flushed.new)
        load.merge_metrics(flushed.again)

    def complete(self, outcome: Outcome) -> None:
        self.statistics(outcome.statistics)
        load = self._open()
        load.wait()
        self.overlap = self._resolve_overlap(load)
        outcome.sensors = load.finish(
            rows_loaded=outcome.loaded - self.overlap.skipped,
            rows_rejected=outcome.invalid_rows,
            date_format=outcome.date_format,
            preamble=outcome.preamble,
            archive_path=self.planned,
            overlap=self.overlap,
        )
        self.inbox.check_unchanged(self.candidate, self.fetched.fp)
        self.claims.confirm(load.cursor, self.candidate.name)
        # after every statement succeeded, just before the commit: only the commit itself can still fail.
        # If it does, the file is retried and the same content rewrites the same reject files.
        if outcome.invalid_rows:
            self.rejects = reports.write_rejects(
                self.fetched.path,
                self.inbox.quarantine_folder,
                name=self.candidate.name,
                sha256=self.fetched.fp.sha256,
                file_id=load.file_id,
                findings=outcome,
                encoding=self.rules.encoding,
            )

    def _resolve_overlap(self, load: Load) -> Overlap:
        """ON_OVERLAP for readings whose sensor and time another file holds. The metrics answer first
        (cheap); only a file they say overlaps goes to its rows."""
        if not overlaps.check(load.cursor, load.file_id, self.lock_buckets):
            return Overlap()
        if self.rules.on_overlap == "skip":
            return overlaps.skip(load.cursor, load.file_id)
        if self.rules.on_overlap == "replace":
            return overlaps.replace(load.cursor, load.file_id)
        first = overlaps.first_overlap(load.cursor, load.file_id)
        if first is None:
            return Overlap()
        message = (
            f"{first.readings} reading(s) have a sensor and time already stored from another file (ON_OVERLAP=reject); "
            f"the first: sensor {first.sensor_id!r} at {first.observed_at.astimezone(UTC).isoformat()}, stored from {first.other_name!r} "
            f"(file_id {first.other_file}) line {first.other_line}"
        )
        raise InvalidFile(Problem(Rule.OVERLAP, message, line=first.line))

    def _open(self) -> Load:
        if self._load is None:
            raise RuntimeError("FileLoad used outside begin()")
        return self._load
