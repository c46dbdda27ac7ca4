"""Leases on inbox files, so that many workers (processes, daemons, hosts) share one folder and each
file is handled by one worker at a time.

A claim is a row in ``file_claims`` keyed by the inbox (its location: a folder's absolute path or an
s3:// URL) and the file name, so two inboxes with the same file names never block each other. It is taken with one atomic upsert that
overwrites only an expired row, renewed by a heartbeat thread on its own connection while the worker
holds it, confirmed inside the load transaction just before COMMIT (a fence: a worker whose lease was
taken over cannot commit), and deleted once the file has left the inbox. Every time is the database
server's clock, so hosts with skewed clocks agree. The sha256 UNIQUE ledger stays the last defence.

A claim taken over from an owner that died holding it is a failed attempt on the file
(``Taken.failed_attempt``, counted in ``attempts``): the supervisor of a worker that died records how
it ended on its claims and expires them at once (``end_owner``); without one (WORKERS=1, a daemon
killed and restarted), an owner on this host whose process is gone, or one on another host whose
lease expired, died too.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2.extensions

from sensor_etl.edges.db import Database
from sensor_etl.errors import ClaimLost, DatabaseError
from sensor_etl.ops import logs

# One statement for a batch of names. The CTE reads expired previous owners (and how they ended) only to log
# the takeovers and tell failed attempts (``Taken``); the upsert alone decides who holds each file (a row
# deleted by its owner's release meanwhile is simply replaced, and not logged). Rows are taken in name order, so two workers claiming overlapping batches
# lock them in the same order and never deadlock.
_CLAIM = """
WITH previous AS (
    SELECT name, owner, ended FROM file_claims
    WHERE inbox = %(inbox)s AND name = ANY(%(names)s) AND expires_at < clock_timestamp()
)
INSERT INTO file_claims AS c (inbox, name, owner, claimed_at, expires_at)
SELECT %(inbox)s, name, %(owner)s, clock_timestamp(), clock_timestamp() + make_interval(secs => %(lease)s)
FROM unnest(%(names)s::text[]) AS wanted(name) ORDER BY name
ON CONFLICT (inbox, name) DO UPDATE
    SET owner = excluded.owner, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at, ended = NULL
    WHERE c.expires_at < clock_timestamp() OR c.owner = excluded.owner
RETURNING c.name, (SELECT p.owner FROM previous AS p WHERE p.name = c.name), (SELECT p.ended FROM previous AS p WHERE p.name = c.name)
"""
_RENEW = """
UPDATE file_claims SET expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE owner = %(owner)s AND inbox = %(inbox)s AND name = ANY(%(names)s)
"""
_RELEASE = "DELETE FROM file_claims WHERE inbox = %(inbox)s AND name = ANY(%(names)s) AND owner = %(owner)s"
_END = """
UPDATE file_claims SET ended = %(ended)s, expires_at = clock_timestamp()
WHERE starts_with(owner, %(prefix)s)
RETURNING name
"""
_SWEEP = "DELETE FROM file_claims WHERE inbox = ANY(%(inboxes)s) AND expires_at < clock_timestamp()"
UNSEEN = "ended without releasing the file (killed or crashed; no supervisor saw how)"


def worker_id(pid: int | None = None) -> str:
    """``host:pid`` of a worker process (this one by default); its claims' owner adds a token per life."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def owner_gone(owner: str) -> bool:
    """Whether a claim's owner (``host:pid:token``, not this one) has ended: on this host, its process
    no longer runs, or it was an earlier life of this very pid (a restarted container); on another
    host nothing but its expired lease can tell, so it counts as gone."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process of that pid: alive
        return False
    return False


def sweep(database: Database, inboxes: list[str]) -> None:
    """Forget the expired claims of ``inboxes``. Called after a pass that left nothing behind, when each
    of them names a file no longer waiting: a worker killed between a file's move and its release
    leaves one behind (nothing else would ever take it over)."""
    database.query(_SWEEP, {"inboxes": inboxes}, durable=False)


def end_owner(database: Database, worker: str, ended: str) -> list[str]:
    """The supervisor saw ``worker`` (``host:pid``) die: its claims expire now, with how it ended, so
    the next worker takes each file over at once and counts the failed attempt. Returns the names."""
    return [row[0] for row in database.query(_END, {"prefix": f"{worker}:", "ended": ended}, durable=False)]


@dataclass(frozen=True)
class Taken:
    """A claim just taken. ``previous``: the other owner whose expired claim it replaced; ``ended``:
    how that owner ended, when its supervisor saw it die."""

    previous: str | None = None
    ended: str | None = None

    def failed_attempt(self) -> str | None:
        """How the previous owner's attempt on the file ended, if it died holding the file; None when
        there was no previous owner or it may still be alive (stalled longer than its lease)."""
        if self.previous is None:
            return None
        if self.ended is not None:
            return self.ended
        return UNSEEN if owner_gone(self.previous) else None


class Claims:
    """The leases one worker holds: one file, or the files of one batch."""

    def __init__(self, database: Database, owner: str, lease_seconds: float, inbox: str) -> None:
        self.db = database
        self.owner = owner
        self.inbox = inbox
        self.lease = lease_seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, name: str) -> Taken | None:
        """Take the file unless a live lease (another worker's, not yet expired) holds it; None if one does."""
        return self.claim_many([name]).get(name)

    def claim_many(self, names: list[str]) -> dict[str, Taken]:
        """Take each file no live lease (another worker's, not yet expired) holds, in one statement: the
        names taken (in the order given), each with the claim it replaced."""
        rows = self.db.query(_CLAIM, {"inbox": self.inbox, "names": names, "owner": self.owner, "lease": self.lease}, durable=False)
        taken: dict[str, Taken] = {}
        for name, previous, ended in rows:
            taken[name] = Taken()
            if previous is not None and previous != self.owner:
                taken[name] = Taken(previous, ended)
                reason = f"its owner {ended}" if ended else f"its lease of {self.lease:g}s expired"
                logs.warning("claim_taken_over", file=name, previous_owner=previous, reason=reason)
        with self._lock:
            self._held |= taken.keys()
        return {name: taken[name] for name in names if name in taken}

    def confirm(self, cursor: psycopg2.extensions.cursor, names: list[str]) -> None:
        """Inside the load transaction, just before COMMIT: still ours, every one? The row locks taken
        here make a takeover wait for the COMMIT, and the renewed leases cover the moves that follow."""
        cursor.execute(_RENEW, {"inbox": self.inbox, "names": names, "owner": self.owner, "lease": self.lease})
        if cursor.rowcount != len(set(names)):
            raise ClaimLost(
                f"the lease on {names[0] if len(names) == 1 else 'a file of the batch'} expired and another worker took it over"
            )

    def release(self, names: list[str]) -> None:
        """The files have left the inbox, or this worker is done trying for now: one statement."""
        with self._lock:
            self._held.difference_update(names)
        self.db.query(_RELEASE, {"inbox": self.inbox, "names": names, "owner": self.owner}, durable=False)

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
