"""Memory bounded on any input, and no crash loop on a poison file (issue 14; docs/operations.md "Memory").

Memory is bounded by the settings, not by the file: a 200 MB line, a 100 MB file with CR-only line ends
and a file of 2 M rows with a different sensor on every row, each loaded by ``etl_pipeline.py --once``
in a child process whose peak is the kernel's own figure (``ru_maxrss`` of the finished child). The
files are written piece by piece: the test never holds them. A file that kills its worker (a crash, or
more memory than WORKER_MEMORY_LIMIT) is quarantined with rule ``worker_died`` after MAX_FILE_ATTEMPTS,
while the other files load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bench import generate
from bench.measure import run_measured
from bench.run import rss_bound_mb
from sensor_etl.edges import claims, memory
from sensor_etl.edges.db import Load
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.samples import MULTI_HEADER, multi_csv
from tests.helpers.workspace import REPO, Db, Workspace

MIB = 1 << 20
NOTE_HEADER = b"timestamp,sensor_id,temperature,humidity,pressure,note"
# Small settings, so that the files are huge next to them: 1 MiB blocks, rows of at most 4 MiB; the
# documented bound (bench.run.rss_bound_mb, docs/operations.md "Memory") for them.
SETTINGS = {"READ_BLOCK_BYTES": str(MIB), "MAX_LINE_BYTES": str(4 * MIB)}
BOUND = rss_bound_mb(MIB, 4 * MIB) * MIB
CRASH = "SENSOR_ETL_TEST_CRASH_ON"


def rows(first: int, count: int, end: bytes = b"\n") -> bytes:
    """``count`` multi-sensor rows, one second apart from 2024-03-01, each sensor a day."""
    return b"".join(
        b"2024-03-%02dT%02d:%02d:%02dZ,s%d,20.5,50,1000,n%d%s" % (1 + i // 86400, i // 3600 % 24, i // 60 % 60, i % 60, i // 86400, i, end)
        for i in range(first, first + count)
    )


def write(path: Path, parts: Iterator[bytes]) -> str:
    """Write ``parts`` one after the other; the sha256 of what was written."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for part in parts:
            digest.update(part)
            handle.write(part)
    return digest.hexdigest()


def peak_of_once(workspace: Workspace, **env: str) -> int:
    """Run ``etl_pipeline.py --once``; its peak RSS in bytes, the kernel's figure (``bench.measure``)."""
    env = {**workspace.env, "LOG_LEVEL": "WARNING", **env}
    done = run_measured([sys.executable, str(REPO / "etl_pipeline.py"), "--once"], env=env, cwd=workspace.root)
    assert done.returncode == 0, done.stderr_tail
    return done.peak_rss_bytes


def loaded_once(db: Db, workspace: Workspace, name: str, sha256: str, rows_loaded: int, rows_rejected: int) -> None:
    """The file is in processed/, its ledger row and readings agree, nothing is left behind."""
    assert workspace.names(workspace.data) == [] and workspace.names(workspace.processed) == [name]
    assert db.rows("SELECT sha256, rows_loaded, rows_rejected, (SELECT count(*) FROM sensor_readings) FROM ingested_files") == [
        (sha256, rows_loaded, rows_rejected, rows_loaded)
    ]
    assert db.rows("SELECT name FROM file_claims") == []


@pytest.mark.slow
def test_a_200_mb_line_is_reported_with_its_length_and_the_other_rows_load(workspace: Workspace, db: Db) -> None:
    def parts() -> Iterator[bytes]:
        yield NOTE_HEADER + b"\n" + rows(0, 1000)
        for _ in range(200):
            yield b"x" * MIB
        yield b"\n" + rows(1000, 1000)

    sha256 = write(workspace.data / "long.csv", parts())
    peak = peak_of_once(workspace, MAX_INVALID_ROWS="1", **SETTINGS)
    print(f"200 MB line: peak RSS {peak / MIB:.0f} MiB, bound {BOUND / MIB:.0f} MiB")
    assert peak <= BOUND

    loaded_once(db, workspace, "long.csv", sha256, 2000, 1)
    report = json.loads((workspace.quarantine / "long.csv.rejects.json").read_text())
    (problem,) = report["errors"]
    assert (problem["line"], problem["rule"], problem["value"]) == (1002, "line_too_long", "x" * 200)
    assert problem["message"] == f"a line of {200 * MIB + 1:,} bytes: longer than MAX_LINE_BYTES ({4 * MIB:,}); skipped unread"
    assert db.value("SELECT max(line_no) FROM sensor_readings") == 2002
    assert (workspace.quarantine / "long.csv.rejects.csv").stat().st_size == len(NOTE_HEADER) + 1 + 200 * MIB + 1


