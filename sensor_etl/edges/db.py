"""PostgreSQL edge: connections, the schema, SQLSTATE classification, and the load transaction (of one
file, or of a batch of small files, each file atomic within it).

All SQL is constant text or composed with ``psycopg2.sql``; every value is a bound parameter or
travels inside COPY data. Nothing from a file is ever formatted into a statement.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from importlib import resources
from typing import Any

import numpy as np
import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg2 import sql

from sensor_etl.core import partitions
from sensor_etl.core.aggregate import SCHEMA, with_std
from sensor_etl.core.transform import READINGS_COLUMNS
from sensor_etl.edges import overlaps
from sensor_etl.edges.overlaps import Overlap
from sensor_etl.errors import AlreadyLoaded, DatabaseError, DataDatabaseError, FatalDatabaseError, TransientDatabaseError
from sensor_etl.ops import logs

_FATAL_CLASSES = ("28", "42", "3D", "3F", "0A", "2B")
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=65536)
METRIC_COLUMNS = ("file_id", "sensor_id", "day", "metric", "n", "min", "max", "mean", "std", "m2", "first_at", "last_at")
_COPY_METRICS = "COPY sensor_metrics ({}) FROM STDIN WITH (FORMAT csv)".format(", ".join(METRIC_COLUMNS))
_COPY_READINGS = "COPY sensor_readings ({}) FROM STDIN WITH (FORMAT csv)".format(", ".join(READINGS_COLUMNS))
# Statistics of a group that may already have a row for this file (a file with more sensor-day groups than memory
# holds, see aggregate.Statistics) go through a temporary table of the load's session, gone at COMMIT or rollback,
# and are merged into that row with Chan et al.'s pairwise formula (or inserted, if there is none after all).
_CREATE_PARTS = """
CREATE TEMP TABLE sensor_metrics_parts (
    sensor_id text COLLATE "C", day date, metric text, n bigint, min double precision, max double precision,
    mean double precision, m2 double precision, first_at timestamptz, last_at timestamptz
) ON COMMIT DROP
"""
_COPY_PARTS = "COPY sensor_metrics_parts ({}) FROM STDIN WITH (FORMAT csv)".format(", ".join(SCHEMA.names))
_MERGE_PARTS = """
INSERT INTO sensor_metrics AS m (file_id, sensor_id, day, metric, n, min, max, mean, std, m2, first_at, last_at)
SELECT %(file_id)s, sensor_id, day, metric, n, min, max, mean, CASE WHEN n > 1 THEN sqrt(m2 / (n - 1)) END, m2, first_at, last_at
FROM pg_temp.sensor_metrics_parts
ON CONFLICT (file_id, sensor_id, metric, day) DO UPDATE SET
    n = m.n + excluded.n,
    min = least(m.min, excluded.min),
    max = greatest(m.max, excluded.max),
    mean = m.mean + (excluded.mean - m.mean) * excluded.n / (m.n + excluded.n),
    m2 = m.m2 + excluded.m2 + (excluded.mean - m.mean) ^ 2 * m.n * excluded.n / (m.n + excluded.n),
    std = sqrt(greatest(m.m2 + excluded.m2 + (excluded.mean - m.mean) ^ 2 * m.n * excluded.n / (m.n + excluded.n), 0)
               / (m.n + excluded.n - 1)),
    first_at = least(m.first_at, excluded.first_at),
    last_at = greatest(m.last_at, excluded.last_at)
