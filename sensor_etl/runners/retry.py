"""Retrying transient errors — of the database (``db_retry``) or of an object store (``s3_retry``) —
with exponential backoff and jitter, every retry logged."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_random_exponential
from tenacity.stop import stop_base

from sensor_etl.config import Settings
from sensor_etl.errors import TransientDatabaseError, TransientStorageError
from sensor_etl.ops import logs


def retrying(
    what: str,
    *,
    attempts: int | None,
    max_wait: float,
    stop: threading.Event,
    before_retry: Callable[[], None] = lambda: None,
    on: type[Exception] = TransientDatabaseError,
    event: str = "db_retry",
) -> Retrying:
    """Retry ``on`` (``TransientDatabaseError`` unless told otherwise) up to ``attempts`` times
    (forever when None), waiting with exponential backoff and jitter up to ``max_wait`` seconds;
    ``stop`` ends the waits and the attempts. ``before_retry`` runs before each wait (the daemon
    drops its broken connection); each retry is logged as ``event``."""
    until: stop_base = stop_when_event_set(stop)
    if attempts is not None:
        until = stop_after_attempt(attempts) | until

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        before_retry()
        logs.warning(event, what=what, attempt=state.attempt_number, wait_s=round(state.upcoming_sleep, 2), error=exc)

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return Retrying(
        retry=retry_if_exception_type(on),
        stop=until,
        wait=wait_random_exponential(multiplier=0.5, max=max_wait),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def storage_retrier(settings: Settings, stop: threading.Event) -> Callable[[str], Retrying]:
    """How each object-store request is retried (``inbox.Retrier``): RETRY_ATTEMPTS on a throttled,
    5xx or reset answer, with the database's backoff, logged as ``s3_retry``, cut short by ``stop``."""

    def retrying_storage(what: str) -> Retrying:
        return retrying(
            what, attempts=settings.retry_attempts, max_wait=settings.retry_max_wait, stop=stop, on=TransientStorageError, event="s3_retry"
        )

    return retrying_storage
