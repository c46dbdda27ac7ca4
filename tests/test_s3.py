"""The S3 inbox: the object-store edge against a real S3-compatible server (SeaweedFS on loopback),
and the daemon end to end on it, with a real PostgreSQL.

Faults are injected by ``s3servers.FaultProxy``, a loopback proxy between the daemon (or the edge)
and the server: throttling answers (503 SlowDown), 500s, connection resets before an answer and in
the middle of a download, and slow downloads for a SIGKILL to land in. Every end-to-end test ends
with ``assert_exactly_once`` over the three prefixes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from sensor_etl.config import S3Location, settings_from
from sensor_etl.edges import reports, s3
from sensor_etl.errors import FatalStorageError, FileChanged, TransientStorageError
from sensor_etl.ops import logs
from sensor_etl.runners import retry
from tests.helpers.endstate import assert_exactly_once, sha
from tests.helpers.s3servers import READER_KEY, READER_SECRET, Fault, aws_env
from tests.helpers.samples import multi_csv, seed_csv, station_csv
from tests.helpers.workspace import REPO, ObjectWorkspace

PAUSE = "SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT"
BAD = b"timestamp,sensor_id,temperature\n2024-02-01T00:00:00Z,s1,999\n"


def sample(index: int, per_sensor: int = 4) -> bytes:
    return multi_csv(3, per_sensor, start=datetime(2024, 1, 1) + timedelta(days=index), seed=index).encode()


class Events(logging.Handler):
    """The daemon's log events (their names) while a block runs in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.names.append(record.getMessage())


@pytest.fixture
def events() -> Iterator[Events]:
    handler = Events()
    logs.LOGGER.addHandler(handler)
    logs.LOGGER.setLevel("INFO")
    try:
        yield handler
    finally:
        logs.LOGGER.removeHandler(handler)


@pytest.fixture
def store(s3_workspace: ObjectWorkspace, monkeypatch: pytest.MonkeyPatch) -> s3.Store:
    """The edge as the daemon builds it, through the fault proxy, with a short retry policy."""
    for variable, value in aws_env(s3_workspace.proxy.endpoint).items():
        monkeypatch.setenv(variable, value)
    settings = settings_from({"RETRY_ATTEMPTS": "4", "RETRY_MAX_WAIT": "0.2"})
    return s3.Store(s3.client(), retry.storage_retrier(settings, threading.Event()))


def location(ws: ObjectWorkspace, place: str) -> S3Location:
    return S3Location(ws.bucket, ws.prefixes[place])


# -- the edge ------------------------------------------------------------------------------------
def test_listing_is_paginated_and_takes_subfolders_but_not_hidden_ones_or_the_archive(s3_workspace, store, monkeypatch):
    for i in range(12):
        s3_workspace.write(f"f{i:02d}.csv", b"x")
    s3_workspace.write("tmy3/nested.csv", b"x")  # a "subfolder" is the inbox's, as a folder's is
    s3_workspace.write(".partial/hidden.csv", b"x")  # a hidden one is not
    store.page_size = 5
    listed = list(store.listing(location(s3_workspace, "data")))
    assert sorted(obj.name for obj in listed) == sorted([*(f"f{i:02d}.csv" for i in range(12)), "tmy3/nested.csv", ".partial/hidden.csv"])
    assert all(obj.size == 1 and obj.etag for obj in listed)
    assert [entry[0] for entry in s3_workspace.proxy.log].count("GET") == 3  # three pages of at most five keys
    processed, quarantine = location(s3_workspace, "processed"), location(s3_workspace, "quarantine")
    inbox = s3.S3Inbox(store, S3Location(s3_workspace.bucket, ""), processed, quarantine)  # the archive inside the inbox
    s3_workspace.s3.put_object(Bucket=s3_workspace.bucket, Key="processed/old.csv", Body=b"x")
    names = [obj.name for obj in inbox.scan().ready]
    assert "incoming/tmy3/nested.csv" in names and "processed/old.csv" not in names and "incoming/.partial/hidden.csv" not in names
    assert inbox.holds("incoming/tmy3/nested.csv") and not inbox.holds("processed/old.csv") and not inbox.holds("incoming/notes.txt")


