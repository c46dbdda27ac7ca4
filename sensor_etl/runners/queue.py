"""QUEUE_URL: daemon workers that take their work from S3 event notifications in SQS instead of
listing the bucket (a listing does not scale to millions of objects a day).

A pass receives up to ten messages, holds them (hidden for twice LEASE_SECONDS, extended every third
of that while the worker lives), and takes the objects each names through the daemon's
per-file path (``events.handle_objects``). A message is deleted only once its objects have left the
inbox; one that is not done is released and comes back after its visibility timeout, until the
queue's redrive policy moves it to the dead-letter queue. Everything else — the loop, claims, the
decisions, the exit codes — is the daemon's.
"""

from __future__ import annotations

import threading
from typing import Any

from sensor_etl.config import Settings
from sensor_etl.core import events
from sensor_etl.edges.db import Database
from sensor_etl.edges.inbox import Inbox
from sensor_etl.edges.s3 import S3Inbox
from sensor_etl.edges.sqs import Queue, Received
from sensor_etl.errors import ConfigError, TransientStorageError
from sensor_etl.ops import logs
from sensor_etl.runners import retry
from sensor_etl.runners.daemon import Daemon, Pass
from sensor_etl.runners.events import handle_objects
from sensor_etl.sources import Sources


class QueueDaemon(Daemon):
    """The daemon with the queue as its source of work."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        stop: threading.Event | None = None,
        sources: Sources | None = None,
        inbox: Inbox[Any] | None = None,
        queue: Queue | None = None,
    ) -> None:
        super().__init__(settings, database, stop, sources, inbox)
        if not isinstance(self.inbox, S3Inbox) or not settings.queue_url:
            raise ConfigError("QUEUE_URL", settings.queue_url, "a queue of S3 event notifications for an s3:// DATA_FOLDER")
        self.objects: S3Inbox = self.inbox
        self.queue = queue or Queue(settings.queue_url, retry.storage_retrier(settings, self.stop))
        # Twice the claims' lease: a dead worker's claims (renewed every LEASE_SECONDS/3) outlive it by at
        # most LEASE_SECONDS, its messages stay hidden for at least 4/3 of it, so a redelivery finds the
        # file free to take over. With equal times the message could come back first, find the file
        # still claimed and waste a receive, which counts towards the dead-letter queue (seen in test_queue).
        self.visibility = 2 * settings.lease_seconds
        self.unfinished: set[str] = set()  # message ids this worker left undone and did not finish later
        self.once = False

    def run(self, once: bool) -> int:
        """The daemon's loop over queue passes; with --once it ends when the queue is empty and nothing
        is in flight, and exits 1 if a message this worker received was never done."""
        self.once = once
        with self.queue.heartbeat(self.visibility):
            code = super().run(once)
        if code == 0 and once and self.unfinished:
            logs.error("messages_unfinished", messages=len(self.unfinished), action="delivered again later, or in the dead-letter queue")
            return 1
        return code

    def scan_once(self) -> Pass:
        try:
            received = self.queue.receive(wait=max(1.0, self.settings.monitor_interval), visibility=self.visibility)
            if not received:  # with --once: done when nothing waits and nothing is in flight (another worker's, or ours to come back)
                return Pass(busy=self.once and self.queue.backlog() > 0)
        except TransientStorageError as exc:
            logs.error("queue_unreadable", queue=self.queue.url, error=exc)
            return Pass(waiting=True)
        for message in received:
            self.queue.hold(message)
            if message.receives > 1:
                logs.info("message_redelivered", message=message.id, receives=message.receives)
        progress = False
        for index, message in enumerate(received):
            if self.stop.is_set():  # not tried: visible to the other workers at once
                for untried in received[index:]:
                    self.queue.release(untried, now=True)
                return Pass(waiting=True, busy=True)
            done = self._done(message)
            self.queue.release(message)
            if done:
                self.queue.delete(message)
                self.unfinished.discard(message.id)
                progress = True
            else:
                self.unfinished.add(message.id)
        # More may wait behind these: never settled after messages. A pass that finished none counts
        # towards --once giving up, as a scan that moved no file does.
        return Pass(waiting=not progress, busy=True)

    def _done(self, message: Received) -> bool:
        try:
            objects = events.from_body(message.body)
        except ValueError as exc:
            logs.error("message_unreadable", message=message.id, receives=message.receives, error=exc, action="left to the redrive policy")
            return False
        return handle_objects(self, self.objects, objects)

    def pause(self, left: Pass, once: bool) -> float:
        return 0.0  # a receive waits for messages itself (a long poll)
