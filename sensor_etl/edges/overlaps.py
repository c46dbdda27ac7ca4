"""Readings another file already holds (ON_OVERLAP): the cheap check every load makes before its commit,
and the row-level work of a file that overlaps. Statements on the load's own cursor, in its transaction.

A file's readings are COPYed before anything is known about other files. Just before the commit the
load locks its sensors and asks the metrics whether another file's ``[first_at, last_at]`` meets its own
on a sensor and UTC day (``check``): one indexed query, all that a file without overlap pays. A reading
of a key another file holds lies in a metrics row of each file on that sensor and day, so no overlap
escapes the check. Only a file that overlaps goes to its rows, within the sensor days that met:
``skip`` deletes its own readings whose key another file holds, ``replace`` deletes the other files'
readings instead (and moves them to those files' ``rows_skipped``), ``first_overlap`` finds the line to
name when the file is rejected. The metrics of every (file, sensor, day) that lost readings are then
recomputed in SQL from the readings left, so ``sensor_metrics_daily`` counts each reading once.

The locks are transaction-scoped advisory locks on buckets of sensor ids, taken in ascending order
(no deadlock between two loads): two workers loading overlapping files at the same time take turns
here, and the second one sees the first one's committed readings.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import psycopg2.extensions
import pyarrow as pa

LOCK_SPACE = 738917002  # first key of the two-key advisory locks; the schema's one-key lock is 738917001
LOCK_BUCKETS = 1024  # sensors share a lock per bucket: a file of 100,000 sensors takes 1,024 locks, not 100,000

_LOCK = "SELECT pg_advisory_xact_lock(%(space)s, bucket) FROM unnest(%(buckets)s::int[]) WITH ORDINALITY AS b(bucket, n) ORDER BY n"

# This file's metrics rows that another file's rows meet on a sensor and day.
_MEETING = """
SELECT m.sensor_id, m.day, m.first_at, m.last_at
FROM sensor_metrics AS m
WHERE m.file_id = %(file_id)s AND EXISTS (
    SELECT FROM sensor_metrics AS o
    WHERE o.sensor_id = m.sensor_id AND o.day = m.day AND o.file_id <> m.file_id
      AND o.first_at <= m.last_at AND o.last_at >= m.first_at)
"""
_CHECK = f"SELECT EXISTS ({_MEETING})"
# The same for the files of a batch at once, before their metrics are written: which of them another
# file's metrics meet, given each one's span on each sensor and day. One index probe on
# (sensor_id, day, last_at) per span, which looks only at the files ending after it starts (LATERAL ...
# ORDER BY last_at LIMIT 1 keeps the planner to those probes: as an EXISTS it hashed all of
# sensor_metrics and compared every span with every row of its sensor day, 0.4 s for a batch of 200
# files with 2,000 on the same day; without the ORDER BY it scanned the table once per span, 1 s).
_MEETING_SPANS = """
SELECT DISTINCT s.file_id
FROM unnest(%(files)s::bigint[], %(sensors)s::text[], %(days)s::date[], %(firsts)s::timestamptz[], %(lasts)s::timestamptz[])
    AS s(file_id, sensor_id, day, first_at, last_at)
CROSS JOIN LATERAL (
    SELECT FROM sensor_metrics AS o
    WHERE o.sensor_id = s.sensor_id AND o.day = s.day AND o.last_at >= s.first_at AND o.first_at <= s.last_at
    ORDER BY o.last_at LIMIT 1) AS met
"""

# The sensor days of this file that another file's metrics meet, with the span of its readings there.
_SPANS = f"""
WITH meeting AS ({_MEETING}),
spans AS (SELECT sensor_id, day, min(first_at) AS lo, max(last_at) AS hi FROM meeting GROUP BY sensor_id, day)"""
# r: a reading of this file within those spans; o: another file's reading of the same sensor and time.
_PAIR = """r.file_id = %(file_id)s AND r.sensor_id = s.sensor_id AND r.observed_at BETWEEN s.lo AND s.hi
    AND o.sensor_id = r.sensor_id AND o.observed_at = r.observed_at AND o.file_id <> r.file_id"""
_CONFLICTING = "(r.temperature_k, r.humidity_pct, r.pressure_hpa) IS DISTINCT FROM (o.temperature_k, o.humidity_pct, o.pressure_hpa)"

# One pass each: the join finds the pairs and the DELETE removes its side of each where it finds it, with
# no second primary-key lookup per reading (a fully overlapping 1M-row re-export, 20 sensors, load
# average ~10: 24.9 s for this statement against 26.9 s joining the DELETE back to a list of pairs;
# a hash join instead of the index probes, or ANALYZE first, measured 17-21 s either way).
_SKIP = f"""{_SPANS},
dropped AS (
    DELETE FROM sensor_readings AS r USING spans AS s, sensor_readings AS o WHERE {_PAIR}
    RETURNING r.sensor_id, s.day, {_CONFLICTING} AS conflicting)
