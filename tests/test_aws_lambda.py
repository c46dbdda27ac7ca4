"""The AWS Lambda handler, called in this process as Lambda calls it, with events that the object store
itself emitted: moto's S3 sends its notifications (S3 → SQS, and S3 → EventBridge → SQS) to queues
the tests read them from, so keys arrive URL-encoded and a first s3:TestEvent arrives, as from S3.
A real PostgreSQL; every test ends with ``assert_exactly_once``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from sensor_etl import aws_lambda
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.s3servers import Queues, aws_env, client
from tests.helpers.samples import multi_csv

BAD = b"timestamp,sensor_id,temperature\n2024-02-01T00:00:00Z,s1,999\n"


def sample(index: int) -> bytes:
    return multi_csv(2, 3, start=datetime(2024, 1, 1) + timedelta(days=index), seed=index).encode()


class Clock:
    """A Lambda context whose remaining time the test sets."""

    def __init__(self, millis: int = 600_000) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


@pytest.fixture
def function(moto_workspace, monkeypatch) -> Iterator[object]:
    """The handler's environment (the workspace's settings), cold at the start of each test."""
    for variable, value in {**moto_workspace.env, **aws_env(moto_workspace.endpoint)}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(aws_lambda, "_runtime", None)
    yield aws_lambda
    if aws_lambda._runtime is not None:
        aws_lambda._runtime.resources.close()
        aws_lambda._runtime.daemon.db.close()


@pytest.fixture
def captured(moto_workspace) -> Queues:
    """A queue the bucket's S3 notifications go to, for the test to read them as the function would get them."""
    queues = Queues(moto_workspace.endpoint, f"capture-{moto_workspace.bucket}")
    queues.notified_by(moto_workspace.s3, moto_workspace.bucket)
    return queues


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """The event Lambda's SQS trigger builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def test_s3_events_delivered_directly_twice_and_out_of_order_load_each_object_once(moto_workspace, db, function, captured, capfd):
    contents = {"a.csv": sample(1), "b c+d.csv": sample(2), "bad.csv": BAD}  # a space and a plus: URL-encoded in the events
    test_event, *_ = captured.take(1)
    assert json.loads(test_event["Body"])["Event"] == "s3:TestEvent"
    notes = {}
    for name, content in contents.items():
        moto_workspace.write(name, content)
        (message,) = captured.take(1)
        notes[name] = json.loads(message["Body"])
    assert notes["b c+d.csv"]["Records"][0]["s3"]["object"]["key"] == "incoming%2Fb+c%2Bd.csv"  # as the store sent it
    for name in ("b c+d.csv", "bad.csv", "a.csv", "b c+d.csv", "a.csv"):  # B before A, and each of them twice
        assert function.handler(notes[name], Clock()) == {"batchItemFailures": []}
    assert function.handler(json.loads(test_event["Body"]), Clock()) == {"batchItemFailures": []}
    log = capfd.readouterr().err
    assert log.count(" file_loaded ") == 2 and log.count(" file_quarantined ") == 1
    assert log.count(" object_gone ") == 2  # the second deliveries: moved already, a success
    assert moto_workspace.listed("processed") == ["a.csv", "b c+d.csv"]
    assert moto_workspace.listed("quarantine") == ["bad.csv", "bad.csv.error.json"]
    assert_exactly_once(moto_workspace, db, contents.values(), quarantined=[BAD])


def test_an_sqs_batch_with_one_bad_message_reports_only_that_one(moto_workspace, db, function, captured):
    contents = [sample(i) for i in range(3)]
    for i, content in enumerate(contents):
        moto_workspace.write(f"f{i}.csv", content)
    messages = captured.take(4)  # the s3:TestEvent and three ObjectCreated
    captured.sqs.send_message(QueueUrl=captured.url, MessageBody="{not json")
    messages += captured.take(1)
    event = sqs_event(messages, captured.arn(captured.url))
    answer = function.handler(event, Clock())
    assert answer == {"batchItemFailures": [{"itemIdentifier": messages[-1]["MessageId"]}]}
    assert function.handler(event, Clock()) == answer  # the whole batch again: the same answer, nothing loaded twice
    assert_exactly_once(moto_workspace, db, contents)


def test_eventbridge_events_are_handled_with_their_keys_as_they_are(moto_workspace, db, function):
    queues = Queues(moto_workspace.endpoint, f"bridge-{moto_workspace.bucket}")
    queues.eventbridge_to_me(moto_workspace.bucket, moto_workspace.s3)
    content = sample(3)
    moto_workspace.write("with space+plus.csv", content)
    bodies = [json.loads(m["Body"]) for m in queues.take(1)]
    assert bodies[0]["detail-type"] == "Object Created" and bodies[0]["detail"]["object"]["key"] == "incoming/with space+plus.csv"
    assert function.handler(bodies[0], Clock()) == {"batchItemFailures": []}
    assert_exactly_once(moto_workspace, db, [content])


def test_near_its_time_limit_the_handler_leaves_the_object_for_redelivery(moto_workspace, db, function, captured):
    content = sample(4)
    moto_workspace.write("late.csv", content)
    messages = captured.take(2)[1:]
    event = sqs_event(messages, captured.arn(captured.url))
    assert function.handler(event, Clock(millis=20_000)) == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    assert moto_workspace.listed("data") == ["late.csv"] and db.value("SELECT count(*) FROM ingested_files") == 0
    direct = json.loads(messages[0]["Body"])
    with pytest.raises(aws_lambda.LeftForRedelivery):  # invoked directly: failing makes Lambda deliver it again
        function.handler(direct, Clock(millis=1_000))
    assert function.handler(event, Clock(millis=31_000)) == {"batchItemFailures": []}
    assert_exactly_once(moto_workspace, db, [content])


def test_warm_invocations_reuse_the_database_connection(moto_workspace, db, function, captured):
    contents = [sample(10 + i) for i in range(3)]
    pids = []
    captured.take(1)
    for i, content in enumerate(contents):
        moto_workspace.write(f"w{i}.csv", content)
        assert function.handler(json.loads(captured.take(1)[0]["Body"]), Clock()) == {"batchItemFailures": []}
        pids.append(function._runtime.daemon.db.query("SELECT pg_backend_pid()")[0][0])
    assert len(set(pids)) == 1
    assert db.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sensor-etl-lambda'") == 1
    assert_exactly_once(moto_workspace, db, contents)


def test_the_database_url_can_come_from_a_secret(moto_workspace, db, function, captured, monkeypatch):
    secret = client("secretsmanager", moto_workspace.endpoint).create_secret(Name=f"db-{moto_workspace.bucket}", SecretString=db.dsn)
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DATABASE_URL_SECRET", secret["ARN"])
    content = sample(20)
    moto_workspace.write("s.csv", content)
    assert function.handler(json.loads(captured.take(2)[1]["Body"]), Clock()) == {"batchItemFailures": []}
    assert_exactly_once(moto_workspace, db, [content])
