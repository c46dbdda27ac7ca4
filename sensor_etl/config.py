"""Every setting in one frozen struct, read from the environment and ``.env`` (the environment wins).

Each field documents its variable and default; ``.env.example`` and the README list the same.
A bad value raises ``ConfigError`` naming the variable, the value and what is accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from sensor_etl.core.units import HUMIDITY_UNITS, PRESSURE_UNITS, TEMPERATURE_UNITS
from sensor_etl.errors import ConfigError

ROLES = ("timestamp", "sensor_id", "temperature", "humidity", "pressure")
T = TypeVar("T")


@dataclass(frozen=True)
class RejectLimit:
    """MAX_INVALID_ROWS: how many invalid rows a file may have and still load its valid rows."""

    count: int = 0
    percent: float | None = None

    def allows(self, invalid: int, total: int) -> bool:
        if invalid == 0:
            return True
        if self.percent is not None:
            return total > 0 and invalid * 100.0 <= self.percent * total
        return invalid <= self.count

    def may_allow(self, invalid: int) -> bool:
        """Whether valid rows are still worth loading: a count can be exceeded mid-file, a percentage is known at the end."""
        return invalid == 0 or (self.enabled and (self.percent is not None or invalid <= self.count))

    @property
    def enabled(self) -> bool:
        return self.count > 0 or bool(self.percent)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class Rules:
    """What a valid file is: the part of the settings the pure validate/transform code needs."""

    temperature_min: float = -90.0  # TEMPERATURE_MIN, °C
    temperature_max: float = 60.0  # TEMPERATURE_MAX, °C
    humidity_min: float = 0.0  # HUMIDITY_MIN, %
    humidity_max: float = 100.0  # HUMIDITY_MAX, %
    pressure_min: float = 300.0  # PRESSURE_MIN, hPa
    pressure_max: float = 1100.0  # PRESSURE_MAX, hPa
    temperature_unit: str = "C"  # TEMPERATURE_UNIT when the header has no unit: C, F or K
    pressure_unit: str = "hPa"  # PRESSURE_UNIT when the header has no unit: hPa, mbar, kPa or Pa
    humidity_unit: str = "percent"  # HUMIDITY_UNIT: percent or fraction (0–1)
    date_format: str | None = None  # DATE_FORMAT (strftime codes); unset = detected per file
    source_timezone: str = "UTC"  # SOURCE_TIMEZONE for timestamps without an offset
    timestamp_min: datetime = datetime(1900, 1, 1, tzinfo=UTC)  # TIMESTAMP_MIN
    max_future_seconds: float = 86400.0  # MAX_FUTURE_SECONDS a timestamp may lie ahead of now
    default_sensor_id: str = "default"  # DEFAULT_SENSOR_ID for files without a sensor column
    column_map: Mapping[str, str] = field(default_factory=dict)  # COLUMN_MAP "Header:role,..."
    delimiter: str = "auto"  # CSV_DELIMITER: auto (comma, else ; or tab from the header) or one character
    encoding: str = "utf-8"  # ENCODING of input files
    max_invalid_rows: RejectLimit = field(default_factory=RejectLimit)  # MAX_INVALID_ROWS


@dataclass(frozen=True)
class Settings:
    """The daemon's whole configuration."""

    database_url: str | None = None  # DATABASE_URL (libpq URI); wins over DB_*
    db_name: str = "sensor_etl"  # DB_NAME
    db_user: str = "postgres"  # DB_USER
    db_password: str = field(default="", repr=False)  # DB_PASSWORD (never logged)
    db_host: str | None = None  # DB_HOST; with DATABASE_URL unset too, an embedded server starts
    db_port: int = 5432  # DB_PORT
    pgdata_folder: Path = Path(".pgdata")  # PGDATA_FOLDER of the embedded server
    data_folder: Path = Path("data")  # DATA_FOLDER: the inbox
    processed_folder: Path = Path("processed")  # PROCESSED_FOLDER
    quarantine_folder: Path = Path("quarantine")  # QUARANTINE_FOLDER
    monitor_interval: float = 5.0  # MONITOR_INTERVAL seconds between scans
    file_settle_seconds: float = 2.0  # FILE_SETTLE_SECONDS a file must stay unmodified before it is read
    workers: int = 1  # WORKERS processes sharing the inbox
    lease_seconds: float = 60.0  # LEASE_SECONDS before a dead worker's claim is taken over
    read_block_bytes: int = 4 << 20  # READ_BLOCK_BYTES per chunk: bounds memory on huge files (~50x this)
    retry_attempts: int = 5  # RETRY_ATTEMPTS for a transient database error, per file
    retry_max_wait: float = 30.0  # RETRY_MAX_WAIT seconds between attempts (exponential, jittered)
    log_level: str = "INFO"  # LOG_LEVEL
    log_format: str = "text"  # LOG_FORMAT: text or json
    rules: Rules = field(default_factory=Rules)

    @property
    def embedded(self) -> bool:
        """No server configured: start the embedded one."""
        return not self.database_url and not self.db_host

    def connection_kwargs(self) -> dict[str, object]:
        """psycopg2.connect() arguments for the configured server (not for the embedded one)."""
        if self.database_url:
            return {"dsn": self.database_url}
        return {
            "dbname": self.db_name,
            "user": self.db_user,
            "password": self.db_password,
            "host": self.db_host,
            "port": self.db_port,
        }


