"""The daemon run in the test process (much faster than the CLI in a subprocess), logging into a buffer."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pyarrow as pa

from sensor_etl.config import settings_from
from sensor_etl.core.aggregate import Flushed
from sensor_etl.edges.db import Database
from sensor_etl.ops import logs
from sensor_etl.runners.daemon import Daemon
from sensor_etl.sources import load_sources


def start_daemon(root: Path, dsn: str, **env: str) -> tuple[Daemon, io.StringIO]:
    """A connected daemon over root/{data,processed,quarantine} (and root/sources.toml when there is
    one); its log lines go to the returned buffer."""
    sources_file = {"SOURCES_FILE": str(root / "sources.toml")} if (root / "sources.toml").exists() else {}
    settings = settings_from(
        {
            **sources_file,
            "DATABASE_URL": dsn,
            "DATA_FOLDER": str(root / "data"),
            "PROCESSED_FOLDER": str(root / "processed"),
            "QUARANTINE_FOLDER": str(root / "quarantine"),
            "FILE_SETTLE_SECONDS": "0",
            "RETRY_ATTEMPTS": "3",
            "RETRY_MAX_WAIT": "0.5",
            **env,
        }
    )
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.TextFormatter())
    logs.LOGGER.handlers[:] = [handler]
    logs.LOGGER.setLevel("INFO")
    logs.LOGGER.propagate = False
    daemon = Daemon(settings, Database(settings.connection_kwargs()), sources=load_sources(settings))
    daemon.connect(3)
    return daemon, buffer


def run_once(root: Path, dsn: str, **env: str) -> str:
    """One scan over the inbox (which must settle); returns the log."""
    daemon, log = start_daemon(root, dsn, **env)
    try:
        assert daemon.scan_once().settled, log.getvalue()
    finally:
        daemon.db.close()
    return log.getvalue()


class Received:
    """A sink for ``pipeline.run`` that keeps what it is handed: the readings of each chunk, and the
    statistics flushed before the end of the file (those held to the end are ``Outcome.statistics``)."""

    def __init__(self) -> None:
        self.readings: list[pa.Table] = []
        self.flushed: list[Flushed] = []

    def rows(self, readings: pa.Table) -> None:
        self.readings.append(readings)

    def statistics(self, flushed: Flushed) -> None:
        self.flushed.append(flushed)
