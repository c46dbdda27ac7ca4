"""Row rules: dates, numbers, missing values, ranges, duplicates. Pure functions on one chunk.

``check_chunk`` turns a chunk of text columns into typed key columns (in the file's own units) and a
table of problems (``problems``), one row per broken rule with line, column, raw value and rule name.
Timestamps are read by ``dates`` with the format detected once per file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.config import Rules
from sensor_etl.core.chunk import Chunk
from sensor_etl.core.columns import MEASURES, ColumnPlan, recognise
from sensor_etl.core.dates import Timestamps, read_timestamps, standard_offset, time_column
from sensor_etl.core.problems import no_problems, shown
from sensor_etl.core.rules import Rule
from sensor_etl.core.units import HEADER_SUFFIX, celsius_to, hpa_to, percent_to
from sensor_etl.core.values import Missing, empty, missing_tokens, to_float

_ALTERNATIVES = {"temperature": ("F", "K", "C"), "pressure": ("kPa", "Pa", "hPa"), "humidity": ("percent", "fraction")}
_UNIT_PART = re.compile(r"\s*[\(\[][^\)\]]*[\)\]]\s*$|[_\s-]+[^_\s-]+$")  # "T (degC)" -> "T", "temp_c" -> "temp"
_NULL_HINT = " (MISSING_VALUES=null stores it as NULL)"
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


def _unit_hint(role: str, unit: str, values: np.ndarray, outside: int, header: str, rules: Rules) -> str:
    """When most values of a column are out of range and every one fits another unit's range: which
    unit, and how to say so. (A few outliers among good values are a sensor's fault, not a unit's.)"""
    if outside * 2 <= len(values):
        return ""
    for other in _ALTERNATIVES[role]:
        low, high = _bounds(role, other, rules)
        if other != unit and low <= values.min() and values.max() <= high:
            named = recognise(header)[1] is not None  # the header's unit wins over the setting: only the header can fix it
            base = _UNIT_PART.sub("", header.strip()) if named else header.strip()
            in_header = f"name the unit in the header ({base}_{HEADER_SUFFIX[other]})"
            how = in_header if named else f"set {role.upper()}_UNIT={other}, or {in_header}"
            return f"; all values fit {_UNIT_LABEL[other]}: {how}"
    return ""


def _blank_rows(table: pa.Table) -> np.ndarray:
    blank = None
    for column in table.columns:
        nothing = pc.equal(pc.utf8_length(column), 0)
        blank = nothing if blank is None else pc.and_(blank, nothing)
    return np.zeros(0, bool) if blank is None else blank.to_numpy(zero_copy_only=False)


def _bad_rows(chunk: Chunk) -> list[pd.DataFrame]:
    """The rows the reader could not split into columns, each with the problem it found."""
    if not chunk.bad_rows:
        return []
    rows = chunk.bad_rows
    return [
        pd.DataFrame(
            {
                "line": np.array([b.line for b in rows], dtype=np.int64),
                "column": [b.column for b in rows],
                "value": shown([b.value for b in rows]),
                "rule": [b.rule.value for b in rows],
                "message": [b.message for b in rows],
                **({} if chunk.parts is None else {"part": np.array([b.part for b in rows], dtype=np.int64)}),
            }
        )
    ]


class _Flags:
    """The problems found in one chunk, and which rows they make invalid (tagged with their part, in a combined chunk)."""

    def __init__(self, lines: np.ndarray, found: list[pd.DataFrame], parts: np.ndarray | None) -> None:
        self.lines, self.found, self.parts = lines, found, parts
        self.invalid = np.zeros(len(lines), dtype=bool)

    def __call__(self, mask: np.ndarray, name: str, column: pa.ChunkedArray, rule: Rule, message: str | np.ndarray) -> None:
        """Record ``rule`` for the rows in ``mask`` of the column headed ``name``; raw values are only materialized for those rows."""
        if mask.any():
            self.invalid |= mask
            values = pc.filter(column, pa.array(mask)).to_pylist()
            text = message[mask] if isinstance(message, np.ndarray) else message
            self.found.append(_problems(self.lines[mask], name, values, rule, text, None if self.parts is None else self.parts[mask]))


def check_chunk(chunk: Chunk, plan: ColumnPlan, rules: Rules, date_format: str, now: datetime) -> Checked:
    """Apply every row rule to one chunk; nothing here raises for bad data, it is all in ``problems``.

    A combined chunk (``chunk.parts`` set) gets the results each of its parts would get on its own,
    tagged with the part: its problems, rejected rows and valid rows carry it."""
    table, lines, heights, parts = chunk.table, chunk.lines, chunk.heights, chunk.parts
    blank = _blank_rows(table)
    if blank.any():
        keep = ~blank
        table, lines, heights = table.filter(pa.array(keep)), lines[keep], heights[keep]
        parts = None if parts is None else parts[keep]
    flag = _Flags(lines, _bad_rows(chunk), parts)
    missing = missing_tokens(rules.na_values)

    # every column: a sane length (a value may hold line breaks: RFC 4180)
    for name, column in zip(plan.headers, table.columns, strict=True):
        if table.num_rows and pc.max(pc.binary_length(column)).as_py() > rules.max_field_bytes:
            long = pc.greater(pc.binary_length(column), rules.max_field_bytes).to_numpy(zero_copy_only=False)
            flag(long, name, column, Rule.FIELD_TOO_LONG, f"longer than MAX_FIELD_BYTES ({rules.max_field_bytes:,} bytes)")

    stamps = read_timestamps(table, plan, date_format, rules.source_timezone, rules.ambiguous_time, missing)
    _check_timestamps(flag, stamps, time_column(plan), date_format, rules, now)

    # sensor id: its distinct values are few, so tokens are looked up among them
    if "sensor_id" in plan.roles:
        raw_sensor = table.column(plan.roles["sensor_id"])
        sensor = pc.utf8_trim_whitespace(raw_sensor)
        encoded = pc.dictionary_encode(sensor).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        distinct = pa.chunked_array([encoded.dictionary])
        absent = (missing.token(distinct) | empty(distinct))[codes]
        flag(absent, plan.header("sensor_id"), raw_sensor, Rule.MISSING_VALUE, "missing sensor id (empty, or a value of NA_VALUES)")
    else:
        sensor = pa.chunked_array([pa.array(np.full(table.num_rows, rules.default_sensor_id, dtype=object), pa.string())])
        codes = np.zeros(table.num_rows, dtype=np.int64)

    measures = _check_measures(flag, table, plan, rules, missing)

    # duplicate (sensor, timestamp) within the chunk (within each part): sort by key (stable), compare neighbours
    at = stamps.utc.view(np.int64)
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
        repeated &= ~np.isnat(stamps.utc)
        message = np.char.add("same sensor and timestamp as line ", first_line.astype(str)).astype(object)
        flag(repeated, time_column(plan), stamps.raw, Rule.DUPLICATE_KEY, message)

    invalid = flag.invalid
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
        observed_at=stamps.utc[valid],
        sensor_id=pc.filter(sensor, keep),
        measures={role: values[valid] for role, values in measures.items()},
        lines=lines[valid],
        extras=extras,
        problems=pd.concat(flag.found, ignore_index=True) if flag.found else no_problems(),
        rejected=rejected,
        parts=None if parts is None else parts[valid],
    )


def _check_timestamps(flag: _Flags, stamps: Timestamps, header: str, date_format: str, rules: Rules, now: datetime) -> None:
    """Missing, unreadable, in a daylight-saving change, or out of range."""
    raw = stamps.raw
    flag(stamps.missing, header, raw, Rule.MISSING_VALUE, "missing timestamp (empty, or a value of NA_VALUES)")
    flag(stamps.invalid, header, raw, Rule.TIMESTAMP_FORMAT, f"not a valid date/time in this file's format ({date_format})")
    zone = rules.source_timezone
    twice = f"falls in the daylight-saving change: this local time occurs twice in {zone}; set AMBIGUOUS_TIME=earliest or latest"
    flag(stamps.fold, header, raw, Rule.DAYLIGHT_SAVING, twice)
    if stamps.gap.any():  # the message names the zone's standard offset: looked up only then
        skipped = (
            f"falls in the daylight-saving change: this local time does not exist in {zone} (clocks went forward over it); "
            f"a logger on standard time all year needs its fixed offset: SOURCE_TIMEZONE={standard_offset(zone)}"
        )
        flag(stamps.gap, header, raw, Rule.DAYLIGHT_SAVING, skipped)
    observed = stamps.utc
    earliest = np.datetime64(rules.timestamp_min.astimezone(UTC).replace(tzinfo=None), "us")
    latest = np.datetime64((now + timedelta(seconds=rules.max_future_seconds)).astimezone(UTC).replace(tzinfo=None), "us")
    flag(observed < earliest, header, raw, Rule.TIMESTAMP_RANGE, f"before TIMESTAMP_MIN ({rules.timestamp_min:%Y-%m-%d})")
    flag(
        observed > latest, header, raw, Rule.TIMESTAMP_RANGE, f"more than MAX_FUTURE_SECONDS ({rules.max_future_seconds:g} s) in the future"
    )


def _out_of_range(
    label: str,
    role: str,
    unit: str,
    values: np.ndarray,
    usable: np.ndarray,
    outside: np.ndarray,
    header: str,
    rules: Rules,
    parts: np.ndarray | None,
) -> str | np.ndarray:
    """The ``out_of_range`` message with the unit hint of its chunk, or per row with the hint of each
    part of a combined chunk (a hint speaks of one file's column)."""
    if parts is None:
        return label + _unit_hint(role, unit, values[usable], int(outside.sum()), header, rules)
    messages = np.full(len(values), label, dtype=object)
    for part in np.unique(parts[outside]):
        mine = parts == part
        messages[mine] = label + _unit_hint(role, unit, values[usable & mine], int((outside & mine).sum()), header, rules)
    return messages


def _check_measures(flag: _Flags, table: pa.Table, plan: ColumnPlan, rules: Rules, missing: Missing) -> dict[str, np.ndarray]:
    """Each measure as float64 in the file's unit. A missing one (empty, a token, a sentinel) breaks
    ``missing_value``, or with MISSING_VALUES=null is NaN (stored as NULL) unless the row has no measure at all."""
    nulls = rules.missing_values == "null"
    measures: dict[str, np.ndarray] = {}
    present = np.zeros(table.num_rows, bool)
    for role in MEASURES:
        if role not in plan.roles:
            continue
        text = table.column(plan.roles[role])
        header = plan.header(role)
        values = to_float(text)
        nan = np.isnan(values)
        sentinel = missing.sentinel(values)
        absent = sentinel.copy()
        if nan.any():  # only then can a value be empty, text, or spelled NaN
            blank = empty(text)
            token = nan & ~blank & missing.text_token(text)
            absent |= blank | token
            if not nulls:
                flag(blank, header, text, Rule.MISSING_VALUE, f"empty {role}{_NULL_HINT}")
                flag(token, header, text, Rule.MISSING_VALUE, f"missing {role}: the value is in NA_VALUES{_NULL_HINT}")
            not_number = nan & ~absent & ~_nan_text(text)
            flag(not_number, header, text, Rule.NOT_A_NUMBER, "not a number (use a point for decimals and no thousands separator)")
            flag(nan & ~absent & ~not_number, header, text, Rule.NOT_FINITE, _NOT_FINITE)
        if not nulls:
            flag(sentinel, header, text, Rule.MISSING_VALUE, f"missing {role}: the value equals a sentinel of NA_VALUES{_NULL_HINT}")
        flag(np.isinf(values), header, text, Rule.NOT_FINITE, _NOT_FINITE)
        unit = plan.units[role]
        low, high = _bounds(role, unit, rules)
        usable = np.isfinite(values) & ~absent
        with np.errstate(invalid="ignore"):
            outside = usable & ((values < low) | (values > high))
        if outside.any():
            label = f"outside {low:g}..{high:g} {_UNIT_LABEL[unit]}"
            flag(
                outside,
                header,
                text,
                Rule.OUT_OF_RANGE,
                _out_of_range(label, role, unit, values, usable, outside, header, rules, flag.parts),
            )
        present |= ~absent
        measures[role] = np.where(absent, np.nan, values) if absent.any() else values
    if nulls:
        first = next(iter(measures))
        names = ", ".join(plan.header(role) for role in measures)
        no_measure = f"no measure in this row: {names} {'is' if len(measures) == 1 else 'are all'} missing"
        flag(~present, plan.header(first), table.column(plan.roles[first]), Rule.MISSING_VALUE, no_measure)
    return measures


def _nan_text(text: pa.ChunkedArray) -> np.ndarray:
    """Values spelled as NaN or infinity: numbers, but not finite ones."""
    return pc.match_substring_regex(pc.utf8_trim_whitespace(text), r"^[+-]?(?i:nan|inf|infinity)$").to_numpy(zero_copy_only=False)
