"""Timestamps: which one date format a file uses, and its values as UTC instants. Pure functions.

``detect_date_format`` looks at the first values of a file's timestamp column once; ``parse_timestamps``
then reads every chunk with that format, in SOURCE_TIMEZONE for values without an offset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.core.problems import shown
from sensor_etl.core.rules import Rule
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
_MONTH_FIRST = {day: day.replace("%d/%m", "%m/%d") for day in DATE_FORMATS if day.startswith("%d/%m")}
_OFFSET = r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"


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


def parse_timestamps(values: pa.ChunkedArray | pd.Series, fmt: str, timezone: str) -> np.ndarray:
    """UTC timestamps (datetime64[us]) of trimmed text; NaT where a value does not parse or does not
    exist in the source time zone. ISO 8601 goes through Arrow's parser when the whole chunk allows."""
    if isinstance(values, pd.Series):
        values = pa.chunked_array([pa.array(values.str.strip(), pa.string())])
    with_offset = (
        pc.match_substring_regex(values, _OFFSET).to_numpy(zero_copy_only=False) if fmt == "ISO8601" else np.zeros(len(values), bool)
    )
    if fmt == "ISO8601" and (with_offset.all() or not with_offset.any()):
        aware = bool(with_offset.any())
        try:
            return _localize(pc.cast(values, pa.timestamp("us", tz="UTC") if aware else pa.timestamp("us")), timezone, aware)
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
