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

import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sensor_etl.core.aggregate import with_std
from sensor_etl.core.transform import READINGS_COLUMNS
from sensor_etl.edges import overlaps
from sensor_etl.edges.overlaps import Overlap
from sensor_etl.errors import AlreadyLoaded, DatabaseError, DataDatabaseError, FatalDatabaseError, TransientDatabaseError

_FATAL_CLASSES = ("28", "42", "3D", "3F", "0A", "2B")
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=65536)
METRIC_COLUMNS = ("file_id", "sensor_id", "day", "metric", "n", "min", "max", "mean", "std", "m2", "first_at", "last_at")
_COPY_METRICS = "COPY sensor_metrics ({}) FROM STDIN WITH (FORMAT csv)".format(", ".join(METRIC_COLUMNS))
_COPY_READINGS = "COPY sensor_readings ({}) FROM STDIN WITH (FORMAT csv)".format(", ".join(READINGS_COLUMNS))


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
    sensors: int
    date_format: str
    preamble: str | None  # the lines before the header (docs/schema.md)
    archive_path: str  # where the file is moved after the COMMIT
    overlap: Overlap  # its readings another file holds (ON_OVERLAP)


_LEDGER_ROWS = (
    "INSERT INTO ingested_files (file_name, sha256, size_bytes, modified_at, started_at, worker, source)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[])"
    " AS m ORDER BY 2 ON CONFLICT (sha256) DO NOTHING RETURNING sha256, file_id"
)
_COUNTS = (
    "UPDATE ingested_files AS f SET rows_loaded = c.rows_loaded, rows_rejected = c.rows_rejected, sensors = c.sensors,"
    " date_format = c.date_format, preamble = c.preamble, archive_path = c.archive_path, rows_skipped = c.skipped,"
    " rows_conflicting = c.conflicting, rows_replaced = c.replaced,"
    " status = CASE WHEN c.rows_rejected > 0 THEN 'partial' ELSE 'loaded' END, loaded_at = now()"
    " FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::integer[], %s::text[], %s::text[], %s::text[],"
    " %s::bigint[], %s::bigint[], %s::bigint[])"
    " AS c(file_id, rows_loaded, rows_rejected, sensors, date_format, preamble, archive_path, skipped, conflicting, replaced)"
    " WHERE f.file_id = c.file_id"
)


@dataclass(frozen=True)
class LedgerEntry:
    file_id: int
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
        rows = self.query("SELECT file_id, file_name, archive_path, rows_loaded FROM ingested_files WHERE sha256 = %s", (sha256,))
        return LedgerEntry(*rows[0]) if rows else None

    def find_loaded(self, key: str, archive_path: str) -> list[LedgerEntry]:
        """The ledger rows a person means by ``key``: a file_id (digits), a file name (its path relative to
        the inbox), or the path of its archived copy (``archive_path``, resolved by the caller)."""
        rows = self.query(
            "SELECT file_id, file_name, archive_path, rows_loaded FROM ingested_files"
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

    def set_archive_path(self, file_id: int, archive_path: str) -> None:
        """Correct the recorded destination when the planned name was taken (bookkeeping)."""
        self.query("UPDATE ingested_files SET archive_path = %s WHERE file_id = %s", (archive_path, file_id), durable=False)

    @contextmanager
    def load(self, meta: FileMeta) -> Iterator[Load]:
        """One transaction for one file: ledger row, readings, metrics; commit on clean exit.

        The ledger row comes first with ON CONFLICT DO NOTHING: a content loaded before (or being
        committed right now by another worker, whose transaction this waits for) raises AlreadyLoaded
        before a byte of the file is parsed."""
        with self.load_many([meta]) as load:
            if not load.file_ids:
                raise AlreadyLoaded(meta.sha256)
            yield load

    @contextmanager
    def load_many(self, metas: list[FileMeta]) -> Iterator[Load]:
        """One transaction for the files of a batch: their ledger rows in one statement (in sha256
        order, so two workers never deadlock on them), then whatever the caller writes; commit on
        clean exit. ``Load.file_ids`` holds the new contents: one loaded before (or being committed
        by another worker, whose transaction this waits for) gets no ledger row and no id."""
        conn = self.connection()
        try:
            with translated(), conn, conn.cursor() as cur:
                columns = zip(*((m.name, m.sha256, m.size, m.modified_at, m.started_at, m.worker, m.source) for m in metas), strict=True)
                cur.execute(_LEDGER_ROWS, [list(column) for column in columns])
                load = Load(cur, dict(cur.fetchall()), self._copier)
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


class Load:
    """Writes of one load transaction (of one file, or of the files of a batch).

    COPY runs on the database's copier thread so the server ingests chunk k while Python prepares
    chunk k+1 (psycopg2 and pyarrow release the GIL). At most one COPY is in flight, which bounds
    memory; any other statement first waits for it, so the connection is never used by two threads
    at once."""

    def __init__(self, cursor: psycopg2.extensions.cursor, file_ids: dict[str, int], copier: ThreadPoolExecutor) -> None:
        self.cursor = cursor
        self.file_ids = file_ids  # sha256 -> file_id of each new content
        self._copier = copier
        self._pending: Future | None = None

    @property
    def file_id(self) -> int:
        """The id of a one-file load's file."""
        (file_id,) = self.file_ids.values()
        return file_id

    def copy_readings(self, readings: pa.Table) -> None:
        if readings.num_rows == 0:
            return
        self.wait()
        self._pending = self._copier.submit(self._copy, _COPY_READINGS, readings)

    def _copy(self, statement: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        pacsv.write_csv(_csv_ready(table), buffer, _CSV_OPTIONS)
        buffer.seek(0)
        self.cursor.copy_expert(statement, buffer, size=1 << 20)

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
        """The statistics of a one-file load's file, or of many (a leading ``file_id`` column: ``summarize(by_file=True)``)."""
        self.wait()
        if summary.num_rows:
            final = with_std(summary)
            if "file_id" not in final.column_names:
                final = final.add_column(0, "file_id", pa.array([self.file_id] * final.num_rows, pa.int64()))
            self._copy(_COPY_METRICS, final.select(METRIC_COLUMNS))

    def finish(self, counts: list[Counts]) -> None:
        """Each file's counts, and where it is about to be moved: recorded before the move, in the same commit."""
        self.wait()
        columns = [[getattr(c, f.name) for c in counts] for f in fields(Counts) if f.name != "overlap"]
        overlap = [[c.overlap.skipped for c in counts], [c.overlap.conflicting for c in counts], [c.overlap.replaced for c in counts]]
        self.cursor.execute(_COUNTS, [*columns, *overlap])