# -- parsing ---------------------------------------------------------------------------------
def _number(kind: Callable[[str], T], low: float | None = None, high: float | None = None) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = kind(text)
        if (low is not None and value < low) or (high is not None and value > high) or value != value:
            raise ValueError
        return value

    parse.accepted = (  # type: ignore[attr-defined]
        f"{'an integer' if kind is int else 'a number'}"
        + (f" >= {low}" if low is not None and high is None else "")
        + (f" from {low} to {high}" if low is not None and high is not None else "")
    )
    return parse


def _choice(options: Mapping[str, str]) -> Callable[[str], str]:
    lookup = {key.lower(): value for key, value in options.items()}

    def parse(text: str) -> str:
        return lookup[text.strip().lower()]

    parse.accepted = "one of " + ", ".join(options)  # type: ignore[attr-defined]
    return parse


def _timezone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError from exc
    return text


_timezone.accepted = "an IANA time zone such as UTC or Europe/Berlin"  # type: ignore[attr-defined]


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_timestamp.accepted = "an ISO 8601 date or timestamp, e.g. 1900-01-01"  # type: ignore[attr-defined]


def _date_format(text: str) -> str | None:
    if text.strip().lower() in ("", "auto"):
        return None
    if "%" not in text:
        raise ValueError
    return text


_date_format.accepted = "auto or strftime codes, e.g. %d.%m.%Y %H:%M:%S"  # type: ignore[attr-defined]