SELECT %(file_id)s::bigint, sensor_id, day, count(*), count(*) FILTER (WHERE conflicting) FROM dropped GROUP BY sensor_id, day
"""

_REPLACE = f"""{_SPANS},
dropped AS (
    DELETE FROM sensor_readings AS o USING spans AS s, sensor_readings AS r WHERE {_PAIR}
    RETURNING o.file_id, o.sensor_id, s.day, {_CONFLICTING} AS conflicting)
SELECT file_id, sensor_id, day, count(*), count(*) FILTER (WHERE conflicting) FROM dropped GROUP BY file_id, sensor_id, day
"""

_FIRST = f"""{_SPANS}
SELECT r.line_no, r.sensor_id, r.observed_at, f.file_name, o.file_id, o.line_no, count(*) OVER ()
FROM spans AS s, sensor_readings AS r, sensor_readings AS o, ingested_files AS f
WHERE {_PAIR} AND f.file_id = o.file_id
ORDER BY r.line_no, o.file_id LIMIT 1
"""

_MOVED_TO_SKIPPED = """
UPDATE ingested_files AS f SET rows_loaded = f.rows_loaded - d.n, rows_skipped = f.rows_skipped + d.n
FROM (SELECT file_id, sum(n)::bigint AS n FROM unnest(%(files)s::bigint[], %(counts)s::bigint[]) AS d(file_id, n) GROUP BY file_id) AS d
WHERE f.file_id = d.file_id
"""

# The metrics of some (file, sensor, day) parts, recomputed from the readings they have left, as
# ``aggregate.summarize`` computes them: over present values only (a NULL measure counts nowhere, and
# a metric without a value in the part keeps no row), first_at/last_at spanning those values' readings.
_PARTS = "unnest(%(files)s::bigint[], %(sensors)s::text[], %(days)s::date[]) AS p(file_id, sensor_id, day)"
_RECOMPUTE = f"""
DELETE FROM sensor_metrics AS m USING {_PARTS}
WHERE m.file_id = p.file_id AND m.sensor_id = p.sensor_id AND m.day = p.day;
INSERT INTO sensor_metrics (file_id, sensor_id, day, metric, n, min, max, mean, std, m2, first_at, last_at)
SELECT p.file_id, p.sensor_id, p.day, v.metric, count(v.value), min(v.value), max(v.value), avg(v.value), stddev_samp(v.value),
       greatest(var_pop(v.value) * count(v.value), 0),
       min(r.observed_at) FILTER (WHERE v.value IS NOT NULL), max(r.observed_at) FILTER (WHERE v.value IS NOT NULL)
FROM {_PARTS}
JOIN sensor_readings AS r
  ON r.file_id = p.file_id AND r.sensor_id = p.sensor_id
 AND r.observed_at >= p.day::timestamp AT TIME ZONE 'UTC' AND r.observed_at < (p.day + 1)::timestamp AT TIME ZONE 'UTC'
CROSS JOIN LATERAL (VALUES ('temperature_k', r.temperature_k), ('humidity_pct', r.humidity_pct), ('pressure_hpa', r.pressure_hpa))
    AS v(metric, value)
