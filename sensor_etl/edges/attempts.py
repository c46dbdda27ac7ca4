"""Failed attempts per content (sha256): how each ended, so that a file which kills its workers is
quarantined instead of being taken over and tried again forever.

An attempt fails when its worker is killed or crashes while it holds the file (its supervisor records
how it ended on its claims, see ``claims.end_owner``; the next worker finds the expired claim) or
when the file needs more than WORKER_MEMORY_LIMIT (the worker records it itself). The load reads
the count with its ledger row (``db.Database.load``); a loaded content's row is deleted in the load's
own transaction, a quarantined one's by ``forget``. A clean retry (a database outage, a stop, a
claim handed over from a worker that is still alive) records nothing.
"""

from __future__ import annotations

from sensor_etl.edges.db import Database

# A content already in the ledger was committed (a worker that died between its COMMIT and the move): no attempt failed.
_RECORD = """
INSERT INTO file_attempts AS a (sha256, file_name, failures)
SELECT %(sha256)s, %(name)s, jsonb_build_array(jsonb_build_object('at', clock_timestamp(), 'worker', %(worker)s, 'ended', %(ended)s))
WHERE NOT EXISTS (SELECT 1 FROM ingested_files WHERE sha256 = %(sha256)s)
ON CONFLICT (sha256) DO UPDATE SET failures = a.failures || excluded.failures, file_name = excluded.file_name, updated_at = now()
RETURNING jsonb_array_length(a.failures)
"""


def record(database: Database, sha256: str, name: str, worker: str, ended: str) -> int:
    """Count one failed attempt on the content; returns how many it has had (0: it is loaded already)."""
    rows = database.query(_RECORD, {"sha256": sha256, "name": name, "worker": worker, "ended": ended})
    return int(rows[0][0]) if rows else 0


def forget(database: Database, sha256: str) -> None:
    """The content left the inbox for good (quarantined): a requeued copy starts afresh."""
    database.query("DELETE FROM file_attempts WHERE sha256 = %s", (sha256,), durable=False)


def tried(database: Database, sha256s: list[str]) -> set[str]:
    """The contents among ``sha256s`` that have failed attempts: a batch leaves each of them to be
    loaded alone, so that a file which kills its worker does not take its batch-mates down again."""
    return {row[0] for row in database.query("SELECT sha256 FROM file_attempts WHERE sha256 = ANY(%s)", (sha256s,))}
