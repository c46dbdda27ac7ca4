"""Overlapping files (ON_OVERLAP): two exports of one logger that share readings, one of them with another
value; a re-save with CRLF line ends; two workers loading overlapping files at once. The daily view
never counts a reading twice, and the ledger says what was skipped, replaced or in conflict."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import psycopg2
import pytest

from sensor_etl.edges import overlaps
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.workspace import Db, Workspace

HEADER = "timestamp,sensor_id,temperature,humidity"
# The logger's export of 1 March 00:00-04:00, and the next export of 02:00-06:00: 02:00-04:00 again,
# 03:00 with another temperature (the logger corrected it), 04:00 with a note in an extra column.
FIRST = HEADER + "\n" + "\n".join(f"2024-03-01T0{h}:00:00Z,logger,{t},50" for h, t in enumerate((10, 11, 12, 13, 14))) + "\n"
SECOND = (
    HEADER
    + "\n"
    + "\n".join(f"2024-03-01T0{h}:00:00Z,logger,{t},50" for h, t in zip(range(2, 7), (12, 23, 14, 15, 16), strict=True))
    + "\n"
)
K = 273.15


def _readings(db: Db) -> list[tuple]:
    return db.rows(
        "SELECT f.file_name, r.line_no, r.observed_at, r.temperature_k FROM sensor_readings r JOIN ingested_files f USING (file_id)"
        " ORDER BY r.observed_at"
    )


def _ledger(db: Db) -> list[tuple]:
    return db.rows("SELECT file_name, rows_loaded, rows_skipped, rows_conflicting, rows_replaced FROM ingested_files ORDER BY file_id")


def _day(db: Db) -> tuple:
    """The daily temperature figures (n, min, max, mean, std) next to the same figures computed from the stored readings."""
    view = db.rows("SELECT n, min, max, mean, std FROM sensor_metrics_daily WHERE metric = 'temperature_k'")
    raw = db.rows(
        "SELECT count(*), min(temperature_k), max(temperature_k), avg(temperature_k), stddev_samp(temperature_k) FROM sensor_readings"
    )
    return view[0], raw[0]


def _at(hour: int) -> datetime:
    return datetime(2024, 3, 1, hour, tzinfo=UTC)


def _load_both(workspace: Workspace, db: Db, **env: str) -> str:
    workspace.write("first.csv", FIRST)
    run_once(workspace.root, db.dsn, **env)
    workspace.write("second.csv", SECOND)
    return run_once(workspace.root, db.dsn, **env)


def _same_day(db: Db, expected: tuple) -> None:
    view, raw = _day(db)
    assert view[:3] == raw[:3] == expected[:3]
    assert math.isclose(view[3], raw[3], rel_tol=1e-12) and math.isclose(view[3], expected[3], rel_tol=1e-12)
    assert math.isclose(view[4], raw[4], rel_tol=1e-9)


def test_skip_keeps_the_first_reading_and_counts_what_the_second_file_repeats(workspace: Workspace, db: Db) -> None:
    log = _load_both(workspace, db)  # ON_OVERLAP=skip, the default

    assert _readings(db) == [("first.csv", h + 2, _at(h), 10 + h + K) for h in range(5)] + [
        ("second.csv", h, _at(h), 10 + h + K) for h in (5, 6)
    ]
    assert _ledger(db) == [("first.csv", 5, 0, 0, 0), ("second.csv", 2, 3, 1, 0)]
    assert "file_loaded file=second.csv" in log and "rows=2 rows_rejected=0 rows_skipped=3 rows_conflicting=1 rows_replaced=0" in log
    assert db.rows("SELECT file_id, n, first_at, last_at FROM sensor_metrics WHERE metric = 'temperature_k' ORDER BY file_id") == [
        (1, 5, _at(0), _at(4)),
        (2, 2, _at(5), _at(6)),  # recomputed from the readings it kept
    ]
    _same_day(db, (7, 10 + K, 16 + K, 13 + K))
    assert_exactly_once(workspace, db, [FIRST.encode(), SECOND.encode()])


def test_replace_keeps_the_last_reading_and_corrects_the_older_file(workspace: Workspace, db: Db) -> None:
    log = _load_both(workspace, db, ON_OVERLAP="replace")

    assert _readings(db) == [("first.csv", h + 2, _at(h), 10 + h + K) for h in (0, 1)] + [
        ("second.csv", h + 2, _at(h + 2), t + K) for h, t in enumerate((12, 23, 14, 15, 16))
    ]
    assert _ledger(db) == [("first.csv", 2, 3, 0, 0), ("second.csv", 5, 0, 1, 3)]
    assert "rows=5 rows_rejected=0 rows_skipped=0 rows_conflicting=1 rows_replaced=3" in log
    first = db.rows("SELECT n, min, max, mean, first_at, last_at FROM sensor_metrics WHERE file_id = 1 AND metric = 'temperature_k'")
    assert first == [(2, 10 + K, 11 + K, 10.5 + K, _at(0), _at(1))]
    _same_day(db, (7, 10 + K, 23 + K, (10 + 11 + 12 + 23 + 14 + 15 + 16) / 7 + K))
    assert_exactly_once(workspace, db, [FIRST.encode(), SECOND.encode()])


def test_reject_quarantines_the_second_file_naming_its_first_overlapping_line(workspace: Workspace, db: Db) -> None:
    _load_both(workspace, db, ON_OVERLAP="reject")

    assert _ledger(db) == [("first.csv", 5, 0, 0, 0)]
    report = json.loads((workspace.quarantine / "second.csv.error.json").read_text())
    assert (report["rule"], report["errors"][0]["line"]) == ("overlap", 2)
    assert report["reason"] == (
        "second.csv:2: 3 reading(s) have a sensor and time already stored from another file (ON_OVERLAP=reject); the first: "
        "sensor 'logger' at 2024-03-01T02:00:00+00:00, stored from 'first.csv' (file_id 1) line 4 [overlap]"
    )
    _same_day(db, (5, 10 + K, 14 + K, 12 + K))
    assert_exactly_once(workspace, db, [FIRST.encode(), SECOND.encode()], quarantined=[SECOND.encode()])


def test_a_source_sets_its_own_on_overlap(workspace: Workspace, db: Db) -> None:
    (workspace.root / "sources.toml").write_text('[[source]]\nname = "corrections"\nmatch = "fixes/*.csv"\non_overlap = "replace"\n')
    workspace.write("first.csv", FIRST)
    run_once(workspace.root, db.dsn)
    workspace.write("fixes/second.csv", SECOND)
    run_once(workspace.root, db.dsn)
    assert _ledger(db) == [("first.csv", 2, 3, 0, 0), ("fixes/second.csv", 5, 0, 1, 3)]


def test_a_crlf_resave_adds_nothing(workspace: Workspace, db: Db) -> None:
    resaved = FIRST.replace("\n", "\r\n")
    workspace.write("export.csv", FIRST)
    run_once(workspace.root, db.dsn)
    workspace.write("export (1).csv", resaved)  # new bytes, new sha256, the same readings
    log = run_once(workspace.root, db.dsn)
    assert "rows=0 rows_rejected=0 rows_skipped=5 rows_conflicting=0" in log
    assert _ledger(db) == [("export.csv", 5, 0, 0, 0), ("export (1).csv", 0, 5, 0, 0)]
    assert db.rows("SELECT file_id, count(*) FROM sensor_metrics GROUP BY file_id") == [(1, 2)]
    _same_day(db, (5, 10 + K, 14 + K, 12 + K))
    assert_exactly_once(workspace, db, [FIRST.encode(), resaved.encode()])


def test_files_whose_days_meet_but_whose_readings_do_not_keep_every_reading(workspace: Workspace, db: Db) -> None:
    between = HEADER + "\n" + "\n".join(f"2024-03-01T0{h}:30:00Z,logger,20,50" for h in range(4)) + "\n"
    workspace.write("first.csv", FIRST)
    run_once(workspace.root, db.dsn)
    workspace.write("between.csv", between)
    run_once(workspace.root, db.dsn, ON_OVERLAP="reject")
    assert _ledger(db) == [("first.csv", 5, 0, 0, 0), ("between.csv", 4, 0, 0, 0)]
    assert db.value("SELECT files FROM sensor_metrics_daily WHERE metric = 'temperature_k'") == 2


def test_two_workers_loading_overlapping_files_at_once_keep_each_reading_once(workspace: Workspace, db: Db) -> None:
    """Both files are read and COPYed while the test holds the sensors' overlap lock: both loads are in
    flight at the same time and both wait at the check. Released, they take turns, and the second one
    sees the first one's readings (without the lock, each would find nothing committed and keep all).
    March's partition is made first: a load that creates a month's partition holds the table's partition
    lock to its commit, so the other load would wait there (test_partitions), not at the check."""
    rows = [f"2024-03-01T{h:02d}:{m:02d}:00Z,s{s},{20 + s},50" for h in range(24) for m in range(0, 60, 5) for s in range(4)]
    one, two = (end.join([HEADER, *rows]) + end for end in ("\n", "\r\n"))
    march = f"{HEADER}\n2024-03-02T00:00:00Z,other,20,50\n"
    workspace.write("march.csv", march)
    run_once(workspace.root, db.dsn)
    holder = psycopg2.connect(db.dsn)
    holder.autocommit = True
    with holder.cursor() as cur:
        for bucket in sorted(overlaps.buckets(f"s{s}" for s in range(4))):
            cur.execute("SELECT pg_advisory_lock(%s, %s)", (overlaps.LOCK_SPACE, bucket))
    daemon = workspace.start("--workers", "2", BATCH_FILES="1")  # one file per worker (a batch would take both, one after the other)
    daemon.wait_for("database_ready", count=2)  # a worker applying the schema would wait for the other's load
    workspace.write("one.csv", one)
    workspace.write("two.csv", two)
    try:
        _wait_for(lambda: db.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 2, daemon)
        # nothing committed yet: both wait at the check
        assert db.value("SELECT count(*) FROM sensor_readings WHERE sensor_id <> 'other'") == 0
    finally:
        holder.close()  # releases the locks
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0
    assert sorted(row[1:3] for row in _ledger(db)[1:]) == [(0, len(rows)), (len(rows), 0)]
    assert db.value("SELECT count(*) FROM sensor_readings WHERE sensor_id <> 'other'") == len(rows)
    assert db.value("SELECT sum(n) FROM sensor_metrics_daily WHERE metric = 'temperature_k' AND sensor_id <> 'other'") == len(rows)
    assert_exactly_once(workspace, db, [march.encode(), one.encode(), two.encode()])


def _wait_for(condition, daemon, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert daemon.alive(), daemon.log
        assert time.monotonic() < deadline, daemon.log
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["skip", "replace"])
def test_unload_after_skip_or_replace_keeps_the_daily_view_true(workspace: Workspace, db: Db, mode: str) -> None:
    _load_both(workspace, db, ON_OVERLAP=mode)
    result = workspace.cli("unload", "second.csv")
    assert result.returncode == 0, result.stderr
    readings = 2 if mode == "skip" else 5
    assert result.stdout == f"second.csv: unloaded file_id 2 (second.csv): {readings} readings and their metrics\n"
    assert [row[0] for row in _ledger(db)] == ["first.csv"]
    assert db.value("SELECT count(*) FROM sensor_metrics WHERE file_id = 2") == 0
    view, raw = _day(db)
    assert view[:3] == raw[:3]


def test_a_database_of_the_previous_version_gets_the_new_columns_and_keeps_its_rows(workspace: Workspace, db: Db) -> None:
    workspace.write("first.csv", FIRST)
    run_once(workspace.root, db.dsn)
    db.execute(  # the ledger as the previous version made it
        "ALTER TABLE ingested_files DROP COLUMN preamble, DROP COLUMN source, DROP COLUMN rows_skipped, DROP COLUMN rows_conflicting,"
        " DROP COLUMN rows_replaced;"
        " DROP INDEX sensor_metrics_sensor_day_end"
    )
    workspace.write("second.csv", SECOND)
    run_once(workspace.root, db.dsn)  # applies the schema at start-up, then loads
    assert _ledger(db) == [("first.csv", 5, 0, 0, 0), ("second.csv", 2, 3, 1, 0)]
    assert db.value("SELECT count(*) FROM pg_indexes WHERE indexname = 'sensor_metrics_sensor_day_end'") == 1
