"""The daemon's sink for ``check.check_file``: one file's load transaction, fenced before its commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sensor_etl.config import Settings
from sensor_etl.edges import files, reports
from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Counts, Database, FileMeta, Load
from sensor_etl.runners.pipeline import Outcome


class FileLoad:
    """Rows go by COPY into the file's transaction (``Database.load``: the ledger row first). Just
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
        modified = datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC)
        self.meta = FileMeta(path.name, fp.sha256, fp.size, modified, started, worker)
        self.file_id = 0
        self.rejects: Path | None = None
        self._load: Load | None = None

    @contextmanager
    def begin(self) -> Iterator[int]:
        with self.db.load(self.meta) as load:
            self._load, self.file_id = load, load.file_id
            try:
                yield load.file_id
            finally:
                self._load = None

    def rows(self, readings: pa.Table) -> None:
        self._open().copy_readings(readings)

    def complete(self, outcome: Outcome) -> None:
        load = self._open()
        load.write_metrics(outcome.summary())
        load.finish(
            [Counts(load.file_id, outcome.loaded, outcome.invalid_rows, len(outcome.sensors), outcome.date_format, str(self.planned))]
        )
        files.check_unchanged(self.path, self.fp)
        self.claims.confirm(load.cursor, [self.path.name])
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
