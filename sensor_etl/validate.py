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
MAX_FIELD_CHARS = 4096  # longer values are not sensor data: a runaway quote, a dump, an attack on the database
MAX_SHOWN_CHARS = 200  # a reported value is cut here, so a 10 MB field does not become a 10 MB report
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
    rejected: pd.DataFrame  # one row per invalid row: its first line and how many lines it spans


def _problems(lines: np.ndarray, column: str, values: pd.Series | np.ndarray, rule: str, message: str | pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"line": lines, "column": column, "value": shown(values), "rule": rule, "message": message})


def shown(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as a report shows them: cut at MAX_SHOWN_CHARS, saying how long they really were."""
    text = pd.Series(np.asarray(values, dtype=object), dtype=object)
    length = text.str.len()
    long = (length > MAX_SHOWN_CHARS).to_numpy()
    if long.any():
        text[long] = text[long].str.slice(0, MAX_SHOWN_CHARS) + "… (" + length[long].astype(str) + " characters)"
    return text.to_numpy(dtype=object)


def no_problems() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="int64" if name == "line" else object) for name in PROBLEM_COLUMNS})


# -- dates -------------------------------------------------------------------------------------
def detect_date_format(samples: pd.Series, configured: str | None) -> str:
    """The one date format of a file: DATE_FORMAT, else the candidate that reads the most samples.

    ``samples`` is indexed by line number and named after the column, so a refusal can point at a
    line. Refuses to guess when day-first and month-first both fit (``01/02/2020``)."""
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
            _date_problem(
                samples,
                0,
                "no known date format fits the timestamps (e.g. 2020-01-01 00:10:00 or 01.01.2009 00:10:00); set DATE_FORMAT",
            )
        )
    complete = [f for f in DATE_FORMATS if scores[f][0] == scores[best][0]]
    first = scores[complete[0]][1]
    distinct = [f for f in complete if not scores[f][1].equals(first)]
    if distinct:
        differs = (scores[distinct[0]][1] != first) & first.notna()
        raise InvalidFile(
            _date_problem(
                samples,
                int(np.argmax(differs.to_numpy())),
                f"ambiguous date: both {complete[0]} and {distinct[0]} fit every timestamp; set DATE_FORMAT",
            )
        )
    return best


def _date_problem(samples: pd.Series, position: int, message: str) -> Problem:
    return Problem(
        "timestamp_format",
        message,
        line=int(samples.index[position]),
        column=None if samples.name is None else str(samples.name),
        value=str(shown([samples.iloc[position]])[0]),
    )


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


def _bad_rows(chunk: Chunk) -> list[pd.DataFrame]:
    if not chunk.bad_rows:
        return []
    messages = [
        f"{b.fields} fields where the header has {b.expected}"
        + (f" (the row runs over lines {b.line}-{b.line + b.lines - 1}: is a quote not closed?)" if b.lines > 1 else "")
        for b in chunk.bad_rows
    ]
    lines = np.array([b.line for b in chunk.bad_rows], dtype=np.int64)
    return [_problems(lines, "", [b.text for b in chunk.bad_rows], "column_count", messages)]


def check_chunk(chunk: Chunk, plan: ColumnPlan, rules: Rules, date_format: str, now: datetime) -> Checked:
    """Apply every row rule to one chunk; nothing here raises for bad data, it is all in ``problems``."""
    table, lines, heights = chunk.table, chunk.lines, chunk.heights
    found = _bad_rows(chunk)

    blank = _blank_rows(table)
    if blank.any():
        keep = ~blank
        table, lines, heights = table.filter(pa.array(keep)), lines[keep], heights[keep]
    invalid = np.zeros(table.num_rows, dtype=bool)

    def flag(mask: np.ndarray, column: str, values: pd.Series | np.ndarray, rule: str, message: str | pd.Series) -> None:
        if mask.any():
            nonlocal invalid
            invalid |= mask
            picked = values[mask] if isinstance(values, np.ndarray) else values[mask].to_numpy()
            message = message[mask] if isinstance(message, pd.Series) else message
            found.append(_problems(lines[mask], column, picked, rule, message))

    # every column: one line per value, and a sane length
    multiline = heights > 1
    for name, column in zip(plan.headers, table.columns, strict=True):
        if multiline.any():
            breaks = pc.match_substring_regex(column, r"[\r\n]").to_numpy(zero_copy_only=False) & multiline
            flag(
                breaks,
                name,
                _texts(column),
                "line_break",
                "the value runs onto the next line: is a quote not closed? (values must be on one line)",
            )
        if table.num_rows and pc.max(pc.binary_length(column)).as_py() > MAX_FIELD_CHARS:
            long = pc.greater(pc.utf8_length(column), MAX_FIELD_CHARS).to_numpy(zero_copy_only=False)
            flag(long, name, _texts(column), "field_too_long", f"longer than {MAX_FIELD_CHARS} characters")

    # timestamp
    ts_header = plan.header("timestamp")
    raw_ts = pd.Series(table.column(plan.roles["timestamp"]).to_pandas(), dtype=object)
    missing = (raw_ts.str.strip() == "").to_numpy()
    flag(missing, ts_header, raw_ts, "missing_value", "empty timestamp")
    observed = parse_timestamps(raw_ts, date_format, rules.source_timezone)
    unparsed = observed.isna().to_numpy() & ~missing
    flag(unparsed, ts_header, raw_ts, "timestamp_format", f"not a valid date/time in this file's format ({date_format})")
    latest = pd.Timestamp(now) + timedelta(seconds=rules.max_future_seconds)
    early = (observed < pd.Timestamp(rules.timestamp_min)).to_numpy() & ~unparsed & ~missing
    flag(early, ts_header, raw_ts, "timestamp_range", f"before TIMESTAMP_MIN ({rules.timestamp_min:%Y-%m-%d})")
    late = (observed > latest).to_numpy() & ~unparsed & ~missing
    flag(late, ts_header, raw_ts, "timestamp_range", f"more than MAX_FUTURE_SECONDS ({rules.max_future_seconds:g} s) in the future")

    # sensor id
    if "sensor_id" in plan.roles:
        sensor = pd.Series(pc.utf8_trim_whitespace(table.column(plan.roles["sensor_id"])).to_pandas(), dtype=object)
        flag((sensor == "").to_numpy(), plan.header("sensor_id"), sensor, "missing_value", "empty sensor id")
    else:
        sensor = pd.Series(rules.default_sensor_id, index=range(table.num_rows), dtype=object)

    # measures
    measures: dict[str, np.ndarray] = {}
    for role in MEASURES:
        if role not in plan.roles:
            continue
        text = table.column(plan.roles[role])
        raw = _texts(text)
        values = _to_float(text)
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).to_numpy(zero_copy_only=False)
        nan = np.isnan(values)
        header = plan.header(role)
        flag(empty, header, raw, "missing_value", f"empty {role}")
        not_number = nan & ~empty & ~_nan_text(text)
        flag(not_number, header, raw, "not_a_number", "not a number (use a point for decimals and no thousands separator)")
        flag(~np.isfinite(values) & ~empty & ~not_number, header, raw, "not_finite", "NaN, infinite, or too large for a 64-bit float")
        unit = plan.units[role]
        low, high = _bounds(role, unit, rules)
        with np.errstate(invalid="ignore"):
            outside = np.isfinite(values) & ((values < low) | (values > high))
        flag(outside, header, raw, "out_of_range", f"outside {low:g}..{high:g} {_UNIT_LABEL[unit]}")
        measures[role] = values

    # duplicate (sensor, timestamp) within the chunk
    keys = pd.DataFrame({"sensor": sensor.to_numpy(), "at": observed.to_numpy(), "line": lines})
    usable = ~(missing | unparsed) & (keys["sensor"] != "").to_numpy()
    repeated = keys.duplicated(["sensor", "at"], keep="first").to_numpy() & usable
    if repeated.any():
        first_line = keys.groupby(["sensor", "at"], sort=False)["line"].transform("first")
        message = "same sensor and timestamp as line " + first_line.astype(str)
        flag(repeated, ts_header, raw_ts, "duplicate_key", message)

    valid = ~invalid
    rejected = pd.DataFrame(
        {
            "line": np.concatenate([[b.line for b in chunk.bad_rows], lines[invalid]]).astype(np.int64),
            "lines": np.concatenate([[b.lines for b in chunk.bad_rows], heights[invalid]]).astype(np.int64),
        }
    )
    extras = table.select(list(plan.extras)).filter(pa.array(valid)) if plan.extras else pa.table({})
    return Checked(
        rows=int(table.num_rows) + len(chunk.bad_rows),
        observed_at=observed[valid].reset_index(drop=True),
        sensor_id=sensor[valid].reset_index(drop=True),
        measures={role: values[valid] for role, values in measures.items()},
        lines=lines[valid],
        extras=extras,
        problems=pd.concat(found, ignore_index=True) if found else no_problems(),
        rejected=rejected,
    )


def _texts(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_pandas(), dtype=object)


def _nan_text(text: pa.ChunkedArray) -> np.ndarray:
    """Values spelled as NaN or infinity: numbers, but not finite ones."""
    return pc.match_substring_regex(pc.utf8_trim_whitespace(text), r"^[+-]?(?i:nan|inf|infinity)$").to_numpy(zero_copy_only=False)