GROUP BY p.file_id, p.sensor_id, p.day, v.metric
HAVING count(v.value) > 0
"""


@dataclass(frozen=True)
class Overlap:
    """What one file's overlap with other files came to: its readings not stored (``skipped``), of its
    overlapping readings those whose values differ from the other file's (``conflicting``), and the
    readings of older files it replaced (``replaced``)."""

    skipped: int = 0
    conflicting: int = 0
    replaced: int = 0


@dataclass(frozen=True)
class FirstOverlap:
    """The first line of a file whose reading another file holds, for the message that rejects it."""

    line: int
    sensor_id: str
    observed_at: datetime
    other_name: str
    other_file: int
    other_line: int
    readings: int  # how many of the file's readings overlap in all


def buckets(sensors: Iterable[str]) -> set[int]:
    """The lock buckets of some sensor ids; a load gathers its file's chunk by chunk (at most LOCK_BUCKETS
    of them, however many sensors the file has)."""
    return {zlib.crc32(sensor.encode("utf-8", "surrogatepass")) % LOCK_BUCKETS for sensor in sensors}


def lock(cursor: psycopg2.extensions.cursor, sensors: Iterable[str]) -> None:
    """Take the sensors' advisory locks (until the transaction ends), in ascending bucket order."""
    cursor.execute(_LOCK, {"space": LOCK_SPACE, "buckets": sorted(buckets(sensors))})


def check(cursor: psycopg2.extensions.cursor, file_id: int, locks: set[int]) -> bool:
    """Lock the file's sensors (their ``buckets``), then say whether another file's metrics meet this
    file's (its metrics are written). One round trip; the check is a statement of its own, so it sees
    what was committed while the locks were awaited."""
    cursor.execute(f"{_LOCK}; {_CHECK}", {"space": LOCK_SPACE, "buckets": sorted(locks), "file_id": file_id})
    row = cursor.fetchone()
    return bool(row and row[0])


def meeting(cursor: psycopg2.extensions.cursor, spans: pa.Table) -> set[int]:
    """``check`` for the files of a batch, before their metrics are written (so that the files of the
    batch do not meet each other: the daemon keeps two files sharing a reading out of one batch):
    lock all their sensors at once (ascending, so two batches never deadlock), then the files whose
    span on a sensor and day (``spans``: file_id, sensor_id, day, first_at, last_at) another file's
    metrics meet, in one round trip. A span covering all of a file's metrics on that day meets at least
    whatever one of them meets; a file found this way that shares no reading finds nothing to skip."""
    columns = {"files": "file_id", "sensors": "sensor_id", "days": "day", "firsts": "first_at", "lasts": "last_at"}
    params = {key: spans.column(name).to_pylist() for key, name in columns.items()}
    cursor.execute(f"{_LOCK}; {_MEETING_SPANS}", {"space": LOCK_SPACE, "buckets": sorted(buckets(params["sensors"])), **params})
    return {file_id for (file_id,) in cursor.fetchall()}


def skip(cursor: psycopg2.extensions.cursor, file_id: int) -> Overlap:
    """First wins: delete this file's readings whose key another file holds; recompute its metrics."""
    cursor.execute(_SKIP, {"file_id": file_id})
    parts = cursor.fetchall()
    _recompute(cursor, parts)
    return Overlap(skipped=sum(p[3] for p in parts), conflicting=sum(p[4] for p in parts))


def replace(cursor: psycopg2.extensions.cursor, file_id: int) -> Overlap:
    """Last wins: delete the other files' readings of this file's keys, count them as skipped on their
    ledger rows, and recompute their metrics; this file keeps all its readings."""
    cursor.execute(_REPLACE, {"file_id": file_id})
    parts = cursor.fetchall()
    if parts:
        cursor.execute(_MOVED_TO_SKIPPED, {"files": [p[0] for p in parts], "counts": [p[3] for p in parts]})
    _recompute(cursor, parts)
    return Overlap(conflicting=sum(p[4] for p in parts), replaced=sum(p[3] for p in parts))


def first_overlap(cursor: psycopg2.extensions.cursor, file_id: int) -> FirstOverlap | None:
    """The file's first line whose reading another file holds, or None: the metrics met, the keys did not."""
    cursor.execute(_FIRST, {"file_id": file_id})
    row = cursor.fetchone()
    return FirstOverlap(*row) if row else None


def _recompute(cursor: psycopg2.extensions.cursor, parts: list[tuple[int, str, date, int, int]]) -> None:
    if parts:
        cursor.execute(_RECOMPUTE, {"files": [p[0] for p in parts], "sensors": [p[1] for p in parts], "days": [p[2] for p in parts]})
