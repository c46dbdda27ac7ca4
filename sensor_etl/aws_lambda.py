"""The AWS Lambda function: ``sensor_etl.aws_lambda.handler(event, context)`` (deploy/aws/template.yaml).

It is invoked with S3 event notifications delivered directly (S3 → Lambda), through SQS (S3 → SQS →
Lambda: the template's wiring), or by EventBridge (``core.events`` reads all three), and takes each
object they name through the daemon's per-file path (``runners.events.handle_objects`` →
``Daemon.handle``): the same claim, transaction, ledger and moves, so the same guarantee.

- **Idempotent.** An object already moved, or a content already in the ledger, is a success: a
  repeated or late event changes nothing.
- **Partial batch failures.** With SQS, the answer lists only the messages not done
  (``batchItemFailures``; the event source mapping must have ``ReportBatchItemFailures``), so only
  those come back. Invoked directly, any object not done makes the invocation fail, and Lambda
  delivers the event again (its retries, then its on-failure destination).
- **Near its time limit** (less than HANDLER_RESERVE_SECONDS left) it starts no further object: the
  object's message is reported failed and comes back, rather than a load being cut off.
- **Warm invocations** reuse the settings, the database connection (and the claims' heartbeat
  connection) and the S3 client, kept in this module between invocations.

Settings come from the environment as for the daemon; the database is DATABASE_URL or, better,
DATABASE_URL_SECRET (a Secrets Manager secret).
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from sensor_etl.config import Settings, load_settings
from sensor_etl.core import events
from sensor_etl.edges.db import Database
from sensor_etl.edges.s3 import S3Inbox
from sensor_etl.edges.secrets import with_database_secret
from sensor_etl.errors import ConfigError
from sensor_etl.ops import logs
from sensor_etl.runners import retry
from sensor_etl.runners.daemon import Daemon
from sensor_etl.runners.events import handle_objects


class Context(Protocol):
    """What the handler uses of the Lambda context object."""

    def get_remaining_time_in_millis(self) -> int: ...


class LeftForRedelivery(RuntimeError):
    """A direct (asynchronous) invocation left objects in the inbox: failing it makes Lambda deliver the event again."""


@dataclass
class Runtime:
    """What warm invocations share."""

    settings: Settings
    daemon: Daemon
    inbox: S3Inbox
    resources: ExitStack  # the claims' heartbeat, kept running between invocations


_runtime: Runtime | None = None


def handler(event: dict[str, Any], context: Context | None) -> dict[str, Any]:
    """Handle one invocation; see the module's docstring."""
    runtime = _warm()
    reserve_ms = runtime.settings.handler_reserve_seconds * 1000

    def may_start() -> bool:
        return context is None or context.get_remaining_time_in_millis() > reserve_ms

    received = events.messages(event)
    failed = []
    for message in received:
        if message.objects is None:
            logs.error("message_unreadable", message=message.id, action="failed: left to the redrive policy")
            failed.append(message)
        elif not handle_objects(runtime.daemon, runtime.inbox, message.objects, may_start=may_start):
            failed.append(message)
    if any(message.id is not None for message in received):  # SQS: only the failed messages come back
        return {"batchItemFailures": [{"itemIdentifier": message.id} for message in failed]}
    if failed:
        raise LeftForRedelivery("objects were left in the inbox; the event is to be delivered again")
    return {"batchItemFailures": []}


def _warm() -> Runtime:
    """The runtime of this execution environment, started by its first (cold) invocation."""
    global _runtime
    if _runtime is None:
        _runtime = start()
    return _runtime


def start() -> Runtime:
    """Settings from the environment, the database reached and its schema applied, the inbox checked."""
    stop = threading.Event()
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    settings = with_database_secret(settings, retry.storage_retrier(settings, stop))
    if settings.embedded:
        raise ConfigError("DATABASE_URL", "", "a server to load into, or DATABASE_URL_SECRET: a function has no embedded PostgreSQL")
    database = Database(settings.connection_kwargs(), application_name="sensor-etl-lambda")
    daemon = Daemon(settings, database, stop)
    if not isinstance(daemon.inbox, S3Inbox):
        raise ConfigError("DATA_FOLDER", str(settings.data_folder), "an s3:// location for the function")
    daemon.inbox.prepare()
    daemon.connect(settings.retry_attempts)
    resources = ExitStack()
    resources.enter_context(daemon.claims.heartbeat(database.another("sensor-etl-lambda-heartbeat")))
    return Runtime(settings, daemon, daemon.inbox, resources)
