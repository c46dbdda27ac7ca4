"""The daemon's sink for ``check.check_file``: one file's load transaction, fenced before its commit."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sensor_etl.config import Settings
from sensor_etl.core.aggregate import Flushed
from sensor_etl.core.rules import Rule
from sensor_etl.edges import files, reports
from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Database, FileMeta, Load
from sensor_etl.errors import InvalidFile, Problem
from sensor_etl.runners.pipeline import Outcome

# Test-only hook (docs/operations.md "How it is tested"): the worker loading the file of this name kills itself
# (SIGKILL) once it has sent the file's first rows, as a crash would.
CRASH_ON = os.environ.get("SENSOR_ETL_TEST_CRASH_ON")


class FileLoad:
    """Rows go by COPY into the file's transaction (``Database.load``: the ledger row first; a content
    whose attempts ended abnormally MAX_FILE_ATTEMPTS times is refused there, rule worker_died). Just
    before the commit: the metrics, the counts and the planned archive path, the check that the file
    did not change, the claim fence, and a partial load's rejects file. After the commit,
    ``file_id`` and ``rejects`` say what was committed."""

    def __init__(
        self,
        database: Database,
        claims: Claims,
        settings: Settings,
        path: Path,
        fp: files.Fingerprint,
        *,
        planned: Path,
        started: datetime,
        worker: str,
    ) -> None:
        self.db, self.claims = database, claims
        self.path, self.fp, self.planned = path, fp, planned
        self.quarantine, self.encoding = settings.quarantine_folder, settings.rules.encoding
        self.max_attempts = settings.max_file_attempts
        modified = datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC)
        self.meta = FileMeta(path.name, fp.sha256, fp.size, modified, started, worker)
        self.file_id = 0
        self.rejects: Path | None = None
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
        if self.path.name == CRASH_ON:
            os.kill(os.getpid(), signal.SIGKILL)

    def statistics(self, flushed: Flushed) -> None:
        load = self._open()
        load.write_metrics(flushed.new)
        load.merge_metrics(flushed.again)

    def complete(self, outcome: Outcome) -> None:
        self.statistics(outcome.statistics)
        load = self._open()
        outcome.sensors = load.finish(
            rows_loaded=outcome.loaded,
            rows_rejected=outcome.invalid_rows,
            date_format=outcome.date_format,
            archive_path=str(self.planned),
        )
        files.check_unchanged(self.path, self.fp)
        self.claims.confirm(load.cursor, self.path.name)
        # after every statement succeeded, just before the commit: only the commit itself can still fail.
        # If it does, the file is retried and the same content rewrites the same reject files.
        if outcome.invalid_rows:
            self.rejects = reports.write_rejects(
                self.path, self.quarantine, sha256=self.fp.sha256, file_id=load.file_id, findings=outcome, encoding=self.encoding
            )

    def _open(self) -> Load:
        if self._load is None:
            raise RuntimeError("FileLoad used outside begin()")
        return self._load