def test_a_download_cut_short_resumes_where_it_stopped_and_hashes_the_whole(s3_workspace, store, events, tmp_path):
    content = seed_csv(30_000).encode()  # about 4 MB
    s3_workspace.write("big.csv", content)
    s3_workspace.proxy.inject(Fault("GET", "/big.csv$", "reset_midway", after=1_500_000))
    s3_workspace.proxy.inject(Fault("GET", "/big.csv$", "throttle"))
    found = store.head(location(s3_workspace, "data"), "big.csv")
    assert found is not None
    with store.fetched(found[0], "utf-8") as fetched:
        assert fetched.path.name == "big.csv"
        assert fetched.path.read_bytes() == content
        assert fetched.fp.sha256 == sha(content) and fetched.fp.size == len(content) and fetched.fp.problem is None
        folder = fetched.path.parent
    assert not folder.exists()  # the temporary copy lives only as long as the block
    assert [entry[2] for entry in s3_workspace.proxy.log if entry[0] == "GET"] == ["reset_midway", "throttle", "passed"]
    assert events.names.count("s3_retry") == 2


def test_throttling_500s_and_resets_are_retried_then_succeed(s3_workspace, store, events):
    s3_workspace.write("a.csv", b"x")
    for kind in ("throttle", "error500", "reset"):
        s3_workspace.proxy.inject(Fault("HEAD", "/a.csv$", kind))
    assert store.exists(location(s3_workspace, "data"), "a.csv")
    assert events.names.count("s3_retry") == 3


def test_retries_run_out_as_a_transient_error(s3_workspace, store):
    s3_workspace.write("a.csv", b"x")
    s3_workspace.proxy.inject(Fault("HEAD", "/a.csv$", "throttle", times=4))
    with pytest.raises(TransientStorageError, match="503"):  # a HEAD answer has no body, so no error code
        store.exists(location(s3_workspace, "data"), "a.csv")


def test_a_move_never_overwrites_and_an_interrupted_one_is_finished_by_the_delete_alone(s3_workspace, store):
    processed = location(s3_workspace, "processed")
    s3_workspace.s3.put_object(Bucket=s3_workspace.bucket, Key="processed/a.csv", Body=b"older")
    s3_workspace.s3.put_object(Bucket=s3_workspace.bucket, Key="processed/a__2.csv.error.json", Body=b"{}")  # a report holds the name
    s3_workspace.write("a.csv", b"newer")
    obj = store.head(location(s3_workspace, "data"), "a.csv")[0]
    store.copy(obj, processed, "a__3.csv")  # the state a crash between the copy and the delete leaves
    assert store.move(obj, processed) == "a__3.csv"
    assert s3_workspace.listed("processed") == ["a.csv", "a__2.csv.error.json", "a__3.csv"]
    assert (s3_workspace.read("processed", "a.csv"), s3_workspace.read("processed", "a__3.csv")) == (b"older", b"newer")
    assert s3_workspace.listed("data") == []
    assert [entry[0] for entry in s3_workspace.proxy.log].count("PUT") == 1  # one copy only: the move made none


def test_a_move_copies_conditionally_and_a_replaced_source_is_not_moved(s3_workspace, store):
    s3_workspace.write("a.csv", b"first")
    obj = store.head(location(s3_workspace, "data"), "a.csv")[0]
    assert store.move(obj, location(s3_workspace, "processed")) == "a.csv"
    copy = s3_workspace.s3.head_object(Bucket=s3_workspace.bucket, Key="processed/a.csv")
    assert copy["Metadata"][s3.ORIGIN] == obj.origin
    s3_workspace.write("b.csv", b"first")
    obj = store.head(location(s3_workspace, "data"), "b.csv")[0]
    s3_workspace.write("b.csv", b"second")  # replaced after it was read
    with pytest.raises(FileChanged):
        store.move(obj, location(s3_workspace, "processed"))
    assert s3_workspace.read("data", "b.csv") == b"second"
    assert s3_workspace.listed("processed") == ["a.csv"]


