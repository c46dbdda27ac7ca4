"""Fault injection against the real daemon, a real PostgreSQL and real files.

Each test ends with ``assert_exactly_once``: every good input's rows are in the database exactly
once, and every input file is in exactly one of processed/, quarantine/ or data/.
"""

from __future__ import annotations

import os
import random
import stat
import threading
import time
from datetime import datetime, timedelta

import pytest

from tests.helpers.endstate import assert_exactly_once
from tests.helpers.samples import multi_csv
from tests.helpers.workspace import DaemonProcess

# fault injection and end-to-end runs, left out of `make test-fast`; each with batches of small files and without
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batching")]

PAUSE = "SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT"


def sample(index: int, sensors: int = 3, per_sensor: int = 4) -> bytes:
    """A distinct, valid multi-sensor file."""
    return multi_csv(sensors, per_sensor, start=datetime(2024, 1, 1) + timedelta(days=index), seed=index).encode()


def out_of_range(index: int) -> bytes:
    return f"timestamp,sensor_id,temperature\n2024-02-01T00:00:00Z,s{index},999\n".encode()


def progress_of_copy(db) -> int:
    rows = db.rows("SELECT tuples_processed FROM pg_stat_progress_copy WHERE relid = to_regclass('sensor_readings')")
    return rows[0][0] if rows else 0


# -- 1. the database is down at start-up -----------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_database_down_at_start_up_touches_nothing_then_loads_everything(workspace, db, server, workers):
    contents = [sample(i) for i in range(3)]
    for i, content in enumerate(contents):
        workspace.write(f"f{i}.csv", content)
    before = {p.name: p.stat().st_mtime_ns for p in workspace.data.iterdir()}
    server.stop()
    try:
        daemon = workspace.start(WORKERS=str(workers))
        retries = daemon.wait_for("db_retry", count=3)
        assert all("what=connect" in line for line in retries)
        assert {p.name: p.stat().st_mtime_ns for p in workspace.data.iterdir()} == before
        assert workspace.names(workspace.processed) == workspace.names(workspace.quarantine) == []
    finally:
        server.start()
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0
    assert not daemon.events("attempt_failed")  # waiting for the database is no failed attempt
    assert_exactly_once(workspace, db, contents)


# -- 2. the database stops in the middle of a COPY -------------------------------------------
def test_database_stopped_during_copy_leaves_no_partial_rows_and_loads_once(workspace, db, server):
    content = multi_csv(sensors=10, per_sensor=10_000).encode()  # 100,000 rows
    workspace.write("big.csv", content)
    daemon = workspace.start(READ_BLOCK_BYTES=str(1 << 19))  # ten COPYs in the file's one transaction
    deadline = time.monotonic() + 60
    while progress_of_copy(db) == 0:
        assert time.monotonic() < deadline and daemon.alive(), daemon.log
        time.sleep(0.02)
    server.stop("immediate")  # a crash: the open transaction must vanish in recovery
    try:
        time.sleep(1)
    finally:
        server.start()
    workspace.wait_until_empty(daemon, timeout=90)
    assert daemon.stop() == 0
    assert daemon.events("db_retry") or daemon.events("file_deferred")
    assert not daemon.events("attempt_failed")  # a clean retry after an outage is no failed attempt
    assert len(daemon.events("file_loaded")) == 1, daemon.log
    assert_exactly_once(workspace, db, [content])


# -- 3. SIGKILL at random moments ------------------------------------------------------------
def test_sigkill_at_random_moments_loses_and_doubles_nothing(workspace, db):
    rng = random.Random(20261127)
    sizes = [4] * 36 + [2_000] * 10 + [20_000] * 4  # rows per sensor: small, medium, large (about 1 s to load)
    rng.shuffle(sizes)
    good = [sample(i, per_sensor=n) for i, n in enumerate(sizes)]
    bad = [out_of_range(i) for i in range(5)]
    for i, content in enumerate(good + bad):
        workspace.write(f"in{i:03d}.csv", content)
    runs: list[DaemonProcess] = []
    gap_kills = 0
    # A large file can be met by several kills in a row: no poison file here (rule worker_died, test_memory.py)
    never_poison = {"MAX_FILE_ATTEMPTS": "100"}
    for round_no in range(24):
        workers = "2" if round_no % 4 == 3 else "1"
        daemon = workspace.start(WORKERS=workers, LEASE_SECONDS="5", **{PAUSE: "0.5"}, **never_poison)
        runs.append(daemon)
        if round_no % 2:  # kill between a COMMIT and the move to processed/
            loaded = len(daemon.events("file_loaded"))
            try:
                line = daemon.wait_for("file_loaded", count=loaded + 1, timeout=15)[-1]
            except AssertionError:
                line = ""  # nothing left to load for this run (the rest is claimed by killed runs): kill anyway
            daemon.kill()
            name = line.partition(" file=")[2].split(" ")[0]
            gap_kills += bool(name) and (workspace.data / name).exists()
        else:
            time.sleep(rng.uniform(0.2, 2.5))
            daemon.kill()
    final = workspace.cli("--once", LEASE_SECONDS="5", timeout=300, **never_poison)
    assert final.returncode == 0, final.stderr
    print(f"24 kills, {gap_kills} between COMMIT and the move")
    assert gap_kills >= 3
    recovered = sum(len(run.events("file_recovered")) for run in runs) + final.stderr.count(" file_recovered ")
    assert recovered >= gap_kills
    assert_exactly_once(workspace, db, good + bad, quarantined=bad, clean_stop=False)
    assert db.value("SELECT count(*) FROM file_claims WHERE expires_at > now()") == 0


