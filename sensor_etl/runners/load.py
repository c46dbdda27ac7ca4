"""The daemon's load transactions, each fenced before its commit: one file's (``FileLoad``, the sink of
``check.check_file``), or the valid files of a batch (``BatchLoad``), each file atomic within it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions
import pyarrow as pa

from sensor_etl.config import Rules, Settings
from sensor_etl.core import aggregate
from sensor_etl.core.rules import Rule
from sensor_etl.edges import files, overlaps, reports
from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Counts, Database, FileMeta, Load
from sensor_etl.edges.overlaps import Overlap
from sensor_etl.errors import InvalidFile, Problem
from sensor_etl.runners.lean import Checks
from sensor_etl.runners.pipeline import Outcome
from sensor_etl.sources import Match


@dataclass(frozen=True)
class Loading:
    """A file on its way into a load transaction: the file (its path, and its name: the path relative to
    the inbox), its fingerprint, the source it follows, what its check found, and where it will be
    archived (recorded in the same transaction). In a batch, ``checks`` holds its rows, at ``index``."""

    candidate: files.Candidate
    fp: files.Fingerprint
    match: Match
    outcome: Outcome
    planned: Path
    checks: Checks | None = None
    index: int = 0

    def meta(self, started: datetime, worker: str) -> FileMeta:
        return file_meta(self.candidate, self.fp, self.match, started, worker)


def file_meta(candidate: files.Candidate, fp: files.Fingerprint, match: Match, started: datetime, worker: str) -> FileMeta:
    """A file's ledger row as it is inserted, before its counts are known."""
    modified = datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC)
    return FileMeta(candidate.name, fp.sha256, fp.size, modified, started, worker, match.source)


def resolve_overlap(cursor: psycopg2.extensions.cursor, file_id: int, rules: Rules) -> Overlap:
    """ON_OVERLAP for a file whose metrics another file's meet (``overlaps.check``): only then does it
    go to its rows. ``reject`` raises InvalidFile naming the first overlapping line."""
    if rules.on_overlap == "skip":
        return overlaps.skip(cursor, file_id)
    if rules.on_overlap == "replace":
        return overlaps.replace(cursor, file_id)
    first = overlaps.first_overlap(cursor, file_id)
    if first is None:
        return Overlap()
    message = (
        f"{first.readings} reading(s) have a sensor and time already stored from another file (ON_OVERLAP=reject); "
        f"the first: sensor {first.sensor_id!r} at {first.observed_at.astimezone(UTC).isoformat()}, stored from {first.other_name!r} "
        f"(file_id {first.other_file}) line {first.other_line}"
    )
    raise InvalidFile(Problem(Rule.OVERLAP, message, line=first.line))


def _seal(
    load: Load, claims: Claims, loading: list[Loading], file_ids: list[int], overlap: list[Overlap], settings: Settings
) -> list[Path | None]:
    """Just before the COMMIT: each file's counts (less the readings another file holds), its overlap
    and planned archive path, the check that no file changed, the claim fence, and the rejects file
    of each partial load (only the commit itself can still fail then; if it does, the files are
    retried and the same contents rewrite the same rejects)."""
    load.finish(
        [
            Counts(
                file_id,
                f.outcome.loaded - skipped.skipped,
                f.outcome.invalid_rows,
                len(f.outcome.sensors),
                f.outcome.date_format,
                f.outcome.preamble,
                str(f.planned),
                skipped,
            )
            for f, file_id, skipped in zip(loading, file_ids, overlap, strict=True)
        ]
    )
    for f in loading:
        files.check_unchanged(f.candidate.path, f.fp)
    claims.confirm(load.cursor, [f.candidate.name for f in loading])
    return [
        reports.write_rejects(
            f.candidate.path,
            settings.quarantine_folder,
            name=f.candidate.name,
            sha256=f.fp.sha256,
            file_id=file_id,
            findings=f.outcome,
            encoding=f.match.rules.encoding,
        )
        if f.outcome.invalid_rows
        else None
        for f, file_id in zip(loading, file_ids, strict=True)
    ]


