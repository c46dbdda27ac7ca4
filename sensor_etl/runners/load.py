"""The daemon's load transactions, each fenced before its commit: one file's (``FileLoad``, the sink of
``check.check_file``), or the valid files of a batch (``BatchLoad``), each file atomic within it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sensor_etl.config import Settings
from sensor_etl.core import aggregate
from sensor_etl.edges import files, reports
from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Counts, Database, FileMeta, Load
from sensor_etl.runners.lean import Checks
from sensor_etl.runners.pipeline import Outcome


@dataclass(frozen=True)
class Loading:
    """A file on its way into a load transaction: where it is, its fingerprint, what its check found,
    and where it will be archived (recorded in the same transaction)."""

    path: Path
    fp: files.Fingerprint
    outcome: Outcome
    planned: Path

    def meta(self, started: datetime, worker: str) -> FileMeta:
        return file_meta(self.path, self.fp, started, worker)


def file_meta(path: Path, fp: files.Fingerprint, started: datetime, worker: str) -> FileMeta:
    """A file's ledger row as it is inserted, before its counts are known."""
    return FileMeta(path.name, fp.sha256, fp.size, datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC), started, worker)


def _seal(load: Load, claims: Claims, loading: list[Loading], file_ids: list[int], settings: Settings) -> list[Path | None]:
    """Just before the COMMIT: each file's counts and planned archive path, the check that no file
    changed, the claim fence, and the rejects file of each partial load (only the commit itself can
    still fail then; if it does, the files are retried and the same contents rewrite the same rejects)."""
    load.finish(
        [
            Counts(
                file_id,
                f.outcome.loaded,
                f.outcome.invalid_rows,
                len(f.outcome.sensors),
                f.outcome.date_format,
                f.outcome.preamble,
                str(f.planned),
            )
            for f, file_id in zip(loading, file_ids, strict=True)
        ]
    )
    for f in loading:
        files.check_unchanged(f.path, f.fp)
    claims.confirm(load.cursor, [f.path.name for f in loading])
    return [
        reports.write_rejects(
            f.path, settings.quarantine_folder, sha256=f.fp.sha256, file_id=file_id, findings=f.outcome, encoding=settings.rules.encoding
        )
        if f.outcome.invalid_rows
        else None
        for f, file_id in zip(loading, file_ids, strict=True)
    ]


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
        self.db, self.claims, self.settings = database, claims, settings
        self.path, self.fp, self.planned = path, fp, planned
        self.meta = file_meta(path, fp, started, worker)
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
        (self.rejects,) = _seal(load, self.claims, [Loading(self.path, self.fp, outcome, self.planned)], [load.file_id], self.settings)

    def _open(self) -> Load:
        if self._load is None:
            raise RuntimeError("FileLoad used outside begin()")
        return self._load


class BatchLoad:
    """The valid files of a batch in one transaction (``Database.load_many``): their ledger rows in one
    statement, the readings of all of them in one COPY, their metrics in another, then ``_seal``.
    A content loaded before gets no ledger row and is left out. After the commit, ``committed`` is
    true, and ``file_ids`` (by position in ``loading``) and ``rejects`` say what was committed."""

    def __init__(self, database: Database, claims: Claims, settings: Settings, *, started: datetime, worker: str) -> None:
        self.db, self.claims, self.settings = database, claims, settings
        self.started, self.worker = started, worker
        self.committed = False
        self.file_ids: dict[int, int] = {}
        self.rejects: dict[int, Path] = {}

    def run(self, loading: list[Loading], checks: Checks, indexes: list[int]) -> None:
        """Load ``loading``, whose rows ``checks`` holds under the batch indexes ``indexes``; commit."""
        with self.db.load_many([f.meta(self.started, self.worker) for f in loading]) as load:
            new = [(position, load.file_ids[f.fp.sha256]) for position, f in enumerate(loading) if f.fp.sha256 in load.file_ids]
            readings = checks.readings({indexes[position]: file_id for position, file_id in new})
            if readings:
                load.copy_readings(pa.concat_tables(readings))  # on the copier thread, while the statistics are computed here
                load.write_metrics(pa.concat_tables([aggregate.summarize(group, by_file=True) for group in readings]))
            sealed = _seal(load, self.claims, [loading[p] for p, _ in new], [file_id for _, file_id in new], self.settings)
        self.committed, self.file_ids = True, dict(new)
        self.rejects = {position: path for (position, _), path in zip(new, sealed, strict=True) if path is not None}
