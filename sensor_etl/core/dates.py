"""Timestamps: which one date format a file uses, and its values as UTC instants. Pure functions.

A timestamp is read from one column, from a date and a time column joined by a space, or assembled
from numeric columns (year, month and day or day of year, hour, minute, second). ``detect_date_format``
looks at the first values of a file once; ``read_timestamps`` then reads every chunk with that format.
Local times (every value without an offset, dates alone included) are read in SOURCE_TIMEZONE: an IANA
zone with its daylight-saving rules, or a fixed offset. Hour 24:00 is 00:00 of the next day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.core.columns import ColumnPlan, bracketed_unit
from sensor_etl.core.problems import shown
from sensor_etl.core.rules import Rule
from sensor_etl.core.values import Missing, empty, to_float
from sensor_etl.errors import InvalidFile, Problem

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
EPOCH_FORMATS = {"epoch_s": 1_000_000, "epoch_ms": 1_000}  # microseconds per unit
TEXT_ROLES = ("timestamp", "date", "time")
PART_ROLES = ("year", "month", "day", "doy", "hour", "minute", "second")
_MONTH_FIRST = {day: day.replace("%d/%m", "%m/%d") for day in DATE_FORMATS if day.startswith("%d/%m")}
_OFFSET = r"[T:]\d+(?:[.,]\d+)?\s*(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"  # after a time: a date alone (2012-01-01) has none
_HOUR_24 = r"(^|[T ])24:00((?::00(?:[.,]0+)?)?\s*(?:[zZ]|[+-]\d\d(?::?\d\d)?)?)$"
_FIXED_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d\d))?$")
_DAY = np.timedelta64(1, "D")


def fixed_offset(zone: str) -> timedelta | None:
    """The offset from UTC of a SOURCE_TIMEZONE written as one (``-08:00``, ``+0530``, ``UTC+1``), else None."""
    match = _FIXED_OFFSET.match(zone.strip())
    if match is None or int(match[2]) > 23 or int(match[3] or 0) > 59:
        return None
    offset = timedelta(hours=int(match[2]), minutes=int(match[3] or 0))
    return -offset if match[1] == "-" else offset


def standard_offset(zone: str) -> str:
    """The zone's standard-time offset as SOURCE_TIMEZONE would take it (``-05:00`` for America/New_York):
    the smaller of its offsets in January and July, as daylight-saving time adds to it."""
    tz = ZoneInfo(zone)
    offset = min(tz.utcoffset(datetime(2024, month, 1)) or timedelta(0) for month in (1, 7))
    minutes = int(offset.total_seconds()) // 60
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# -- where a file's timestamp comes from ----------------------------------------------------------
def time_roles(plan: ColumnPlan) -> tuple[str, ...]:
    """The roles of the columns the timestamp is read from, in reading order."""
    return tuple(role for role in (*TEXT_ROLES, *PART_ROLES) if role in plan.roles)


def time_column(plan: ColumnPlan) -> str:
    """How problems name the timestamp's column(s): ``Date (MM/DD/YYYY) + Time (HH:MM)``."""
    return " + ".join(plan.header(role) for role in time_roles(plan))


def timestamp_text(table: pa.Table, plan: ColumnPlan) -> pa.ChunkedArray | None:
    """The trimmed text a timestamp is parsed from (date and time joined by a space); None when it is
    assembled from numeric columns."""
    parts = _trimmed(table, plan)
    return _joined(parts) if parts else None


def _joined(parts: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " ")


def _trimmed(table: pa.Table, plan: ColumnPlan) -> list[pa.ChunkedArray]:
    return [pc.utf8_trim_whitespace(table.column(plan.roles[role])) for role in TEXT_ROLES if role in plan.roles]


def header_date_format(plan: ColumnPlan) -> str | None:
    """A format the headers spell out, e.g. ``Date (MM/DD/YYYY)`` and ``Time (HH:MM)`` give
    ``%m/%d/%Y %H:%M``; None unless every text column of the timestamp names one."""
    formats = [_pattern_format(bracketed_unit(plan.header(role)) or "") for role in TEXT_ROLES if role in plan.roles]
    known = [fmt for fmt in formats if fmt is not None]
    return " ".join(known) if known and len(known) == len(formats) else None