class FileLoad:
    """Rows go by COPY into the file's transaction (``Database.load``: the ledger row first). Just
    before the commit: the metrics, the overlap with other files (ON_OVERLAP), then ``_seal``. After
    the commit, ``file_id``, ``overlap`` and ``rejects`` say what was committed."""

    def __init__(
        self,
        database: Database,
        claims: Claims,
        settings: Settings,
        candidate: files.Candidate,
        fp: files.Fingerprint,
        match: Match,
        *,
        planned: Path,
        started: datetime,
        worker: str,
    ) -> None:
        self.db, self.claims, self.settings = database, claims, settings
        self.candidate, self.fp, self.match, self.planned = candidate, fp, match, planned
        self.meta = file_meta(candidate, fp, match, started, worker)
        self.file_id = 0
        self.overlap = Overlap()
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
        if overlaps.check(load.cursor, load.file_id, outcome.sensors):  # the metrics answer first (cheap)
            self.overlap = resolve_overlap(load.cursor, load.file_id, self.match.rules)
        loading = Loading(self.candidate, self.fp, self.match, outcome, self.planned)
        (self.rejects,) = _seal(load, self.claims, [loading], [load.file_id], [self.overlap], self.settings)

    def _open(self) -> Load:
        if self._load is None:
            raise RuntimeError("FileLoad used outside begin()")
        return self._load


class BatchLoad:
    """The valid files of a batch in one transaction (``Database.load_many``): their ledger rows in one
    statement, the readings of all of them in one COPY, their metrics in another, the overlap check of
    all of them in one round trip (and ON_OVERLAP for each file it finds), then ``_seal``. A content
    loaded before gets no ledger row and is left out. After the commit, ``committed`` is true, and
    ``file_ids``, ``overlaps`` and ``rejects`` (by position in ``loading``) say what was committed."""

    def __init__(self, database: Database, claims: Claims, settings: Settings, *, started: datetime, worker: str) -> None:
        self.db, self.claims, self.settings = database, claims, settings
        self.started, self.worker = started, worker
        self.committed = False
        self.file_ids: dict[int, int] = {}
        self.overlaps: dict[int, Overlap] = {}
        self.rejects: dict[int, Path] = {}

    def run(self, loading: list[Loading]) -> None:
        """Load ``loading`` (each file's rows wait in its ``checks``); commit."""
        with self.db.load_many([f.meta(self.started, self.worker) for f in loading]) as load:
            new = {position: load.file_ids[f.fp.sha256] for position, f in enumerate(loading) if f.fp.sha256 in load.file_ids}
            readings = _readings(loading, new)
            meeting: set[int] = set()
            if readings:
                load.copy_readings(pa.concat_tables(readings))  # on the copier thread, while the statistics are computed here
                summary = pa.concat_tables([aggregate.summarize(group, by_file=True) for group in readings])
                load.wait()
                meeting = overlaps.meeting(load.cursor, aggregate.spans(summary))  # before the batch's own metrics are there
                load.write_metrics(summary)
            found = {
                position: resolve_overlap(load.cursor, file_id, loading[position].match.rules) if file_id in meeting else Overlap()
                for position, file_id in new.items()
            }
            sealed = _seal(load, self.claims, [loading[p] for p in new], list(new.values()), list(found.values()), self.settings)
        self.committed, self.file_ids, self.overlaps = True, new, found
        self.rejects = {position: path for position, path in zip(new, sealed, strict=True) if path is not None}


def _readings(loading: list[Loading], file_ids: dict[int, int]) -> list[pa.Table]:
    """The transformed rows of the new files, one table per group of one column plan (of each ``Checks``)."""
    by_checks: dict[int, tuple[Checks, dict[int, int]]] = {}
    for position, file_id in file_ids.items():
        f = loading[position]
        if f.checks is not None:
            by_checks.setdefault(id(f.checks), (f.checks, {}))[1][f.index] = file_id
    return [table for checks, ids in by_checks.values() for table in checks.readings(ids)]
