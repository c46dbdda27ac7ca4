"""Many workers on one folder: worker processes of one daemon, and separate daemons started by hand."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from psycopg2.extensions import make_dsn

from tests.helpers.endstate import assert_exactly_once
from tests.helpers.samples import multi_csv

pytestmark = pytest.mark.slow  # fault injection and end-to-end runs: left out of `make test-fast`


def sample(index: int) -> bytes:
    return multi_csv(2, 3, start=datetime(2020, 1, 1) + timedelta(hours=index), seed=index).encode()


def worker_pids(daemon) -> list[int]:
    return [int(re.search(r" pid=(\d+)", line).group(1)) for line in daemon.events("worker_started")]


def wait_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes still running: {pids}"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return "zombie"


def test_four_workers_and_two_more_daemons_load_2000_files_each_exactly_once(workspace, db, batching):
    contents = [sample(i) for i in range(2000)]
    for i, content in enumerate(contents):
        workspace.write(f"small{i:04d}.csv", content)
    if batching == "batches":
        workspace.env["BATCH_FILES"] = "20"  # a hundred batches: claims of overlapping batches meet often
    daemons = [workspace.start("--once", "--workers", "4"), workspace.start("--once"), workspace.start("--once")]
    codes = [daemon.wait(timeout=600) for daemon in daemons]
    logs = "\n".join(daemon.log for daemon in daemons)
    assert codes == [0, 0, 0], logs[-5000:]
    loaded = Counter(re.findall(r" file_loaded file=(\S+)", logs))
    assert len(loaded) == 2000 and set(loaded.values()) == {1}
    seen = Counter(re.findall(r" file_seen file=(\S+)", logs))  # logged once a worker holds the claim and reads the file
    assert set(seen.values()) == {1}, "a file was read by two workers"
    assert " file_duplicate " not in logs  # the claims kept workers apart; the ledger never had to
    assert workspace.names(workspace.data) == []
    assert db.value("SELECT count(DISTINCT worker) FROM ingested_files") >= 2  # which ones win the race is the scheduler's business
    assert_exactly_once(workspace, db, contents)


@pytest.mark.usefixtures("batching")
def test_the_supervisor_restarts_a_killed_worker_and_forwards_sigterm(workspace, db):
    daemon = workspace.start("--workers", "2")
    daemon.wait_for("database_ready", count=2)
    first = worker_pids(daemon)[0]
    os.kill(first, signal.SIGKILL)
    assert 'cause="signal SIGKILL"' in daemon.wait_for("worker_died")[0]
    daemon.wait_for("worker_started", count=3)
    contents = [sample(i) for i in range(5)]
    for i, content in enumerate(contents):
        workspace.write(f"f{i}.csv", content)
    workspace.wait_until_empty(daemon)
    assert daemon.stop() == 0, daemon.log
    wait_gone(worker_pids(daemon))
    assert len(daemon.events("worker_exited")) == 2
    assert_exactly_once(workspace, db, contents)


def test_workers_stop_when_their_supervisor_is_killed(workspace, db):
    daemon = workspace.start("--workers", "2")
    daemon.wait_for("database_ready", count=2)
    os.kill(daemon.process.pid, signal.SIGKILL)  # only the supervisor
    daemon.wait_for("supervisor_gone", count=2)
    wait_gone(worker_pids(daemon))


@pytest.mark.parametrize("mode", [["--once"], []])
def test_a_database_that_refuses_us_stops_every_worker_with_exit_code_1(workspace, db, mode):
    db.execute("DO $$ BEGIN CREATE ROLE sensor_etl_no_rights LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    dsn = make_dsn(workspace.env["DATABASE_URL"], user="sensor_etl_no_rights")  # may not create the schema: SQLSTATE 42501
    daemon = workspace.start(*mode, "--workers", "2", DATABASE_URL=dsn)
    assert daemon.wait(60) == 1
    assert daemon.events("database_refused")
    assert daemon.events("worker_exited" if mode else "worker_failed")
    assert not daemon.events("worker_died")  # not restarted: retrying cannot help
    wait_gone(worker_pids(daemon))
