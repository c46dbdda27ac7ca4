"""Per file, sensor, UTC day and metric: n, min, max, mean, std and M2, mergeable exactly.

M2 is the sum of squared deviations from the mean. Partial results of any split of the rows
(chunks of one file, files of one day, Spark partitions) combine with Chan et al.'s formula in
``merge``; ``script.sql`` does the same merge in SQL for the daily view, and the load does it for
the partial statistics a file with many sensor-day groups hands over before its end (``Statistics``).

Summaries are Arrow tables and group-bys are plain numpy (sort once, reduce per segment): a pandas
group-by costs milliseconds of fixed overhead, which dominates when thousands of small files arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.core.transform import METRIC_OF

_DAY_US = 86_400 * 1_000_000
_TIME = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("sensor_id", pa.string()),
        ("day", _TIME),
        ("metric", pa.string()),
        ("n", pa.int64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("mean", pa.float64()),
        ("m2", pa.float64()),
        ("first_at", _TIME),
        ("last_at", _TIME),
    ]
)


def empty() -> pa.Table:
    return SCHEMA.empty_table()


def _segments(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, segment starts and per-row segment number for rows grouped by ``keys``."""
    order = np.lexsort(keys[::-1])
    changed = np.zeros(len(order), dtype=bool)
    for key in keys:
        ordered = key[order]
        changed[1:] |= ordered[1:] != ordered[:-1]
    changed[:1] = True
    starts = np.flatnonzero(changed)
    return order, starts, np.cumsum(changed) - 1


def summarize(readings: pa.Table, by_file: bool = False) -> pa.Table:
    """Statistics of one batch of ``sensor_readings`` rows, one row per sensor, day and metric; with
    ``by_file``, per file too, in a leading ``file_id`` column (the rows of many small files at once).

    Only present values count: a NULL measure (MISSING_VALUES=null) is in neither n nor the other
    statistics of its metric, and a metric with no value in a sensor's day has no row there."""
    metrics = [m for m in METRIC_OF.values() if readings.column(m).null_count < readings.num_rows]
    if readings.num_rows == 0 or not metrics:
        return empty()
    encoded = pc.dictionary_encode(readings.column("sensor_id")).combine_chunks()
    sensors = encoded.indices.to_numpy().astype(np.int64)
    micros = readings.column("observed_at").combine_chunks().cast(pa.int64()).to_numpy()
    keys = [sensors, np.floor_divide(micros, _DAY_US)]
    if by_file:
        keys.insert(0, readings.column("file_id").combine_chunks().to_numpy())
    order, starts, group = _segments(*keys)
    micros = micros[order]
    labels = encoded.dictionary.take(pa.array(sensors[order][starts]))
    days = pa.array(np.floor_divide(micros[starts], _DAY_US) * _DAY_US, pa.int64()).cast(_TIME)
    span = _span(micros, starts)  # first_at, last_at of a metric with a value on every row
    parts = []
    for metric in metrics:
        column = readings.column(metric).combine_chunks()
        values, at, rows, kept, first = column.to_numpy(zero_copy_only=False)[order], micros, group, None, starts
        if column.null_count:  # keep the present values, and the groups that still have one
            present = ~np.isnan(values)
            values, at, rows = values[present], micros[present], group[present]
            kept = pa.array(np.flatnonzero(np.bincount(rows, minlength=len(starts))))
            first = np.searchsorted(rows, kept)
            rows = np.searchsorted(kept, rows)
        n = np.bincount(rows).astype(np.int64)
        mean = np.bincount(rows, values) / n
        deviation = values - mean[rows]
        columns = [labels, days] if kept is None else [labels.take(kept), days.take(kept)]
        columns += [
            pa.array([metric] * len(n)),
            n,
            np.minimum.reduceat(values, first),
            np.maximum.reduceat(values, first),
            mean,
            np.bincount(rows, deviation * deviation),
            *(span if kept is None else _span(at, first)),
        ]
        table = pa.Table.from_arrays(columns, schema=SCHEMA)
        if by_file:
            files = keys[0][order][starts]
            table = table.add_column(0, "file_id", pa.array(files if kept is None else files[kept.to_numpy()], pa.int64()))
        parts.append(table)
    return pa.concat_tables(parts)


def _span(micros: np.ndarray, starts: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """First and last instant of each segment."""
    return (
        pa.array(np.minimum.reduceat(micros, starts), pa.int64()).cast(_TIME),
        pa.array(np.maximum.reduceat(micros, starts), pa.int64()).cast(_TIME),
    )


def spans(summary: pa.Table) -> pa.Table:
    """Per file, sensor and day of a ``summarize(by_file=True)`` summary: the first and last instant
    of any of its metrics (what the overlap check of a batch compares)."""
    keys = ["file_id", "sensor_id", "day"]
    grouped = summary.group_by(keys, use_threads=False).aggregate([("first_at", "min"), ("last_at", "max")])
    return grouped.select([*keys, "first_at_min", "last_at_max"]).rename_columns([*keys, "first_at", "last_at"])


def merge(summaries: list[pa.Table]) -> pa.Table:
    """Combine partial summaries that share sensor, day and metric into one exact summary."""
    parts = [s for s in summaries if s.num_rows]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts).combine_chunks()
    sensor = pc.dictionary_encode(table.column("sensor_id")).combine_chunks().indices.to_numpy().astype(np.int64)
    metric = pc.dictionary_encode(table.column("metric")).combine_chunks().indices.to_numpy().astype(np.int64)
    day = table.column("day").cast(pa.int64()).to_numpy()
    order, starts, group = _segments(sensor, day, metric)
    table = table.take(pa.array(order))
    n_i = table.column("n").to_numpy()
    mean_i = table.column("mean").to_numpy()
    n = np.bincount(group, n_i).astype(np.int64)
    mean = np.bincount(group, n_i * mean_i) / n
    m2 = np.bincount(group, table.column("m2").to_numpy() + n_i * (mean_i - mean[group]) ** 2)

    def reduce(name: str, ufunc: np.ufunc) -> np.ndarray:
        return ufunc.reduceat(table.column(name).cast(pa.int64() if name.endswith("_at") else pa.float64()).to_numpy(), starts)

    keys = table.take(pa.array(starts))
    return pa.Table.from_arrays(
        [
            keys.column("sensor_id"),
            keys.column("day"),
            keys.column("metric"),
            n,
            reduce("min", np.minimum),
            reduce("max", np.maximum),
            mean,
            m2,
            pa.array(reduce("first_at", np.minimum), pa.int64()).cast(_TIME),
            pa.array(reduce("last_at", np.maximum), pa.int64()).cast(_TIME),
        ],
        schema=SCHEMA,
    )


