"""Row rules: dates, numbers, missing values, ranges, duplicates. Pure functions on one chunk.

``check_chunk`` turns a chunk of text columns into typed key columns (in the file's own units) and a
table of problems, one row per broken rule with line, column, raw value and rule name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columns import MEASURES, ColumnPlan
from .config import Rules
from .errors import InvalidFile, Problem
from .reader import Chunk
from .units import celsius_to, hpa_to, percent_to

PROBLEM_COLUMNS = ["line", "column", "value", "rule", "message"]
DATE_FORMATS = (
    "ISO8601",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%d.%m.%Y",
    "%d/%m/%Y",
    "%m/%d/%Y",
)
_OFFSET = r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"
_UNIT_LABEL = {
    "C": "°C",
    "F": "°F",
    "K": "K",
    "hPa": "hPa",
    "mbar": "mbar",
    "kPa": "kPa",
    "Pa": "Pa",
    "percent": "%",
    "fraction": "(fraction)",
}


@dataclass(frozen=True)
class Checked:
    """One chunk after the row rules: typed key columns and extras of the valid rows, and the problems."""

    rows: int  # data rows in the chunk (blank lines excluded)
    observed_at: pd.Series  # datetime64[UTC]
    sensor_id: pd.Series  # str
    measures: dict[str, np.ndarray]  # role -> float64 in the file's unit
    lines: np.ndarray
    extras: pa.Table  # the other columns, as text, valid rows only
    problems: pd.DataFrame  # PROBLEM_COLUMNS, every problem of the chunk


def _problems(lines: np.ndarray, column: str, values: pd.Series | np.ndarray, rule: str, message: str | pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"line": lines, "column": column, "value": np.asarray(values, dtype=object), "rule": rule, "message": message})


def no_problems() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="int64" if name == "line" else object) for name in PROBLEM_COLUMNS})


# -- dates -------------------------------------------------------------------------------------
def detect_date_format(samples: pd.Series, configured: str | None) -> str:
    """The one date format of a file: DATE_FORMAT, else the candidate that reads every sample.

    Refuses to guess when day-first and month-first both fit (``01/02/2020``)."""
    if configured:
        return configured
    samples = samples[samples.str.strip() != ""].head(1000)
    if samples.empty:
        return "ISO8601"
    scores = {}
    for fmt in DATE_FORMATS:
        parsed = _parse_naive(samples, fmt)
        scores[fmt] = (int(parsed.notna().sum()), parsed)
    best = max(scores, key=lambda f: scores[f][0])
    if scores[best][0] == 0:
        raise InvalidFile(
            Problem(
                "timestamp_format",
                "no known date format fits the timestamps (e.g. 2020-01-01 00:10:00 or 01.01.2009 00:10:00); set DATE_FORMAT",
                value=str(samples.iloc[0]),
            )
        )
    complete = [f for f in DATE_FORMATS if scores[f][0] == scores[best][0]]
    distinct = [f for f in complete if not scores[f][1].equals(scores[complete[0]][1])]
    if distinct:
        raise InvalidFile(
            Problem(
                "timestamp_format",
                f"ambiguous dates: both {complete[0]} and {distinct[0]} fit; set DATE_FORMAT",
                value=str(samples.iloc[0]),
            )
        )
    return best


def _parse_naive(values: pd.Series, fmt: str) -> pd.Series:
    return pd.to_datetime(values.str.strip(), format=fmt, errors="coerce", utc=True)


def parse_timestamps(values: pd.Series, fmt: str, timezone: str) -> pd.Series:
    """UTC timestamps; NaT where a value does not parse or does not exist in the source time zone."""
    values = values.str.strip()
    with_offset = values.str.contains(_OFFSET, regex=True) if fmt == "ISO8601" else pd.Series(False, index=values.index)
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if with_offset.any():
        result[with_offset] = pd.to_datetime(values[with_offset], format=fmt, errors="coerce", utc=True).astype("datetime64[us, UTC]")
    naive = ~with_offset
    if naive.any():
        parsed = pd.to_datetime(values[naive], format=fmt, errors="coerce")
        if parsed.dt.tz is None:
            parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        result[naive] = parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return result


# -- the rules ----------------------------------------------------------------------------------
def _bounds(role: str, unit: str, rules: Rules) -> tuple[float, float]:
    if role == "temperature":
        return celsius_to(unit, rules.temperature_min), celsius_to(unit, rules.temperature_max)
    if role == "pressure":
        return hpa_to(unit, rules.pressure_min), hpa_to(unit, rules.pressure_max)
    return percent_to(unit, rules.humidity_min), percent_to(unit, rules.humidity_max)


def _to_float(text: pa.ChunkedArray) -> np.ndarray:
    """float64 with NaN where the text is not a number (fast path: Arrow's cast when all parse)."""
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(pd.Series(text.to_pandas()).str.strip(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _blank_rows(table: pa.Table) -> np.ndarray:
    blank = None
    for column in table.columns:
        empty = pc.equal(pc.utf8_length(column), 0)
        blank = empty if blank is None else pc.and_(blank, empty)
    return np.zeros(0, bool) if blank is None else blank.to_numpy(zero_copy_only=False)


def check_chunk(chunk: Chunk, plan: ColumnPlan, rules: Rules, date_format: str, now: datetime) -> Checked:
    """Apply every row rule to one chunk; nothing here raises for bad data, it is all in ``problems``."""
    table, lines = chunk.table, chunk.lines
    found: list[pd.DataFrame] = (
        [
            _problems(
                np.array([b.line for b in chunk.bad_rows], dtype=np.int64),
                "",
                [b.text[:200] for b in chunk.bad_rows],
                "column_count",
                [f"{b.fields} fields where the header has {b.expected}" for b in chunk.bad_rows],
            )
        ]
        if chunk.bad_rows
        else []
    )

    blank = _blank_rows(table)
    if blank.any():
        keep = ~blank
        table, lines = table.filter(pa.array(keep)), lines[keep]
    invalid = np.zeros(table.num_rows, dtype=bool)

    def flag(mask: np.ndarray, role: str, values: pd.Series | np.ndarray, rule: str, message: str | pd.Series) -> None:
        if mask.any():
            nonlocal invalid
            invalid |= mask
            picked = values[mask] if isinstance(values, np.ndarray) else values[mask].to_numpy()
            message = message[mask] if isinstance(message, pd.Series) else message
            found.append(_problems(lines[mask], plan.header(role), picked, rule, message))

    # timestamp
    raw_ts = pd.Series(table.column(plan.roles["timestamp"]).to_pandas(), dtype=object)
    missing = (raw_ts.str.strip() == "").to_numpy()
    flag(missing, "timestamp", raw_ts, "missing_value", "empty timestamp")
    observed = parse_timestamps(raw_ts, date_format, rules.source_timezone)
    unparsed = observed.isna().to_numpy() & ~missing
    flag(unparsed, "timestamp", raw_ts, "timestamp_format", f"not a valid date/time in the format {date_format}")
    latest = pd.Timestamp(now) + timedelta(seconds=rules.max_future_seconds)
    out = ((observed < pd.Timestamp(rules.timestamp_min)) | (observed > latest)).to_numpy() & ~unparsed & ~missing
    flag(out, "timestamp", raw_ts, "timestamp_range", f"outside {rules.timestamp_min:%Y-%m-%d} .. now + {rules.max_future_seconds:g} s")

    # sensor id
    if "sensor_id" in plan.roles:
        sensor = pd.Series(pc.utf8_trim_whitespace(table.column(plan.roles["sensor_id"])).to_pandas(), dtype=object)
        flag((sensor == "").to_numpy(), "sensor_id", sensor, "missing_value", "empty sensor id")
    else:
        sensor = pd.Series(rules.default_sensor_id, index=range(table.num_rows), dtype=object)

    # measures
    measures: dict[str, np.ndarray] = {}
    for role in MEASURES:
        if role not in plan.roles:
            continue
        text = table.column(plan.roles[role])
        raw = np.asarray(text.to_pandas(), dtype=object)
        values = _to_float(text)
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).to_numpy(zero_copy_only=False)
        nan = np.isnan(values)
        flag(empty, role, raw, "missing_value", f"empty {role}")
        not_number = nan & ~empty & ~_nan_text(text)
        flag(not_number, role, raw, "not_a_number", "not a number (use a point for decimals and no thousands separator)")
        flag(~np.isfinite(values) & ~empty & ~not_number, role, raw, "not_finite", "NaN or infinite")
        unit = plan.units[role]
        low, high = _bounds(role, unit, rules)
        with np.errstate(invalid="ignore"):
            outside = np.isfinite(values) & ((values < low) | (values > high))
        flag(outside, role, raw, "out_of_range", f"outside {low:g}..{high:g} {_UNIT_LABEL[unit]}")
        measures[role] = values

    # duplicate (sensor, timestamp) within the chunk
    keys = pd.DataFrame({"sensor": sensor.to_numpy(), "at": observed.to_numpy(), "line": lines})
    usable = ~(missing | unparsed) & (keys["sensor"] != "").to_numpy()
    repeated = keys.duplicated(["sensor", "at"], keep="first").to_numpy() & usable
    if repeated.any():
        first_line = keys.groupby(["sensor", "at"], sort=False)["line"].transform("first")
        message = "same sensor and timestamp as line " + first_line.astype(str)
        flag(repeated, "timestamp", raw_ts, "duplicate_key", message)

    valid = ~invalid
    extras = table.select(list(plan.extras)).filter(pa.array(valid)) if plan.extras else pa.table({})
    return Checked(
        rows=int(table.num_rows) + len(chunk.bad_rows),
        observed_at=observed[valid].reset_index(drop=True),
        sensor_id=sensor[valid].reset_index(drop=True),
        measures={role: values[valid] for role, values in measures.items()},
        lines=lines[valid],
        extras=extras,
        problems=pd.concat(found, ignore_index=True) if found else no_problems(),
    )


def _nan_text(text: pa.ChunkedArray) -> np.ndarray:
    """Values spelled as NaN or infinity: numbers, but not finite ones."""
    return pc.match_substring_regex(pc.utf8_trim_whitespace(text), r"^[+-]?(?i:nan|inf|infinity)$").to_numpy(zero_copy_only=False)