def _pattern_format(pattern: str) -> str | None:
    """strftime codes for a pattern such as ``MM/DD/YYYY`` or ``HH:MM:SS`` (MM after HH is minutes)."""
    codes = {"yyyy": "%Y", "yy": "%y", "dd": "%d", "hh": "%H", "ss": "%S"}
    result, hours = [], False
    for token in re.findall(r"yyyy|yy|mm|dd|hh|ss|[-/.: T]|.", pattern, flags=re.IGNORECASE):
        lower = token.lower()
        if lower == "mm":
            result.append("%M" if hours else "%m")
        elif lower in codes:
            hours |= lower == "hh"
            result.append(codes[lower])
        elif token in "-/.: T":
            result.append(token)
        else:
            return None
    return "".join(result) if any(code.startswith("%") for code in result) else None


# -- the format of a file -------------------------------------------------------------------------
def detect_date_format(samples: pd.Series, configured: str | None) -> str:
    """The one date format of a file: DATE_FORMAT, else the first candidate that reads every sample
    (else the one that reads most; the other rows then fail ``timestamp_format``).

    ``samples`` is indexed by line number and named after the column, so a refusal can point at a
    line. Refuses to guess when day-first and month-first both fit (``01/02/2020``)."""
    if configured:
        return configured
    samples = samples.str.strip()
    samples = samples[samples != ""].head(1000)
    readable = pd.Series(_without_hour_24(samples.to_numpy(dtype=object)), index=samples.index, dtype=object)
    if samples.empty or _plain_iso(readable):
        return "ISO8601"
    best, best_count = DATE_FORMATS[0], 0
    for fmt in DATE_FORMATS:
        parsed = _parse_naive(readable, fmt)
        count = int(parsed.notna().sum())
        if count == len(samples):
            twin = _MONTH_FIRST.get(fmt)
            if twin is not None:
                other = _parse_naive(readable, twin)
                if other.notna().all() and not other.equals(parsed):
                    first = int(np.argmax((other != parsed).to_numpy()))
                    raise InvalidFile(_date_problem(samples, first, f"ambiguous dates: both {fmt} and {twin} fit; set DATE_FORMAT"))
            return fmt
        if count > best_count:
            best, best_count = fmt, count
    if best_count == 0:
        raise InvalidFile(
            _date_problem(
                samples,
                0,
                "no known date format fits the timestamps (e.g. 2020-01-01 00:10:00 or 01.01.2009 00:10:00); "
                "set DATE_FORMAT (strftime codes, or epoch_s / epoch_ms for Unix times)",
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
    return plain_iso(pa.array(samples.to_numpy(dtype=object), pa.string()))


def plain_iso(text: pa.Array | pa.ChunkedArray) -> bool:
    """Every value is ISO 8601 as Arrow reads it: ``detect_date_format`` then says ISO8601 for any
    sample of them, so a batch of many small files asks once for the samples of all of them."""
    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            pc.cast(text, target)
            return True
        except pa.ArrowInvalid:
            continue
    return False


def _parse_naive(values: pd.Series, fmt: str) -> pd.Series:
    return pd.to_datetime(values, format=fmt, errors="coerce", utc=True, cache=False)


def _without_hour_24(text: np.ndarray) -> np.ndarray:
    """``24:00`` written as ``00:00`` (the caller adds the day)."""
    return pc.replace_substring_regex(pa.array(text, pa.string()), _HOUR_24, r"\100:00\2").to_numpy(zero_copy_only=False)


# -- reading the values ---------------------------------------------------------------------------
class Instants(NamedTuple):
    """UTC instants (datetime64[us], NaT where there is none) and why a local time has none."""

    utc: np.ndarray
    gap: np.ndarray  # the local time does not exist: clocks went forward over it
    fold: np.ndarray  # the local time occurs twice (clocks went back) and AMBIGUOUS_TIME=reject


@dataclass(frozen=True)
class Timestamps:
    """A chunk's timestamps and, per row, why it has none."""

    utc: np.ndarray  # datetime64[us], NaT where there is none
    missing: np.ndarray  # a column it is read from is empty or in NA_VALUES
    invalid: np.ndarray  # not a date/time in the file's format, or not a real one (2023-02-30, hour 25)
    gap: np.ndarray
    fold: np.ndarray
    raw: pa.ChunkedArray  # what problems show as the value


def read_timestamps(table: pa.Table, plan: ColumnPlan, fmt: str, timezone: str, ambiguous: str, missing: Missing) -> Timestamps:
    """The timestamps of a chunk, from whichever columns hold them."""
    parts = _trimmed(table, plan)
    if not parts:
        return _from_parts(table, plan, timezone, ambiguous, missing)
    text = _joined(parts)
    absent = np.zeros(len(text), bool)
    for part in parts:
        absent |= pc.equal(pc.utf8_length(part), 0).to_numpy(zero_copy_only=False)
    instants = parse_timestamps(text, fmt, timezone, ambiguous)
    if fmt in EPOCH_FORMATS and len(missing.sentinels):
        absent |= missing.sentinel(to_float(text))
    nat = np.isnat(instants.utc) & ~absent
    if nat.any():  # a token is never a date, so only rows without one can hold a token
        for part in parts:
            absent |= nat & missing.token(part)
    return _timestamps(instants, absent, text)


def _timestamps(instants: Instants, absent: np.ndarray, raw: pa.ChunkedArray) -> Timestamps:
    utc = np.where(absent, np.datetime64("NaT"), instants.utc)
    problem = ~absent & np.isnat(utc)
    gap, fold = instants.gap & problem, instants.fold & problem
    return Timestamps(utc, absent, problem & ~gap & ~fold, gap, fold, raw)


def parse_timestamps(values: pa.ChunkedArray | pd.Series, fmt: str, timezone: str, ambiguous: str = "reject") -> Instants:
    """UTC instants of trimmed text in format ``fmt``, local times read in ``timezone``. ISO 8601 goes
    through Arrow's parser when the whole chunk allows; anything else through pandas."""
    if isinstance(values, pd.Series):
        values = pa.chunked_array([pa.array(values.str.strip(), pa.string())])
    if fmt in EPOCH_FORMATS:
        return _epoch(values, EPOCH_FORMATS[fmt])
    local, is_utc = _parse(values, fmt)
    failed = np.isnat(local)
    if failed.any():
        local, is_utc = _hour_24(values, fmt, local, is_utc, failed)
    return localize(local, is_utc, timezone, ambiguous)


def _parse(values: pa.ChunkedArray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """datetime64[us] (NaT where a value does not parse), and which are UTC already (written with an
    offset); the others are local times."""
    if fmt == "ISO8601":
        with_offset = pc.match_substring_regex(values, _OFFSET).to_numpy(zero_copy_only=False)
    else:
        with_offset = np.full(len(values), "%z" in fmt or "%Z" in fmt)
    if fmt == "ISO8601" and (with_offset.all() or not with_offset.any()):
        aware = bool(with_offset.any())
        try:
            parsed = pc.cast(values, pa.timestamp("us", tz="UTC") if aware else pa.timestamp("us"))
            return parsed.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("datetime64[us]"), with_offset
        except pa.ArrowInvalid:
            pass  # some value is not plain ISO 8601 or is not a real date: pandas reads each one
    text = values.to_numpy(zero_copy_only=False)
    result = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], format=fmt, errors="coerce", utc=True)
        result[with_offset] = aware.tz_convert(None).as_unit("us").to_numpy()
    naive = ~with_offset
    if naive.any():
        parsed = pd.to_datetime(text[naive], format=fmt, errors="coerce", utc=True)
        result[naive] = parsed.tz_convert(None).as_unit("us").to_numpy()  # no offset in the format: read as written
    return result, with_offset


def _hour_24(values: pa.ChunkedArray, fmt: str, local: np.ndarray, is_utc: np.ndarray, failed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values that failed for being written at hour 24:00, read as 00:00 of the next day."""
    text = pc.filter(values, pa.array(failed))
    at_24 = pc.match_substring_regex(text, _HOUR_24).to_numpy(zero_copy_only=False)
    if not at_24.any():
        return local, is_utc
    rows = np.flatnonzero(failed)[at_24]
    again, again_utc = _parse(pa.chunked_array([_without_hour_24(pc.filter(text, pa.array(at_24)).to_numpy(zero_copy_only=False))]), fmt)
    local, is_utc = local.copy(), is_utc.copy()
    local[rows], is_utc[rows] = again + _DAY, again_utc
    return local, is_utc


def _epoch(values: pa.ChunkedArray, micros_per_unit: int) -> Instants:
    """Unix times: UTC by definition, whatever SOURCE_TIMEZONE says."""
    numbers = to_float(values) * micros_per_unit
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(numbers) & (np.abs(numbers) < 2.5e17)  # within datetime64[us] (years 0001-9999)
    utc = np.where(ok, np.rint(np.where(ok, numbers, 0)).astype(np.int64), np.iinfo(np.int64).min).astype("datetime64[us]")
    none = np.zeros(len(utc), bool)
    return Instants(utc, none, none)


def localize(local: np.ndarray, is_utc: np.ndarray, timezone: str, ambiguous: str) -> Instants:
    """UTC for local times (``is_utc`` rows are UTC already). An IANA zone goes through pandas, with
    AMBIGUOUS_TIME for a time that occurs twice; a fixed offset is a subtraction."""
    none = np.zeros(len(local), bool)
    naive = ~is_utc
    if timezone == "UTC" or not naive.any():
        return Instants(local, none, none)
    offset = fixed_offset(timezone)
    if offset is not None:
        return Instants(np.where(naive, local - np.timedelta64(offset), local), none, none)
    index = pd.DatetimeIndex(local[naive])
    choice = "NaT" if ambiguous == "reject" else np.full(len(index), ambiguous == "earliest")  # True: the daylight-saving reading
    utc = local.copy()
    utc[naive] = index.tz_localize(timezone, ambiguous=choice, nonexistent="NaT").tz_convert(None).as_unit("us").to_numpy()
    lost = np.isnat(utc) & ~np.isnat(local)
    if not lost.any():
        return Instants(utc, none, none)
    # which of them occur twice: those that read under either choice (the others do not exist)
    twice = pd.DatetimeIndex(local[lost]).tz_localize(timezone, ambiguous=np.ones(int(lost.sum()), bool), nonexistent="NaT").notna()
    fold, gap = none.copy(), none.copy()
    fold[lost], gap[lost] = twice, ~twice
    return Instants(utc, gap, fold)


# -- assembled from numeric columns ---------------------------------------------------------------
def _from_parts(table: pa.Table, plan: ColumnPlan, timezone: str, ambiguous: str, missing: Missing) -> Timestamps:
    """year + (month and day, or doy) + hour, minute, second (default 0); hour 24 is 00 of the next day."""
    roles = [role for role in PART_ROLES if role in plan.roles]
    texts = {role: table.column(plan.roles[role]) for role in roles}
    numbers = {role: to_float(text) for role, text in texts.items()}
    absent = np.zeros(table.num_rows, bool)
    for role, text in texts.items():
        absent |= empty(text) | missing.text_token(text) | missing.sentinel(numbers[role])
    local = _assemble(numbers)
    instants = localize(local, np.zeros(len(local), bool), timezone, ambiguous)
    pieces: list[object] = []
    for index, role in enumerate(roles):
        pieces += [("" if index == 0 else " ") + f"{role}=", pc.utf8_trim_whitespace(texts[role])]
    return _timestamps(instants, absent, pc.binary_join_element_wise(*pieces, ""))


def _assemble(numbers: dict[str, np.ndarray]) -> np.ndarray:
    """Local datetime64[us] of the parts (NaT where one is not a whole number in its range)."""
    rows = len(numbers["year"])
    zero = np.zeros(rows)
    year, hour, minute = numbers["year"], numbers.get("hour", zero), numbers.get("minute", zero)
    second = numbers.get("second", zero)
    with np.errstate(invalid="ignore"):
        ok = _whole(year, 1, 9999) & _whole(hour, 0, 24) & _whole(minute, 0, 59) & (second >= 0) & (second < 60)
        ok &= (hour < 24) | ((minute == 0) & (second == 0))
    years = np.where(ok, year, 1970).astype(np.int64) - 1970
    start = years.astype("datetime64[Y]")
    if "month" in numbers and "day" in numbers:
        month, day = numbers["month"], numbers["day"]
        with np.errstate(invalid="ignore"):
            ok &= _whole(month, 1, 12) & _whole(day, 1, 31)
        first = (start + np.where(ok, month - 1, 0).astype(np.int64).astype("timedelta64[M]")).astype("datetime64[D]")
        date = first + np.where(ok, day - 1, 0).astype(np.int64).astype("timedelta64[D]")
        ok &= date.astype("datetime64[M]") == first.astype("datetime64[M]")  # no 31 April
    else:
        doy = numbers["doy"]
        with np.errstate(invalid="ignore"):
            ok &= _whole(doy, 1, 366)
        date = start.astype("datetime64[D]") + np.where(ok, doy - 1, 0).astype(np.int64).astype("timedelta64[D]")
        ok &= date.astype("datetime64[Y]") == start  # no day 366 in a common year
    clock = (np.where(ok, hour * 3600 + minute * 60 + second, 0) * 1e6).round().astype(np.int64).astype("timedelta64[us]")
    return np.where(ok, date.astype("datetime64[us]") + clock, np.datetime64("NaT"))


def _whole(values: np.ndarray, low: int, high: int) -> np.ndarray:
    return (values >= low) & (values <= high) & (np.floor(values) == values)
