"""The daemon's load transactions, each fenced before its commit: one file's (``FileLoad``, the sink of
``check.check_file``), or the valid files of a batch (``BatchLoad``), each file atomic within it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.config import Rules, Settings
from sensor_etl.core import aggregate
from sensor_etl.core.aggregate import Flushed
from sensor_etl.core.rules import Rule
from sensor_etl.edges import overlaps, reports
from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Counts, Database, FileMeta, Load
from sensor_etl.edges.inbox import Candidate, Fetched, Inbox
from sensor_etl.edges.overlaps import Overlap
from sensor_etl.errors import InvalidFile, Problem
from sensor_etl.runners.lean import Checks
from sensor_etl.runners.pipeline import Outcome
from sensor_etl.sources import Match

# Test-only hook (docs/operations.md "How it is tested"): the worker loading the file of this name kills itself
# (SIGKILL) once it has sent the file's first rows (alone, or in a batch), as a crash would.
CRASH_ON = os.environ.get("SENSOR_ETL_TEST_CRASH_ON")


@dataclass(frozen=True)
class Loading:
    """A file on its way into a load transaction: the candidate (its name: the path relative to the
    inbox), its bytes as a local file with their fingerprint, the source it follows, what its check
    found, and where it will be archived (recorded in the same transaction). In a batch, ``checks``
    holds its rows, at ``index``."""

    candidate: Candidate
    fetched: Fetched
    match: Match
    outcome: Outcome
    planned: str
    checks: Checks | None = None
    index: int = 0


def file_meta(inbox: str, candidate: Candidate, fetched: Fetched, match: Match, started: datetime, worker: str) -> FileMeta:
    """A file's ledger row as it is inserted, before its counts are known."""
    fp = fetched.fp
    modified = datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC)
    return FileMeta(inbox, candidate.name, fp.sha256, fp.size, modified, started, worker, match.source)


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


def _crash_if_asked(names: list[str]) -> None:
    """The CRASH_ON hook, once a transaction has sent rows of the files ``names``."""
    if CRASH_ON is not None and CRASH_ON in names:
        os.kill(os.getpid(), signal.SIGKILL)


def _seal(
    load: Load, claims: Claims, inbox: Inbox[Any], loading: list[Loading], file_ids: list[int], overlap: list[Overlap]
) -> tuple[list[str | None], dict[int, int]]:
    """Just before the COMMIT: each file's counts (less the readings another file holds), its overlap
    and planned archive path, the check that no file changed, the claim fence, and the rejects file
    of each partial load (only the commit itself can still fail then; if it does, the files are
    retried and the same contents rewrite the same rejects). Returns the rejects files' names, and
    the number of sensors of each file's stored rows (by file_id)."""
    sensors = load.finish(
        [
            Counts(
                file_id,
                f.outcome.loaded - skipped.skipped,
                f.outcome.invalid_rows,
                f.outcome.date_format,
                f.outcome.preamble,
                f.planned,
                skipped,
            )
            for f, file_id, skipped in zip(loading, file_ids, overlap, strict=True)
        ]
    )
    for f in loading:
        inbox.check_unchanged(f.candidate, f.fetched.fp)
    claims.confirm(load.cursor, [f.candidate.name for f in loading])
    rejects = [
        reports.write_rejects(
            f.fetched.path,
            inbox.quarantine_folder,
            name=f.candidate.name,
            sha256=f.fetched.fp.sha256,
            file_id=file_id,
            findings=f.outcome,
            encoding=f.match.rules.encoding,
        )
        if f.outcome.invalid_rows
        else None
        for f, file_id in zip(loading, file_ids, strict=True)
    ]
    return rejects, sensors