@dataclass(frozen=True)
class Flushed:
    """Statistics handed to the load. ``new``: groups never handed over before for this file, written as
    they are; ``again``: groups that may have been (``SeenGroups``), merged into the row already there."""

    new: pa.Table
    again: pa.Table

    @classmethod
    def nothing(cls) -> Flushed:
        return cls(empty(), empty())


class SeenGroups:
    """A Bloom filter over (sensor, day, metric) keys in a fixed number of bytes: which groups may have
    been flushed before. No false negatives, so a group it calls new is new; a false positive only sends
    a new group through the merge, which inserts it. With 2 probes, 8 MiB and 6 M groups (a 2 M-row
    file of distinct sensors), 2.7 % of the groups take that slower path."""

    def __init__(self, nbytes: int) -> None:
        self._bits = np.zeros(nbytes, dtype=np.uint8)

    def check_and_add(self, summary: pa.Table) -> np.ndarray:
        """Per row of ``summary`` (unique keys): may its group have been added before? Then add them all."""
        metric = pc.index_in(summary.column("metric"), value_set=pa.array(list(METRIC_OF.values()))).to_numpy()
        day_metric = np.floor_divide(summary.column("day").cast(pa.int64()).to_numpy(), _DAY_US) * 4 + metric
        # each sensor id hashed once (a summary has a row per metric and day), without factorizing: 8 times faster
        sensors = pc.dictionary_encode(summary.column("sensor_id")).combine_chunks()
        by_sensor = pd.util.hash_array(sensors.dictionary.to_numpy(zero_copy_only=False), categorize=False)
        hashes = by_sensor[sensors.indices.to_numpy()] ^ pd.util.hash_array(day_metric)
        size = np.uint64(self._bits.size * 8)
        probes = []
        for position in (hashes % size, (hashes >> np.uint64(32)) % size):
            probes.append((position >> np.uint64(3), np.left_shift(np.uint8(1), (position & np.uint64(7)).astype(np.uint8))))
        seen = np.ones(len(hashes), dtype=bool)
        for index, bit in probes:
            seen &= (self._bits[index] & bit) != 0
        for index, bit in probes:
            np.bitwise_or.at(self._bits, index, bit)
        return seen


class Statistics:
    """The statistics of one file while its chunks arrive, held in memory up to ``max_bytes``.

    A file with a different sensor on every row has as many groups as rows: held to its end they took
    2.2 GB for 1.5 M rows. Past the bound the held parts are merged; when that does not halve them (the
    groups do not repeat), ``add`` hands the merged table to the load and holds nothing. Groups seen for
    the first time are written as they are (a COPY, as for a file that fits); a group that may come
    again is merged in SQL into its row (``Flushed``). A file whose groups fit (every seed file, a
    fleet's file of some thousand sensor-days) is never flushed before its end and ``rest`` is all new."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._parts: list[pa.Table] = []
        self._bytes = 0
        self._seen: SeenGroups | None = None  # made at the first flush: a file that fits never pays for it

    def add(self, summary: pa.Table) -> Flushed | None:
        """Hold the summary of one more chunk; returns the statistics to write now, if any."""
        self._parts.append(summary)
        self._bytes += summary.nbytes
        if self._bytes <= self.max_bytes:
            return None
        merged = merge(self._parts)
        if merged.nbytes <= self.max_bytes // 2:
            self._parts, self._bytes = [merged], merged.nbytes
            return None
        self._parts, self._bytes = [], 0
        return self._flush(merged)

    def rest(self) -> Flushed:
        """Everything still held, merged (split into new and again when something was flushed before)."""
        merged = merge(self._parts)
        self._parts, self._bytes = [], 0
        return self._flush(merged) if self._seen is not None else Flushed(merged, empty())

    def _flush(self, merged: pa.Table) -> Flushed:
        if self._seen is None:
            self._seen = SeenGroups(2 * self.max_bytes)
        again = self._seen.check_and_add(merged)
        if not again.any():  # the usual case, a file whose groups never come back: no copy
            return Flushed(merged, empty())
        return Flushed(merged.filter(pa.array(~again)), merged.filter(pa.array(again)))


def distinct(known: pa.Array, values: pa.ChunkedArray) -> pa.Array:
    """``known`` with the new distinct ``values`` added (sensor ids counted without a database)."""
    return pc.unique(pa.chunked_array([known, *values.chunks], known.type))


def with_std(summary: pa.Table) -> pa.Table:
    """Add the sample standard deviation (ddof=1; null for a single value)."""
    n = summary.column("n").to_numpy()
    m2 = np.maximum(summary.column("m2").to_numpy(), 0.0)
    std = np.sqrt(m2 / np.maximum(n - 1, 1))
    return summary.append_column("std", pa.array(std, pa.float64(), mask=n < 2))