"""


def schema_sql() -> str:
    """The schema shipped inside the package; ``script.sql`` at the top of the repo is the same text for people."""
    return resources.files("sensor_etl.edges").joinpath("schema.sql").read_text(encoding="utf-8")


def classify(exc: psycopg2.Error) -> DatabaseError:
    """Turn a driver error into retry (transient), quarantine (data) or stop (fatal)."""
    code = exc.pgcode or ""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if code[:2] in ("22", "23"):
        return DataDatabaseError(message, code)
    if code[:2] in _FATAL_CLASSES:
        return FatalDatabaseError(message, code)
    return TransientDatabaseError(message, code or None)


# Refusals the server sends while a connection is being set up (they carry no SQLSTATE in psycopg2):
# retrying cannot fix a wrong password, role or database name.
_REFUSED_AT_CONNECT = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "authentication failed",
)


def classify_connect(exc: psycopg2.Error) -> DatabaseError:
    message = " ".join(str(exc).split())
    if exc.pgcode is None and "FATAL:" in message and any(p in message for p in _REFUSED_AT_CONNECT):
        return FatalDatabaseError(message, "28000")
    return classify(exc)


@contextmanager
def translated() -> Iterator[None]:
    """Raise this package's typed errors instead of psycopg2's."""
    try:
        yield
    except psycopg2.Error as exc:
        raise classify(exc) from exc


@dataclass(frozen=True)
class FileMeta:
    inbox: str  # the inbox's location (claims.Claims.inbox): two inboxes may hold the same file names
    name: str  # the path relative to the inbox
    sha256: str
    size: int
    modified_at: datetime
    started_at: datetime
    worker: str
    source: str | None = None  # the [[source]] it follows


@dataclass(frozen=True)
class Counts:
    """What a committed file's ledger row says about it, written just before the COMMIT."""

    file_id: int
    rows_loaded: int
    rows_rejected: int
    date_format: str
    preamble: str | None  # the lines before the header (docs/schema.md)
    archive_path: str  # where the file is moved after the COMMIT
    overlap: Overlap  # its readings another file holds (ON_OVERLAP)


# The ledger rows come first, in sha256 order (two workers never deadlock on them); each also reads its content's
# failed attempts (edges/attempts.py) in the same round trip.
_LEDGER_ROWS = """
INSERT INTO ingested_files (inbox, file_name, sha256, size_bytes, modified_at, started_at, worker, source)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[])
    AS m ORDER BY 3
ON CONFLICT (sha256) DO NOTHING
RETURNING sha256, file_id, (SELECT failures FROM file_attempts AS a WHERE a.sha256 = ingested_files.sha256)
"""
# Counts, the planned archive path and the overlap of each file; the sensors are counted from the file's statistics
# (every stored row has a measure, so a metrics row), and the contents' failed attempts are forgotten: they are loaded.
_COUNTS = """
WITH c AS (
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],
                         %s::bigint[])
        AS c(file_id, rows_loaded, rows_rejected, date_format, preamble, archive_path, skipped, conflicting, replaced)
), forgotten AS (
    DELETE FROM file_attempts WHERE sha256 IN (SELECT sha256 FROM ingested_files WHERE file_id IN (SELECT file_id FROM c))
)
UPDATE ingested_files AS f
SET rows_loaded = c.rows_loaded, rows_rejected = c.rows_rejected, date_format = c.date_format, preamble = c.preamble,
    archive_path = c.archive_path, rows_skipped = c.skipped, rows_conflicting = c.conflicting, rows_replaced = c.replaced,
    sensors = (SELECT count(DISTINCT m.sensor_id) FROM sensor_metrics AS m WHERE m.file_id = c.file_id),
    status = CASE WHEN c.rows_rejected > 0 THEN 'partial' ELSE 'loaded' END, loaded_at = now()
FROM c
WHERE f.file_id = c.file_id
RETURNING f.file_id, f.sensors
"""


@dataclass(frozen=True)
class LedgerEntry:
    file_id: int
    inbox: str | None  # None on rows loaded before the inbox was recorded
    file_name: str
    archive_path: str | None
    rows_loaded: int


