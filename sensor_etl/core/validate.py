"""Row rules: dates, numbers, missing values, ranges, duplicates. Pure functions on one chunk.

``check_chunk`` turns a chunk of text columns into typed key columns (in the file's own units) and a
table of problems (``problems``), one row per broken rule with line, column, raw value and rule name.
Timestamps are read by ``dates`` with the format detected once per file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.config import Rules
from sensor_etl.core.chunk import Chunk
from sensor_etl.core.columns import MEASURES, ColumnPlan
from sensor_etl.core.dates import parse_timestamps
from sensor_etl.core.problems import no_problems, shown
from sensor_etl.core.rules import Rule
from sensor_etl.core.units import celsius_to, hpa_to, percent_to

MAX_FIELD_CHARS = 4096  # longer values are not sensor data: a runaway quote, a dump, an attack on the database
_NOT_FINITE = "NaN, infinite, or too large for a 64-bit float"
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
    observed_at: np.ndarray  # datetime64[us], UTC
    sensor_id: pa.ChunkedArray  # trimmed text
    measures: dict[str, np.ndarray]  # role -> float64 in the file's unit
    lines: np.ndarray
    extras: pa.Table  # the other columns, as text, valid rows only
    problems: pd.DataFrame  # PROBLEM_COLUMNS, every problem of the chunk
    rejected: pd.DataFrame  # one row per invalid row: its first line and how many lines it spans
    parts: np.ndarray | None = None  # a combined chunk's: each valid row's part (problems and rejected have a "part" column)

    def select(self, keep: np.ndarray) -> Checked:
        """The valid rows where ``keep`` is true (of a combined chunk: the parts that load)."""
        mask = pa.array(keep)
        return replace(
            self,
            observed_at=self.observed_at[keep],
            sensor_id=pc.filter(self.sensor_id, mask),
            measures={role: values[keep] for role, values in self.measures.items()},
            lines=self.lines[keep],
            extras=self.extras.filter(mask) if self.extras.num_columns else self.extras,
            parts=None if self.parts is None else self.parts[keep],
        )


def _problems(
    lines: np.ndarray, column: str, values: list, rule: Rule, message: str | np.ndarray | list, parts: np.ndarray | None
) -> pd.DataFrame:
    """Problems as a table; the rule column holds the rule's plain string (vectorized counts and reports)."""
    table = {"line": lines, "column": column, "value": shown(values), "rule": rule.value, "message": message}
    return pd.DataFrame(table if parts is None else {**table, "part": parts})


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
    parts = None if chunk.parts is None else np.array([b.part for b in chunk.bad_rows], dtype=np.int64)
    return [_problems(lines, "", [b.text for b in chunk.bad_rows], Rule.COLUMN_COUNT, messages, parts)]


