"""Memory bounded on any input, and no crash loop on a poison file (issue 14).

A file that kills its worker (a crash, or more memory than WORKER_MEMORY_LIMIT) is quarantined with
rule ``worker_died`` after MAX_FILE_ATTEMPTS, while the other files load; a file with a different
sensor on every row loads within the documented memory bound, measured with the kernel's figure.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime, timedelta

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
from tests.helpers.workspace import REPO

CRASH = "SENSOR_ETL_TEST_CRASH_ON"


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
    assert [attempt["ended"] for attempt in report["attempts"]] == ["died by signal SIGKILL"] * 3 or all(
        attempt["ended"].startswith("died by signal SIGKILL") for attempt in report["attempts"]
    )
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
def test_a_file_with_a_different_sensor_on_every_row_loads_within_the_memory_bound(workspace, db, tmp_path):
    """2 M rows, 6 M sensor-day groups (they took 2.9 GB before statistics were flushed): the kernel's
    peak RSS of the daemon stays under the documented bound for the default READ_BLOCK_BYTES."""
    content = generate.sensors_file(tmp_path / "inputs", 2_000_000).read_bytes()
    workspace.write("fleet.csv", content)
    env = {**workspace.env, "PYTHONPATH": str(REPO)}
    run = run_measured([sys.executable, str(REPO / "etl_pipeline.py"), "--once"], env=env, cwd=workspace.root)
    assert run.returncode == 0, run.stderr_tail
    peak_mb = run.peak_rss_bytes / (1 << 20)
    print(f"peak RSS {peak_mb:.0f} MiB for 2,000,000 rows of distinct sensors (bound {rss_bound_mb():.0f} MiB)")
    assert peak_mb <= rss_bound_mb()
    assert db.rows("SELECT rows_loaded, sensors FROM ingested_files") == [(2_000_000, 2_000_000)]
    assert db.value("SELECT count(*) FROM sensor_metrics") == 6_000_000
    assert_exactly_once(workspace, db, [content])
