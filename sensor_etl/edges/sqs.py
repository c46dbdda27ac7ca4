"""The queue of work (QUEUE_URL): S3 event notifications in an SQS queue, received, kept, deleted.

A received message is invisible to other workers for its visibility timeout: the queue's lease, as
claims are for folders. While the worker holds it, a heartbeat thread extends it every third of
LEASE_SECONDS, so a big file keeps its message; a worker that dies stops extending, and the message
comes back for another. A message is deleted only once its object has left the inbox; one that
keeps failing comes back until the queue's redrive policy (``maxReceiveCount``) moves it to the
dead-letter queue.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sensor_etl.edges import aws
from sensor_etl.edges.inbox import Retrier
from sensor_etl.errors import StorageError
from sensor_etl.ops import logs

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

_REGION = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
MAX_WAIT = 20  # seconds: SQS's longest long poll


@dataclass(frozen=True)
class Received:
    id: str
    receipt: str
    body: str
    receives: int  # how many times it was received, this one included


class Queue:
    """One SQS queue: receive, hold (visibility kept extended), delete."""

    def __init__(self, url: str, retrying: Retrier, sqs: SQSClient | None = None) -> None:
        self.url = url
        self.retrying = retrying
        region = _REGION.match(url)
        self.sqs: SQSClient = sqs or aws.client("sqs", **({"region_name": region.group(1)} if region else {}))
        self._held: dict[str, str] = {}  # message id -> receipt handle
        self._lock = threading.Lock()

    def receive(self, *, wait: float, visibility: float, limit: int = 10) -> list[Received]:
        """Up to ``limit`` messages, long-polling up to ``wait`` seconds; each invisible to others for ``visibility``."""
        answer = aws.call(
            self.retrying,
            f"receive from {self.url}",
            lambda: self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=limit,
                WaitTimeSeconds=int(min(wait, MAX_WAIT)),
                VisibilityTimeout=int(visibility),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ),
        )
        return [
            Received(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""), int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
            for m in answer.get("Messages", [])
        ]

    def delete(self, message: Received) -> None:
        aws.call(
            self.retrying, f"delete message {message.id}", lambda: self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)
        )

    def backlog(self) -> int:
        """Messages waiting or in flight (approximate, as SQS counts them)."""
        answer = aws.call(
            self.retrying,
            f"count {self.url}",
            lambda: self.sqs.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            ),
        )
        counts = answer["Attributes"]
        return int(counts.get("ApproximateNumberOfMessages", "0")) + int(counts.get("ApproximateNumberOfMessagesNotVisible", "0"))

    def hold(self, message: Received) -> None:
        with self._lock:
            self._held[message.id] = message.receipt

    def release(self, message: Received, *, now: bool = False) -> None:
        """Stop extending ``message``; with ``now``, make it visible again at once (it was not tried)."""
        with self._lock:
            self._held.pop(message.id, None)
        if now:
            aws.call(
                self.retrying,
                f"release message {message.id}",
                lambda: self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=0),
            )

    @contextmanager
    def heartbeat(self, visibility: float) -> Iterator[None]:
        """While the block runs, extend the held messages to ``visibility`` seconds every third of it."""
        done = threading.Event()
        thread = threading.Thread(target=self._beat, args=(visibility, done), name="queue-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _beat(self, visibility: float, done: threading.Event) -> None:
        while not done.wait(visibility / 3):
            with self._lock:
                receipts = list(self._held.values())
            for start in range(0, len(receipts), 10):  # a batch request takes ten
                self._extend(receipts[start : start + 10], int(visibility))

    def _extend(self, receipts: list[str], visibility: int) -> None:
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": visibility} for n, receipt in enumerate(receipts)
        ]
        try:
            answer = aws.call(
                self.retrying, "extend visibility", lambda: self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            )
        except StorageError as exc:
            logs.warning("visibility_not_extended", messages=len(entries), error=exc)
            return
        for failure in answer.get("Failed", []):
            logs.warning("visibility_not_extended", messages=1, error=failure.get("Message") or failure.get("Code"))
