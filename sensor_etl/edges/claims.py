"""Leases on inbox files, so that many workers (processes, daemons, hosts) share one folder and each
file is handled by one worker at a time.

A claim is a row in ``file_claims`` keyed by the file name. It is taken with one atomic upsert that
overwrites only an expired row, renewed by a heartbeat thread on its own connection while the worker
holds it, confirmed inside the load transaction just before COMMIT (a fence: a worker whose lease was
taken over cannot commit), and deleted once the file has left the inbox. Every time is the database
server's clock, so hosts with skewed clocks agree. The sha256 UNIQUE ledger stays the last defence.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2.extensions

from sensor_etl.edges.db import Database
from sensor_etl.errors import ClaimLost, DatabaseError
from sensor_etl.ops import logs

# One statement for a batch of names. The CTE reads expired previous owners only to log the takeovers;
# the upsert alone decides who holds each file (a row deleted by its owner's release meanwhile is simply
# replaced, and not logged). Rows are taken in name order, so two workers claiming overlapping batches
# lock them in the same order and never deadlock.
_CLAIM = """
WITH previous AS (SELECT name, owner FROM file_claims WHERE name = ANY(%(names)s) AND expires_at < clock_timestamp())
INSERT INTO file_claims AS c (name, owner, claimed_at, expires_at)
SELECT name, %(owner)s, clock_timestamp(), clock_timestamp() + make_interval(secs => %(lease)s)
FROM unnest(%(names)s::text[]) AS wanted(name) ORDER BY name
ON CONFLICT (name) DO UPDATE
    SET owner = excluded.owner, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
    WHERE c.expires_at < clock_timestamp() OR c.owner = excluded.owner
RETURNING c.name, (SELECT p.owner FROM previous AS p WHERE p.name = c.name)
"""
_RENEW = """
UPDATE file_claims SET expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE owner = %(owner)s AND name = ANY(%(names)s)
"""
_RELEASE = "DELETE FROM file_claims WHERE name = ANY(%(names)s) AND owner = %(owner)s"


class Claims:
    """The leases one worker holds: one file, or the files of one batch."""

    def __init__(self, database: Database, owner: str, lease_seconds: float) -> None:
        self.db = database
        self.owner = owner
        self.lease = lease_seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, name: str) -> bool:
        """Take the file unless a live lease (another worker's, not yet expired) holds it."""
        return bool(self.claim_many([name]))

    def claim_many(self, names: list[str]) -> list[str]:
        """Take each file no live lease (another worker's, not yet expired) holds, in one statement; the names taken."""
        rows = self.db.query(_CLAIM, {"names": names, "owner": self.owner, "lease": self.lease}, durable=False)
        for name, previous in rows:
            if previous is not None and previous != self.owner:
                logs.warning("claim_taken_over", file=name, previous_owner=previous, reason=f"its lease of {self.lease:g}s expired")
        taken = {name for name, _ in rows}
        with self._lock:
            self._held |= taken
        return [name for name in names if name in taken]

    def confirm(self, cursor: psycopg2.extensions.cursor, names: list[str]) -> None:
        """Inside the load transaction, just before COMMIT: still ours, every one? The row locks taken
        here make a takeover wait for the COMMIT, and the renewed leases cover the moves that follow."""
        cursor.execute(_RENEW, {"names": names, "owner": self.owner, "lease": self.lease})
        if cursor.rowcount != len(set(names)):
            raise ClaimLost(
                f"the lease on {names[0] if len(names) == 1 else 'a file of the batch'} expired and another worker took it over"
            )

    def release(self, names: list[str]) -> None:
        """The files have left the inbox, or this worker is done trying for now: one statement."""
        with self._lock:
            self._held.difference_update(names)
        self.db.query(_RELEASE, {"names": names, "owner": self.owner}, durable=False)

    @contextmanager
    def heartbeat(self, database: Database) -> Iterator[None]:
        """While the block runs, renew the held leases every third of LEASE_SECONDS on ``database``
        (its own connection: renewals must not queue behind a long COPY)."""
        done = threading.Event()
        thread = threading.Thread(target=self._beat, args=(database, done), name="claims-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            database.discard()

    def _beat(self, database: Database, done: threading.Event) -> None:
        while not done.wait(self.lease / 3):
            with self._lock:
                names = sorted(self._held)
            if not names:
                continue
            try:
                database.query(_RENEW, {"owner": self.owner, "names": names, "lease": self.lease}, durable=False)
            except DatabaseError as exc:  # the load's own retries decide about the outage; the fence guards the commit
                database.discard()
                logs.warning("heartbeat_failed", files=len(names), error=exc)