def check_chunk(chunk: Chunk, plan: ColumnPlan, rules: Rules, date_format: str, now: datetime) -> Checked:
    """Apply every row rule to one chunk; nothing here raises for bad data, it is all in ``problems``.

    A combined chunk (``chunk.parts`` set) gets the results each of its parts would get on its own,
    tagged with the part: its problems, rejected rows and valid rows carry it."""
    table, lines, heights, parts = chunk.table, chunk.lines, chunk.heights, chunk.parts
    found = _bad_rows(chunk)

    blank = _blank_rows(table)
    if blank.any():
        keep = ~blank
        table, lines, heights = table.filter(pa.array(keep)), lines[keep], heights[keep]
        parts = None if parts is None else parts[keep]
    invalid = np.zeros(table.num_rows, dtype=bool)

    def flag(mask: np.ndarray, name: str, column: pa.ChunkedArray, rule: Rule, message: str | np.ndarray) -> None:
        """Record ``rule`` for the rows in ``mask`` of the column headed ``name``; raw values are only materialized for those rows."""
        nonlocal invalid
        if mask.any():
            invalid |= mask
            values = pc.filter(column, pa.array(mask)).to_pylist()
            text = message[mask] if isinstance(message, np.ndarray) else message
            found.append(_problems(lines[mask], name, values, rule, text, None if parts is None else parts[mask]))

    # every column: one line per value, and a sane length
    multiline = heights > 1
    for name, column in zip(plan.headers, table.columns, strict=True):
        if multiline.any():
            breaks = pc.match_substring_regex(column, r"[\r\n]").to_numpy(zero_copy_only=False) & multiline
            flag(
                breaks,
                name,
                column,
                Rule.LINE_BREAK,
                "the value runs onto the next line: is a quote not closed? (values must be on one line)",
            )
        if table.num_rows and pc.max(pc.binary_length(column)).as_py() > MAX_FIELD_CHARS:
            long = pc.greater(pc.utf8_length(column), MAX_FIELD_CHARS).to_numpy(zero_copy_only=False)
            flag(long, name, column, Rule.FIELD_TOO_LONG, f"longer than {MAX_FIELD_CHARS} characters")

    # timestamp
    ts_header = plan.header("timestamp")
    raw_ts = table.column(plan.roles["timestamp"])
    ts_text = pc.utf8_trim_whitespace(raw_ts)
    missing = _empty(ts_text)
    flag(missing, ts_header, raw_ts, Rule.MISSING_VALUE, "empty timestamp")
    observed = parse_timestamps(ts_text, date_format, rules.source_timezone)
    unparsed = np.isnat(observed) & ~missing
    flag(unparsed, ts_header, raw_ts, Rule.TIMESTAMP_FORMAT, f"not a valid date/time in this file's format ({date_format})")
    earliest = np.datetime64(rules.timestamp_min.astimezone(UTC).replace(tzinfo=None), "us")
    latest = np.datetime64((now + timedelta(seconds=rules.max_future_seconds)).astimezone(UTC).replace(tzinfo=None), "us")
    early = (observed < earliest) & ~unparsed & ~missing
    flag(early, ts_header, raw_ts, Rule.TIMESTAMP_RANGE, f"before TIMESTAMP_MIN ({rules.timestamp_min:%Y-%m-%d})")
    late = (observed > latest) & ~unparsed & ~missing
    flag(late, ts_header, raw_ts, Rule.TIMESTAMP_RANGE, f"more than MAX_FUTURE_SECONDS ({rules.max_future_seconds:g} s) in the future")

    # sensor id
    if "sensor_id" in plan.roles:
        raw_sensor = table.column(plan.roles["sensor_id"])
        sensor = pc.utf8_trim_whitespace(raw_sensor)
        flag(_empty(sensor), plan.header("sensor_id"), raw_sensor, Rule.MISSING_VALUE, "empty sensor id")
    else:
        sensor = pa.chunked_array([pa.array(np.full(table.num_rows, rules.default_sensor_id, dtype=object), pa.string())])

    # measures
    measures: dict[str, np.ndarray] = {}
    for role in MEASURES:
        if role not in plan.roles:
            continue
        text = table.column(plan.roles[role])
        header = plan.header(role)
        values = _to_float(text)
        nan = np.isnan(values)
        if nan.any():  # only then can a value be empty, text, or spelled NaN
            empty = _empty(pc.utf8_trim_whitespace(text))
            flag(empty, header, text, Rule.MISSING_VALUE, f"empty {role}")
            not_number = nan & ~empty & ~_nan_text(text)
            flag(not_number, header, text, Rule.NOT_A_NUMBER, "not a number (use a point for decimals and no thousands separator)")
            flag(nan & ~empty & ~not_number, header, text, Rule.NOT_FINITE, _NOT_FINITE)
        flag(np.isinf(values), header, text, Rule.NOT_FINITE, _NOT_FINITE)
        unit = plan.units[role]
        low, high = _bounds(role, unit, rules)
        with np.errstate(invalid="ignore"):
            outside = np.isfinite(values) & ((values < low) | (values > high))
        flag(outside, header, text, Rule.OUT_OF_RANGE, f"outside {low:g}..{high:g} {_UNIT_LABEL[unit]}")
        measures[role] = values

    # duplicate (sensor, timestamp) within the chunk (within each part): sort by key (stable), compare neighbours
    codes = pc.dictionary_encode(sensor).combine_chunks().indices.to_numpy().astype(np.int64)
    at = observed.view(np.int64)
    part = np.zeros(len(at), np.int64) if parts is None else parts
    order = np.lexsort((at, codes, part))
    same = (codes[order][1:] == codes[order][:-1]) & (at[order][1:] == at[order][:-1]) & (part[order][1:] == part[order][:-1])
    if same.any():
        run_start = np.concatenate(([True], ~same))
        first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(len(order)), 0))
        first_line = np.empty(len(order), dtype=np.int64)
        first_line[order] = lines[order][first_of_run]
        repeated = np.zeros(len(order), dtype=bool)
        repeated[order[1:][same]] = True
        repeated &= ~(missing | unparsed)
        message = np.char.add("same sensor and timestamp as line ", first_line.astype(str)).astype(object)
        flag(repeated, ts_header, raw_ts, Rule.DUPLICATE_KEY, message)

    valid = ~invalid
    rejected = pd.DataFrame(
        {
            "line": np.concatenate([[b.line for b in chunk.bad_rows], lines[invalid]]).astype(np.int64),
            "lines": np.concatenate([[b.lines for b in chunk.bad_rows], heights[invalid]]).astype(np.int64),
        }
    )
    if parts is not None:
        rejected["part"] = np.concatenate([[b.part for b in chunk.bad_rows], parts[invalid]]).astype(np.int64)
    keep = pa.array(valid)
    extras = table.select(list(plan.extras)).filter(keep) if plan.extras else pa.table({})
    return Checked(
        rows=int(table.num_rows) + len(chunk.bad_rows),
        observed_at=observed[valid],
        sensor_id=pc.filter(sensor, keep),
        measures={role: values[valid] for role, values in measures.items()},
        lines=lines[valid],
        extras=extras,
        problems=pd.concat(found, ignore_index=True) if found else no_problems(),
        rejected=rejected,
        parts=None if parts is None else parts[valid],
    )


def _empty(text: pa.ChunkedArray) -> np.ndarray:
    return pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)


def _nan_text(text: pa.ChunkedArray) -> np.ndarray:
    """Values spelled as NaN or infinity: numbers, but not finite ones."""
    return pc.match_substring_regex(pc.utf8_trim_whitespace(text), r"^[+-]?(?i:nan|inf|infinity)$").to_numpy(zero_copy_only=False)
