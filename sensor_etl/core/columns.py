"""Recognise the key columns of a header by documented aliases, and the units they are in.

Matching ignores case, spaces, punctuation and a unit suffix: ``"T (degC)"``, ``"temp_f"`` and
``"Temperature [K]"`` are all temperature. COLUMN_MAP names headers the aliases do not cover.

The timestamp is one column, a date and a time column (``Date (MM/DD/YYYY)``, ``Time (HH:MM)``), or
numeric columns (year, month and day or doy, hour, minute, second). Those numeric columns are taken
by alias only when the file has no timestamp or date column, so a ``day`` column beside a timestamp
stays an ordinary column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sensor_etl.core.rules import Rule
from sensor_etl.core.units import HUMIDITY_SUFFIXES, PRESSURE_SUFFIXES, TEMPERATURE_SUFFIXES
from sensor_etl.errors import InvalidFile, Problem

MEASURES = ("temperature", "humidity", "pressure")

ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "datetime", "date", "time", "ts", "observedat", "observationtime", "measuredat", "datetimeutc"),
    "sensor_id": ("sensorid", "sensor", "sensorname", "device", "deviceid", "station", "stationid"),
    "temperature": ("temperature", "temp", "t", "airtemperature", "airtemp", "tair", "drybulb", "drybulbtemperature"),
    "humidity": ("humidity", "rh", "relativehumidity", "hum", "humid", "relhum", "relhumidity", "rhum"),
    "pressure": ("pressure", "p", "press", "airpressure", "baro", "barometricpressure", "stationpressure", "atmosphericpressure"),
    "year": ("year", "yr"),
    "month": ("month", "mon"),
    "day": ("day", "dom", "dayofmonth"),
    "doy": ("doy", "jday", "yday", "dayofyear", "julianday"),
    "hour": ("hour", "hr"),
    "minute": ("minute", "min"),
    "second": ("second", "sec"),
}
TIME_PARTS = ("year", "month", "day", "doy", "hour", "minute", "second")
_DATE_KEYS, _TIME_KEYS = {"date", "obsdate", "localdate"}, {"time", "timeofday", "localtime"}
_ALIAS_ROLE = {alias: role for role, aliases in ALIASES.items() for alias in aliases}
_SUFFIXES = {"temperature": TEMPERATURE_SUFFIXES, "pressure": PRESSURE_SUFFIXES, "humidity": HUMIDITY_SUFFIXES}
_BRACKETED = re.compile(r"^(?P<name>.*?)\s*[\(\[](?P<unit>[^\)\]]*)[\)\]]\s*$")


@dataclass(frozen=True)
class ColumnPlan:
    """Where each key column is in a file and which unit it is in; every other column is an extra."""

    headers: tuple[str, ...]
    roles: Mapping[str, int]
    units: Mapping[str, str]

    @property
    def extras(self) -> tuple[int, ...]:
        taken = set(self.roles.values())
        return tuple(i for i in range(len(self.headers)) if i not in taken)

    def header(self, role: str) -> str:
        return self.headers[self.roles[role]]


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z°%]+", "", text.lower())


def bracketed_unit(header: str) -> str | None:
    """The text in brackets at the end of a header, as written: ``MM/DD/YYYY`` of ``Date (MM/DD/YYYY)``."""
    bracketed = _BRACKETED.match(header.strip())
    return bracketed["unit"].strip() if bracketed else None


def recognise(header: str) -> tuple[str | None, str | None]:
    """(role, unit suffix) for one header text; (None, None) when it is not a key column."""
    text = header.strip()
    bracketed = _BRACKETED.match(text)
    if bracketed:
        role = _ALIAS_ROLE.get(_key(bracketed["name"]))
        return role, _key(bracketed["unit"]) or None
    role = _ALIAS_ROLE.get(_key(text))
    if role:
        return role, None
    base, sep, suffix = re.sub(r"[\s\-]+", "_", text).rpartition("_")
    role = _ALIAS_ROLE.get(_key(base)) if sep else None
    if role in _SUFFIXES and _key(suffix) in _SUFFIXES[role]:
        return role, _key(suffix)
    return None, None


def plan_columns(headers: Sequence[str], column_map: Mapping[str, str], default_units: Mapping[str, str]) -> ColumnPlan:
    """Map a header row to roles and units, or raise InvalidFile saying what is wrong with it."""
    headers = tuple(h.strip() for h in headers)
    seen: dict[str, int] = {}
    for index, name in enumerate(headers):
        if not name:
            raise InvalidFile(Problem(Rule.HEADER, f"column {index + 1} of the header has an empty name", line=1))
        if name in seen:
            raise InvalidFile(
                Problem(Rule.HEADER, f"column name {name!r} appears twice (columns {seen[name] + 1} and {index + 1})", line=1, column=name)
            )
        seen[name] = index

    mapped = {k.strip().lower(): v for k, v in column_map.items()}
    roles: dict[str, int] = {}
    parts: dict[str, list[int]] = {}  # time parts recognised by alias: used only if nothing else gives the time
    units = dict(default_units)
    for index, name in enumerate(headers):
        role, suffix = (mapped[name.lower()], None) if name.lower() in mapped else recognise(name)
        if role is None:
            continue
        if role in TIME_PARTS and name.lower() not in mapped:
            parts.setdefault(role, []).append(index)
            continue
        pair = _date_and_time(headers, roles["timestamp"], index) if role == "timestamp" and role in roles else None
        if pair is not None:
            del roles["timestamp"]
            roles["date"], roles["time"] = pair
            continue
        if role in roles:
            raise InvalidFile(
                Problem(
                    Rule.HEADER,
                    f"columns {headers[roles[role]]!r} and {name!r} both look like {role}; name one in COLUMN_MAP",
                    line=1,
                    column=name,
                )
            )
        roles[role] = index
        if suffix is not None and role in _SUFFIXES:
            unit = _SUFFIXES[role].get(suffix)
            if unit is None:
                raise InvalidFile(
                    Problem(Rule.UNIT, f"unknown {role} unit {suffix!r} (known: {', '.join(sorted(_SUFFIXES[role]))})", line=1, column=name)
                )
            units[role] = unit

    _time_source(headers, roles, parts)
    if not any(m in roles for m in MEASURES):
        raise InvalidFile(
            Problem(
                Rule.MISSING_COLUMN,
                "no temperature, humidity or pressure column (aliases: T, temp, rh, humidity, p, pressure; or COLUMN_MAP)",
                line=1,
            )
        )
    return ColumnPlan(headers=headers, roles=roles, units=units)


def _date_and_time(headers: tuple[str, ...], first: int, second: int) -> tuple[int, int] | None:
    """(date, time) column indexes when two timestamp-like headers are a date and a time column
    (``Date (MM/DD/YYYY)``, ``Time (HH:MM)``, in either order); else None."""
    keys = [_key(_BRACKETED.sub(r"\g<name>", headers[index])) for index in (first, second)]
    if keys[0] in _DATE_KEYS and keys[1] in _TIME_KEYS:
        return first, second
    if keys[0] in _TIME_KEYS and keys[1] in _DATE_KEYS:
        return second, first
    return None


def _time_source(headers: tuple[str, ...], roles: dict[str, int], parts: dict[str, list[int]]) -> None:
    """Check that one source gives the timestamp: a timestamp column; a date column with an optional
    time column; or year with month and day (or doy), and optional hour, minute, second. Numeric
    columns found by alias complete ``roles`` only when nothing else gives the time."""
    text = [role for role in ("timestamp", "date", "time") if role in roles]
    numeric = [role for role in TIME_PARTS if role in roles]
    if not text and not numeric:
        if not _complete(parts.keys()):
            raise InvalidFile(
                Problem(
                    Rule.MISSING_COLUMN,
                    f"no timestamp column: expected one of {', '.join(ALIASES['timestamp'])}, a date and a time column, "
                    "or year, month, day (or doy), hour, minute columns (or COLUMN_MAP)",
                    line=1,
                )
            )
        for part, found in parts.items():
            if len(found) > 1:
                names = " and ".join(repr(headers[i]) for i in found)
                raise InvalidFile(Problem(Rule.HEADER, f"columns {names} both look like {part}; name one in COLUMN_MAP", line=1))
            roles[part] = found[0]
        numeric = [role for role in TIME_PARTS if role in roles]
    if not numeric and text in (["timestamp"], ["date"], ["date", "time"]):
        return
    if not text and _complete(numeric):
        if {"month", "day", "doy"} <= set(numeric):
            del roles["doy"]  # month and day win; doy stays an ordinary column
        return
    names = ", ".join(f"{headers[roles[role]]!r} as {role}" for role in (*text, *numeric))
    raise InvalidFile(
        Problem(
            Rule.HEADER,
            f"no timestamp can be read from {names}: it needs a timestamp column, a date column with an optional time column, "
            "or year with month and day (or doy), and optional hour, minute, second; set COLUMN_MAP",
            line=1,
        )
    )


def _complete(parts: Iterable[str]) -> bool:
    """Numeric columns that make a date: year with month and day, or year with day of year."""
    given = set(parts)
    return {"year", "month", "day"} <= given or {"year", "doy"} <= given


def with_units_row(plan: ColumnPlan, units: Sequence[str], line: int) -> ColumnPlan:
    """``plan`` with the units a units row (UNITS_ROW, a TOA5 file's line 3) gives its measure columns.

    An empty entry keeps the header's unit (or the ``*_UNIT`` default); an unknown one, or one that
    contradicts the header's suffix, raises InvalidFile naming the line, the column and the value."""
    if len(units) != len(plan.headers):
        raise InvalidFile(Problem(Rule.UNIT, f"the units row has {len(units)} fields where the header has {len(plan.headers)}", line=line))
    found = dict(plan.units)
    for role, index in plan.roles.items():
        text, header = units[index].strip(), plan.headers[index]
        if role not in _SUFFIXES or not text:
            continue
        unit = _SUFFIXES[role].get(_key(text))
        if unit is None:
            known = ", ".join(sorted(_SUFFIXES[role]))
            raise InvalidFile(
                Problem(Rule.UNIT, f"unknown {role} unit in the units row (known: {known})", line=line, column=header, value=text)
            )
        named, suffix = recognise(header)
        if named == role and suffix is not None and _SUFFIXES[role].get(suffix, unit) != unit:
            raise InvalidFile(
                Problem(Rule.UNIT, f"the units row says {unit} where the header says {suffix!r}", line=line, column=header, value=text)
            )
        found[role] = unit
    return replace(plan, units=found)
