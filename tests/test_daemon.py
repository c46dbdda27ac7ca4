"""End to end against a real PostgreSQL: the CLI loads, quarantines, archives, and recovers."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.samples import MULTI_HEADER, SEED_HEADER, multi_csv, seed_csv, station_csv
from tests.helpers.workspace import REPO, Db, Workspace


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_three_shapes_load_with_exact_values(workspace: Workspace, db: Db) -> None:
    workspace.write("seed.csv", seed_csv(3))
    workspace.write("station.csv", station_csv(2))
    workspace.write("multi.csv", multi_csv(2, 2, offset="+02:00"))
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert workspace.names(workspace.processed) == ["multi.csv", "seed.csv", "station.csv"]
    assert workspace.names(workspace.data) == [] and workspace.names(workspace.quarantine) == []

    files = dict(db.rows("SELECT file_name, rows_loaded FROM ingested_files"))
    assert files == {"seed.csv": 3, "station.csv": 2, "multi.csv": 4}

    # seed: T in °C -> K, p in mbar == hPa, no sensor column -> "default", every other column in extra
    first_seed = seed_csv(3).splitlines()[1].split(",")
    row = db.rows(
        "SELECT r.line_no, r.observed_at::text, r.sensor_id, r.temperature_k, r.pressure_hpa, r.humidity_pct, r.extra"
        " FROM sensor_readings r JOIN ingested_files f USING (file_id) WHERE f.file_name = 'seed.csv' ORDER BY line_no LIMIT 1"
    )[0]
    kelvin = float(Decimal(first_seed[2]) + Decimal("273.15"))  # the exact sum: no binary noise
    assert row[:6] == (2, f"{first_seed[0]}+00", "default", kelvin, float(first_seed[1]), float(first_seed[5]))
    assert set(row[6]) == set(SEED_HEADER.split(",")) - {"date", "p", "T", "rh"}
    assert row[6]["Tpot"] == float(first_seed[3]) and row[6]["Tlog"] == int(first_seed[20])

    # station export: day-first dates, CRLF, quoted header with units
    station = db.rows(
        "SELECT r.line_no, r.observed_at::text, r.pressure_hpa FROM sensor_readings r JOIN ingested_files f USING (file_id)"
        " WHERE f.file_name = 'station.csv' ORDER BY line_no"
    )
    assert station == [(2, "2009-01-01 00:10:00+00", 996.52), (3, "2009-01-01 00:20:00+00", 996.53)]

    # multi-sensor with a UTC offset: stored in UTC
    multi = db.rows(
        "SELECT r.sensor_id, r.observed_at::text FROM sensor_readings r JOIN ingested_files f USING (file_id)"
        " WHERE f.file_name = 'multi.csv' ORDER BY line_no"
    )
    assert multi[0] == ("sensor-01", "2023-12-31 22:00:00+00")
    assert {s for s, _ in multi} == {"sensor-01", "sensor-02"}


def test_metrics_equal_numpy_and_daily_view_equals_raw_rows(workspace: Workspace, db: Db) -> None:
    text_a = multi_csv(3, 200, seed=11)  # 15-minute steps: spans three UTC days
    # day 2 again, from another file, between a's readings (a reading of a's would be an overlap: skipped)
    text_b = multi_csv(3, 50, seed=12, start=datetime(2024, 1, 2, 6, 5))
    workspace.write("a.csv", text_a)
    workspace.write("b.csv", text_b)
    assert workspace.cli("--once").returncode == 0
    assert workspace.names(workspace.processed) == ["a.csv", "b.csv"]

    frame = pd.read_csv(workspace.processed / "a.csv")
    frame["day"] = pd.to_datetime(frame["timestamp"]).dt.strftime("%Y-%m-%d")
    for (sensor, day), group in frame.groupby(["sensor_id", "day"]):
        kelvin = np.round(group["temperature"].to_numpy() + 273.15, 6)
        n, low, high, mean, std = db.rows(
            "SELECT n, min, max, mean, std FROM sensor_metrics m JOIN ingested_files f USING (file_id)"
            " WHERE f.file_name = 'a.csv' AND sensor_id = %s AND day = %s AND metric = 'temperature_k'",
            (sensor, day),
        )[0]
        assert (n, low, high) == (len(kelvin), kelvin.min(), kelvin.max())
        assert math.isclose(mean, kelvin.mean(), rel_tol=1e-12)
        assert math.isclose(std, np.std(kelvin, ddof=1), rel_tol=1e-9)

    view = db.rows("SELECT sensor_id, day::text, metric, n, min, max, mean, std FROM sensor_metrics_daily ORDER BY 1, 2, 3")
    direct = db.rows(
        """
        SELECT sensor_id, (observed_at AT TIME ZONE 'UTC')::date::text, metric, count(v), min(v), max(v), avg(v), stddev_samp(v)
        FROM sensor_readings,
             LATERAL (VALUES ('humidity_pct', humidity_pct), ('pressure_hpa', pressure_hpa), ('temperature_k', temperature_k)) AS m(metric, v)
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """
    )
    assert len(view) == len(direct) == 3 * 3 * 3
    assert any(row for row in db.rows("SELECT files FROM sensor_metrics_daily WHERE files = 2"))
    for got, want in zip(view, direct, strict=True):
        assert got[:6] == want[:6]
        assert math.isclose(got[6], want[6], rel_tol=1e-12)
        assert math.isclose(got[7], want[7], rel_tol=1e-9)


def test_duplicate_content_is_never_loaded_twice(workspace: Workspace, db: Db) -> None:
    workspace.write("first.csv", multi_csv(2, 3))
    assert workspace.cli("--once").returncode == 0
    workspace.write("copy-of-first.csv", multi_csv(2, 3))
    workspace.write("first.csv", multi_csv(2, 3, seed=99, start=datetime(2024, 2, 1)))  # new content under an old name
    result = workspace.cli("--once")
    assert result.returncode == 0
    assert "file_duplicate file=copy-of-first.csv loaded_as=first.csv" in result.stderr
    assert workspace.names(workspace.processed) == ["copy-of-first.csv", "first.csv", "first__2.csv"]
    assert db.rows("SELECT file_name, rows_loaded FROM ingested_files ORDER BY file_id") == [("first.csv", 6), ("first.csv", 6)]
    assert db.value("SELECT count(*) FROM sensor_readings") == 12


def test_once_on_mixed_folder_every_file_settles(workspace: Workspace, db: Db) -> None:
    good = {"g1.csv": seed_csv(50), "g2.csv": multi_csv(4, 10), "g3.csv": station_csv(7)}
    bad = {
        "b-range.csv": f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,99,50,1000\n",
        "b-date.csv": f"{MULTI_HEADER}\nyesterday,s1,20,50,1000\n",
        "b-empty.csv": "",
        "b-header.csv": f"{MULTI_HEADER}\n",
        "b-ragged.csv": f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,1000,7\n2024-01-01T01:00:00Z,s1,20,50,1000\n",
    }
    for name, text in {**good, **bad}.items():
        workspace.write(name, text)
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert workspace.names(workspace.processed) == sorted(good)
    assert workspace.names(workspace.quarantine) == sorted([*bad, *(f"{n}.error.json" for n in bad)])
    assert workspace.names(workspace.data) == []
    assert db.value("SELECT count(*) FROM sensor_readings") == 50 + 40 + 7
    assert dict(db.rows("SELECT file_name, rows_loaded FROM ingested_files")) == {"g1.csv": 50, "g2.csv": 40, "g3.csv": 7}
    rules = {name: json.loads((workspace.quarantine / f"{name}.error.json").read_text())["rule"] for name in bad}
    assert rules == {
        "b-range.csv": "out_of_range",
        "b-date.csv": "timestamp_format",
        "b-empty.csv": "empty_file",
        "b-header.csv": "no_data_rows",
        "b-ragged.csv": "column_count",
    }


def test_quarantine_report_is_actionable(workspace: Workspace, db: Db) -> None:
    workspace.write(
        "hot.csv",
        f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,1000\n2024-01-01T01:00:00Z,s1,61.5,50,1000\n2024-01-01T02:00:00Z,s1,x,50,1000\n",
    )
    assert workspace.cli("--once").returncode == 0
    report = json.loads((workspace.quarantine / "hot.csv.error.json").read_text())
    assert report["reason"] == (
        "2 of 3 rows invalid (not_a_number: 1, out_of_range: 1); first: hot.csv:3, column 'temperature', value '61.5': outside -90..60 °C [out_of_range]"
    )
    assert list(report["rule_counts"].items()) == [("not_a_number", 1), ("out_of_range", 1)]
    assert report["errors"][1] == {
        "line": 4,
        "column": "temperature",
        "value": "x",
        "rule": "not_a_number",
        "message": "not a number (use a point for decimals and no thousands separator)",
    }
    assert len(report["sha256"]) == 64 and report["rows_total"] == 3 and report["rows_invalid"] == 2
    assert db.value("SELECT count(*) FROM sensor_readings") == 0 and db.value("SELECT count(*) FROM ingested_files") == 0


@pytest.mark.slow
def test_database_outage_mid_run_loses_and_doubles_nothing(workspace: Workspace, db: Db, server) -> None:
    daemon = subprocess.Popen(
        [sys.executable, str(REPO / "etl_pipeline.py")],
        cwd=workspace.root,
        env={**workspace.env, "RETRY_ATTEMPTS": "2"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        workspace.write("before.csv", multi_csv(2, 5, seed=1))
        wait_for(lambda: (workspace.processed / "before.csv").exists())
        server.stop()
        workspace.write("during.csv", multi_csv(2, 5, seed=2, start=datetime(2024, 2, 1)))
        time.sleep(2.0)  # several scans and retries against a dead server
        assert (workspace.data / "during.csv").exists()
        assert workspace.names(workspace.quarantine) == []
        server.start()
        wait_for(lambda: (workspace.processed / "during.csv").exists())
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0
    assert "db_retry" in stderr and "file_deferred file=during.csv" in stderr
    assert db.rows("SELECT file_name, rows_loaded FROM ingested_files ORDER BY file_id") == [("before.csv", 10), ("during.csv", 10)]
    assert db.value("SELECT count(*) FROM sensor_readings") == 20


@pytest.mark.slow
def test_sigterm_stops_cleanly(workspace: Workspace) -> None:
    daemon = workspace.start()
    daemon.wait_for("daemon_started")  # logged after the signal handlers are installed: no race with a slow start-up
    assert daemon.stop() == 0
    assert "stop_requested signal=SIGTERM" in daemon.log and "daemon_stopped exit_code=0" in daemon.log


@pytest.mark.slow
def test_embedded_server_when_nothing_is_configured(tmp_path: Path) -> None:
    """The quick start: no database settings at all."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.csv").write_text(multi_csv(2, 2))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(PYTHONPATH=str(REPO), FILE_SETTLE_SECONDS="0")
    result = subprocess.run(
        [sys.executable, str(REPO / "etl_pipeline.py"), "--once"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "embedded_postgres_started" in result.stderr and "embedded_postgres_stopped" in result.stderr
    assert "psql 'postgresql://postgres@/sensor_etl?host=" in result.stderr
    assert (tmp_path / "processed" / "m.csv").exists() and (tmp_path / ".pgdata" / "PG_VERSION").exists()
    from sensor_etl.edges.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(tmp_path / ".pgdata")
    try:
        Db(embedded.start()).value("SELECT 1")
        assert Db(embedded.dsn).value("SELECT sum(rows_loaded) FROM ingested_files") == 4
    finally:
        embedded.destroy()


RULE_FILES = {
    # name: (content, rule, line, column, value)
    "r-missing.csv": (f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,,50,1000\n", "missing_value", 2, "temperature", ""),
    "r-format.csv": (
        f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,1000\n2024-13-01T00:00:00Z,s1,20,50,1000\n",
        "timestamp_format",
        3,
        "timestamp",
        "2024-13-01T00:00:00Z",
    ),
    "r-range-ts.csv": (f"{MULTI_HEADER}\n1899-12-31T23:59:59Z,s1,20,50,1000\n", "timestamp_range", 2, "timestamp", "1899-12-31T23:59:59Z"),
    "r-nan.csv": (f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,inf,1000\n", "not_finite", 2, "humidity", "inf"),
    "r-text.csv": (f'{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,"1013,2"\n', "not_a_number", 2, "pressure", "1013,2"),
    "r-range.csv": (f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,-90.5,50,1000\n", "out_of_range", 2, "temperature", "-90.5"),
    "r-dup.csv": (
        f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,1000\n2024-01-01T00:00:00Z,s1,21,50,1000\n",
        "duplicate_key",
        3,
        "timestamp",
        "2024-01-01T00:00:00Z",
    ),
    "r-fields.csv": (
        f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,1000,1\n",
        "column_count",
        2,
        None,
        "2024-01-01T00:00:00Z,s1,20,50,1000,1",
    ),
    "r-nodata.csv": (f"{MULTI_HEADER}\n", "no_data_rows", 2, None, None),
    "r-empty.csv": ("", "empty_file", None, None, None),
    "r-noheader.csv": ("2024-01-01T00:00:00Z,s1,20,50,1000\n", "no_header", 1, None, "2024-01-01T00:00:00Z,s1,20,50,1000"),
    "r-nots.csv": ("sensor,temperature\ns1,20\n", "missing_column", 1, None, None),
    "r-nomeasure.csv": ("timestamp,sensor\n2024-01-01T00:00:00Z,s1\n", "missing_column", 1, None, None),
    "r-dupheader.csv": ("timestamp,T,x,x\n2024-01-01T00:00:00Z,20,1,2\n", "header", 1, "x", None),
    "r-unit.csv": ("timestamp,T (degR)\n2024-01-01T00:00:00Z,500\n", "unit", 1, "T (degR)", None),
    "r-encoding.csv": (b"timestamp,T\n2024-01-01T00:00:00Z,20\n" + b"2024-01-01T01:00:00Z,2\xe90\n", "encoding", 3, None, None),
    "r-ambiguous.csv": ("timestamp,T\n01/02/2024 10:00,20\n", "timestamp_format", 2, "timestamp", "01/02/2024 10:00"),
}


def test_one_failing_file_per_rule(workspace: Workspace, db: Db) -> None:
    for name, (content, *_rest) in RULE_FILES.items():
        workspace.write(name, content)
    result = workspace.cli("--once")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert workspace.names(workspace.data) == [] and workspace.names(workspace.processed) == []
    for name, (_content, rule, line, column, value) in RULE_FILES.items():
        report = json.loads((workspace.quarantine / f"{name}.error.json").read_text())
        assert report["rule"] == rule, (name, report)
        error = report["errors"][0]
        assert (error["line"], error["column"] or None, error["value"]) == (line, column or None, value), (name, error)
        assert report["reason"] and "\n" not in report["reason"]
        assert f"file_quarantined file={name} rule={rule}" in result.stderr
    assert db.value("SELECT count(*) FROM sensor_readings") == 0


def test_db_host_settings_and_json_logs(workspace: Workspace, db: Db, server) -> None:
    """DB_HOST/DB_NAME/DB_USER instead of DATABASE_URL (a socket folder is a valid libpq host)."""
    if server.embedded is None:
        return
    env = {k: v for k, v in workspace.env.items() if k != "DATABASE_URL"}
    env.update(
        DB_HOST=str(server.embedded.socket_dir),
        DB_NAME=server.embedded.database,
        DB_USER="postgres",
        DB_PASSWORD="hunter2",
        LOG_FORMAT="json",
    )
    workspace.write("m.csv", multi_csv(1, 3))
    result = subprocess.run(
        [sys.executable, str(REPO / "etl_pipeline.py"), "--once"], cwd=workspace.root, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    loaded = next(e for e in events if e["event"] == "file_loaded")
    assert (loaded["file"], loaded["rows"], loaded["level"]) == ("m.csv", 3, "INFO")
    assert "hunter2" not in result.stderr
    assert db.value("SELECT count(*) FROM sensor_readings") == 3


def test_help_lists_commands(workspace: Workspace) -> None:
    result = workspace.cli("--help")
    assert result.returncode == 0
    for word in ("--once", "--env-file", "--workers", "validate", "requeue"):
        assert word in result.stdout


def test_crash_between_commit_and_move_is_finished_not_reloaded(workspace: Workspace, db: Db) -> None:
    workspace.write("a.csv", multi_csv(2, 3, seed=5))
    workspace.write("b.csv", multi_csv(2, 3, seed=6, start=datetime(2024, 2, 1)))
    assert workspace.cli("--once").returncode == 0
    # a.csv: the commit happened but the move did not (file back in the inbox, archive missing)
    (workspace.processed / "a.csv").rename(workspace.data / "a.csv")
    # b.csv: the link into processed/ happened but not the unlink from the inbox
    import os

    os.link(workspace.processed / "b.csv", workspace.data / "b.csv")
    result = workspace.cli("--once")
    assert result.returncode == 0
    assert "file_recovered file=a.csv" in result.stderr and "file_recovered file=b.csv" in result.stderr
    assert workspace.names(workspace.data) == [] and workspace.names(workspace.processed) == ["a.csv", "b.csv"]
    assert db.value("SELECT count(*) FROM ingested_files") == 2 and db.value("SELECT count(*) FROM sensor_readings") == 12
    paths = {Path(p).name for (p,) in db.rows("SELECT archive_path FROM ingested_files")}
    assert paths == {"a.csv", "b.csv"}


def test_a_refusing_server_stops_the_daemon_instead_of_retrying_forever(workspace: Workspace, db: Db) -> None:
    """A wrong database name (or role, or password) is not an outage: one error line, exit 1."""
    from psycopg2.extensions import make_dsn

    url = make_dsn(db.dsn, dbname="no_such_database")
    result = workspace.cli(timeout=60, DATABASE_URL=url)  # watch mode: would wait forever on a transient error
    assert result.returncode == 1
    assert (
        'database_refused error="connection to server' in result.stderr
        and 'database \\"no_such_database\\" does not exist' in result.stderr
    )
    assert "db_retry" not in result.stderr


def test_a_schema_the_daemon_cannot_write_stops_it_mid_file_and_quarantines_nothing(workspace: Workspace, db: Db) -> None:
    """A refusal met in the middle of a file (SQLSTATE class 42: an altered table) is the database's, not the file's."""
    content = multi_csv().encode()
    assert workspace.cli("--once").returncode == 0  # the schema exists
    db.execute("ALTER TABLE sensor_readings RENAME COLUMN extra TO extra_renamed")
    workspace.write("f.csv", content)
    result = workspace.cli("--once")
    assert result.returncode == 1
    assert " database_refused " in result.stderr and "sqlstate=42703" in result.stderr
    assert workspace.names(workspace.data) == ["f.csv"] and workspace.names(workspace.quarantine) == []
    assert db.value("SELECT count(*) FROM ingested_files") == 0