class FileLoad:
    """Rows go by COPY into the file's transaction (``Database.load``: the ledger row first; a content
    whose attempts ended abnormally MAX_FILE_ATTEMPTS times is refused there, rule worker_died), and
    the statistics as they are flushed. Just before the commit: the rest of the metrics, the overlap
    with other files (ON_OVERLAP), then ``_seal``. After the commit, ``file_id``, ``overlap`` and
    ``rejects`` say what was committed."""

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
        self.candidate, self.fetched, self.match, self.planned = candidate, fetched, match, planned
        self.max_attempts = settings.max_file_attempts
        self.lock_buckets: set[int] = set()  # the overlap locks of the file's sensors, gathered chunk by chunk (at most 1,024)
        self.meta = file_meta(inbox.location, candidate, fetched, match, started, worker)
        self.file_id = 0
        self.overlap = Overlap()
        self.rejects: str | None = None
        self._load: Load | None = None

    @contextmanager
    def begin(self) -> Iterator[int]:
        with self.db.load(self.meta) as load:
            failures = load.failures.get(self.meta.sha256, [])
            if len(failures) >= self.max_attempts:
                details = reports.attempts_details(failures, self.max_attempts)
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
        _crash_if_asked([self.candidate.name])

    def statistics(self, flushed: Flushed) -> None:
        load = self._open()
        load.write_metrics(flushed.new)
        load.merge_metrics(flushed.again)

    def complete(self, outcome: Outcome) -> None:
        self.statistics(outcome.statistics)
        load = self._open()
        load.wait()
        if overlaps.check(load.cursor, load.file_id, self.lock_buckets):  # the metrics answer first (cheap)
            self.overlap = resolve_overlap(load.cursor, load.file_id, self.match.rules)
        loading = Loading(self.candidate, self.fetched, self.match, outcome, self.planned)
        (self.rejects,), sensors = _seal(load, self.claims, self.inbox, [loading], [load.file_id], [self.overlap])
        outcome.sensors = sensors.get(load.file_id, 0)

    def _open(self) -> Load:
        if self._load is None:
            raise RuntimeError("FileLoad used outside begin()")
        return self._load


class BatchLoad:
    """The valid files of a batch in one transaction (``Database.load_many``): their ledger rows in one
    statement, the readings of all of them in one COPY (the month partitions they need created first,
    in the same transaction), their metrics in another, the overlap check of all of them in one round
    trip (and ON_OVERLAP for each file it finds), then ``_seal``. A batch's files are small (BATCH_BYTES
    in all): their statistics are computed whole, never flushed. A content loaded before gets no ledger
    row and is left out. After the commit, ``committed`` is true, and ``file_ids``, ``overlaps`` and
    ``rejects`` (by position in ``loading``) say what was committed."""

    def __init__(self, database: Database, claims: Claims, inbox: Inbox[Any], *, started: datetime, worker: str) -> None:
        self.db, self.claims, self.inbox = database, claims, inbox
        self.started, self.worker = started, worker
        self.committed = False
        self.file_ids: dict[int, int] = {}
        self.overlaps: dict[int, Overlap] = {}
        self.rejects: dict[int, str] = {}

    def run(self, loading: list[Loading]) -> None:
        """Load ``loading`` (each file's rows wait in its ``checks``); commit."""
        metas = [file_meta(self.inbox.location, f.candidate, f.fetched, f.match, self.started, self.worker) for f in loading]
        with self.db.load_many(metas) as load:
            new = {
                position: load.file_ids[f.fetched.fp.sha256] for position, f in enumerate(loading) if f.fetched.fp.sha256 in load.file_ids
            }
            readings = _readings(loading, new)
            meeting: set[int] = set()
            if readings:
                load.copy_readings(pa.concat_tables(readings))  # on the copier thread, while the statistics are computed here
                _crash_if_asked([loading[position].candidate.name for position in new])
                summary = pa.concat_tables([aggregate.summarize(group, by_file=True) for group in readings])
                load.wait()
                meeting = overlaps.meeting(load.cursor, aggregate.spans(summary))  # before the batch's own metrics are there
                load.write_metrics(summary)
                load.wait()  # ON_OVERLAP below reads the batch's metrics
            found = {
                position: resolve_overlap(load.cursor, file_id, loading[position].match.rules) if file_id in meeting else Overlap()
                for position, file_id in new.items()
            }
            sealed, _ = _seal(load, self.claims, self.inbox, [loading[p] for p in new], list(new.values()), list(found.values()))
        self.committed, self.file_ids, self.overlaps = True, new, found
        self.rejects = {position: name for position, name in zip(new, sealed, strict=True) if name is not None}


def _readings(loading: list[Loading], file_ids: dict[int, int]) -> list[pa.Table]:
    """The transformed rows of the new files, one table per group of one column plan (of each ``Checks``)."""
    by_checks: dict[int, tuple[Checks, dict[int, int]]] = {}
    for position, file_id in file_ids.items():
        f = loading[position]
        if f.checks is not None:
            by_checks.setdefault(id(f.checks), (f.checks, {}))[1][f.index] = file_id
    return [table for checks, ids in by_checks.values() for table in checks.readings(ids)]