class Database:
    """A reconnecting handle on the configured server."""

    def __init__(self, connect_kwargs: Mapping[str, Any], application_name: str = "sensor-etl") -> None:
        self._kwargs: dict[str, Any] = {
            **connect_kwargs,
            "application_name": application_name,
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._conn: psycopg2.extensions.connection | None = None
        self._partitioned: bool | None = None  # sensor_readings' layout, read once per connection
        self._copier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy")

    def another(self, application_name: str) -> Database:
        """A second, independent connection to the same server (a heartbeat must not wait on a load's transaction)."""
        return Database({k: v for k, v in self._kwargs.items() if k != "application_name"}, application_name)

    def connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg2.connect(**self._kwargs)
            except psycopg2.Error as exc:
                raise classify_connect(exc) from exc
            self._partitioned = None
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def discard(self) -> None:
        """Forget a connection after an error: the next call reconnects."""
        try:
            self.close()
        except psycopg2.Error:
            self._conn = None

    def apply_schema(self) -> None:
        """Create or update the schema (idempotent: every statement is IF NOT EXISTS or OR REPLACE)."""
        conn = self.connection()
        with translated():
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute(schema_sql())
            finally:
                conn.autocommit = False

    def query(self, statement: str, params: tuple | dict = (), *, durable: bool = True) -> list[tuple]:
        """One statement in its own transaction; the rows it returns (none for a plain write).

        ``durable=False`` is for soft state (claims, bookkeeping): the commit is visible at once but
        does not wait for the WAL flush, which a crash may then lose harmlessly."""
        conn = self.connection()
        with translated(), conn, conn.cursor() as cur:
            if not durable:
                cur.execute("SET LOCAL synchronous_commit TO off")
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def ping(self) -> None:
        self.query("SELECT 1")

    def alive(self) -> bool:
        """Whether the server answers now (one try, no retry)."""
        try:
            self.ping()
            return True
        except DatabaseError:
            return False

    def lookup(self, sha256: str) -> LedgerEntry | None:
        rows = self.query("SELECT file_id, inbox, file_name, archive_path, rows_loaded FROM ingested_files WHERE sha256 = %s", (sha256,))
        return LedgerEntry(*rows[0]) if rows else None

    def find_loaded(self, key: str, archive_path: str) -> list[LedgerEntry]:
        """The ledger rows a person means by ``key``: a file_id (digits), a file name (its path relative to
        the inbox), or the path of its archived copy (``archive_path``, resolved by the caller)."""
        rows = self.query(
            "SELECT file_id, inbox, file_name, archive_path, rows_loaded FROM ingested_files"
            " WHERE file_id = %(id)s OR file_name = %(name)s OR archive_path = %(path)s ORDER BY file_id",
            {"id": int(key) if key.isdigit() else None, "name": key, "path": archive_path},
        )
        return [LedgerEntry(*row) for row in rows]

    def unload(self, file_id: int) -> int | None:
        """Delete a file's readings, metrics and ledger row in one transaction; the readings deleted, or
        None when the file is not (or no longer) in the ledger. Its sensors are locked as a load locks
        them (``overlaps``), so a load deciding its overlaps meanwhile sees the file either whole or gone."""
        conn = self.connection()
        with translated(), conn, conn.cursor() as cur:
            cur.execute("SELECT FROM ingested_files WHERE file_id = %s FOR UPDATE", (file_id,))
            if cur.rowcount == 0:
                return None
            cur.execute("SELECT DISTINCT sensor_id FROM sensor_metrics WHERE file_id = %s", (file_id,))
            overlaps.lock(cur, [sensor for (sensor,) in cur.fetchall()])
            cur.execute("DELETE FROM sensor_readings WHERE file_id = %s", (file_id,))
            readings = cur.rowcount
            cur.execute("DELETE FROM ingested_files WHERE file_id = %s", (file_id,))  # its metrics go with it (ON DELETE CASCADE)
            return readings

    def partitioned(self) -> bool:
        """Whether ``sensor_readings`` is partitioned by month (created by this version's schema) or a
        plain table created before partitioning, which keeps working without partitions."""
        if self._partitioned is None:
            rows = self.query("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", (partitions.PARENT,))
            self._partitioned = bool(rows and rows[0][0])
        return self._partitioned

    def month_partitions(self) -> list[str]:
        """The month partitions of ``sensor_readings`` (detached ones still pending included)."""
        rows = self.query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            (partitions.PARENT,),
        )
        return [name for (name,) in rows if partitions.month_of_partition(name) is not None]

    def drop_partition(self, name: str) -> None:
        """Detach a month partition without blocking loads or queries (CONCURRENTLY: only a SHARE UPDATE
        EXCLUSIVE lock on sensor_readings), then drop it. A detach left pending by a crash is finished first."""
        conn = self.connection()
        table = sql.Identifier(name)
        with translated():
            conn.autocommit = True  # DETACH ... CONCURRENTLY cannot run inside a transaction block
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass(%s)", (name,))
                    row = cur.fetchone()
                    if row is not None:
                        mode = sql.SQL("FINALIZE" if row[0] else "CONCURRENTLY")
                        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(sql.Identifier(partitions.PARENT), table, mode))
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            finally:
                conn.autocommit = False

    def set_archive_path(self, file_id: int, archive_path: str) -> None:
        """Correct the recorded destination when the planned name was taken (bookkeeping)."""
        self.query("UPDATE ingested_files SET archive_path = %s WHERE file_id = %s", (archive_path, file_id), durable=False)

    @contextmanager
    def load(self, meta: FileMeta) -> Iterator[Load]:
        """One transaction for one file: ledger row, readings, metrics; commit on clean exit.

        The ledger row comes first with ON CONFLICT DO NOTHING: a content loaded before (or being
        committed right now by another worker, whose transaction this waits for) raises AlreadyLoaded
        before a byte of the file is parsed. ``Load.failures`` are the content's failed attempts."""
        with self.load_many([meta]) as load:
            if not load.file_ids:
                raise AlreadyLoaded(meta.sha256)
            yield load

    @contextmanager
    def load_many(self, metas: list[FileMeta]) -> Iterator[Load]:
        """One transaction for the files of a batch: their ledger rows in one statement, then whatever
        the caller writes; commit on clean exit. ``Load.file_ids`` holds the new contents: one loaded
        before (or being committed by another worker, whose transaction this waits for) gets no ledger
        row and no id."""
        try:
            partitioned = self.partitioned()
            conn = self.connection()
            with translated(), conn, conn.cursor() as cur:
                columns = zip(*([getattr(m, f.name) for f in fields(FileMeta)] for m in metas), strict=True)
                cur.execute(_LEDGER_ROWS, [list(column) for column in columns])
                rows = cur.fetchall()
                file_ids = {sha256: file_id for sha256, file_id, _ in rows}
                failures = {sha256: failed or [] for sha256, _, failed in rows}
                load = Load(cur, file_ids, self._copier, partitioned=partitioned, failures=failures)
                try:
                    yield load
                    load.wait()
                except BaseException:
                    load.abandon()
                    raise
        except (TransientDatabaseError, FatalDatabaseError):
            self.discard()
            raise