def _delimiter(text: str) -> str:
    named = {"auto": "auto", "comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
    if text.lower() in named:
        return named[text.lower()]
    if len(text) != 1 or text in '"\r\n':
        raise ValueError
    return text


_delimiter.accepted = "auto, comma, semicolon, tab, pipe or one character"  # type: ignore[attr-defined]


def _encoding(text: str) -> str:
    import codecs

    return codecs.lookup(text).name


_encoding.accepted = "a Python codec name such as utf-8, latin-1 or utf-16"  # type: ignore[attr-defined]


def _column_map(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        header, sep, role = item.rpartition(":")
        if not sep or not header.strip() or role.strip() not in ROLES:
            raise ValueError
        mapping[header.strip()] = role.strip()
    return mapping


_column_map.accepted = "comma-separated Header:role pairs, role one of " + ", ".join(ROLES)  # type: ignore[attr-defined]


def _reject_limit(text: str) -> RejectLimit:
    text = text.strip()
    if text.endswith("%"):
        percent = float(text[:-1])
        if not 0 <= percent <= 100:
            raise ValueError
        return RejectLimit(percent=percent)
    count = int(text)
    if count < 0:
        raise ValueError
    return RejectLimit(count=count)


_reject_limit.accepted = "a row count (0 = any invalid row quarantines the file) or a percentage like 1%"  # type: ignore[attr-defined]


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError
    return text.strip()


_text.accepted = "a non-empty value"  # type: ignore[attr-defined]


def _path(text: str) -> Path:
    return Path(_text(text)).expanduser()


_path.accepted = "a folder path"  # type: ignore[attr-defined]

_LOG_LEVELS = {name: name for name in ("DEBUG", "INFO", "WARNING", "ERROR")}

# variable -> (field, parser); a variable that is unset or empty keeps the field's default.
_SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "DATABASE_URL": ("database_url", _text),
    "DB_NAME": ("db_name", _text),
    "DB_USER": ("db_user", _text),
    "DB_PASSWORD": ("db_password", str),
    "DB_HOST": ("db_host", _text),
    "DB_PORT": ("db_port", _number(int, 1, 65535)),
    "PGDATA_FOLDER": ("pgdata_folder", _path),
    "DATA_FOLDER": ("data_folder", _path),
    "PROCESSED_FOLDER": ("processed_folder", _path),
    "QUARANTINE_FOLDER": ("quarantine_folder", _path),
    "MONITOR_INTERVAL": ("monitor_interval", _number(float, 0.05, 86400)),
    "FILE_SETTLE_SECONDS": ("file_settle_seconds", _number(float, 0, 86400)),
    "WORKERS": ("workers", _number(int, 1, 64)),
    "LEASE_SECONDS": ("lease_seconds", _number(float, 5, 86400)),
    "READ_BLOCK_BYTES": ("read_block_bytes", _number(int, 1 << 16, 1 << 30)),
    "RETRY_ATTEMPTS": ("retry_attempts", _number(int, 1, 1000)),
    "RETRY_MAX_WAIT": ("retry_max_wait", _number(float, 0.1, 3600)),
    "LOG_LEVEL": ("log_level", _choice(_LOG_LEVELS)),
    "LOG_FORMAT": ("log_format", _choice({"text": "text", "json": "json"})),
}
_RULES: dict[str, tuple[str, Callable[[str], object]]] = {
    "TEMPERATURE_MIN": ("temperature_min", _number(float)),
    "TEMPERATURE_MAX": ("temperature_max", _number(float)),
    "HUMIDITY_MIN": ("humidity_min", _number(float)),
    "HUMIDITY_MAX": ("humidity_max", _number(float)),
    "PRESSURE_MIN": ("pressure_min", _number(float)),
    "PRESSURE_MAX": ("pressure_max", _number(float)),
    "TEMPERATURE_UNIT": ("temperature_unit", _choice({u: u for u in TEMPERATURE_UNITS})),
    "PRESSURE_UNIT": ("pressure_unit", _choice({u: u for u in PRESSURE_UNITS})),
    "HUMIDITY_UNIT": ("humidity_unit", _choice({u: u for u in HUMIDITY_UNITS})),
    "DATE_FORMAT": ("date_format", _date_format),
    "SOURCE_TIMEZONE": ("source_timezone", _timezone),
    "TIMESTAMP_MIN": ("timestamp_min", _timestamp),
    "MAX_FUTURE_SECONDS": ("max_future_seconds", _number(float, 0)),
    "DEFAULT_SENSOR_ID": ("default_sensor_id", _text),
    "COLUMN_MAP": ("column_map", _column_map),
    "CSV_DELIMITER": ("delimiter", _delimiter),
    "ENCODING": ("encoding", _encoding),
    "MAX_INVALID_ROWS": ("max_invalid_rows", _reject_limit),
}
VARIABLES = (*_SETTINGS, *_RULES)


def _parse(table: Mapping[str, tuple[str, Callable[[str], object]]], env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for variable, (name, parse) in table.items():
        raw = env.get(variable)
        if raw is None or (raw.strip() == "" and variable != "DB_PASSWORD"):
            continue
        try:
            values[name] = parse(raw)
        except (ValueError, KeyError, LookupError, TypeError) as exc:
            raise ConfigError(variable, raw, getattr(parse, "accepted", "a valid value")) from exc
    return values


def _pairs(rules: Rules) -> None:
    for low, high, unit in (("temperature", "temperature", "°C"), ("humidity", "humidity", "%"), ("pressure", "pressure", "hPa")):
        lo, hi = getattr(rules, f"{low}_min"), getattr(rules, f"{high}_max")
        if lo >= hi:
            raise ConfigError(f"{low.upper()}_MIN", lo, f"a value below {low.upper()}_MAX ({hi} {unit})")


def settings_from(env: Mapping[str, str]) -> Settings:
    """Build Settings from a mapping of variables (pure: used by tests and by ``load_settings``)."""
    rules = Rules(**_parse(_RULES, env))  # type: ignore[arg-type]
    _pairs(rules)
    return Settings(rules=rules, **_parse(_SETTINGS, env))  # type: ignore[arg-type]


def load_settings(env_file: Path | None = None) -> Settings:
    """Read ``.env`` (or ``env_file``), overlay the real environment, and validate."""
    if env_file is not None and not env_file.is_file():
        raise ConfigError("--env-file", str(env_file), "an existing file")
    path = env_file if env_file is not None else Path(".env")
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    return settings_from({**from_file, **os.environ})


def redact(dsn: str) -> str:
    """A DSN safe to log: any password is replaced by ***."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn, flags=re.IGNORECASE)
