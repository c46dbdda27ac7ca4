"""Row rules: dates, numbers, missing values, ranges, duplicates. Pure functions on one chunk.

``check_chunk`` turns a chunk of text columns into typed key columns (in the file's own units) and a
table of problems, one row per broken rule with line, column, raw value and rule name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.config import Rules
from sensor_etl.core.chunk import Chunk
from sensor_etl.core.columns import MEASURES, ColumnPlan
from sensor_etl.core.rules import Rule
from sensor_etl.core.units import celsius_to, hpa_to, percent_to
from sensor_etl.errors import InvalidFile, Problem

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
_NOT_FINITE = "NaN, infinite, or too large for a 64-bit float"
_MONTH_FIRST = {day: day.replace("%d/%m", "%m/%d") for day in DATE_FORMATS if day.startswith("%d/%m")}
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
    observed_at: np.ndarray  # datetime64[us], UTC
    sensor_id: pa.ChunkedArray  # trimmed text
    measures: dict[str, np.ndarray]  # role -> float64 in the file's unit
    lines: np.ndarray
    extras: pa.Table  # the other columns, as text, valid rows only
    problems: pd.DataFrame  # PROBLEM_COLUMNS, every problem of the chunk
    rejected: pd.DataFrame  # one row per invalid row: its first line and how many lines it spans


def _problems(lines: np.ndarray, column: str, values: list, rule: Rule, message: str | np.ndarray | list) -> pd.DataFrame:
    """Problems as a table; the rule column holds the rule's plain string (vectorized counts and reports)."""
    return pd.DataFrame({"line": lines, "column": column, "value": shown(values), "rule": rule.value, "message": message})


def shown(values: list) -> np.ndarray:
    """Values as a report shows them: cut at MAX_SHOWN_CHARS, saying how long they really were."""
    text = pd.Series(np.asarray(values, dtype=object), dtype=object)
    length = text.str.len()
    long = (length > MAX_SHOWN_CHARS).to_numpy()
    if long.any():
        text[long] = text[long].str.slice(0, MAX_SHOWN_CHARS) + "… (" + length[long].astype(str) + " characters)"
    return text.to_numpy(dtype=object)


_NO_PROBLEMS = pd.DataFrame({name: pd.Series(dtype="int64" if name == "line" else object) for name in PROBLEM_COLUMNS})


def no_problems() -> pd.DataFrame:
    """The empty problem table (shared: callers only read it)."""
    return _NO_PROBLEMS


# -- dates -------------------------------------------------------------------------------------
def detect_date_format(samples: pd.Series, configured: str | None) -> str:
    """The one date format of a file: DATE_FORMAT, else the first candidate that reads every sample
    (else the one that reads most; the other rows then fail ``timestamp_format``).

    ``samples`` is indexed by line number and named after the column, so a refusal can point at a
    line. Refuses to guess when day-first and month-first both fit (``01/02/2020``)."""
    if configured:
        return configured
    samples = samples.str.strip()
    samples = samples[samples != ""].head(1000)
    if samples.empty or _plain_iso(samples):
        return "ISO8601"
    best, best_count = DATE_FORMATS[0], 0
    for fmt in DATE_FORMATS:
        parsed = _parse_naive(samples, fmt)
        count = int(parsed.notna().sum())
        if count == len(samples):
            twin = _MONTH_FIRST.get(fmt)
            if twin is not None:
                other = _parse_naive(samples, twin)
                if other.notna().all() and not other.equals(parsed):
                    first = int(np.argmax((other != parsed).to_numpy()))
                    raise InvalidFile(_date_problem(samples, first, f"ambiguous dates: both {fmt} and {twin} fit; set DATE_FORMAT"))
            return fmt
        if count > best_count:
            best, best_count = fmt, count
    if best_count == 0:
        raise InvalidFile(
            _date_problem(
                samples, 0, "no known date format fits the timestamps (e.g. 2020-01-01 00:10:00 or 01.01.2009 00:10:00); set DATE_FORMAT"
            )
        )
    return best


def _date_problem(samples: pd.Series, position: int, message: str) -> Problem:
    return Problem(
        Rule.TIMESTAMP_FORMAT,
        message,
        line=int(samples.index[position]),
        column=None if samples.name is None else str(samples.name),
        value=str(shown([samples.iloc[position]])[0]),
    )