def test_a_report_prefix_writes_whole_objects(s3_workspace, store):
    folder = s3.Prefix(store, location(s3_workspace, "quarantine"))
    folder.write_text("x.csv.rejects.csv", ["a,b\r\n", "1,2\r\n"], encoding="utf-8", newline="")
    assert s3_workspace.read("quarantine", "x.csv.rejects.csv") == b"a,b\r\n1,2\r\n"
    assert folder.read_text("x.csv.rejects.csv") == "a,b\r\n1,2\r\n"
    assert folder.read_text("none") is None and not folder.exists("none")
    assert reports.taken(folder, "x.csv.rejects.csv")
    folder.remove("x.csv.rejects.csv")
    assert s3_workspace.listed("quarantine") == []


def test_access_denied_and_a_missing_bucket_are_fatal(s3_workspace, store, monkeypatch):
    with pytest.raises(FatalStorageError, match="does not exist"):
        store.check_bucket("no-such-bucket-here")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READER_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READER_SECRET)
    reader = s3.Store(s3.client(), store.retrying)
    with pytest.raises(FatalStorageError, match="AccessDenied"):
        s3.Prefix(reader, location(s3_workspace, "quarantine")).write_text("x", ["y"])


# -- the daemon on an S3 inbox ---------------------------------------------------------------------
def test_three_shapes_bad_files_and_duplicates_end_exactly_once(s3_workspace, db):
    good = [seed_csv(20).encode(), station_csv(15).encode(), multi_csv().encode()]
    for name, content in zip(("seed.csv", "station.csv", "multi.csv"), good, strict=True):
        s3_workspace.write(name, content)
    s3_workspace.write("bad.csv", BAD)
    s3_workspace.write("zz seed copy.csv", good[0])  # the same content under another name: a duplicate
    s3_workspace.write("notes.txt", b"not input")  # not *.csv: left alone
    result = s3_workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert 'file_duplicate file="zz seed copy.csv" loaded_as=seed.csv' in result.stderr
    assert s3_workspace.listed("data") == ["notes.txt"]
    assert s3_workspace.listed("quarantine") == ["bad.csv", "bad.csv.error.json"]
    report = json.loads(s3_workspace.read("quarantine", "bad.csv.error.json"))
    assert (report["rule"], report["quarantined_as"], report["sha256"]) == ("out_of_range", "bad.csv", sha(BAD))
    assert report["errors"][0] == {
        "rule": "out_of_range",
        "line": 2,
        "column": "temperature",
        "value": "999",
        "message": "outside -90..60 °C",
    }
    assert db.rows("SELECT DISTINCT inbox FROM ingested_files") == [(s3_workspace.url("data"),)]
    # the same name again, with another content: loaded, and archived next to the first, never over it
    again = sample(7)
    s3_workspace.write("multi.csv", again)
    assert s3_workspace.cli("--once").returncode == 0
    assert s3_workspace.listed("processed") == ["multi.csv", "multi__2.csv", "seed.csv", "station.csv", "zz seed copy.csv"]
    s3_workspace.s3.delete_object(Bucket=s3_workspace.bucket, Key="incoming/notes.txt")
    assert_exactly_once(s3_workspace, db, [*good, good[0], BAD, again], quarantined=[BAD])


