"""PostgreSQL edge: connections, the schema, SQLSTATE classification, and one transaction per file.

All SQL is constant text or composed with ``psycopg2.sql``; every value is a bound parameter or
travels inside COPY data. Nothing from a file is ever formatted into a statement.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pyarrow as pa
import pyarrow.csv as pacsv

from .aggregate import with_std
from .errors import DatabaseError, DataDatabaseError, FatalDatabaseError, TransientDatabaseError
from .transform import READINGS_COLUMNS

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "script.sql"
_FATAL_CLASSES = ("28", "42", "3D", "3F", "0A", "2B")
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=65536)
_COPY_READINGS = "COPY sensor_readings ({}) FROM STDIN WITH (FORMAT csv)".format(", ".join(READINGS_COLUMNS))


def classify(exc: psycopg2.Error) -> DatabaseError:
    """Turn a driver error into retry (transient), quarantine (data) or stop (fatal)."""
    code = exc.pgcode or ""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if code[:2] in ("22", "23"):
        return DataDatabaseError(message, code)
    if code[:2] in _FATAL_CLASSES:
        return FatalDatabaseError(message, code)
    return TransientDatabaseError(message, code or None)


@contextmanager
def translated() -> Iterator[None]:
    """Raise this package's typed errors instead of psycopg2's."""
    try:
        yield
    except psycopg2.Error as exc:
        raise classify(exc) from exc


@dataclass(frozen=True)
class FileMeta:
    name: str
    sha256: str
    size: int
    modified_at: datetime
    started_at: datetime
    worker: str


@dataclass(frozen=True)
class LedgerEntry:
    file_id: int
    file_name: str
    archived: bool
    rows_loaded: int


class Database:
    """A reconnecting handle on the configured server."""

    def __init__(self, connect_kwargs: dict[str, object], application_name: str = "sensor-etl") -> None:
        self._kwargs = {
            **connect_kwargs,
            "application_name": application_name,
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._conn: psycopg2.extensions.connection | None = None

    def connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            with translated():
                self._conn = psycopg2.connect(**self._kwargs)
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

    def apply_schema(self, script: Path = SCHEMA_FILE) -> None:
        conn = self.connection()
        with translated():
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute(script.read_text(encoding="utf-8"))
            finally:
                conn.autocommit = False

    def lookup(self, sha256: str) -> LedgerEntry | None:
        conn = self.connection()
        with translated(), conn, conn.cursor() as cur:
            cur.execute("SELECT file_id, file_name, archived_at IS NOT NULL, rows_loaded FROM ingested_files WHERE sha256 = %s", (sha256,))
            row = cur.fetchone()
        return LedgerEntry(*row) if row else None

    def mark_archived(self, file_id: int, archive_path: str) -> None:
        conn = self.connection()
        with translated(), conn, conn.cursor() as cur:
            cur.execute("UPDATE ingested_files SET archive_path = %s, archived_at = now() WHERE file_id = %s", (archive_path, file_id))

    @contextmanager
    def load(self, meta: FileMeta) -> Iterator[Load]:
        """One transaction for one file: ledger row, readings, metrics; commit on clean exit."""
        conn = self.connection()
        try:
            with translated(), conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO ingested_files (file_name, sha256, size_bytes, modified_at, started_at, worker)"
                    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING file_id",
                    (meta.name, meta.sha256, meta.size, meta.modified_at, meta.started_at, meta.worker),
                )
                file_id = cur.fetchone()[0]
                yield Load(cur, file_id)
        except (TransientDatabaseError, FatalDatabaseError):
            self.discard()
            raise


class Load:
    """Writes of one file's transaction."""

    def __init__(self, cursor: psycopg2.extensions.cursor, file_id: int) -> None:
        self.cursor = cursor
        self.file_id = file_id

    def copy_readings(self, readings: pa.Table) -> None:
        if readings.num_rows == 0:
            return
        buffer = io.BytesIO()
        pacsv.write_csv(readings, buffer, _CSV_OPTIONS)
        buffer.seek(0)
        self.cursor.copy_expert(_COPY_READINGS, buffer, size=1 << 20)

    def write_metrics(self, summary: pd.DataFrame) -> None:
        if summary.empty:
            return
        final = with_std(summary)
        rows = [
            (
                self.file_id,
                r.sensor_id,
                r.day.date(),
                r.metric,
                int(r.n),
                float(r.min),
                float(r.max),
                float(r.mean),
                None if pd.isna(r.std) else float(r.std),
                float(r.m2),
                r.first_at.to_pydatetime(),
                r.last_at.to_pydatetime(),
            )
            for r in final.itertuples(index=False)
        ]
        psycopg2.extras.execute_values(
            self.cursor,
            "INSERT INTO sensor_metrics (file_id, sensor_id, day, metric, n, min, max, mean, std, m2, first_at, last_at) VALUES %s",
            rows,
            page_size=1000,
        )

    def finish(self, *, rows_loaded: int, rows_rejected: int, sensors: int, date_format: str) -> None:
        self.cursor.execute(
            "UPDATE ingested_files SET rows_loaded = %s, rows_rejected = %s, sensors = %s, date_format = %s,"
            " status = CASE WHEN %s > 0 THEN 'partial' ELSE 'loaded' END, loaded_at = now() WHERE file_id = %s",
            (rows_loaded, rows_rejected, sensors, date_format, rows_rejected, self.file_id),
        )


def is_duplicate_content(error: DatabaseError) -> bool:
    """A concurrent worker committed the same content first (unique sha256)."""
    return isinstance(error, DataDatabaseError) and error.sqlstate == "23505" and "ingested_files_sha256_key" in str(error)
