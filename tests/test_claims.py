"""Claims on inbox files: one holder at a time, takeover after the lease, the fence at COMMIT."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

import pytest

from sensor_etl.edges.claims import UNSEEN, Claims, Taken, end_owner
from sensor_etl.edges.db import Database, FileMeta
from sensor_etl.errors import ClaimLost
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.samples import multi_csv

INBOX = "/srv/inbox"


@pytest.fixture
def database(db) -> Database:
    handle = Database({"dsn": db.dsn})
    handle.apply_schema()
    yield handle
    handle.close()


def test_a_claim_excludes_others_until_its_lease_expires(db, database):
    alive, dead = Claims(database, "host-a:1:aa", 0.5, INBOX), Claims(database.another("b"), "host-b:2:bb", 30, INBOX)
    assert alive.claim("x.csv")
    assert not dead.claim("x.csv")
    assert alive.claim("y.csv")
    time.sleep(0.7)  # alive's process "died": nothing renewed its leases
    assert dead.claim("x.csv")
    assert db.rows("SELECT name, owner FROM file_claims ORDER BY name") == [("x.csv", "host-b:2:bb"), ("y.csv", "host-a:1:aa")]
    dead.release(["x.csv"])
    alive.release(["y.csv"])
    assert db.rows("SELECT * FROM file_claims") == []


def test_two_inboxes_with_the_same_file_names_are_claimed_apart(db, database):
    here, there = Claims(database, "a:1:aa", 30, INBOX), Claims(database.another("b"), "b:2:bb", 30, "s3://bucket/inbox/")
    assert here.claim("x.csv")
    assert there.claim("x.csv")
    assert not Claims(database.another("c"), "c:3:cc", 30, "s3://bucket/inbox/").claim("x.csv")
    assert db.rows("SELECT inbox, name, owner FROM file_claims ORDER BY inbox") == [
        (INBOX, "x.csv", "a:1:aa"),
        ("s3://bucket/inbox/", "x.csv", "b:2:bb"),
    ]
    here.release(["x.csv"])
    assert db.rows("SELECT inbox FROM file_claims") == [("s3://bucket/inbox/",)]


def test_a_worker_whose_lease_was_taken_over_cannot_commit(db, database):
    slow, other = Claims(database, "slow:1:aa", 0.5, INBOX), Claims(database.another("other"), "other:2:bb", 30, INBOX)
    assert slow.claim("x.csv")
    meta = FileMeta(INBOX, "x.csv", "a" * 64, 10, datetime.now(UTC), datetime.now(UTC), "slow:1")
    with pytest.raises(ClaimLost), database.load(meta) as load:
        time.sleep(0.7)  # a load longer than the lease, with no heartbeat
        assert other.claim("x.csv")
        slow.confirm(load.cursor, ["x.csv"])
    assert db.rows("SELECT sha256 FROM ingested_files") == []  # rolled back
    assert db.rows("SELECT owner FROM file_claims") == [("other:2:bb",)]


def test_a_claim_taken_over_counts_a_failed_attempt_only_when_its_owner_died() -> None:
    here, alive, gone = socket.gethostname(), os.getppid(), 2**22 + 7  # beyond the largest pid Linux gives
    assert Taken().failed_attempt() is None
    assert Taken(f"{here}:{gone}:aa").failed_attempt() == UNSEEN  # its process is gone
    assert Taken(f"{here}:{alive}:aa").failed_attempt() is None  # alive: it stalled longer than its lease
    assert Taken(f"{here}:{os.getpid()}:aa").failed_attempt() == UNSEEN  # an earlier life of this very pid
    assert Taken("elsewhere:1:aa").failed_attempt() == UNSEEN  # another host: only its lease can tell
    assert Taken(f"{here}:{alive}:aa", "died by signal SIGKILL").failed_attempt() == "died by signal SIGKILL"  # its supervisor saw it


def test_a_dead_workers_claims_expire_at_once_with_how_it_ended(db, database):
    dead, other = Claims(database, "host-a:1:aa", 30, INBOX), Claims(database.another("b"), "host-b:2:bb", 30, INBOX)
    assert dead.claim("x.csv") and not other.claim("x.csv")
    assert end_owner(database, "host-a:1", "died by signal SIGKILL") == ["x.csv"]
    assert end_owner(database, "host-a:12", "died by exit code 1") == []  # a pid that merely starts with 1
    assert other.claim("x.csv") == Taken("host-a:1:aa", "died by signal SIGKILL")
    assert db.rows("SELECT owner, ended FROM file_claims") == [("host-b:2:bb", None)]


@pytest.mark.slow
def test_the_heartbeat_keeps_a_lease_alive_while_the_file_is_held(db, database):
    holder, other = Claims(database, "holder:1:aa", 1.5, INBOX), Claims(database.another("other"), "other:2:bb", 30, INBOX)
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
        "INSERT INTO file_claims (inbox, name, owner, expires_at) VALUES (%s, 'x.csv', 'gone-host:4242:dead', now() + interval '3 seconds')"
        " RETURNING expires_at",
        (str(workspace.data.resolve()),),
    )
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert "claim_taken_over file=x.csv previous_owner=gone-host:4242:dead" in result.stderr
    assert db.value("SELECT started_at FROM ingested_files") >= expires  # not touched while the lease lived
    assert_exactly_once(workspace, db, [content])


def test_a_pass_that_leaves_nothing_behind_forgets_expired_claims_of_files_gone_from_the_inbox(workspace, db):
    """A worker killed between a file's move and its release leaves a claim that nothing takes over."""
    content = multi_csv().encode()
    workspace.write("x.csv", content)
    Database({"dsn": db.dsn}).apply_schema()
    inbox = str(workspace.data.resolve())
    for name, owner, expires in (("moved.csv", "h:1:dead", "-1 second"), ("held.csv", "h:2:live", "1 hour")):
        db.execute(
            "INSERT INTO file_claims (inbox, name, owner, expires_at) VALUES (%s, %s, %s, now() + %s::interval)",
            (inbox, name, owner, expires),
        )
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert db.rows("SELECT name, owner FROM file_claims") == [("held.csv", "h:2:live")]  # a live lease stays
    db.execute("DELETE FROM file_claims")
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


