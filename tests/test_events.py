"""core/events: which created objects an event names, in every shape it arrives in (pure; the shapes
as the store emits them are exercised with moto's own notifications in test_aws_lambda.py and test_queue.py)."""

from __future__ import annotations

import json

import pytest

from sensor_etl.core.events import Message, ObjectRef, created, decoded, from_body, messages

S3_EVENT = {
    "Records": [
        {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "in/red+flower%2B1.csv"}},
        },
        {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "in/gone.csv"}}},
    ]
}
BRIDGE = {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}, "object": {"key": "in/a b+c.csv"}}}


def test_keys_are_decoded_as_s3_notifications_encode_them():
    assert decoded("in/red+flower%2B1.csv") == "in/red flower+1.csv"
    assert decoded("incoming%2F%C3%BC.csv") == "incoming/ü.csv"


def test_created_objects_of_each_shape():
    assert created(S3_EVENT) == (ObjectRef("b", "in/red flower+1.csv"),)  # the removal names nothing to load
    assert created(BRIDGE) == (ObjectRef("b", "in/a b+c.csv"),)  # EventBridge keys are not encoded
    assert created({**BRIDGE, "detail-type": "Object Deleted"}) == ()
    assert created({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}) == ()
    sns = {"Type": "Notification", "Message": json.dumps(S3_EVENT)}
    assert from_body(json.dumps(sns)) == (ObjectRef("b", "in/red flower+1.csv"),)


@pytest.mark.parametrize(
    "body",
    [
        "{poison",
        "[1, 2]",
        json.dumps({"Records": "no"}),
        json.dumps({"Records": [{"eventSource": "aws:sqs"}]}),
        json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}),
    ],
)
def test_anything_else_is_unreadable(body):
    with pytest.raises(ValueError):
        from_body(body)


def test_messages_of_an_invocation():
    sqs = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": json.dumps(S3_EVENT)},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": "x"},
        ]
    }
    assert messages(sqs) == [Message("m1", (ObjectRef("b", "in/red flower+1.csv"),)), Message("m2", None)]
    assert messages(BRIDGE) == [Message(None, (ObjectRef("b", "in/a b+c.csv"),))]
    assert messages({"unexpected": True}) == [Message(None, None)]
