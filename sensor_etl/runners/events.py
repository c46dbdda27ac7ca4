"""Objects named by S3 events, each taken through the daemon's per-file path (``Daemon.handle``):
the step the AWS Lambda handler and the queue workers share, so neither has decisions of its own.

A message is done — it may be deleted, or reported as a success — when each object it names has left
the inbox: loaded, found to be a duplicate, quarantined, or gone already (moved by an earlier
delivery of the same event: duplicate and out-of-order deliveries are successes). An object still
in the inbox (the database or the store unavailable, another worker holding it, no time left to
start it) leaves its message undone, to be delivered again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sensor_etl.core.events import ObjectRef
from sensor_etl.errors import TransientStorageError
from sensor_etl.ops import logs
from sensor_etl.runners.daemon import Daemon, Result

if TYPE_CHECKING:
    from sensor_etl.edges.s3 import S3Inbox

DONE = frozenset({Result.LOADED, Result.DUPLICATE, Result.QUARANTINED, Result.GONE})


def handle_objects(daemon: Daemon, inbox: S3Inbox, objects: Iterable[ObjectRef], *, may_start: Callable[[], bool] = lambda: True) -> bool:
    """Take each object through ``daemon.handle``; True when all have left the inbox. ``may_start``
    is asked before each object (the Lambda handler: is there time left to load it?)."""
    for ref in objects:
        if ref.bucket != inbox.data.bucket or not inbox.holds(ref.key):
            logs.info("event_ignored", object=f"s3://{ref.bucket}/{ref.key}", reason=f"not an input object of {inbox.location}")
            continue
        if not may_start():
            logs.warning("object_left", object=f"s3://{ref.bucket}/{ref.key}", reason="too little time left to start it; delivered again")
            return False
        try:
            current = inbox.object(ref.key)
        except TransientStorageError as exc:
            logs.error("file_deferred", file=ref.key, reason="object store unavailable after retries", error=exc)
            return False
        if current is None:
            logs.info(
                "object_gone", object=f"s3://{ref.bucket}/{ref.key}", reason="not in the inbox: moved already (a repeated or late event)"
            )
            continue
        if daemon.handle(current) not in DONE:
            return False
    return True