@pytest.mark.slow
def test_a_100_mb_file_with_cr_line_ends_is_read_in_blocks(workspace: Workspace, db: Db) -> None:
    count = 100 * MIB // len(rows(10**6, 1, b"\r"))  # rows of the middle of the file: about 100 MiB in all

    def parts() -> Iterator[bytes]:
        yield NOTE_HEADER + b"\r"
        for first in range(0, count, 50_000):
            yield rows(first, min(50_000, count - first), b"\r")

    sha256 = write(workspace.data / "classic_mac.csv", parts())
    peak = peak_of_once(workspace, **SETTINGS)
    size = (workspace.processed / "classic_mac.csv").stat().st_size
    print(f"{size / MIB:.0f} MiB with CR line ends: peak RSS {peak / MIB:.0f} MiB, bound {BOUND / MIB:.0f} MiB")
    assert peak <= BOUND
    loaded_once(db, workspace, "classic_mac.csv", sha256, count, 0)
    assert db.rows("SELECT min(line_no), max(line_no) FROM sensor_readings") == [(2, count + 1)]


def sample(index: int) -> bytes:
    return multi_csv(3, 4, start=datetime(2024, 1, 1) + timedelta(days=index), seed=index).encode()


def write_inbox(workspace, poison: bytes, good: int) -> list[bytes]:
    """poison.csv first (the oldest: a single worker meets it before anything else), then the good files."""
    path = workspace.write("poison.csv", poison)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    contents = [sample(i) for i in range(good)]
    for i, content in enumerate(contents):
        workspace.write(f"good{i}.csv", content)
    return contents


def quarantine_report(workspace) -> dict:
    return json.loads((workspace.quarantine / "poison.csv.error.json").read_text())


def many_groups_csv(sensors: int, readings: int, seed: int = 14) -> str:
    """Every 6 hours a reading of every sensor, in time order: each sensor-day group recurs all through the file."""
    rng = np.random.default_rng(seed)
    lines = [MULTI_HEADER]
    for step in range(readings):
        at = datetime(2024, 3, 1) + timedelta(hours=6 * step)
        for sensor in range(sensors):
            t, h, p = rng.normal(15, 8), rng.uniform(20, 90), rng.normal(1010, 6)
            lines.append(f"{at:%Y-%m-%dT%H:%M:%S}Z,sensor-{sensor:05d},{t:.3f},{h:.2f},{p:.2f}")
    return "\n".join(lines) + "\n"


def test_statistics_flushed_mid_file_are_merged_exactly_in_sql(tmp_path, db, monkeypatch):
    """3,000 sensors x 2 days: 18,000 groups, each in 4 read blocks of 64 KiB, far more than 64 KiB of statistics."""
    for folder in ("data", "processed", "quarantine"):
        (tmp_path / folder).mkdir()
    (tmp_path / "data" / "fleet.csv").write_text(many_groups_csv(sensors=3000, readings=8))
    calls = {"write_metrics": 0, "merge_metrics": 0}
    for name in calls:
        original = getattr(Load, name)

        def counted(self, summary, _name=name, _original=original):
            calls[_name] += summary.num_rows > 0
            return _original(self, summary)

        monkeypatch.setattr(Load, name, counted)
    run_once(tmp_path, db.dsn, READ_BLOCK_BYTES=str(1 << 16))
    assert calls["write_metrics"] > 5 and calls["merge_metrics"] > 5  # flushed as the file went, and merged into rows
    assert db.rows("SELECT rows_loaded, sensors FROM ingested_files") == [(24_000, 3000)]
    stored = db.rows("SELECT sensor_id, day::text, metric, n, min, max, mean, std, m2 FROM sensor_metrics ORDER BY 1, 2, 3")
    direct = db.rows(
        """
        SELECT sensor_id, (observed_at AT TIME ZONE 'UTC')::date::text, metric, count(v), min(v), max(v), avg(v), stddev_samp(v),
               var_samp(v) * (count(v) - 1)
        FROM sensor_readings,
             LATERAL (VALUES ('humidity_pct', humidity_pct), ('pressure_hpa', pressure_hpa), ('temperature_k', temperature_k)) AS m(metric, v)
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """
    )
    assert len(stored) == len(direct) == 3000 * 2 * 3
    for got, want in zip(stored, direct, strict=True):
        assert got[:6] == want[:6]
        assert math.isclose(got[6], want[6], rel_tol=1e-12)
        assert math.isclose(got[7], want[7], rel_tol=1e-9) and math.isclose(got[8], want[8], rel_tol=1e-9)


