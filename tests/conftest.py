"""Shared fixtures: a real PostgreSQL (embedded, started here) and a throwaway inbox per test.

TEST_DATABASE_URL points the suite at another server instead (tests that stop and start the
server need the embedded one and say so)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor_etl.edges.embedded import EmbeddedPostgres
from tests.helpers.s3servers import FaultProxy, MotoServer, SeaweedFS
from tests.helpers.workspace import REPO, Db, ObjectWorkspace, Server, Workspace


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


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """SeaweedFS on loopback for the whole session (started on first use, a few seconds)."""
    store = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3 + SQS server on loopback for the whole session."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workspace(tmp_path: Path, db: Db) -> Iterator[Workspace]:
    for name in ("data", "processed", "quarantine"):
        (tmp_path / name).mkdir()
    ws = Workspace(tmp_path, _daemon_env(tmp_path, db))
    yield ws
    _kill_daemons(ws)


@pytest.fixture
def s3_workspace(request: pytest.FixtureRequest, tmp_path: Path, db: Db, seaweed: SeaweedFS) -> Iterator[ObjectWorkspace]:
    """A new bucket on SeaweedFS with incoming/, processed/ and quarantine/ prefixes; the daemon
    reaches it through a fault proxy (``ws.proxy``) that passes everything until told otherwise."""
    host, port = seaweed.endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    ws = ObjectWorkspace(tmp_path, _daemon_env(tmp_path, db), endpoint=seaweed.endpoint, bucket=_bucket_name(request), proxy=proxy)
    ws.s3.create_bucket(Bucket=ws.bucket)
    yield ws
    _kill_daemons(ws)
    proxy.close()


@pytest.fixture
def moto_workspace(request: pytest.FixtureRequest, tmp_path: Path, db: Db, moto_server: MotoServer) -> Iterator[ObjectWorkspace]:
    """A new bucket on moto (for its S3 -> SQS notifications and queues)."""
    ws = ObjectWorkspace(tmp_path, _daemon_env(tmp_path, db), endpoint=moto_server.endpoint, bucket=_bucket_name(request))
    ws.s3.create_bucket(Bucket=ws.bucket)
    yield ws
    _kill_daemons(ws)


def _bucket_name(request: pytest.FixtureRequest) -> str:
    """A bucket name of its own per test: lowercase, digits and hyphens, at most 63 characters."""
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return f"t-{slug}-{os.urandom(4).hex()}"


def _kill_daemons(ws: Workspace) -> None:
    for daemon in ws.daemons:
        if daemon.alive():
            daemon.kill()


def _daemon_env(tmp_path: Path, db: Db) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "AWS_"))}
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
    return env


@pytest.fixture(params=["batches", "single"])
def batching(request: pytest.FixtureRequest, workspace: Workspace) -> str:
    """Runs a test twice: with batches of small files (the default) and with one file per transaction (BATCH_FILES=1)."""
    if request.param == "single":
        workspace.env["BATCH_FILES"] = "1"
    return request.param
