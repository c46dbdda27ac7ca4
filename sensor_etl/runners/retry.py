"""Retrying transient database errors: exponential backoff with jitter, every retry logged (``db_retry``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_random_exponential
from tenacity.stop import stop_base

from sensor_etl.errors import TransientDatabaseError
from sensor_etl.ops import logs


def retrying(what: str, *, attempts: int | None, max_wait: float, stop: threading.Event, before_retry: Callable[[], None]) -> Retrying:
    """Retry ``TransientDatabaseError`` up to ``attempts`` times (forever when None), waiting with
    exponential backoff and jitter up to ``max_wait`` seconds; ``stop`` ends the waits and the
    attempts. ``before_retry`` runs before each wait (the daemon drops its broken connection)."""
    until: stop_base = stop_when_event_set(stop)
    if attempts is not None:
        until = stop_after_attempt(attempts) | until

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        before_retry()
        logs.warning("db_retry", what=what, attempt=state.attempt_number, wait_s=round(state.upcoming_sleep, 2), error=exc)

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return Retrying(
        retry=retry_if_exception_type(TransientDatabaseError),
        stop=until,
        wait=wait_random_exponential(multiplier=0.5, max=max_wait),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
