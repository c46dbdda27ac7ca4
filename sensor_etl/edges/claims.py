"""Leases on inbox files, so that many workers (processes, daemons, hosts) share one folder and each
file is handled by one worker at a time.

A claim is a row in ``file_claims`` keyed by the inbox (its location: a folder's absolute path or an
s3:// URL) and the file name, so two inboxes with the same file names never block each other. It is taken with one atomic upsert that
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

# The CTE reads an expired previous owner only to log the takeover; the upsert alone decides who holds
# the file (a row deleted by its owner's release meanwhile is simply replaced, and not logged).
_CLAIM = """
WITH previous AS (
    SELECT owner FROM file_claims WHERE inbox = %(inbox)s AND name = %(name)s AND expires_at < clock_timestamp()
)
INSERT INTO file_claims AS c (inbox, name, owner, claimed_at, expires_at)
VALUES (%(inbox)s, %(name)s, %(owner)s, clock_timestamp(), clock_timestamp() + make_interval(secs => %(lease)s))
ON CONFLICT (inbox, name) DO UPDATE
    SET owner = excluded.owner, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
    WHERE c.expires_at < clock_timestamp() OR c.owner = excluded.owner
RETURNING (SELECT owner FROM previous)
"""
_RENEW = """
UPDATE file_claims SET expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE owner = %(owner)s AND inbox = %(inbox)s AND name = ANY(%(names)s)
"""
_CONFIRM = """
UPDATE file_claims SET expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE inbox = %(inbox)s AND name = %(name)s AND owner = %(owner)s
"""
_RELEASE = "DELETE FROM file_claims WHERE inbox = %(inbox)s AND name = %(name)s AND owner = %(owner)s"


class Claims:
    """The leases one worker holds (at most one file at a time in practice)."""

    def __init__(self, database: Database, owner: str, lease_seconds: float, inbox: str) -> None:
        self.db = database
        self.owner = owner
        self.inbox = inbox
        self.lease = lease_seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, name: str) -> bool:
        """Take the file unless a live lease (another worker's, not yet expired) holds it."""
        rows = self.db.query(_CLAIM, {"inbox": self.inbox, "name": name, "owner": self.owner, "lease": self.lease}, durable=False)
        if not rows:
            return False
        previous = rows[0][0]
        if previous is not None and previous != self.owner:
            logs.warning("claim_taken_over", file=name, previous_owner=previous, reason=f"its lease of {self.lease:g}s expired")
        with self._lock:
            self._held.add(name)
        return True

    def confirm(self, cursor: psycopg2.extensions.cursor, name: str) -> None:
        """Inside the load transaction, just before COMMIT: still ours? The row lock taken here makes
        a takeover wait for the COMMIT, and the renewed lease covers the move that follows."""
        cursor.execute(_CONFIRM, {"inbox": self.inbox, "name": name, "owner": self.owner, "lease": self.lease})
        if cursor.rowcount != 1:
            raise ClaimLost(f"the lease on {name} expired and another worker took it over")

    def release(self, name: str) -> None:
        """The file has left the inbox, or this worker is done trying for now."""
        with self._lock:
            self._held.discard(name)
        self.db.query(_RELEASE, {"inbox": self.inbox, "name": name, "owner": self.owner}, durable=False)

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
                database.query(_RENEW, {"owner": self.owner, "inbox": self.inbox, "names": names, "lease": self.lease}, durable=False)
            except DatabaseError as exc:  # the load's own retries decide about the outage; the fence guards the commit
                database.discard()
                logs.warning("heartbeat_failed", files=len(names), error=exc)