def test_subfolders_keep_their_path_and_unload_requeue_brings_an_object_back(s3_workspace, db):
    content, bad = sample(3), BAD
    s3_workspace.write("tmy3/x.csv", content)
    s3_workspace.write("tmy3/bad.csv", bad)
    assert s3_workspace.cli("--once").returncode == 0
    assert s3_workspace.listed("processed") == ["tmy3/x.csv"]
    assert s3_workspace.listed("quarantine") == ["tmy3/bad.csv", "tmy3/bad.csv.error.json"]
    assert db.rows("SELECT file_name, archive_path FROM ingested_files") == [("tmy3/x.csv", s3_workspace.url("processed", "tmy3/x.csv"))]
    unloaded = s3_workspace.cli("unload", "tmy3/x.csv", "--requeue")
    assert unloaded.returncode == 0, unloaded.stderr
    assert unloaded.stdout.endswith(f"; requeued as {s3_workspace.url('data', 'tmy3/x.csv')}\n")
    assert s3_workspace.listed("data") == ["tmy3/x.csv"] and db.value("SELECT count(*) FROM ingested_files") == 0
    assert s3_workspace.cli("requeue", "tmy3/bad.csv").returncode == 0
    assert s3_workspace.listed("data") == ["tmy3/bad.csv", "tmy3/x.csv"] and s3_workspace.listed("quarantine") == []
    assert s3_workspace.cli("--once").returncode == 0
    assert_exactly_once(s3_workspace, db, [content, bad], quarantined=[bad])


def test_the_rejects_of_a_partial_load_go_to_the_quarantine_prefix(s3_workspace, db):
    content = multi_csv(2, 3).encode() + b"2024-01-01T01:00:00Z,sensor-01,999,50,1000\n"
    s3_workspace.write("part.csv", content)
    result = s3_workspace.cli("--once", MAX_INVALID_ROWS="1")
    assert result.returncode == 0, result.stderr
    assert s3_workspace.listed("quarantine") == ["part.csv.rejects.csv", "part.csv.rejects.json"]
    assert (
        s3_workspace.read("quarantine", "part.csv.rejects.csv")
        == content.splitlines(keepends=True)[0] + content.splitlines(keepends=True)[-1]
    )
    rejects = json.loads(s3_workspace.read("quarantine", "part.csv.rejects.json"))
    assert (rejects["rows_loaded"], rejects["rows_rejected"], rejects["rejects_file"]) == (6, 1, "part.csv.rejects.csv")
    assert db.rows("SELECT status, rows_loaded, rows_rejected FROM ingested_files") == [("partial", 6, 1)]


def test_validate_and_requeue_work_on_s3_locations(s3_workspace, db):
    s3_workspace.write("good.csv", multi_csv().encode())
    s3_workspace.write("bad.csv", BAD)
    checked = s3_workspace.cli("validate", s3_workspace.url("data"))
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[:2] == [
        f"{s3_workspace.url('data', 'bad.csv')}: would be QUARANTINED: 1 of 1 rows invalid (out_of_range: 1)",
        f"  {s3_workspace.url('data', 'bad.csv')}:2, column 'temperature', value '999': outside -90..60 °C [out_of_range]",
    ]
    assert f"{s3_workspace.url('data', 'good.csv')}: would LOAD 12 rows from 3 sensor(s)" in checked.stdout
    one = s3_workspace.cli("validate", s3_workspace.url("data", "good.csv"), s3_workspace.url("data", "gone.csv"))
    assert one.returncode == 1
    assert (
        one.stdout.splitlines()[1]
        == f"{s3_workspace.url('data', 'gone.csv')}: cannot be read: no object {s3_workspace.url('data', 'gone.csv')}"
    )
    assert s3_workspace.listed("data") == ["bad.csv", "good.csv"]  # validate moves nothing
    assert s3_workspace.cli("--once").returncode == 0
    fixed = BAD.replace(b"999", b"21")
    s3_workspace.s3.put_object(Bucket=s3_workspace.bucket, Key="quarantine/bad.csv", Body=fixed)
    requeued = s3_workspace.cli("requeue", "bad.csv", "nothing.csv")
    assert requeued.returncode == 1
    assert requeued.stdout == f"bad.csv: requeued as {s3_workspace.url('data', 'bad.csv')}\n"
    assert "nothing.csv: no quarantined *.csv file of that name in" in requeued.stderr
    assert s3_workspace.listed("quarantine") == []
    assert s3_workspace.cli("--once").returncode == 0
    assert_exactly_once(s3_workspace, db, [multi_csv().encode(), fixed])


