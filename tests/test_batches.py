"""Batches of small files: several files per transaction, each file still atomic and decided on its own.

Each test ends with ``assert_exactly_once``. The fault tests of tests/test_faults.py run with
batches too (and without: BATCH_FILES=1); these are the faults only a batch can meet.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta

import pytest

from sensor_etl.runners import lean
from sensor_etl.runners.load import BatchLoad
from tests.helpers.endstate import assert_exactly_once, data_rows
from tests.helpers.inprocess import run_once
from tests.helpers.samples import MULTI_HEADER, multi_csv, seed_csv, station_csv

PAUSE = "SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT"


def sample(index: int, sensors: int = 3, per_sensor: int = 4) -> bytes:
    return multi_csv(sensors, per_sensor, start=datetime(2024, 1, 1) + timedelta(days=index), seed=index).encode()


def rejected_by_the_database() -> bytes:
    """Valid row by row, but one (sensor, timestamp) twice in two read blocks: only the unique index sees it."""
    rows = multi_csv(10, 400, start=datetime(2025, 1, 1), seed=99).encode()  # ~190 KB: three blocks of 64 KiB; no reading of the others
    first = rows.split(b"\n")[1]
    return rows + first + b"\n"


def test_one_invalid_file_and_one_the_database_rejects_quarantine_only_themselves(workspace, db):
    good = [sample(i) for i in range(4)]
    invalid = f"{MULTI_HEADER}\n2024-03-01T00:00:00Z,s1,99,50,1000\n".encode()
    refused = rejected_by_the_database()
    for i, content in enumerate(good):
        workspace.write(f"g{i}.csv", content)
    workspace.write("invalid.csv", invalid)
    workspace.write("refused.csv", refused)
    log = run_once(workspace.root, db.dsn, READ_BLOCK_BYTES=str(1 << 16))
    assert "batch_split" in log, log  # the batch rolled back and went on one file at a time
    assert json.loads((workspace.quarantine / "invalid.csv.error.json").read_text())["rule"] == "out_of_range"
    report = json.loads((workspace.quarantine / "refused.csv.error.json").read_text())
    assert report["rule"] == "duplicate_key" and "the database rejected the data" in report["reason"]
    assert log.count(" file_loaded ") == 4
    assert_exactly_once(workspace, db, [*good, invalid, refused], quarantined=[invalid, refused])


def test_the_same_content_twice_in_one_batch_is_loaded_once(workspace, db):
    twin, other = sample(1), sample(2)
    workspace.write("a.csv", twin)
    workspace.write("b.csv", twin)
    workspace.write("c.csv", other)
    log = run_once(workspace.root, db.dsn)
    assert log.count(" file_loaded ") == 2 and " batch=2 " in log
    assert log.count(" file_duplicate ") == 1
    assert workspace.names(workspace.processed) == ["a.csv", "b.csv", "c.csv"]
    assert_exactly_once(workspace, db, [twin, twin, other])


def test_a_batch_is_bounded_by_files_and_bytes_and_a_large_file_goes_alone(workspace, db):
    small = [sample(i) for i in range(7)]
    large = multi_csv(5, 200, seed=50).encode()
    for i, content in enumerate(small):
        workspace.write(f"s{i}.csv", content)
    workspace.write("zz-large.csv", large)
    log = run_once(workspace.root, db.dsn, BATCH_FILES="3", BATCH_BYTES=str(len(large) - 1), BATCH_SECONDS="60")
    loaded = [line for line in log.splitlines() if " file_loaded " in line]
    assert [line.partition(" batch=")[2][:1] for line in loaded if " batch=" in line] == ["3"] * 6, log
    alone = sorted(line.partition(" file=")[2].split()[0] for line in loaded if " batch=" not in line)
    assert alone == ["s6.csv", "zz-large.csv"]  # the last small one has no partner: the large one is streamed alone
    assert_exactly_once(workspace, db, [*small, large])


@pytest.mark.slow
def test_sigkill_between_a_batch_commit_and_its_moves_is_finished_not_reloaded(workspace, db):
    contents = [sample(i) for i in range(6)]
    for i, content in enumerate(contents):
        workspace.write(f"f{i}.csv", content)
    daemon = workspace.start(**{PAUSE: "60"})
    daemon.wait_for("file_loaded", count=6)  # committed, all in one batch: now in the pause before the moves
    daemon.kill()
    assert workspace.names(workspace.data) == [f"f{i}.csv" for i in range(6)]
    assert db.value("SELECT count(*) FROM ingested_files") == 6
    result = workspace.cli("--once", LEASE_SECONDS="5")  # the killed daemon's claims expire first
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" file_recovered ") == 6 and " file_loaded " not in result.stderr
    assert_exactly_once(workspace, db, contents)


@pytest.mark.slow
def test_a_file_appended_to_during_its_batch_is_rolled_back_and_loaded_whole(workspace, db):
    """The batch's own files keep it busy long enough for the writer to append before its commit."""
    full = multi_csv(sensors=2, per_sensor=300, seed=7).encode()
    cut = full.index(b"\n", len(full) // 2) + 1
    workspace.write("growing.csv", full[:cut])
    time.sleep(0.05)  # older than the others: first in the batch
    others = [sample(i, per_sensor=40) for i in range(300)]
    for i, content in enumerate(others):
        workspace.write(f"other{i:03d}.csv", content)
    daemon = workspace.start(FILE_SETTLE_SECONDS="0.5", BATCH_FILES="400", BATCH_BYTES=str(64 << 20), BATCH_SECONDS="60")
    daemon.wait_for("file_seen")
    with open(workspace.data / "growing.csv", "ab") as handle:
        handle.write(full[cut:])
    workspace.wait_until_empty(daemon, timeout=120)
    assert daemon.stop() == 0
    assert daemon.events("batch_split") and daemon.events("file_changing"), daemon.log
    assert_exactly_once(workspace, db, [full, *others])


@pytest.mark.slow
def test_database_crash_in_the_middle_of_a_batch_leaves_nothing_and_loads_once(workspace, db, server):
    contents = [sample(i, sensors=10, per_sensor=96) for i in range(150)]  # 960 rows each, a day apart (no shared reading): one batch
    for i, content in enumerate(contents):
        workspace.write(f"f{i:03d}.csv", content)
    daemon = workspace.start(BATCH_BYTES=str(64 << 20), BATCH_SECONDS="60")
    deadline = time.monotonic() + 60
    while not db.rows("SELECT 1 FROM pg_stat_progress_copy WHERE relid = to_regclass('sensor_readings')"):
        assert time.monotonic() < deadline and daemon.alive(), daemon.log
        time.sleep(0.01)
    server.stop("immediate")
    try:
        time.sleep(1)
    finally:
        server.start()
    workspace.wait_until_empty(daemon, timeout=120)
    assert daemon.stop() == 0
    assert daemon.events("db_retry") or daemon.events("file_deferred")
    assert len(daemon.events("file_loaded")) == 150
    assert_exactly_once(workspace, db, contents)


def test_a_batch_of_mixed_shapes_stores_what_single_loads_store(workspace, db):
    """Readings and metrics of each file equal, whether it shares its transaction with other shapes or has its own."""
    contents = {
        "seed.csv": seed_csv(30),
        "station.csv": station_csv(20),
        "multi.csv": multi_csv(4, 10),
        "t-only.csv": "timestamp,sensor,T\n2024-01-01T00:00:00Z,a,20.5\n2024-01-01T00:10:00Z,a,21\n2024-01-02T00:00:00Z,b,19\n",
    }
    stored = {}
    for mode in ("200", "1"):
        db.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        for folder in (workspace.data, workspace.processed):
            for path in folder.iterdir():
                path.unlink()
        for name, text in contents.items():
            workspace.write(name, text)
        log = run_once(workspace.root, db.dsn, BATCH_FILES=mode)
        assert (" batch=4 " in log) == (mode == "200"), log
        stored[mode] = (
            db.rows(
                "SELECT f.file_name, r.line_no, r.observed_at, r.sensor_id, r.temperature_k, r.humidity_pct, r.pressure_hpa, r.extra::text"
                " FROM sensor_readings r JOIN ingested_files f USING (file_id) ORDER BY 1, 2"
            ),
            db.rows(
                "SELECT f.file_name, m.sensor_id, m.day, m.metric, m.n, m.min, m.max, m.mean, m.std, m.m2, m.first_at, m.last_at"
                " FROM sensor_metrics m JOIN ingested_files f USING (file_id) ORDER BY 1, 2, 3, 4"
            ),
            db.rows("SELECT file_name, rows_loaded, rows_rejected, sensors, date_format, status FROM ingested_files ORDER BY 1"),
        )
    assert stored["200"] == stored["1"]
    assert_exactly_once(workspace, db, [text.encode() for text in contents.values()])


@pytest.mark.parametrize("where", ["check", "load"])
def test_a_bug_in_the_batch_path_loads_the_files_one_at_a_time(workspace, db, monkeypatch, where):
    """A bug must not stop the daemon or quarantine innocent files: the single-file path takes over."""

    def bug(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in the batch path")

    monkeypatch.setattr(*((lean, "check") if where == "check" else (BatchLoad, "run")), bug)
    contents = [sample(i) for i in range(3)]
    for i, content in enumerate(contents):
        workspace.write(f"f{i}.csv", content)
    log = run_once(workspace.root, db.dsn)
    assert " internal_error " in log and log.count(" file_loaded ") == 3 and " batch=" not in log
    assert_exactly_once(workspace, db, contents)


@pytest.mark.parametrize("mode", ["skip", "replace"])
def test_a_file_sharing_readings_with_an_earlier_file_of_its_batch_is_loaded_after_it(workspace, db, mode):
    """ON_OVERLAP sees the two in scan order, as without batches: the first is whole, the second overlaps it."""
    first, other = sample(1), sample(7)
    second = first.replace(b"\n", b"\r\n")  # the same readings, other bytes: a re-save
    workspace.write("a-first.csv", first)
    workspace.write("b-other.csv", other)
    time.sleep(0.01)  # later: after the others in scan order
    workspace.write("c-second.csv", second)
    log = run_once(workspace.root, db.dsn, ON_OVERLAP=mode)
    loaded = {line.partition(" file=")[2].split()[0]: line for line in log.splitlines() if " file_loaded " in line}
    assert " batch=2 " in loaded["a-first.csv"] and " batch=" not in loaded["c-second.csv"], log
    rows = data_rows(first)
    expected = {"skip": (" rows=0 ", f" rows_skipped={rows} "), "replace": (f" rows={rows} ", f" rows_replaced={rows} ")}[mode]
    assert all(part in loaded["c-second.csv"] for part in expected), loaded["c-second.csv"]
    assert db.value("SELECT count(*) FROM sensor_readings") == 2 * rows
    assert db.value("SELECT count(*) FROM (SELECT sensor_id, observed_at FROM sensor_readings GROUP BY 1, 2 HAVING count(*) > 1) d") == 0
    assert_exactly_once(workspace, db, [first, other, second])


CRASH = "SENSOR_ETL_TEST_CRASH_ON"


@pytest.mark.slow
def test_a_poison_file_in_a_batch_is_quarantined_alone_and_its_batch_mates_load(workspace, db):
    """WORKERS=1, restarted like systemd: the first death is the whole batch's (each file gets an
    attempt, since which one killed the worker cannot be told), then each file goes alone: the poison
    file dies alone until MAX_FILE_ATTEMPTS, the others load and their attempts are forgotten."""
    poison = sample(99)
    path = workspace.write("poison.csv", poison)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # the oldest: first in the batch, first alone
    good = [sample(i) for i in range(4)]
    for i, content in enumerate(good):
        workspace.write(f"good{i}.csv", content)
    codes, logs = [], []
    while len(codes) < 8:
        result = workspace.cli("--once", LEASE_SECONDS="5", **{CRASH: "poison.csv"})
        codes.append(result.returncode)
        logs.append(result.stderr)
        if result.returncode == 0:
            break
    assert codes == [-9, -9, -9, 0], logs
    assert " batch=" not in "".join(logs)  # the first batch died; after it, every file went alone
    assert logs[1].count(" attempt_failed ") == 5  # the batch's death: one attempt on each of its files
    assert " file_quarantined file=poison.csv rule=worker_died" in logs[-1]
    assert "".join(logs).count(" file_loaded ") == 4
    report = json.loads((workspace.quarantine / "poison.csv.error.json").read_text())
    assert report["rule"] == "worker_died" and len(report["attempts"]) == 3
    assert db.rows("SELECT * FROM file_attempts") == []  # the loaded files' attempts went with their load
    assert_exactly_once(workspace, db, [poison, *good], quarantined=[poison])


def test_a_batch_spanning_two_months_creates_both_partitions_in_its_transaction(workspace, db):
    """Files of January and of February, and one that spans the turn of the month, in one batch."""
    january = multi_csv(3, 4, start=datetime(2023, 1, 10), seed=1).encode()
    february = multi_csv(3, 4, start=datetime(2023, 2, 10), seed=2).encode()
    turn = multi_csv(2, 48, start=datetime(2023, 1, 31, 18), seed=3).encode()  # every 15 minutes, from January into February
    for name, content in (("jan.csv", january), ("feb.csv", february), ("turn.csv", turn)):
        workspace.write(name, content)
    log = run_once(workspace.root, db.dsn)
    assert log.count(" batch=3 ") == 3, log
    assert log.count(" partition_created ") == 2 and " files=3" in log
    assert db.rows(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'sensor_readings'::regclass AND c.relname LIKE 'sensor_readings_2023_%%' ORDER BY 1"
    ) == [("sensor_readings_2023_01",), ("sensor_readings_2023_02",)]
    assert db.rows("SELECT count(*) FROM ONLY sensor_readings_2023_02 WHERE observed_at < '2023-02-01'") == [(0,)]
    assert_exactly_once(workspace, db, [january, february, turn])
