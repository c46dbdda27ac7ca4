"""Claims on inbox files: one holder at a time, takeover after the lease, the fence at COMMIT."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from sensor_etl.edges.claims import Claims
from sensor_etl.edges.db import Database, FileMeta
from sensor_etl.errors import ClaimLost
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.samples import multi_csv


@pytest.fixture
def database(db) -> Database:
    handle = Database({"dsn": db.dsn})
    handle.apply_schema()
    yield handle
    handle.close()


def test_a_claim_excludes_others_until_its_lease_expires(db, database):
    alive, dead = Claims(database, "host-a:1:aa", 0.5), Claims(database.another("b"), "host-b:2:bb", 30)
    assert alive.claim("x.csv")
    assert not dead.claim("x.csv")
    assert alive.claim("y.csv")
    time.sleep(0.7)  # alive's process "died": nothing renewed its leases
    assert dead.claim("x.csv")
    assert db.rows("SELECT name, owner FROM file_claims ORDER BY name") == [("x.csv", "host-b:2:bb"), ("y.csv", "host-a:1:aa")]
    dead.release(["x.csv"])
    alive.release(["y.csv"])
    assert db.rows("SELECT * FROM file_claims") == []


def test_a_worker_whose_lease_was_taken_over_cannot_commit(db, database):
    slow, other = Claims(database, "slow:1:aa", 0.5), Claims(database.another("other"), "other:2:bb", 30)
    assert slow.claim("x.csv")
    meta = FileMeta("x.csv", "a" * 64, 10, datetime.now(UTC), datetime.now(UTC), "slow:1")
    with pytest.raises(ClaimLost), database.load(meta) as load:
        time.sleep(0.7)  # a load longer than the lease, with no heartbeat
        assert other.claim("x.csv")
        slow.confirm(load.cursor, ["x.csv"])
    assert db.rows("SELECT sha256 FROM ingested_files") == []  # rolled back
    assert db.rows("SELECT owner FROM file_claims") == [("other:2:bb",)]


@pytest.mark.slow
def test_the_heartbeat_keeps_a_lease_alive_while_the_file_is_held(db, database):
    holder, other = Claims(database, "holder:1:aa", 1.5), Claims(database.another("other"), "other:2:bb", 30)
    with holder.heartbeat(database.another("heartbeat")):  # renews every 0.5 s
        assert holder.claim("x.csv")
        for _ in range(5):  # 2.5 s, well past one lease
            time.sleep(0.5)
            assert not other.claim("x.csv")
        holder.release(["x.csv"])
        assert other.claim("x.csv")


@pytest.mark.slow
def test_a_file_claimed_by_a_dead_daemon_is_taken_over_after_the_lease(workspace, db):
    content = multi_csv().encode()
    workspace.write("x.csv", content)
    Database({"dsn": db.dsn}).apply_schema()
    expires = db.value(
        "INSERT INTO file_claims (name, owner, expires_at) VALUES ('x.csv', 'gone-host:4242:dead', now() + interval '3 seconds')"
        " RETURNING expires_at"
    )
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert "claim_taken_over file=x.csv previous_owner=gone-host:4242:dead" in result.stderr
    assert db.value("SELECT started_at FROM ingested_files") >= expires  # not touched while the lease lived
    assert_exactly_once(workspace, db, [content])


def test_a_move_interrupted_between_link_and_unlink_is_finished_without_a_second_copy(workspace, db):
    content = multi_csv().encode()
    workspace.write("x.csv", content)
    assert workspace.cli("--once").returncode == 0
    # the state a crash between os.link and os.unlink leaves: the file in both folders
    (workspace.data / "x.csv").hardlink_to(workspace.processed / "x.csv")
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert "file_recovered file=x.csv" in result.stderr
    assert workspace.names(workspace.processed) == ["x.csv"]
    assert_exactly_once(workspace, db, [content])
