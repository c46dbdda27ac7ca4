"""Shared fixtures: a real PostgreSQL (embedded, started here) and a throwaway inbox per test.

TEST_DATABASE_URL points the suite at another server instead (tests that stop and start the
server need the embedded one and say so)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor_etl.edges.embedded import EmbeddedPostgres
from tests.helpers.workspace import REPO, Db, Server, Workspace


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield Server(url, None)
        return
    root = tmp_path_factory.mktemp("pg")
    # A socket folder of its own (root's, closed to others): a daemon running as root without the file-mode
    # override capabilities (test_faults' unreadable file) can reach it, where pgdata is the server user's alone.
    embedded = EmbeddedPostgres(root / "data", database="sensor_etl_test", socket_dir=root / "socket")
    dsn = embedded.start()
    try:
        yield Server(dsn, embedded)
    finally:
        embedded.destroy()


@pytest.fixture
def db(server: Server) -> Db:
    """A clean public schema for each test (the daemon creates its tables itself)."""
    if server.embedded is not None and not server.embedded.is_running():
        server.start()
    helper = Db(server.dsn)
    helper.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    return helper


@pytest.fixture
def workspace(tmp_path: Path, db: Db) -> Iterator[Workspace]:
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
    ws = Workspace(tmp_path, env)
    yield ws
    for daemon in ws.daemons:
        if daemon.alive():
            daemon.kill()


@pytest.fixture(params=["batches", "single"])
def batching(request: pytest.FixtureRequest, workspace: Workspace) -> str:
    """Runs a test twice: with batches of small files (the default) and with one file per transaction (BATCH_FILES=1)."""
    if request.param == "single":
        workspace.env["BATCH_FILES"] = "1"
    return request.param