def test_s3_errors_are_retried_and_nothing_is_lost_or_doubled(s3_workspace, db):
    contents = [sample(i) for i in range(3)]
    for i, content in enumerate(contents):
        s3_workspace.write(f"f{i}.csv", content)
    proxy = s3_workspace.proxy
    proxy.inject(Fault("GET", f"^/{s3_workspace.bucket}$", "throttle"))  # the listing
    proxy.inject(Fault("GET", "/incoming/f0.csv$", "reset"))  # the download
    proxy.inject(Fault("GET", "/incoming/f1.csv$", "reset_midway", after=100))
    proxy.inject(Fault("PUT", "/processed/f1.csv$", "throttle", header="x-amz-copy-source"))  # the copy
    proxy.inject(Fault("DELETE", "/incoming/f2.csv$", "error500"))  # the delete
    result = s3_workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" s3_retry ") == 5
    assert {entry[2] for entry in proxy.log} == {"passed", "throttle", "reset", "reset_midway", "error500"}
    assert_exactly_once(s3_workspace, db, contents)


def test_an_object_store_that_stays_down_leaves_the_files_waiting(s3_workspace, db):
    content = sample(1)
    s3_workspace.write("f.csv", content)
    down = s3_workspace.proxy.inject(Fault("GET", "/incoming/f.csv$", "throttle", times=10_000))
    result = s3_workspace.cli("--once", RETRY_ATTEMPTS="2")  # --once scans ten times before it gives up
    assert result.returncode == 1
    assert 'file_deferred file=f.csv reason="object store unavailable after retries"' in result.stderr
    assert result.stderr.count(" s3_retry ") == result.stderr.count(" file_deferred ") == 10
    assert_exactly_once(s3_workspace, db, [content], waiting=[content])
    down.times = 0  # the store is back
    assert s3_workspace.cli("--once").returncode == 0
    assert_exactly_once(s3_workspace, db, [content])


def test_access_denied_and_a_missing_bucket_stop_the_daemon_with_exit_1(s3_workspace, db):
    content = sample(1)
    s3_workspace.write("f.csv", content)
    denied = s3_workspace.cli("--once", AWS_ACCESS_KEY_ID=READER_KEY, AWS_SECRET_ACCESS_KEY=READER_SECRET)  # may read, not write
    assert denied.returncode == 1
    assert " storage_refused " in denied.stderr and "AccessDenied" in denied.stderr
    # it could read and load; the move after the COMMIT was refused: the file waits, the next run finishes the move
    assert db.value("SELECT count(*) FROM ingested_files") == 1 and s3_workspace.listed("data") == ["f.csv"]
    recovered = s3_workspace.cli("--once")
    assert recovered.returncode == 0 and " file_recovered file=f.csv" in recovered.stderr
    assert_exactly_once(s3_workspace, db, [content])
    missing = s3_workspace.cli("--once", DATA_FOLDER="s3://no-such-bucket-here/in/")
    assert missing.returncode == 1
    assert "storage_refused" in missing.stderr and "bucket 'no-such-bucket-here' does not exist" in missing.stderr


def test_a_folder_inbox_needs_no_boto3(workspace, db):
    """The README's install (requirements.txt: the package without the s3 extra) never imports boto3."""
    workspace.write("f.csv", sample(1))
    code = (
        "import sys; sys.modules.update(boto3=None, botocore=None); from sensor_etl.cli import main; code = main(['--once']);"
        " sys.exit(code or any(name.startswith(('boto3', 'botocore')) and sys.modules[name] for name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=workspace.env, capture_output=True, text=True, timeout=120, cwd=workspace.root
    )
    assert result.returncode == 0, result.stderr
    assert_exactly_once(workspace, db, [sample(1)])


def test_an_s3_location_without_the_s3_extra_is_a_configuration_error(s3_workspace):
    code = "import sys; sys.modules['boto3'] = None; from sensor_etl.cli import main; sys.exit(main(['--once']))"
    result = subprocess.run([sys.executable, "-c", code], env=s3_workspace.env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"sensor-etl: configuration error: DATA_FOLDER='{s3_workspace.url('data')}' is invalid: "
        "expected a local path, unless the s3 extra is installed: pip install 'sensor-etl[s3]'"
    )


