"""Shared fixtures: a real PostgreSQL (embedded, started here) and a throwaway inbox per test.

TEST_DATABASE_URL points the suite at another server instead (tests that stop and start the
server need the embedded one and say so)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from sensor_etl.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    dsn: str
    embedded: EmbeddedPostgres | None

    def stop(self, mode: str = "fast") -> None:
        assert self.embedded is not None, "needs the embedded server (unset TEST_DATABASE_URL)"
        self.embedded.stop(mode)

    def start(self) -> None:
        assert self.embedded is not None, "needs the embedded server (unset TEST_DATABASE_URL)"
        self.embedded.start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield Server(url, None)
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", database="sensor_etl_test")
    dsn = embedded.start()
    try:
        yield Server(dsn, embedded)
    finally:
        embedded.destroy()


class Db:
    """Small query helper bound to the test database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            result = cur.fetchall() if cur.description else []
        conn.close()
        return result

    def value(self, sql: str, params: tuple = ()) -> object:
        return self.rows(sql, params)[0][0]

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.rows(sql, params)


@pytest.fixture
def db(server: Server) -> Db:
    """A clean public schema for each test (the daemon creates its tables itself)."""
    if server.embedded is not None and not server.embedded.is_running():
        server.start()
    helper = Db(server.dsn)
    helper.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    return helper


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.data / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def cli(self, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
        """Run ``etl_pipeline.py`` as a user would, in this workspace."""
        return subprocess.run(
            [sys.executable, str(REPO / "etl_pipeline.py"), *args],
            cwd=self.root,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def names(self, folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def workspace(tmp_path: Path, db: Db) -> Workspace:
    for name in ("data", "processed", "quarantine"):
        (tmp_path / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=db.dsn,
        DATA_FOLDER=str(tmp_path / "data"),
        PROCESSED_FOLDER=str(tmp_path / "processed"),
        QUARANTINE_FOLDER=str(tmp_path / "quarantine"),
        FILE_SETTLE_SECONDS="0",
        MONITOR_INTERVAL="0.2",
        RETRY_ATTEMPTS="3",
        RETRY_MAX_WAIT="0.5",
        LOG_LEVEL="INFO",
        PYTHONPATH=str(REPO),
    )
    return Workspace(tmp_path, env)
