"""Watching a daemon run: metrics recorded in every process and served on METRICS_PORT with the health
checks, the live progress line of ``--once`` on a terminal, and the summary every run ends with.

The daemon's loop knows nothing of this: ``ops.metrics.Recorder`` listens to the events it logs.
The values of every process go to a private temporary folder (prometheus-client's multiprocess
mode), which the endpoint, the progress line and the summary all read, so ``WORKERS=N`` is counted
as one daemon.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

from prometheus_client import CollectorRegistry

from sensor_etl import __version__
from sensor_etl.config import ConfigError, Settings
from sensor_etl.edges import state
from sensor_etl.edges.db import Database
from sensor_etl.errors import DatabaseError, StorageError
from sensor_etl.ops import logs, metrics
from sensor_etl.ops.endpoint import Endpoint
from sensor_etl.ops.progress import ProgressLine, Snapshot, Summary, summary_table
from sensor_etl.ops.status import Backlog

FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Scrapes and probes wait at most this long for the database, so a hung server cannot hang /metrics.
PROBE_OPTIONS = {"options": "-c statement_timeout=5000"}


@contextmanager
def watched(settings: Settings, connect: Mapping[str, object], *, once: bool, show: bool) -> Iterator[None]:
    """Around a run (one daemon or a supervisor and its workers): record, serve, show progress, summarise.

    ``show``: a person watches (stderr is a terminal, no --quiet): the progress line with ``once``,
    and the summary table. The ``run_summary`` event is logged in any case. A METRICS_PORT that
    cannot be listened on raises ``ConfigError``."""
    folder = tempfile.mkdtemp(prefix="sensor-etl-metrics-")
    metrics.use_folder(folder)
    recorder = metrics.Recorder(folder, heartbeat=metrics.Heartbeat() if settings.workers == 1 else None)
    logs.listen(recorder)
    counters = metrics.registry_of(folder)
    started = time.monotonic()
    try:
        with _endpoint(settings, connect, folder):
            progress: AbstractContextManager[object] = nullcontext()
            if show and once:
                progress = ProgressLine(lambda: _snapshot(counters, settings), sys.stderr)
            with progress:
                yield
            summary = _summary(counters, settings, time.monotonic() - started)
            logs.info("run_summary", **summary.event_fields())
            if show:
                print(summary_table(summary), file=sys.stderr)
    finally:
        logs.unlisten(recorder)
        os.environ.pop(FOLDER_VARIABLE, None)
        shutil.rmtree(folder, ignore_errors=True)


def record_in_worker() -> None:
    """In a worker process: record its events into the folder its supervisor set up."""
    folder = os.environ.get(FOLDER_VARIABLE)
    if folder:
        metrics.use_folder(folder)
        logs.listen(metrics.Recorder(folder, heartbeat=metrics.Heartbeat()))


def _snapshot(counters: CollectorRegistry, settings: Settings) -> Snapshot:
    done = metrics.totals(counters)
    left = _backlog(settings)
    return Snapshot(
        files_done=done.handled, files_left=left.files, bytes_done=done.bytes_read, bytes_left=left.bytes, rows=done.rows_loaded
    )


def _summary(counters: CollectorRegistry, settings: Settings, seconds: float) -> Summary:
    done = metrics.totals(counters)
    return Summary(done.files, done.quarantined, _backlog(settings).files, done.rows_loaded, done.rows_rejected, seconds)


def _backlog(settings: Settings) -> Backlog:
    try:
        return state.backlog(settings)
    except (OSError, StorageError):  # an unreadable inbox is logged by the daemon; here it just has nothing to count
        return Backlog()


@contextmanager
def _endpoint(settings: Settings, connect: Mapping[str, object], folder: str) -> Iterator[None]:
    if settings.metrics_port is None:
        yield
        return
    probe = _Probe(settings, Database({**connect, **PROBE_OPTIONS}, "sensor-etl-probe"))
    registry = metrics.registry_of(
        folder, metrics.StateCollector(probe.measure, {"version": __version__, "python": platform.python_version()})
    )
    window = max(60.0, 3 * settings.monitor_interval, 2 * settings.retry_max_wait)
    try:
        endpoint = Endpoint(
            settings.metrics_address,
            settings.metrics_port,
            registry,
            live=lambda: metrics.stalled_loops(registry, time.time(), window),
            ready=probe.readiness,
        )
    except OSError as exc:
        raise ConfigError(
            "METRICS_PORT", str(settings.metrics_port), f"a port free on {settings.metrics_address} ({exc.strerror or exc})"
        ) from exc
    logs.info("metrics_listening", address=settings.metrics_address, port=endpoint.port, paths="/metrics /healthz /readyz")
    try:
        yield
    finally:
        endpoint.close()
        probe.db.close()


class _Probe:
    """The endpoint's looks at the folders and the database, one at a time (its requests are threads)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._lock = threading.Lock()

    def readiness(self) -> dict[str, str]:
        with self._lock:
            s = self.settings
            return state.readiness(self.db, s.data_folder, (s.processed_folder, s.quarantine_folder))

    def measure(self) -> metrics.State:
        inbox: Backlog | None
        try:
            inbox = state.backlog(self.settings)
        except (OSError, StorageError):
            inbox = None
        try:
            quarantine: state.Usage | None = state.usage(self.settings.quarantine_folder)
        except (OSError, StorageError):
            quarantine = None
        with self._lock:
            try:
                claims: int | None = state.claims_held(self.db)
            except DatabaseError:
                self.db.discard()
                claims = None
        return metrics.State(
            inbox_files=inbox.files if inbox else None,
            inbox_bytes=inbox.bytes if inbox else None,
            inbox_oldest_age_seconds=inbox.oldest_age_seconds if inbox else None,
            quarantine_files=quarantine.files if quarantine else None,
            quarantine_bytes=quarantine.bytes if quarantine else None,
            claims_held=claims,
        )