def test_an_s3_inbox_and_a_folder_with_the_same_file_names_are_told_apart(s3_workspace, workspace, db):
    here, there = sample(1), sample(2)
    workspace.write("same.csv", here)
    s3_workspace.write("same.csv", there)
    folder, bucket = workspace.start(), s3_workspace.start()  # both at once, on one database
    workspace.wait_until_empty(folder)
    s3_workspace.wait_until_empty(bucket)
    assert folder.stop() == 0 and bucket.stop() == 0
    assert sorted(db.rows("SELECT inbox, file_name, sha256 FROM ingested_files")) == sorted(
        [(str(workspace.data.resolve()), "same.csv", sha(here)), (s3_workspace.url("data"), "same.csv", sha(there))]
    )
    assert workspace.contents("processed") == {"same.csv": here}
    assert s3_workspace.contents("processed") == {"same.csv": there}
    assert db.rows("SELECT * FROM file_claims") == []


@pytest.mark.slow
def test_a_committed_file_of_another_inbox_is_a_duplicate_here_not_a_recovery(s3_workspace, workspace, db):
    content = sample(5)
    workspace.write("same.csv", content)
    folder = workspace.start(LEASE_SECONDS="5", **{PAUSE: "60"})
    folder.wait_for("file_loaded")
    folder.kill()  # committed in the folder inbox, not moved: that inbox's recovery to finish
    s3_workspace.write("same.csv", content)  # the same name and content in another inbox
    result = s3_workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert " file_duplicate file=same.csv" in result.stderr and " file_recovered " not in result.stderr
    assert s3_workspace.contents("processed") == {"same.csv": content}
    again = workspace.cli("--once", LEASE_SECONDS="5")
    assert again.returncode == 0 and " file_recovered file=same.csv" in again.stderr
    assert db.rows("SELECT inbox, archive_path FROM ingested_files") == [
        (str(workspace.data.resolve()), str((workspace.processed / "same.csv").resolve()))
    ]
    assert_exactly_once(workspace, db, [content])


# -- crashes ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_worker_killed_mid_download_loses_and_doubles_nothing(s3_workspace, db):
    big = seed_csv(20_000).encode()  # about 2.7 MB, slowed to 1 MB/s
    small = [sample(i) for i in range(3)]
    s3_workspace.write("big.csv", big)
    for i, content in enumerate(small):
        s3_workspace.write(f"s{i}.csv", content)
    s3_workspace.proxy.inject(Fault("GET", "/incoming/big.csv$", "slow", rate=1 << 20))
    daemon = s3_workspace.start("--workers", "2", LEASE_SECONDS="5")
    deadline = time.monotonic() + 60
    while s3_workspace.proxy.body_bytes.get(f"/{s3_workspace.bucket}/incoming/big.csv", 0) < 500_000:
        assert time.monotonic() < deadline and daemon.alive(), daemon.log
        time.sleep(0.05)
    daemon.kill()  # every process of it, mid-download
    assert s3_workspace.listed("data").count("big.csv") == 1
    final = s3_workspace.cli("--once", LEASE_SECONDS="5")
    assert final.returncode == 0, final.stderr
    assert_exactly_once(s3_workspace, db, [big, *small])


@pytest.mark.slow
@pytest.mark.parametrize("batch_files", ["1", "200"])
def test_a_worker_killed_between_the_commit_and_the_copy_is_recovered_by_the_next(s3_workspace, db, batch_files):
    """One object at a time: two workers killed after one COMMIT each; in a batch: one killed after
    the batch's COMMIT, before any of its copies."""
    contents = [sample(i) for i in range(4)]
    for i, content in enumerate(contents):
        s3_workspace.write(f"f{i}.csv", content)
    kills, per_kill = (2, 1) if batch_files == "1" else (1, 4)
    for _ in range(kills):
        daemon = s3_workspace.start(LEASE_SECONDS="5", BATCH_FILES=batch_files, **{PAUSE: "30"})
        daemon.wait_for("file_loaded", count=per_kill)
        daemon.kill()  # committed, not moved
    assert db.value("SELECT count(*) FROM ingested_files") == kills * per_kill
    assert len([name for name in s3_workspace.listed("data") if name.endswith(".csv")]) == 4
    final = s3_workspace.cli("--once", LEASE_SECONDS="5", BATCH_FILES=batch_files)
    assert final.returncode == 0, final.stderr
    assert final.stderr.count(" file_recovered ") == kills * per_kill
    assert_exactly_once(s3_workspace, db, contents)


