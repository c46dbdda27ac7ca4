"""Month partitions of ``sensor_readings``: which months a chunk needs, their names and bounds, and
which months a retention limit drops. Pure: the database work is in ``edges/db.py``.

A partition holds the readings of one UTC calendar month (``observed_at`` from its first instant,
inclusive, to the next month's, exclusive) and is called ``sensor_readings_YYYY_MM``. Metrics are
per UTC day, and a UTC day never straddles two UTC months, so a whole month of metrics maps to
exactly one partition.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

PARENT = "sensor_readings"
_NAME = re.compile(rf"^{PARENT}_(\d{{4}})_(\d{{2}})$")


def months_of(observed_at: pa.Array | pa.ChunkedArray) -> list[datetime]:
    """The first instants (UTC) of the months ``observed_at`` falls in, oldest first."""
    if len(observed_at) == 0:
        return []
    floored = pc.floor_temporal(observed_at, unit="month")
    return sorted(pc.unique(floored).to_pylist())


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_{month.year:04d}_{month.month:02d}"


def month_of_partition(name: str) -> datetime | None:
    """The month a partition named by ``partition_name`` holds; None for any other table name."""
    match = _NAME.match(name)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        return None
    return datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)


def retention_cutoff(now: datetime, months: int) -> datetime:
    """The instant ``months`` calendar months before ``now`` (the day clamped to the month's length)."""
    total = now.year * 12 + now.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    days = (next_month(datetime(year, month, 1, tzinfo=UTC)) - datetime(year, month, 1, tzinfo=UTC)).days
    return now.astimezone(UTC).replace(year=year, month=month, day=min(now.day, days))


def expired(names: list[str], now: datetime, months: int) -> list[str]:
    """The month partitions among ``names`` whose every instant is more than ``months`` months before
    ``now`` (the month ends at or before the cutoff), oldest first; other tables are never listed."""
    cutoff = retention_cutoff(now, months)
    dated = sorted((month, name) for name in names if (month := month_of_partition(name)) is not None)
    return [name for month, name in dated if next_month(month) <= cutoff]
