"""S3 event notifications as they reach the Lambda handler and the queue workers: which objects were
created. Pure parsing, no I/O.

The shapes understood:

- **S3 → Lambda** (or the body of an SQS message, S3 → SQS): ``{"Records": [{"eventSource":
  "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ...}, "object": {"key":
  ...}}}]}``. Keys are URL-encoded, a space as ``+`` (``"red flower.csv"`` arrives as
  ``"red+flower.csv"``, a plus as ``%2B``): decoded here.
- **S3 → SQS**, first message of a new notification configuration: ``{"Event": "s3:TestEvent", ...}``:
  no object, skipped.
- **S3 → SNS → SQS**: an SNS envelope whose ``Message`` is one of the above.
- **S3 → EventBridge** (→ Lambda, or → SQS): ``{"source": "aws.s3", "detail-type": "Object Created",
  "detail": {"bucket": {"name": ...}, "object": {"key": ...}}}``. These keys are not URL-encoded.

Other events (objects removed, tags added, restores) name no object to load. A message that is none of
these raises ``ValueError``: a poison message, left to the queue's redrive policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectRef:
    """A created object an event names."""

    bucket: str
    key: str


@dataclass(frozen=True)
class Message:
    """What is acknowledged, or reported failed, as a whole: one SQS message (``id`` is its message
    id), or a whole direct invocation (``id`` is None). ``objects`` is None when it cannot be read."""

    id: str | None
    objects: tuple[ObjectRef, ...] | None


def decoded(key: str) -> str:
    """A key as S3 notifications carry it (URL-encoded, a space as ``+``) → the object's key."""
    return unquote_plus(key)


def messages(event: Mapping[str, Any]) -> list[Message]:
    """The messages of a Lambda invocation: one per SQS record, or the whole event (S3 or EventBridge)."""
    records = event.get("Records")
    if isinstance(records, list) and records and all(isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records):
        return [Message(str(record.get("messageId")), _readable(record.get("body"))) for record in records]
    try:
        return [Message(None, created(event))]
    except ValueError:
        return [Message(None, None)]


def _readable(body: object) -> tuple[ObjectRef, ...] | None:
    try:
        return from_body(body)
    except ValueError:
        return None


def from_body(body: object) -> tuple[ObjectRef, ...]:
    """The objects an SQS message body names (S3, S3 via SNS, or EventBridge); ``ValueError`` if it is none of those."""
    if not isinstance(body, str):
        raise ValueError("the message has no text body")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the message body is not JSON: {exc}") from exc
    if isinstance(document, Mapping) and document.get("Type") == "Notification" and "Message" in document:  # SNS envelope
        return from_body(document["Message"])
    return created(document)


def created(document: object) -> tuple[ObjectRef, ...]:
    """The created objects an S3 notification or an EventBridge event names."""
    if not isinstance(document, Mapping):
        raise ValueError("the event is not a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return ()
    if document.get("source") == "aws.s3" and "detail" in document:
        if document.get("detail-type") != "Object Created":
            return ()
        detail = document["detail"]
        return (ObjectRef(_text(detail, "bucket", "name"), _text(detail, "object", "key")),)
    records = document.get("Records")
    if not isinstance(records, Sequence) or isinstance(records, str):
        raise ValueError("not an S3 event notification (no Records)")
    found = []
    for record in records:
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:s3":
            raise ValueError("a record that is not an S3 event")
        if str(record.get("eventName", "")).startswith("ObjectCreated:"):
            s3 = record.get("s3")
            found.append(ObjectRef(_text(s3, "bucket", "name"), decoded(_text(s3, "object", "key"))))
    return tuple(found)


def _text(document: object, outer: str, inner: str) -> str:
    value = document.get(outer, {}).get(inner) if isinstance(document, Mapping) and isinstance(document.get(outer), Mapping) else None
    if not isinstance(value, str) or not value:
        raise ValueError(f"the event has no {outer}.{inner}")
    return value
