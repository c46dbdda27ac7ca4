"""Runs of the sensor-etl daemon (``etl_pipeline.py``): end-to-end loads and the pickup latency."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from bench.db import connect, drop_database, execute, recreate_database
from bench.measure import Measurement, run_measured

REPO = Path(__file__).resolve().parent.parent
DAEMON = REPO / "etl_pipeline.py"
RUN_DATABASE = "bench_ours"


@dataclass
class Folders:
    """The daemon's three folders for one run, under one parent that is emptied first."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def fresh(self) -> Folders:
        """Empty all three folders (the daemon moves files out of ``data``, so each run needs a copy)."""
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in (self.data, self.processed, self.quarantine):
            folder.mkdir(parents=True)
        return self


def daemon_available() -> bool:
    """Whether ``main`` has delivered the daemon yet."""
    return DAEMON.exists()


def daemon_environment(dsn: str, folders: Folders, workers: int, settle_seconds: float) -> dict[str, str]:
    """The daemon's settings; DATABASE_URL is always set so it never starts its own server."""
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "DATA_FOLDER": str(folders.data),
        "PROCESSED_FOLDER": str(folders.processed),
        "QUARANTINE_FOLDER": str(folders.quarantine),
        "WORKERS": str(workers),
        "FILE_SETTLE_SECONDS": str(settle_seconds),
        "MONITOR_INTERVAL": "1",
        # INFO with workers: each process logs its own peak RSS at exit, which bench/measure.py adds up
        "LOG_LEVEL": "INFO" if workers > 1 else "WARNING",
    }


def copy_inputs(files: list[Path], folder: Path) -> None:
    """Copy the cached inputs into the data folder (copy_file_range: a few seconds for 2 GB, untimed)."""
    for path in files:
        shutil.copyfile(path, folder / path.name)


def load_once(
    admin_dsn: str, files: list[Path], rows: int, folders: Folders, workers: int, *, spark_master: str | None = None
) -> tuple[Measurement, str]:
    """One timed ``etl_pipeline.py --once`` (or, with ``spark_master``, ``etl_pipeline.py spark DATA
    --master ...``) over a fresh copy of ``files`` into a fresh database.

    Returns the measurement and why the run does not count ("" when every row was loaded).
    """
    dsn = recreate_database(admin_dsn, RUN_DATABASE)
    copy_inputs(files, folders.fresh().data)
    environment = daemon_environment(dsn, folders, workers, settle_seconds=0)
    command = ["--once"]
    if spark_master is not None:
        command = ["spark", str(folders.data), "--master", spark_master, "--conf", "spark.ui.enabled=false"]
        environment.update(PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    measurement = run_measured([sys.executable, str(DAEMON), *command], env=environment, cwd=REPO)
    try:
        return measurement, _check_load(dsn, measurement, folders, len(files), rows)
    finally:
        drop_database(admin_dsn, RUN_DATABASE)


def _check_load(dsn: str, measurement: Measurement, folders: Folders, files: int, rows: int) -> str:
    """Why a run does not count: a failed exit, quarantined files, or missing files or rows."""
    if measurement.returncode != 0:
        return f"exit code {measurement.returncode}: {measurement.stderr_tail[-500:]}"
    quarantined = [path.name for path in folders.quarantine.iterdir() if not path.name.startswith(".")]
    if quarantined:
        return f"{len(quarantined)} file(s) quarantined, e.g. {quarantined[0]}"
    ingested = execute(dsn, "SELECT count(*) FROM ingested_files")[0][0]
    loaded = execute(dsn, "SELECT count(*) FROM sensor_readings")[0][0]
    if (ingested, loaded) != (files, rows):
        return f"loaded {ingested} of {files} files and {loaded} of {rows} rows"
    return ""


def _wait_for_schema(dsn: str, daemon: subprocess.Popen, timeout: float) -> None:
    """Block until the daemon has created ``ingested_files`` (its start-up is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"daemon exited with {daemon.returncode} during start-up")
        if execute(dsn, "SELECT to_regclass('ingested_files') IS NOT NULL")[0][0]:
            return
        time.sleep(0.05)
    raise RuntimeError(f"daemon did not create its schema within {timeout} s")


def _drop_file(source: Path, folder: Path) -> float:
    """Write ``source`` under a hidden temporary name, rename it in; returns the time of the rename."""
    hidden = folder / f".{source.name}.tmp"
    hidden.write_bytes(source.read_bytes())
    os.rename(hidden, folder / source.name)
    return time.perf_counter()


def _wait_for_ingested(cursor: psycopg2.extensions.cursor, count: int, timeout: float) -> float:
    """Poll until ``ingested_files`` has ``count`` rows (committed, as seen by another session)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        cursor.execute("SELECT count(*) FROM ingested_files")
        if cursor.fetchone()[0] >= count:
            return time.perf_counter()
        time.sleep(0.01)
    raise RuntimeError(f"file {count} not in ingested_files after {timeout} s")


def pickup_latency(admin_dsn: str, files: list[Path], folders: Folders, settle_seconds: float) -> list[float]:
    """Seconds from a file's rename into the folder to its committed ``ingested_files`` row.

    The daemon runs idle (no --once) with MONITOR_INTERVAL=1. Between drops the bench waits a
    different fraction of the scan interval, so the samples do not all land at the same phase.
    """
    dsn = recreate_database(admin_dsn, RUN_DATABASE)
    folders.fresh()
    environment = daemon_environment(dsn, folders, workers=1, settle_seconds=settle_seconds)
    log = folders.root.with_name("latency-daemon.log")
    with open(log, "wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, str(DAEMON)],
            env=environment,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    connection = None
    try:
        _wait_for_schema(dsn, daemon, timeout=60)
        connection = connect(dsn)
        samples = []
        with connection.cursor() as cursor:
            for number, source in enumerate(files, start=1):
                time.sleep(number * 0.37 % 1.0)
                dropped = _drop_file(source, folders.data)
                samples.append(_wait_for_ingested(cursor, number, timeout=60) - dropped)
        return samples
    except RuntimeError as error:
        raise RuntimeError(f"{error}; daemon log: {log.read_text(errors='replace')[-500:]}") from error
    finally:
        if connection is not None:
            connection.close()
        _stop(daemon)
        drop_database(admin_dsn, RUN_DATABASE)


def _stop(daemon: subprocess.Popen) -> None:
    """SIGTERM, as a service manager would; SIGKILL only if it has not exited after 30 s."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
