"""Per file, sensor, UTC day and metric: n, min, max, mean, std and M2, mergeable exactly.

M2 is the sum of squared deviations from the mean. Partial results of any split of the rows
(chunks of one file, files of one day, Spark partitions) combine with Chan et al.'s formula in
``merge``; ``script.sql`` does the same merge in SQL for the daily view.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from .transform import METRIC_OF

KEY = ["sensor_id", "day", "metric"]
SUMMARY_COLUMNS = [*KEY, "n", "min", "max", "mean", "m2", "first_at", "last_at"]


def empty() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in SUMMARY_COLUMNS})


def summarize(readings: pa.Table) -> pd.DataFrame:
    """Statistics of one batch of ``sensor_readings`` rows, one row per sensor, day and metric."""
    metrics = [m for m in METRIC_OF.values() if readings.column(m).null_count < readings.num_rows]
    if readings.num_rows == 0 or not metrics:
        return empty()
    frame = readings.select(["observed_at", "sensor_id", *metrics]).to_pandas()
    frame["day"] = frame["observed_at"].dt.floor("D")
    groups = frame.groupby(["sensor_id", "day"], sort=False, observed=True)
    times = groups["observed_at"].agg(["min", "max"]).rename(columns={"min": "first_at", "max": "last_at"})
    parts = []
    for metric in metrics:
        stats = groups[metric].agg(["count", "min", "max", "mean", "var"]).rename(columns={"count": "n"})
        stats["m2"] = (stats.pop("var") * (stats["n"] - 1)).fillna(0.0)
        stats["metric"] = metric
        parts.append(stats.join(times))
    return pd.concat(parts).reset_index()[SUMMARY_COLUMNS]


def merge(summaries: list[pd.DataFrame]) -> pd.DataFrame:
    """Combine partial summaries that share sensor, day and metric into one exact summary."""
    frames = [s for s in summaries if not s.empty]
    if not frames:
        return empty()
    parts = pd.concat(frames, ignore_index=True)
    if not parts.duplicated(KEY).any():
        return parts
    parts["weighted"] = parts["n"] * parts["mean"]
    groups = parts.groupby(KEY, sort=False)
    out = groups.agg(
        n=("n", "sum"),
        min=("min", "min"),
        max=("max", "max"),
        weighted=("weighted", "sum"),
        first_at=("first_at", "min"),
        last_at=("last_at", "max"),
    )
    out["mean"] = out.pop("weighted") / out["n"]
    spread = parts["m2"] + parts["n"] * (parts["mean"] - groups["weighted"].transform("sum") / groups["n"].transform("sum")) ** 2
    out["m2"] = spread.groupby([parts[k] for k in KEY], sort=False).sum()
    return out.reset_index()[SUMMARY_COLUMNS]


def with_std(summary: pd.DataFrame) -> pd.DataFrame:
    """Add the sample standard deviation (ddof=1; NaN for a single value)."""
    result = summary.copy()
    n = result["n"].astype(np.float64)
    result["std"] = np.where(n > 1, np.sqrt(np.maximum(result["m2"].astype(np.float64), 0.0) / np.maximum(n - 1, 1)), np.nan)
    return result