@pytest.mark.slow
def test_a_worker_killed_between_the_copy_and_the_delete_leaves_one_copy(s3_workspace, db):
    content = sample(1)
    s3_workspace.write("f.csv", content)
    s3_workspace.proxy.inject(Fault("DELETE", "/incoming/f.csv$", "hang"))  # the copy is made, the delete never arrives
    daemon = s3_workspace.start(LEASE_SECONDS="5")
    deadline = time.monotonic() + 60
    while not any(entry[0] == "DELETE" for entry in s3_workspace.proxy.log):
        assert time.monotonic() < deadline and daemon.alive(), daemon.log
        time.sleep(0.05)
    daemon.kill()
    assert s3_workspace.listed("processed") == ["f.csv"] and s3_workspace.listed("data") == ["f.csv"]
    final = s3_workspace.cli("--once", LEASE_SECONDS="5")
    assert final.returncode == 0, final.stderr
    assert " file_recovered file=f.csv" in final.stderr
    assert_exactly_once(s3_workspace, db, [content])


def test_no_download_is_left_behind_by_a_killed_worker(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{s3.TEMP_PREFIX}{dead.pid}-abc").mkdir()
    (tmp_path / f"{s3.TEMP_PREFIX}{dead.pid}-abc" / "big.csv").write_bytes(b"x")
    (tmp_path / f"{s3.TEMP_PREFIX}{os.getpid()}-def").mkdir()  # ours: alive
    s3.remove_stale_downloads()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{s3.TEMP_PREFIX}{os.getpid()}-def"]


def test_status_and_readiness_read_an_s3_inbox_and_quarantine(s3_workspace, db, monkeypatch):
    from sensor_etl.edges import state
    from sensor_etl.edges.db import Database

    s3_workspace.write("bad.csv", BAD)
    assert s3_workspace.cli("--once").returncode == 0  # quarantined with its report
    s3_workspace.write("tmy3/waiting.csv", sample(1))
    for variable, value in s3_workspace.env.items():
        monkeypatch.setenv(variable, value)
    settings = settings_from(s3_workspace.env)
    waiting = state.backlog(settings)
    assert (waiting.files, waiting.oldest) == (1, "tmy3/waiting.csv")
    assert state.usage(settings.quarantine_folder).files == 1
    items, rejects = state.quarantined(settings.quarantine_folder)
    assert [(q.file, q.rule) for q in items] == [("bad.csv", "out_of_range")] and rejects == 0
    database = Database({"dsn": db.dsn})
    assert state.readiness(database, settings.data_folder, (settings.processed_folder, settings.quarantine_folder)) == {}
    missing = S3Location("no-such-bucket-here", "in/")
    assert "cannot be reached" in state.readiness(database, missing, ())["inbox"]


def test_small_objects_load_in_batches_and_end_exactly_once(s3_workspace, db):
    """The daemon's batch path over an S3 inbox: one claim and one transaction for the batch, each object
    then moved on its own (copy, then delete); a bad object and a duplicate in the batch go their own way."""
    good = [sample(i) for i in range(6)]
    for i, content in enumerate(good):
        s3_workspace.write(f"small{i}.csv", content)
    s3_workspace.write("bad.csv", BAD)
    s3_workspace.write("twin.csv", good[0])
    result = s3_workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" batch=6 ") == 6, result.stderr
    assert "file_duplicate file=twin.csv loaded_as=small0.csv" in result.stderr
    assert s3_workspace.listed("data") == []
    assert s3_workspace.listed("quarantine") == ["bad.csv", "bad.csv.error.json"]
    assert_exactly_once(s3_workspace, db, [*good, BAD, good[0]], quarantined=[BAD])
