"""QUEUE_URL: daemon workers fed by S3 event notifications through SQS (moto's S3 and SQS on loopback,
which send and queue the notifications as AWS does), a real PostgreSQL. Every test ends with
``assert_exactly_once``."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest

from tests.helpers.endstate import assert_exactly_once
from tests.helpers.s3servers import Queues
from tests.helpers.samples import multi_csv

PAUSE = "SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT"


def sample(index: int) -> bytes:
    return multi_csv(2, 2, start=datetime(2024, 1, 1) + timedelta(hours=index), seed=index).encode()


@pytest.fixture
def queues(moto_workspace) -> Queues:
    found = Queues(moto_workspace.endpoint, f"work-{moto_workspace.bucket}", max_receives=2)
    found.notified_by(moto_workspace.s3, moto_workspace.bucket)
    moto_workspace.env.update(QUEUE_URL=found.url, LEASE_SECONDS="5")
    return found


def wait_until(condition, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
def test_two_workers_load_500_objects_each_once_delete_every_message_and_a_poison_one_ends_in_the_dlq(moto_workspace, db, queues):
    contents = [sample(i) for i in range(500)]
    for i, content in enumerate(contents):
        moto_workspace.write(f"obj{i:03d}.csv", content)
    moto_workspace.s3.put_object(Bucket=moto_workspace.bucket, Key="processed/ignored.csv", Body=b"x")  # not under incoming/: no event
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="{poison")
    result = moto_workspace.cli("--once", "--workers", "2", timeout=600)
    assert result.returncode == 1, result.stderr  # the poison message was never done
    assert result.stderr.count(" file_loaded ") == 500
    assert " messages_unfinished messages=1 " in result.stderr
    assert result.stderr.count(" message_unreadable ") == 2  # received twice, then moved by the redrive policy
    assert queues.counts() == (0, 0)  # every other message deleted
    assert [m["Body"] for m in queues.take(1, url=queues.dlq)] == ["{poison"]
    moto_workspace.s3.delete_object(Bucket=moto_workspace.bucket, Key="processed/ignored.csv")
    assert_exactly_once(moto_workspace, db, contents)


def test_a_big_file_keeps_its_message_while_it_loads(moto_workspace, db, queues):
    content = sample(1)
    moto_workspace.write("big.csv", content)
    daemon = moto_workspace.start("--workers", "2", **{PAUSE: "8"})  # holds its message 8 s, past the 5 s lease
    daemon.wait_for("file_loaded")
    wait_until(lambda: moto_workspace.listed("data") == [], what="the file was not moved")
    wait_until(lambda: queues.counts() == (0, 0), what="the message was not deleted")
    assert daemon.stop() == 0
    assert daemon.events("message_redelivered") == [] and len(daemon.events("file_seen")) == 1
    assert_exactly_once(moto_workspace, db, [content])


@pytest.mark.slow
def test_a_message_is_deleted_only_after_its_object_left_the_inbox(moto_workspace, db, queues):
    content = sample(2)
    moto_workspace.write("f.csv", content)
    daemon = moto_workspace.start(**{PAUSE: "30"})
    daemon.wait_for("file_loaded")
    daemon.kill()  # committed, not moved: its message must come back
    assert queues.counts()[1] == 1 and moto_workspace.listed("data") == ["f.csv"]
    final = moto_workspace.cli("--once")
    assert final.returncode == 0, final.stderr
    assert " message_redelivered " in final.stderr and " file_recovered file=f.csv" in final.stderr
    assert queues.counts() == (0, 0)
    assert_exactly_once(moto_workspace, db, [content])


def test_test_events_and_events_outside_the_inbox_are_acknowledged(moto_workspace, db, queues):
    content = sample(3)
    moto_workspace.write("f.csv", content)
    moto_workspace.write(".partial/x.csv", b"not the inbox's")  # under incoming/, but in a hidden "folder"
    moto_workspace.write("notes.txt", b"not input")
    result = moto_workspace.cli("--once")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" event_ignored ") == 2
    assert queues.counts() == (0, 0)
    moto_workspace.s3.delete_object(Bucket=moto_workspace.bucket, Key="incoming/.partial/x.csv")
    moto_workspace.s3.delete_object(Bucket=moto_workspace.bucket, Key="incoming/notes.txt")
    assert_exactly_once(moto_workspace, db, [content])


def test_a_queue_needs_an_s3_inbox(workspace):
    result = workspace.cli("--once", QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/123456789012/q")
    assert result.returncode == 2
    assert (
        "QUEUE_URL='https://sqs.eu-west-1.amazonaws.com/123456789012/q' is invalid: expected no queue unless DATA_FOLDER" in result.stderr
    )


def test_messages_of_the_store_name_objects(queues, moto_workspace):
    """The bodies a worker parses are S3's own: keys URL-encoded (checked against core.events)."""
    from sensor_etl.core import events

    moto_workspace.write("a b+c.csv", b"x")
    bodies = [m["Body"] for m in queues.take(2)]
    assert events.from_body(bodies[0]) == ()  # s3:TestEvent
    assert events.from_body(bodies[1]) == (events.ObjectRef(moto_workspace.bucket, "incoming/a b+c.csv"),)
    assert json.loads(bodies[1])["Records"][0]["s3"]["object"]["key"] != "incoming/a b+c.csv"