def test_a_database_from_before_inboxes_is_upgraded_at_start_up(workspace, db):
    db.execute(
        "CREATE TABLE ingested_files (file_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, file_name text NOT NULL,"
        " sha256 text NOT NULL UNIQUE, size_bytes bigint NOT NULL, modified_at timestamptz, status text NOT NULL DEFAULT 'loaded',"
        " rows_loaded bigint NOT NULL DEFAULT 0, rows_rejected bigint NOT NULL DEFAULT 0, sensors integer NOT NULL DEFAULT 0,"
        " date_format text, worker text, started_at timestamptz NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), archive_path text);"
        "CREATE TABLE file_claims (name text PRIMARY KEY, owner text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now(),"
        " expires_at timestamptz NOT NULL);"
        "INSERT INTO ingested_files (file_name, sha256, size_bytes, started_at) VALUES ('old.csv', repeat('a', 64), 1, now());"
        "INSERT INTO file_claims (name, owner, expires_at) VALUES ('old.csv', 'gone:1:aa', now() + interval '1 hour')"
    )
    content = multi_csv().encode()
    workspace.write("new.csv", content)
    result = workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert db.rows("SELECT file_name, inbox FROM ingested_files ORDER BY file_id") == [
        ("old.csv", None),  # kept, its inbox unknown
        ("new.csv", str(workspace.data.resolve())),
    ]
    key = db.value("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'file_claims'::regclass AND contype = 'p'")
    assert key == "PRIMARY KEY (inbox, name)"
    assert db.rows("SELECT * FROM file_claims") == []  # leases of the old key are gone with it
    assert workspace.cli("--once").returncode == 0  # applying the upgraded schema again changes nothing
