"""The ``retention`` command: drop whole months of ``sensor_readings`` older than a limit.

Only readings go. ``sensor_metrics`` (per file, sensor, UTC day) keeps the days of dropped months:
a UTC day lies inside one UTC month, so each kept row still describes exactly the readings that were
loaded, and ``sensor_metrics_daily`` stays what it was. ``ingested_files`` keeps its rows too, so a
file whose readings were dropped is still known and never loaded again (docs/schema.md).
"""

from __future__ import annotations

from datetime import datetime

from sensor_etl.core import partitions
from sensor_etl.edges.db import Database
from sensor_etl.ops import logs


class NotPartitioned(Exception):
    """sensor_readings was created before partitioning: there are no months to drop (docs/schema.md: migration)."""


def drop_months(database: Database, months: int, now: datetime, *, dry_run: bool = False) -> list[str]:
    """Drop (or, with ``dry_run``, only list) the month partitions whose every reading is more than
    ``months`` months older than ``now``; returns their names, oldest first."""
    if not database.partitioned():
        raise NotPartitioned(f"{partitions.PARENT} is a plain table, not partitioned by month")
    names = partitions.expired(database.month_partitions(), now, months)
    for name in names:
        if not dry_run:
            database.drop_partition(name)
        logs.info("partition_dropped" if not dry_run else "partition_would_drop", partition=name, older_than_months=months)
    return names