def _csv_ready(table: pa.Table) -> pa.Table:
    """UTC timestamps as ``2024-01-01 00:00:00.000000Z`` text: Arrow's CSV writer formats zoned
    timestamps about 35 times slower than naive ones, so we format the naive value and add the Z."""
    for index, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            naive = table.column(index).cast(pa.timestamp(column.type.unit)).cast(pa.string())
            table = table.set_column(index, column.name, pc.binary_join_element_wise(naive, "Z", ""))
    return table


class _CsvStream(io.RawIOBase):
    """A table as CSV text, written 65,536 rows at a time as COPY reads it: the text of a whole chunk
    (10 MB for 4 MiB of a seed file, 50 MB for the statistics of 75,000 distinct sensors) is never in
    memory at once."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__()
        rows = _CSV_OPTIONS.batch_size
        self._batches = (table.slice(start, rows) for start in range(0, table.num_rows, rows))
        self._text = io.BytesIO()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._text.read(size)
        while not data and (batch := next(self._batches, None)) is not None:
            self._text = io.BytesIO()
            pacsv.write_csv(_csv_ready(batch), self._text, _CSV_OPTIONS)
            self._text.seek(0)
            data = self._text.read(size)
        return data


class Load:
    """Writes of one load transaction (of one file, or of the files of a batch).

    COPY runs on the database's copier thread so the server ingests chunk k while Python prepares
    chunk k+1 (psycopg2 and pyarrow release the GIL). At most one COPY is in flight, which bounds
    memory; any other statement first waits for it, so the connection is never used by two threads
    at once."""

    def __init__(
        self,
        cursor: psycopg2.extensions.cursor,
        file_ids: dict[str, int],
        copier: ThreadPoolExecutor,
        *,
        partitioned: bool = False,
        failures: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.cursor = cursor
        self.file_ids = file_ids  # sha256 -> file_id of each new content
        self.failures = failures or {}  # sha256 -> earlier attempts on it that ended abnormally (edges/attempts.py)
        self._copier = copier
        self._pending: Future | None = None
        self._months: set[datetime] | None = set() if partitioned else None  # months whose partition this transaction saw
        self._parts = False  # sensor_metrics_parts exists (used on the copier thread only)

    @property
    def file_id(self) -> int:
        """The id of a one-file load's file."""
        (file_id,) = self.file_ids.values()
        return file_id

    def copy_readings(self, readings: pa.Table) -> None:
        if readings.num_rows == 0:
            return
        months = partitions.months_of(readings.column("observed_at")) if self._months is not None else []
        self.wait()
        self._ensure_partitions(months)
        self._pending = self._copier.submit(self._copy, _COPY_READINGS, readings)

    def _ensure_partitions(self, months: list[datetime]) -> None:
        """Create the month partitions this chunk needs and nobody has created yet, in this transaction.

        ATTACH PARTITION of a new, empty table takes only a SHARE UPDATE EXCLUSIVE lock on
        sensor_readings (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE, blocking every
        reader and loader until this file commits). That lock conflicts with itself, so taking it first
        makes creating a partition one worker at a time: a worker that needs a month another one is
        creating waits for that commit, then finds the partition. Loads into existing months and queries
        never wait. Checked per transaction, not cached, so a month dropped by ``retention`` is recreated."""
        if self._months is None:
            return
        new = [month for month in months if month not in self._months]
        if not new:
            return
        missing = self._missing(new)
        if missing:
            self.cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(sql.Identifier(partitions.PARENT)))
            for month in self._missing(missing):
                name = partitions.partition_name(month)
                parent, table = sql.Identifier(partitions.PARENT), sql.Identifier(name)
                self.cursor.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(table, parent))
                self.cursor.execute(
                    sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM (%s) TO (%s)").format(parent, table),
                    (month, partitions.next_month(month)),
                )
                ids = list(self.file_ids.values())
                logs.info("partition_created", partition=name, **({"file_id": ids[0]} if len(ids) == 1 else {"files": len(ids)}))
        self._months.update(new)

    def _missing(self, months: list[datetime]) -> list[datetime]:
        names = [partitions.partition_name(month) for month in months]
        self.cursor.execute("SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL", (names,))
        absent = {name for (name,) in self.cursor.fetchall()}
        return [month for month, name in zip(months, names, strict=True) if name in absent]

    def _copy(self, statement: str, table: pa.Table) -> None:
        self.cursor.copy_expert(statement, _CsvStream(table), size=1 << 20)

    def wait(self) -> None:
        """Block until the COPY in flight is done; re-raise its error here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def abandon(self) -> None:
        """On the way out with an error: let the COPY in flight end, without masking that error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()

    def write_metrics(self, summary: pa.Table) -> None:
        """Statistics (``aggregate.SCHEMA``) of groups new to the file of a one-file load, or of many files (a leading
        ``file_id`` column: ``summarize(by_file=True)``): COPY into sensor_metrics, in the background."""
        if summary.num_rows == 0:
            return
        self.wait()
        final = with_std(summary)
        if "file_id" not in final.column_names:
            final = final.add_column(0, "file_id", pa.array(np.full(final.num_rows, self.file_id, dtype=np.int64)))
        self._pending = self._copier.submit(self._copy, _COPY_METRICS, final.select(METRIC_COLUMNS))

    def merge_metrics(self, summary: pa.Table) -> None:
        """Statistics of groups that may have a row for the file of a one-file load already: merged into it,
        in the background. (A batch's files are small: their statistics are written whole, ``write_metrics``.)"""
        if summary.num_rows == 0:
            return
        self.wait()
        self._pending = self._copier.submit(self._merge, summary)

    def _merge(self, summary: pa.Table) -> None:
        if not self._parts:
            self.cursor.execute(_CREATE_PARTS)
            self._parts = True
        self._copy(_COPY_PARTS, summary)
        self.cursor.execute(_MERGE_PARTS, {"file_id": self.file_id})
        self.cursor.execute("TRUNCATE pg_temp.sensor_metrics_parts")

    def finish(self, counts: list[Counts]) -> dict[int, int]:
        """Each file's counts, and where it is about to be moved: recorded before the move, in the same
        commit. Returns each file's number of sensors of the stored rows (by file_id)."""
        self.wait()
        columns = [[getattr(c, f.name) for c in counts] for f in fields(Counts) if f.name != "overlap"]
        overlap = [[c.overlap.skipped for c in counts], [c.overlap.conflicting for c in counts], [c.overlap.replaced for c in counts]]
        self.cursor.execute(_COUNTS, [*columns, *overlap])
        return dict(self.cursor.fetchall())