# -- 4. files written slowly -----------------------------------------------------------------
def test_files_being_written_are_never_loaded_half_written(workspace, db):
    slow = multi_csv(sensors=2, per_sensor=600, seed=1).encode()
    large = multi_csv(sensors=10, per_sensor=8_000, seed=2).encode()  # about 4 MB
    daemon = workspace.start(FILE_SETTLE_SECONDS="1")

    def append_in_pieces() -> None:  # an appender: 12 pieces over 3 seconds
        step = len(slow) // 12 + 1
        with open(workspace.data / "slow.csv", "wb") as handle:
            for start in range(0, len(slow), step):
                handle.write(slow[start : start + step])
                handle.flush()
                time.sleep(0.25)

    def copy_in_blocks() -> None:  # a large copy: 1 MiB blocks on a slow disk
        with open(workspace.data / "large.csv", "wb") as handle:
            for start in range(0, len(large), 1 << 20):
                handle.write(large[start : start + (1 << 20)])
                handle.flush()
                os.fsync(handle.fileno())
                time.sleep(0.3)

    writers = [threading.Thread(target=append_in_pieces), threading.Thread(target=copy_in_blocks)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0
    assert_exactly_once(workspace, db, [slow, large])


def test_a_file_that_grows_while_it_is_loaded_is_rolled_back_and_loaded_whole(workspace, db):
    full = multi_csv(sensors=10, per_sensor=8_000, seed=4).encode()
    cut = full.index(b"\n", len(full) * 2 // 3) + 1  # the writer paused longer than FILE_SETTLE_SECONDS here
    workspace.write("growing.csv", full[:cut])
    daemon = workspace.start(FILE_SETTLE_SECONDS="0.5", READ_BLOCK_BYTES=str(1 << 20))
    daemon.wait_for("file_seen")
    with open(workspace.data / "growing.csv", "ab") as handle:
        handle.write(full[cut:])
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0
    assert any("changed while it was being loaded" in line for line in daemon.events("file_changing"))
    assert_exactly_once(workspace, db, [full])


# -- 5. duplicate contents and reused names --------------------------------------------------
def test_same_content_twice_is_archived_once_and_new_content_under_an_old_name_is_loaded(workspace, db):
    twin, first, second = sample(1), sample(2), sample(3)
    workspace.write("a.csv", twin)
    workspace.write("b.csv", twin)  # the same bytes under another name
    workspace.write("old.csv", first)
    result = workspace.cli("--once", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" file_duplicate ") == 1
    workspace.write("old.csv", second)  # a new content under a name already used
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert " file_loaded file=old.csv" in result.stderr
    workspace.write("old.csv", first)  # and an old content under its old name again
    result = workspace.cli("--once")
    assert " file_duplicate file=old.csv" in result.stderr
    assert workspace.names(workspace.processed) == ["a.csv", "b.csv", "old.csv", "old__2.csv", "old__3.csv"]
    assert_exactly_once(workspace, db, [twin, twin, first, second, first])


# -- 6. processed/ becomes unwritable after the COMMIT ---------------------------------------
def test_unwritable_processed_folder_after_commit_neither_loses_nor_reloads(workspace, db):
    content = sample(1)
    workspace.write("x.csv", content)
    daemon = workspace.start(**{PAUSE: "1.5"})
    daemon.wait_for("file_loaded")
    planned = str((workspace.processed / "x.csv").resolve())
    away = workspace.root / "processed.away"
    workspace.processed.rename(away)
    workspace.processed.write_text("a file where the folder was: every move into it fails\n")
    daemon.wait_for("move_failed", count=3)  # logged, and tried again at each scan
    assert (workspace.data / "x.csv").exists()
    assert db.rows("SELECT rows_loaded, archive_path FROM ingested_files") == [(12, planned)]  # committed, not yet there
    assert db.value("SELECT count(*) FROM sensor_readings") == 12
    workspace.processed.unlink()
    away.rename(workspace.processed)
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0
    assert daemon.events("file_recovered")
    assert len(daemon.events("file_loaded")) == 1
    assert_exactly_once(workspace, db, [content])


# -- 7. an unreadable file and a pipe named like input -----------------------------------------
def test_unreadable_file_and_pipe_are_skipped_and_the_daemon_keeps_going(workspace, db):
    """secret.csv is mode 000 and the daemon runs without the capabilities that let root read it anyway;
    x.csv is a named pipe (reading it would block). A folder, even one named x.csv, is scanned instead."""
    good, secret = sample(1), sample(2)
    workspace.write("good.csv", good)
    workspace.write("secret.csv", secret).chmod(0o000)
    os.mkfifo(workspace.data / "x.csv")
    daemon = workspace.start(honour_file_modes=True)
    daemon.wait_for("file_loaded")
    skipped = "\n".join(daemon.wait_for("file_skipped", count=2))
    assert "file=secret.csv" in skipped and "Permission denied" in skipped
    assert "file=x.csv" in skipped and "not a regular file" in skipped
    time.sleep(1)  # several scans later: still running, the skipped entries untouched
    assert daemon.alive()
    assert len(daemon.events("file_skipped")) == 2  # logged once each, not at every scan
    assert sorted(p.name for p in workspace.data.iterdir()) == ["secret.csv", "x.csv"]
    (workspace.data / "secret.csv").chmod(0o644)  # fixed by a person: loaded at the next scan
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0
    assert stat.S_ISFIFO((workspace.data / "x.csv").stat().st_mode)
    assert_exactly_once(workspace, db, [good, secret])