@pytest.mark.slow
def test_a_file_that_crashes_the_only_worker_is_quarantined_after_max_file_attempts(workspace, db):
    """WORKERS=1: the daemon process itself dies on the file, and is started again (as systemd would)."""
    poison = sample(99)
    good = write_inbox(workspace, poison, good=3)
    codes = []
    while len(codes) < 6:
        result = workspace.cli("--once", LEASE_SECONDS="5", **{CRASH: "poison.csv"})
        codes.append(result.returncode)
        if result.returncode == 0:
            break
    assert codes == [-9, -9, -9, 0], result.stderr
    assert " file_quarantined file=poison.csv rule=worker_died" in result.stderr
    report = quarantine_report(workspace)
    assert report["rule"] == "worker_died"
    assert len(report["attempts"]) == 3
    assert {attempt["ended"] for attempt in report["attempts"]} == {
        "ended without releasing the file (killed or crashed; no supervisor saw how)"
    }
    assert db.rows("SELECT * FROM file_attempts") == []  # forgotten: a requeued copy starts afresh
    assert_exactly_once(workspace, db, [poison, *good], quarantined=[poison])


@pytest.mark.slow
def test_a_file_that_crashes_its_workers_is_quarantined_while_the_other_worker_loads(workspace, db):
    """WORKERS=2: the supervisor records how each worker died and hands its file over at once."""
    poison = sample(99)
    good = write_inbox(workspace, poison, good=6)
    daemon = workspace.start("--workers", "2", **{CRASH: "poison.csv"})
    daemon.wait_for("file_quarantined")
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0, daemon.log
    assert len(daemon.events("worker_died")) == 3
    assert len(daemon.events("file_loaded")) == len(good)
    report = quarantine_report(workspace)
    assert all(attempt["ended"].startswith("died by signal SIGKILL") for attempt in report["attempts"])
    assert_exactly_once(workspace, db, [poison, *good], quarantined=[poison])


def start_up_address_space() -> int:
    """A worker's address space once it has imported everything, as ``memory.worker_limit`` sees it."""
    probe = "import sensor_etl.cli; from sensor_etl.edges import memory; print(memory.address_space())"
    return int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO).stdout)


def run_like_systemd(workspace, *args: str, **env: str) -> list[int]:
    """``--once`` until it exits 0, started again each time it dies (as systemd would); the exit codes."""
    codes: list[int] = []
    while len(codes) < 8:
        result = workspace.cli("--once", *args, **env)
        codes.append(result.returncode)
        if result.returncode == 0:
            return codes
    raise AssertionError(f"never settled: {codes}; last log:\n{result.stderr[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_needs_more_than_worker_memory_limit_is_quarantined_and_the_others_load(workspace, db, tmp_path, workers):
    """The smallest limit the daemon accepts (its start-up address space + 512 MiB) and 64 MiB read
    blocks: the small files fit, the 80 MB file's first block does not. A MemoryError fails the attempt
    (or, in C code, kills the worker: then the supervisor or the next start counts it)."""
    limit = start_up_address_space() + (576 << 20)
    poison = generate.sensors_file(tmp_path / "inputs", 1_500_000).read_bytes()
    good = write_inbox(workspace, poison, good=4)
    env = {"WORKER_MEMORY_LIMIT": str(limit), "READ_BLOCK_BYTES": str(64 << 20), "LEASE_SECONDS": "5"}
    codes = run_like_systemd(workspace, "--workers", str(workers), **env)
    report = quarantine_report(workspace)
    assert report["rule"] == "worker_died", codes
    assert len(report["attempts"]) == 3
    within = f"WORKER_MEMORY_LIMIT={memory.size_text(limit)}"
    for ended in (attempt["ended"] for attempt in report["attempts"]):  # caught in Python, or a crash in C code (abort, glibc)
        assert f"MemoryError: the file needs more than {within}" in ended or ended == claims.UNSEEN or ended.endswith(f" under {within}")
    assert_exactly_once(workspace, db, [poison, *good], quarantined=[poison])


@pytest.mark.slow
def test_a_file_with_a_different_sensor_on_every_row_loads_within_the_memory_bound(workspace: Workspace, db: Db, tmp_path: Path) -> None:
    """2 M rows, 6 M sensor-day groups (they took 2.9 GB before statistics were flushed as the file goes)."""
    with open(generate.sensors_file(tmp_path / "inputs", 2_000_000), "rb") as source:
        sha256 = write(workspace.data / "fleet.csv", iter(lambda: source.read(8 * MIB), b""))
    peak = peak_of_once(workspace, **SETTINGS)
    print(f"2 M rows of distinct sensors: peak RSS {peak / MIB:.0f} MiB, bound {BOUND / MIB:.0f} MiB")
    assert peak <= BOUND
    loaded_once(db, workspace, "fleet.csv", sha256, 2_000_000, 0)
    assert db.rows("SELECT sensors, (SELECT count(*) FROM sensor_metrics) FROM ingested_files") == [(2_000_000, 6_000_000)]