def _plain_iso(samples: pd.Series) -> bool:
    """Every sample is ISO 8601 as Arrow reads it (cheap first guess, the common case)."""
    text = pa.array(samples.to_numpy(dtype=object), pa.string())
    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            pc.cast(text, target)
            return True
        except pa.ArrowInvalid:
            continue
    return False


def _parse_naive(values: pd.Series, fmt: str) -> pd.Series:
    return pd.to_datetime(values, format=fmt, errors="coerce", utc=True, cache=False)


def parse_timestamps(values: pa.ChunkedArray | pd.Series, fmt: str, timezone: str) -> np.ndarray:
    """UTC timestamps (datetime64[us]) of trimmed text; NaT where a value does not parse or does not
    exist in the source time zone. ISO 8601 goes through Arrow's parser when the whole chunk allows."""
    if isinstance(values, pd.Series):
        values = pa.chunked_array([pa.array(values.str.strip(), pa.string())])
    with_offset = (
        pc.match_substring_regex(values, _OFFSET).to_numpy(zero_copy_only=False) if fmt == "ISO8601" else np.zeros(len(values), bool)
    )
    if fmt == "ISO8601" and (with_offset.all() or not with_offset.any()):
        try:
            return _localize(
                pc.cast(values, pa.timestamp("us", tz="UTC") if with_offset.any() else pa.timestamp("us")), timezone, with_offset.any()
            )
        except pa.ArrowInvalid:
            pass  # some value is not plain ISO 8601 or is not a real date: pandas reports each one
    text = values.to_numpy(zero_copy_only=False)
    result = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], format=fmt, errors="coerce", utc=True)
        result[with_offset] = aware.tz_convert(None).as_unit("us").to_numpy()
    naive = ~with_offset
    if naive.any():
        parsed = pd.to_datetime(text[naive], format=fmt, errors="coerce")
        if parsed.tz is None:
            parsed = parsed.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        result[naive] = parsed.tz_convert(None).as_unit("us").to_numpy()
    return result


def _localize(parsed: pa.ChunkedArray, timezone: str, aware: bool) -> np.ndarray:
    micros = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    if aware or timezone == "UTC":
        return micros
    local = pd.DatetimeIndex(micros).tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return local.tz_convert(None).as_unit("us").to_numpy()


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
    return [_problems(lines, "", [b.text for b in chunk.bad_rows], Rule.COLUMN_COUNT, messages)]


def check_chunk(chunk: Chunk, plan: ColumnPlan, rules: Rules, date_format: str, now: datetime) -> Checked:
    """Apply every row rule to one chunk; nothing here raises for bad data, it is all in ``problems``."""
    table, lines, heights = chunk.table, chunk.lines, chunk.heights
    found = _bad_rows(chunk)

    blank = _blank_rows(table)
    if blank.any():
        keep = ~blank
        table, lines, heights = table.filter(pa.array(keep)), lines[keep], heights[keep]
    invalid = np.zeros(table.num_rows, dtype=bool)

    def flag(mask: np.ndarray, name: str, column: pa.ChunkedArray, rule: Rule, message: str | np.ndarray) -> None:
        """Record ``rule`` for the rows in ``mask`` of the column headed ``name``; raw values are only materialized for those rows."""
        nonlocal invalid
        if mask.any():
            invalid |= mask
            values = pc.filter(column, pa.array(mask)).to_pylist()
            found.append(_problems(lines[mask], name, values, rule, message[mask] if isinstance(message, np.ndarray) else message))

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

    # duplicate (sensor, timestamp) within the chunk: sort by key (stable), compare neighbours
    codes = pc.dictionary_encode(sensor).combine_chunks().indices.to_numpy().astype(np.int64)
    at = observed.view(np.int64)
    order = np.lexsort((at, codes))
    same = (codes[order][1:] == codes[order][:-1]) & (at[order][1:] == at[order][:-1])
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
    )


def _empty(text: pa.ChunkedArray) -> np.ndarray:
    return pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)


def _nan_text(text: pa.ChunkedArray) -> np.ndarray:
    """Values spelled as NaN or infinity: numbers, but not finite ones."""
    return pc.match_substring_regex(pc.utf8_trim_whitespace(text), r"^[+-]?(?i:nan|inf|infinity)$").to_numpy(zero_copy_only=False)
