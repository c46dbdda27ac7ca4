"""Every setting in one frozen struct, read from the environment and ``.env`` (the environment wins).

``SETTINGS`` is the registry: each variable is declared there once, with its field, parser (what it
accepts), default, help text and group. Parsing, the one-line ``ConfigError`` (``VAR='x' is invalid:
expected ...``), ``.env.example`` and docs/configuration.md all come from it (``python -m
sensor_etl.docgen`` writes the files; tests/test_registry.py checks them, and that every registry
default equals the field's default).

Adding a setting: one ``Setting(...)`` in ``SETTINGS`` and the field, with the same default, in
``Rules`` (what a valid file is) or ``Settings`` (everything else); then ``make docs``.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from sensor_etl.core.columns import plan_columns
from sensor_etl.core.dates import EPOCH_FORMATS, fixed_offset
from sensor_etl.core.units import HUMIDITY_UNITS, PRESSURE_UNITS, TEMPERATURE_UNITS
from sensor_etl.errors import ConfigError, InvalidFile

# COLUMN_MAP roles: the key columns, and the columns a timestamp can be assembled from (docs/input.md "Dates and times")
ROLES = (
    "timestamp",
    "sensor_id",
    "temperature",
    "humidity",
    "pressure",
    "date",
    "time",
    "year",
    "month",
    "day",
    "doy",
    "hour",
    "minute",
    "second",
)
T = TypeVar("T")
N = TypeVar("N", int, float)
HeaderRow = int | Literal["auto", "none"]  # HEADER_ROW: a line number, found in the first lines, or no header
MAX_ROW_SETTING = 1000  # HEADER_ROW, UNITS_ROW, DATA_ROW: the lines before the data are read one by one, and kept


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


NA_VALUES = ("NA", "N/A", "n/a", "#N/A", "NaN", "nan", "null", "NULL")


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix/``: a folder in an object store (S3 or S3-compatible), which DATA_FOLDER,
    PROCESSED_FOLDER and QUARANTINE_FOLDER accept. The prefix is empty or ends with ``/``: a folder,
    so ``s3://b/in`` never takes ``in2/x.csv``."""

    bucket: str
    prefix: str = ""

    def key(self, name: str) -> str:
        return self.prefix + name

    def url(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def __str__(self) -> str:
        return self.url()


Location = Path | S3Location
"""Where files are: a local folder, or a prefix in an object store."""


@dataclass(frozen=True)
class Rules:
    """What a valid file is: the part of the settings the pure validate/transform code needs.

    One field per setting of ``SETTINGS`` (below), which holds its variable, default and help."""

    temperature_min: float = -90.0  # TEMPERATURE_MIN, °C
    temperature_max: float = 60.0  # TEMPERATURE_MAX, °C
    humidity_min: float = 0.0  # HUMIDITY_MIN, %
    humidity_max: float = 100.0  # HUMIDITY_MAX, %
    pressure_min: float = 300.0  # PRESSURE_MIN, hPa
    pressure_max: float = 1100.0  # PRESSURE_MAX, hPa
    temperature_unit: str = "C"  # TEMPERATURE_UNIT
    pressure_unit: str = "hPa"  # PRESSURE_UNIT
    humidity_unit: str = "percent"  # HUMIDITY_UNIT
    date_format: str | None = None  # DATE_FORMAT; None = detected per file
    source_timezone: str = "UTC"  # SOURCE_TIMEZONE
    ambiguous_time: str = "reject"  # AMBIGUOUS_TIME
    na_values: tuple[str, ...] = NA_VALUES  # NA_VALUES
    missing_values: str = "reject"  # MISSING_VALUES
    timestamp_min: datetime = datetime(1900, 1, 1, tzinfo=UTC)  # TIMESTAMP_MIN
    max_future_seconds: float = 86400.0  # MAX_FUTURE_SECONDS
    default_sensor_id: str = "default"  # DEFAULT_SENSOR_ID
    column_map: Mapping[str, str] = field(default_factory=dict)  # COLUMN_MAP
    delimiter: str = "auto"  # CSV_DELIMITER ("whitespace": runs of spaces and tabs)
    header_row: HeaderRow = "auto"  # HEADER_ROW
    units_row: int | None = None  # UNITS_ROW
    data_row: int | None = None  # DATA_ROW; None = the line after the header (or the units row)
    column_names: tuple[str, ...] = ()  # COLUMN_NAMES
    max_field_bytes: int = 1 << 20  # MAX_FIELD_BYTES
    max_line_bytes: int = 16 << 20  # MAX_LINE_BYTES
    encoding: str = "utf-8"  # ENCODING
    max_invalid_rows: RejectLimit = field(default_factory=RejectLimit)  # MAX_INVALID_ROWS
    on_overlap: str = "skip"  # ON_OVERLAP

    @property
    def default_units(self) -> dict[str, str]:
        """The unit of each measure column whose header (or units row) names none."""
        return {"temperature": self.temperature_unit, "pressure": self.pressure_unit, "humidity": self.humidity_unit}

    @property
    def headerless(self) -> bool:
        """The file has no header: HEADER_ROW=none, or COLUMN_NAMES set and HEADER_ROW left at auto."""
        return self.header_row == "none" or (self.header_row == "auto" and bool(self.column_names))


@dataclass(frozen=True)
class Settings:
    """The daemon's whole configuration: one field per setting of ``SETTINGS``, and the rules."""

    database_url: str | None = None  # DATABASE_URL
    database_url_secret: str | None = None  # DATABASE_URL_SECRET
    db_name: str = "sensor_etl"  # DB_NAME
    db_user: str = "postgres"  # DB_USER
    db_password: str = field(default="", repr=False)  # DB_PASSWORD (secret: never shown)
    db_host: str | None = None  # DB_HOST
    db_port: int = 5432  # DB_PORT
    pgdata_folder: Path = Path(".pgdata")  # PGDATA_FOLDER
    data_folder: Location = Path("data")  # DATA_FOLDER
    processed_folder: Location = Path("processed")  # PROCESSED_FOLDER
    quarantine_folder: Location = Path("quarantine")  # QUARANTINE_FOLDER
    queue_url: str | None = None  # QUEUE_URL
    sources_file: Path = Path("sources.toml")  # SOURCES_FILE
    monitor_interval: float = 5.0  # MONITOR_INTERVAL
    file_settle_seconds: float = 2.0  # FILE_SETTLE_SECONDS
    workers: int = 1  # WORKERS
    lease_seconds: float = 60.0  # LEASE_SECONDS
    batch_files: int = 200  # BATCH_FILES
    batch_bytes: int = 2 << 20  # BATCH_BYTES
    batch_seconds: float = 0.5  # BATCH_SECONDS
    worker_memory_limit: int | None = None  # WORKER_MEMORY_LIMIT, bytes; None = auto (edges/memory.py), 0 = off
    max_file_attempts: int = 3  # MAX_FILE_ATTEMPTS
    handler_reserve_seconds: float = 30.0  # HANDLER_RESERVE_SECONDS
    # READ_BLOCK_BYTES. 2 MiB, not 4: the kernel's peak RSS of `--once` on the 1 M-row seed file was
    # 226-229 MiB against 280-291 MiB (2 GB file, bench shape d: 250 MiB against 295), the daemon's
    # CPU 4.2-4.7 s against 4.3-4.7 s (four runs each: within noise).
    read_block_bytes: int = 2 << 20
    retry_attempts: int = 5  # RETRY_ATTEMPTS
    retry_max_wait: float = 30.0  # RETRY_MAX_WAIT
    log_level: str = "INFO"  # LOG_LEVEL
    log_format: str = "text"  # LOG_FORMAT
    metrics_port: int | None = None  # METRICS_PORT; None = no endpoint
    metrics_address: str = "127.0.0.1"  # METRICS_ADDRESS
    rules: Rules = field(default_factory=Rules)

    @property
    def embedded(self) -> bool:
        """No server configured: start the embedded one."""
        return not self.database_url and not self.db_host and not self.database_url_secret

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


# -- parsers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parser(Generic[T]):
    """Turns a variable's text into a value, raising ValueError (or LookupError...) when it cannot;
    ``accepted`` completes ``VAR='x' is invalid: expected ...`` and the docs' accepted-values column."""

    parse: Callable[[str], T]
    accepted: str
    keeps_blank: bool = False  # a blank value is a value (else blank means unset: the default applies)
    # Takes a list or mapping as it is (sources.toml's arrays and tables), so its items need no escaping;
    # without it, an array is joined with commas and given to ``parse``, and a table is refused.
    structured: Callable[[Any], T] | None = None


def _bounded(value: N, low: float | None, high: float | None) -> N:
    if (low is not None and value < low) or (high is not None and value > high) or value != value:
        raise ValueError
    return value


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    return f" >= {low}" if low is not None else ""


def integer(low: int | None = None, high: int | None = None) -> Parser[int]:
    return Parser(lambda text: _bounded(int(text), low, high), "an integer" + _range_text(low, high))


def number(low: float | None = None, high: float | None = None) -> Parser[float]:
    return Parser(lambda text: _bounded(float(text), low, high), "a number" + _range_text(low, high))


def choice(*options: str) -> Parser[str]:
    """One of ``options``, in any case; the value is the option as written here."""
    lookup = {option.lower(): option for option in options}
    return Parser(lambda text: lookup[text.strip().lower()], "one of " + ", ".join(options))


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError
    return text.strip()


def text(accepted: str = "a non-empty value") -> Parser[str]:
    """Any non-blank text, trimmed."""
    return Parser(_text, accepted)


def _path(text: str) -> Path:
    return Path(_text(text)).expanduser()


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,254}")


def s3_location(text: str) -> S3Location:
    """``s3://bucket/prefix``: the prefix gets its trailing ``/`` (a folder, not the start of a name)."""
    scheme, _, rest = text.strip().partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme.lower() != "s3" or not _BUCKET.fullmatch(bucket) or "//" in prefix:
        raise ValueError
    return S3Location(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")


def _location(text: str) -> Location:
    text = _text(text)
    return s3_location(text) if text.lower().startswith("s3://") else _path(text)


def _timezone(text: str) -> str:
    text = text.strip()
    if fixed_offset(text) is not None:
        return text
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError from exc
    return text


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _date_format(text: str) -> str | None:
    if text.strip().lower() in ("", "auto"):
        return None
    if text.strip().lower() in EPOCH_FORMATS:
        return text.strip().lower()
    if "%" not in text:
        raise ValueError
    return text


def _tokens(text: str) -> tuple[str, ...]:
    """Comma-separated tokens, trimmed, without repeats; blank is none (the empty field is missing anyway)."""
    return tuple(dict.fromkeys(token for token in (part.strip() for part in text.split(",")) if token))


def _delimiter(text: str) -> str:
    named = {"auto": "auto", "comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|", "whitespace": "whitespace"}
    if text.lower() in named:
        return named[text.lower()]
    if len(text) != 1 or text in '"\r\n':
        raise ValueError
    return text


def _header_row(text: str) -> HeaderRow:
    word = text.strip().lower()
    if word == "auto":
        return "auto"
    if word == "none":
        return "none"
    return _bounded(int(word), 1, MAX_ROW_SETTING)


def _line_number(text: str) -> int | None:
    """UNITS_ROW, DATA_ROW: a line number, or none/auto (blank) for the default."""
    if text.strip().lower() in ("none", "auto"):
        return None
    return _bounded(int(text), 1, MAX_ROW_SETTING)


def _column_names(text: str) -> tuple[str, ...]:
    return _names(text.split(","))


def _names(items: Sequence[object]) -> tuple[str, ...]:
    """Column names, each non-empty and different (a sources.toml array comes here as it is, so a name may hold a comma)."""
    names = tuple(item.strip() for item in items if isinstance(item, str))
    if len(names) != len(items) or not all(names) or len(set(names)) != len(names):
        raise ValueError
    return names


def _encoding(text: str) -> str:
    return codecs.lookup(text).name


def _column_map(text: str) -> dict[str, str]:
    return _column_roles([part for part in text.split(",") if part.strip()])


def _column_roles(given: Mapping[str, object] | list[object]) -> dict[str, str]:
    """Header → role, each header named and each role known: from ``Header:role`` items, or from a
    mapping (sources.toml's arrays and tables come here as they are, so a header may hold a comma)."""
    if isinstance(given, Mapping):
        pairs = [(str(header), role) for header, role in given.items()]
    else:
        pairs = [(header, role) for header, sep, role in (str(item).rpartition(":") for item in given) if sep]
    if len(pairs) != len(given) or not all(isinstance(role, str) for _, role in pairs):
        raise ValueError
    roles = {header.strip(): str(role).strip() for header, role in pairs}
    if "" in roles or not set(roles.values()) <= set(ROLES):
        raise ValueError
    return roles


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)(b?)|b?)", re.IGNORECASE)
_SIZE_UNITS = "kmgt"
MIN_MEMORY_LIMIT = 512 << 20


def _size_bytes(text: str) -> int:
    """2MiB, 1.5GiB, 2M or 2G (binary), 2MB (decimal), or bytes (4194304, 512B): what every size setting accepts."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError
    number, unit, binary, suffix = match.groups()
    if unit is None:
        return int(number)  # bytes are whole: "1.5" raises ValueError
    base = 1000 if suffix and not binary else 1024
    return int(Fraction(number) * base ** (_SIZE_UNITS.index(unit.lower()) + 1))


def _size_text(value: int) -> str:
    """``value`` in the largest binary unit that divides it (2MiB), else in bytes: how a size parser's bounds are shown."""
    for power in range(len(_SIZE_UNITS), 0, -1):
        if value and value % (1 << 10 * power) == 0:
            return f"{value >> 10 * power}{_SIZE_UNITS[power - 1].upper()}iB"
    return str(value)


def size(low: int, high: int) -> Parser[int]:
    """A size in bytes from ``low`` to ``high``, in bytes or with a unit (``_size_bytes``)."""
    return Parser(
        lambda text: _bounded(_size_bytes(text), low, high),
        f"a size from {_size_text(low)} to {_size_text(high)}: bytes, or with a unit such as 2MiB "
        "(K, M, G, T: binary; KB, MB, GB, TB: decimal)",
    )


def _memory_limit(text: str) -> int | None:
    """auto (None), off (0), or a size of at least MIN_MEMORY_LIMIT."""
    word = text.strip().lower()
    if word in ("auto", "off"):
        return None if word == "auto" else 0
    return _bounded(_size_bytes(word), MIN_MEMORY_LIMIT, None)


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


FOLDER = Parser(_path, "a folder path")
LOCATION = Parser(_location, "a folder path, or s3://bucket/prefix/ for a prefix in S3 or an S3-compatible store")


# -- the registry ------------------------------------------------------------------------------
class Group(StrEnum):
    """Sections of ``.env.example`` and of docs/configuration.md, in this order."""

    DATABASE = "Database"
    FOLDERS = "Folders and scanning"
    SOURCES = "Sources and overlaps"
    OBJECTS = "Object storage and events"
    RETRIES = "Retries"
    RULES = "Validation rules"
    LOGGING = "Logging"
    MONITORING = "Metrics and health"


@dataclass(frozen=True)
class Setting:
    """One environment variable: the single place its name, field, parser, default and help are declared.

    ``default`` is the text ``.env.example`` shows ("" = unset); parsed, it equals the field's default
    (tests/test_registry.py checks it). ``field`` is a field of ``Rules`` or of ``Settings``."""

    variable: str
    field: str
    parser: Parser[Any]
    default: str
    help: str
    group: Group
    secret: bool = False  # its value is never shown: empty in .env.example, repr=False on the field


_DB, _FOLDERS, _RETRIES, _RULES, _LOGGING = Group.DATABASE, Group.FOLDERS, Group.RETRIES, Group.RULES, Group.LOGGING
_SOURCES, _MONITORING = Group.SOURCES, Group.MONITORING
_OBJECTS = Group.OBJECTS

SETTINGS: tuple[Setting, ...] = (
    # --- Database
    Setting(
        "DATABASE_URL",
        "database_url",
        text("a libpq URI such as postgresql://user:password@host:5432/dbname"),
        "",
        "The server to load into; wins over the DB_* variables. Leave it and DB_HOST empty to start the embedded "
        "PostgreSQL (data in PGDATA_FOLDER).",
        _DB,
    ),
    Setting(
        "DATABASE_URL_SECRET",
        "database_url_secret",
        text("an AWS Secrets Manager secret name or ARN"),
        "",
        "A secret holding the server to load into, read at start-up and winning over DATABASE_URL: a libpq URI, or "
        "the JSON of an RDS secret (host, port, username, password, dbname). Needs the s3 extra; for the AWS Lambda "
        "handler and workers on AWS (docs/s3.md).",
        _DB,
    ),
    Setting(
        "DB_HOST",
        "db_host",
        text("a host name, an IP address or a Unix socket folder"),
        "",
        "The server's host when DATABASE_URL is unset (with DB_PORT, DB_NAME, DB_USER, DB_PASSWORD); "
        "with both empty, the embedded server starts.",
        _DB,
    ),
    Setting("DB_PORT", "db_port", integer(1, 65535), "5432", "The server's port.", _DB),
    Setting("DB_NAME", "db_name", text(), "sensor_etl", "Database name (also of the embedded server).", _DB),
    Setting("DB_USER", "db_user", text(), "postgres", "User name on the server.", _DB),
    Setting(
        "DB_PASSWORD", "db_password", Parser(str, "any text", keeps_blank=True), "", "Password of DB_USER. Never logged.", _DB, secret=True
    ),
    Setting(
        "PGDATA_FOLDER",
        "pgdata_folder",
        FOLDER,
        "./.pgdata",
        "Folder of the embedded server's data (used only when no server is configured).",
        _DB,
    ),
    # --- Folders and scanning
    Setting(
        "DATA_FOLDER",
        "data_folder",
        LOCATION,
        "./data",
        "The inbox: every *.csv file dropped here is loaded (created if missing). An s3:// inbox needs s3:// "
        "PROCESSED_FOLDER and QUARANTINE_FOLDER too (docs/s3.md).",
        _FOLDERS,
    ),
    Setting(
        "PROCESSED_FOLDER",
        "processed_folder",
        LOCATION,
        "./processed",
        "Loaded and duplicate files are moved here (created if missing).",
        _FOLDERS,
    ),
    Setting(
        "QUARANTINE_FOLDER",
        "quarantine_folder",
        LOCATION,
        "./quarantine",
        "Invalid files are moved here, each with <name>.error.json saying what to fix (created if missing).",
        _FOLDERS,
    ),
    Setting("MONITOR_INTERVAL", "monitor_interval", number(0.05, 86400), "5", "Seconds between scans of DATA_FOLDER.", _FOLDERS),
    Setting(
        "FILE_SETTLE_SECONDS",
        "file_settle_seconds",
        number(0, 86400),
        "2",
        "A file is taken only when its size and mtime did not change since the previous scan and it was not modified "
        "for this many seconds (protects against half-written files).",
        _FOLDERS,
    ),
    Setting(
        "WORKERS",
        "workers",
        integer(1, 64),
        "1",
        "Worker processes sharing DATA_FOLDER (also --workers N). Daemons started separately on the same folder "
        "(and database) share it safely too: each file is claimed by one worker at a time.",
        _FOLDERS,
    ),
    Setting(
        "LEASE_SECONDS",
        "lease_seconds",
        number(5, 86400),
        "60",
        "Seconds after which a claim held by a dead worker (killed, host gone) is taken over. "
        "Renewed every LEASE_SECONDS/3 while the worker lives, so long loads never lose it.",
        _FOLDERS,
    ),
    Setting(
        "BATCH_FILES",
        "batch_files",
        integer(1, 10_000),
        "200",
        "Most files loaded in one transaction when several small files are ready at once (each file stays atomic: "
        "its rows, metrics and ledger row commit together). 1 loads every file in a transaction of its own.",
        _FOLDERS,
    ),
    Setting(
        "BATCH_BYTES",
        "batch_bytes",
        size(1 << 10, 1 << 30),
        "2MiB",
        "Most bytes of input in one batch; a larger file is loaded alone, streamed in READ_BLOCK_BYTES blocks "
        "(a batch is checked in memory, like one read block).",
        _FOLDERS,
    ),
    Setting(
        "BATCH_SECONDS",
        "batch_seconds",
        number(0.01, 60),
        "0.5",
        "Latency budget of a batch: it takes as many files as the previous batch's pace fits in this many seconds "
        "(at least two), so a file waits about this long at most for the others of its batch. A batch never waits "
        "for files to arrive: a lone file goes alone.",
        _FOLDERS,
    ),
    Setting(
        "WORKER_MEMORY_LIMIT",
        "worker_memory_limit",
        Parser(_memory_limit, "auto, off, or a size of at least 512MiB such as 1536MiB or 4GiB (K, M, G, T: binary; KB, MB, GB: decimal)"),
        "auto",
        "Most memory each worker process may map (RLIMIT_AS: address space, which a worker's resident memory never exceeds); "
        "a file that needs more fails that attempt (MAX_FILE_ATTEMPTS), not the host or PostgreSQL. auto: half the machine's "
        "memory (or of its cgroup limit) divided by WORKERS, and at least the worker's address space at start-up plus 1 GiB. "
        "See docs/operations.md#memory.",
        _FOLDERS,
    ),
    Setting(
        "MAX_FILE_ATTEMPTS",
        "max_file_attempts",
        integer(1, 100),
        "3",
        "Attempts on one content that may end abnormally (its worker killed or crashed, or out of WORKER_MEMORY_LIMIT) "
        "before the file is quarantined with rule worker_died instead of being tried again. Retries after a database "
        "outage or a stop do not count. A worker that dies holding a batch (BATCH_FILES) counts an attempt on each of its "
        "files, since which one killed it cannot be told; each such file is then loaded alone, so keep this at 2 or more "
        "with batches.",
        _FOLDERS,
    ),
    Setting(
        "READ_BLOCK_BYTES",
        "read_block_bytes",
        size(1 << 16, 1 << 30),
        "2MiB",
        "Bytes read per chunk: bounds memory whatever the file (a worker's peak RSS is about 170 MiB + 35 times this + "
        "12 times MAX_LINE_BYTES, docs/operations.md#memory; the rows of one file still load in one transaction).",
        _FOLDERS,
    ),
    # --- Sources and overlaps
    Setting(
        "SOURCES_FILE",
        "sources_file",
        Parser(_path, "a file path"),
        "./sources.toml",
        "Per-source settings (docs/sources.md): [[source]] tables, each with a name, a glob matched against the path of a "
        "file in DATA_FOLDER and any file-level setting (ON_OVERLAP and the validation rules) in lower case; the first "
        "match wins, a file matching none follows the settings here. Read at start-up when the file exists (another "
        "path must exist).",
        _SOURCES,
    ),
    Setting(
        "ON_OVERLAP",
        "on_overlap",
        choice("skip", "replace", "reject"),
        "skip",
        "A reading whose sensor and time another file already stored: skip keeps the stored one (a re-export adds "
        "nothing), replace stores the new one and removes the old (last wins), reject quarantines the file. Counted "
        "on the file's ledger row (rows_skipped, rows_conflicting, rows_replaced).",
        _SOURCES,
    ),
    # --- Object storage and events
    Setting(
        "QUEUE_URL",
        "queue_url",
        text("an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/sensor-etl"),
        "",
        "With an s3:// DATA_FOLDER: workers take the inbox's S3 event notifications from this SQS queue instead of "
        "listing the bucket (docs/s3.md). A message is deleted once its object has left the inbox.",
        _OBJECTS,
    ),
    Setting(
        "HANDLER_RESERVE_SECONDS",
        "handler_reserve_seconds",
        number(0, 900),
        "30",
        "The AWS Lambda handler starts no object when its invocation has less time left than this; the object is left "
        "for redelivery (docs/s3.md).",
        _OBJECTS,
    ),
    # --- Retries
    Setting(
        "RETRY_ATTEMPTS",
        "retry_attempts",
        integer(1, 1000),
        "5",
        "Attempts per file on a transient database error (connection lost, shutdown, deadlock...); "
        "when they run out the file waits in DATA_FOLDER for the next scan.",
        _RETRIES,
    ),
    Setting(
        "RETRY_MAX_WAIT",
        "retry_max_wait",
        number(0.1, 3600),
        "30",
        "Longest wait between attempts, seconds (exponential backoff with jitter).",
        _RETRIES,
    ),
    # --- Validation rules
    Setting("TEMPERATURE_MIN", "temperature_min", number(), "-90", "Lowest valid temperature, °C (below TEMPERATURE_MAX).", _RULES),
    Setting("TEMPERATURE_MAX", "temperature_max", number(), "60", "Highest valid temperature, °C.", _RULES),
    Setting("HUMIDITY_MIN", "humidity_min", number(), "0", "Lowest valid relative humidity, % (below HUMIDITY_MAX).", _RULES),
    Setting("HUMIDITY_MAX", "humidity_max", number(), "100", "Highest valid relative humidity, %.", _RULES),
    Setting("PRESSURE_MIN", "pressure_min", number(), "300", "Lowest valid pressure, hPa (below PRESSURE_MAX).", _RULES),
    Setting("PRESSURE_MAX", "pressure_max", number(), "1100", "Highest valid pressure, hPa.", _RULES),
    Setting(
        "TEMPERATURE_UNIT",
        "temperature_unit",
        choice(*TEMPERATURE_UNITS),
        "C",
        "Unit of a temperature column whose header names none (a suffix such as T (degC) or temp_f wins).",
        _RULES,
    ),
    Setting("PRESSURE_UNIT", "pressure_unit", choice(*PRESSURE_UNITS), "hPa", "Unit of a pressure column whose header names none.", _RULES),
    Setting(
        "HUMIDITY_UNIT",
        "humidity_unit",
        choice(*HUMIDITY_UNITS),
        "percent",
        "Unit of a humidity column whose header names none (fraction: 0 to 1).",
        _RULES,
    ),
    Setting(
        "DATE_FORMAT",
        "date_format",
        Parser(_date_format, "auto, epoch_s, epoch_ms or strftime codes, e.g. %d.%m.%Y %H:%M:%S"),
        "auto",
        "How timestamps are written: auto detects one format per file (ISO 8601, 01.01.2009 00:10:00, ...); strftime codes force "
        "one (with date and time columns, of the two joined by a space: %m/%d/%Y %H:%M); epoch_s and epoch_ms read Unix times "
        "(seconds or milliseconds since 1970-01-01 UTC).",
        _RULES,
    ),
    Setting(
        "SOURCE_TIMEZONE",
        "source_timezone",
        Parser(_timezone, "an IANA time zone such as UTC or Europe/Berlin, or a fixed offset such as -08:00 or +05:30"),
        "UTC",
        "Time zone of timestamps without an offset, dates alone included: an IANA name (daylight-saving time follows the "
        "zone's rules) or a fixed offset from UTC (a logger that keeps standard time all year).",
        _RULES,
    ),
    Setting(
        "AMBIGUOUS_TIME",
        "ambiguous_time",
        choice("reject", "earliest", "latest"),
        "reject",
        "A local time that occurs twice when clocks go back (01:30 on the night daylight-saving time ends): reject the row, "
        "or read it as the earliest (still daylight-saving) or latest (standard time) of the two. A local time that does not "
        "exist (skipped when clocks go forward) is always rejected.",
        _RULES,
    ),
    Setting(
        "NA_VALUES",
        "na_values",
        Parser(_tokens, "comma-separated tokens, e.g. NA,N/A,-9999", keeps_blank=True),
        ",".join(NA_VALUES),
        "Values that mean missing, in every column (the empty field always does; set it blank for no other token). A token "
        "that reads as a number is a sentinel matched by value: -9999 also matches -9999.0. See MISSING_VALUES.",
        _RULES,
    ),
    Setting(
        "MISSING_VALUES",
        "missing_values",
        choice("reject", "null"),
        "reject",
        "A missing measure (empty, or in NA_VALUES): reject the row (rule missing_value), or store NULL for that measure and "
        "load the row's other values. A row with no measure at all, or without timestamp or sensor id, is invalid either way. "
        "Missing values of other columns are null in extra.",
        _RULES,
    ),
    Setting(
        "TIMESTAMP_MIN",
        "timestamp_min",
        Parser(_timestamp, "an ISO 8601 date or timestamp, e.g. 1900-01-01"),
        "1900-01-01",
        "Earliest accepted timestamp.",
        _RULES,
    ),
    Setting(
        "MAX_FUTURE_SECONDS",
        "max_future_seconds",
        number(0),
        "86400",
        'How far past "now" a timestamp may lie, seconds.',
        _RULES,
    ),
    Setting("DEFAULT_SENSOR_ID", "default_sensor_id", text(), "default", "Sensor id for files without a sensor column.", _RULES),
    Setting(
        "COLUMN_MAP",
        "column_map",
        Parser(_column_map, "comma-separated Header:role pairs, role one of " + ", ".join(ROLES), structured=_column_roles),
        "",
        "Headers the aliases do not cover, with their roles (e.g. COLUMN_MAP=Aussentemp:temperature,Station Nr:sensor_id).",
        _RULES,
    ),
    Setting(
        "CSV_DELIMITER",
        "delimiter",
        Parser(_delimiter, "auto, comma, semicolon, tab, pipe, whitespace or one character"),
        "auto",
        "Field delimiter; auto takes the one of comma, semicolon, tab and pipe that splits the header line into the most "
        "fields (comma on a tie); whitespace splits at runs of spaces and tabs (aligned tables; leading spaces ignored).",
        _RULES,
    ),
    Setting(
        "HEADER_ROW",
        "header_row",
        Parser(_header_row, f"auto, none or a line number from 1 to {MAX_ROW_SETTING}"),
        "auto",
        "Line of the header. auto: the first of the first 20 lines that names a timestamp and a measure column (a Campbell "
        "Scientific TOA5 file: line 2); the lines before it are the preamble, kept in ingested_files.preamble. "
        "none: the file has no header, COLUMN_NAMES names its columns (auto means none when COLUMN_NAMES is set).",
        _RULES,
    ),
    Setting(
        "UNITS_ROW",
        "units_row",
        Parser(_line_number, f"none or a line number from 1 to {MAX_ROW_SETTING}, below the header"),
        "none",
        "Line of a units row under the header (e.g. Deg C, %, mbar): it gives the unit of each key column whose header "
        "names none. A TOA5 file's line 3 is its units row without this setting.",
        _RULES,
    ),
    Setting(
        "DATA_ROW",
        "data_row",
        Parser(_line_number, f"auto or a line number from 1 to {MAX_ROW_SETTING}"),
        "auto",
        "First data line; auto: the line after the header, or after the units row (TOA5: line 5; no header: line 1). "
        "Lines between the header and it are skipped.",
        _RULES,
    ),
    Setting(
        "COLUMN_NAMES",
        "column_names",
        Parser(_column_names, "comma-separated column names, each non-empty and different", structured=_names),
        "",
        "Names of the columns, in order, for a file without a header (HEADER_ROW=none or auto); with HEADER_ROW=N they "
        "replace the names of that line. Key columns are recognised in them as in a header (or named in COLUMN_MAP).",
        _RULES,
    ),
    Setting(
        "MAX_FIELD_BYTES",
        "max_field_bytes",
        size(1, 1 << 30),
        "1MiB",
        "Longest value, in bytes (UTF-8): a longer one is not sensor data (a quote left open, a dump) and breaks rule field_too_long.",
        _RULES,
    ),
    Setting(
        "MAX_LINE_BYTES",
        "max_line_bytes",
        size(1 << 16, 1 << 31),
        "16MiB",
        "Longest row, in bytes: a longer line is never held in memory; the reader skips to its end and reports it "
        "(rule line_too_long). Bounds the memory a file can take with READ_BLOCK_BYTES (docs/operations.md).",
        _RULES,
    ),
    Setting(
        "ENCODING",
        "encoding",
        Parser(_encoding, "a Python codec name such as utf-8, latin-1 or utf-16"),
        "utf-8",
        "Text encoding of the input files (a UTF-8 byte-order mark is accepted).",
        _RULES,
    ),
    Setting(
        "MAX_INVALID_ROWS",
        "max_invalid_rows",
        Parser(_reject_limit, "a row count (0 = any invalid row quarantines the file) or a percentage like 1%"),
        "0",
        "Invalid rows a file may have and still load its valid rows (a count, or a percentage of its rows). "
        "The rejected lines go to QUARANTINE_FOLDER/<name>.rejects.csv (as they were, with the header) and their problems "
        "to <name>.rejects.json; the file is recorded with status 'partial'.",
        _RULES,
    ),
    # --- Logging
    Setting("LOG_LEVEL", "log_level", choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "Lowest level of the lines logged.", _LOGGING),
    Setting(
        "LOG_FORMAT",
        "log_format",
        choice("text", "json"),
        "text",
        "Log line format: text is key=value pairs, json one object per line.",
        _LOGGING,
    ),
    # --- Metrics and health
    Setting(
        "METRICS_PORT",
        "metrics_port",
        integer(0, 65535),
        "",
        "TCP port of the HTTP endpoint serving Prometheus metrics (/metrics) and health checks (/healthz, /readyz); "
        "unset: no endpoint. 0 picks a free port, logged as metrics_listening.",
        _MONITORING,
    ),
    Setting(
        "METRICS_ADDRESS",
        "metrics_address",
        text("an IP address or host name to listen on, e.g. 0.0.0.0 for every interface"),
        "127.0.0.1",
        "Address the metrics endpoint listens on (the local host only by default).",
        _MONITORING,
    ),
)
VARIABLES = tuple(setting.variable for setting in SETTINGS)
_RULE_FIELDS = frozenset(f.name for f in fields(Rules))


def _parse(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Rules fields, Settings fields) of the variables set in ``env``; an unset or blank one keeps its default."""
    rules: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.variable)
        if raw is None or (not raw.strip() and not setting.parser.keeps_blank):
            continue
        try:
            value = setting.parser.parse(raw)
        except (ValueError, KeyError, LookupError, TypeError) as exc:
            raise ConfigError(setting.variable, raw, setting.parser.accepted) from exc
        (rules if setting.field in _RULE_FIELDS else settings)[setting.field] = value
    return rules, settings


def check_rules(rules: Rules) -> None:
    """The file-level settings that must fit together (the global ones, and every source's)."""
    _pairs(rules)
    _rows(rules)


def _pairs(rules: Rules) -> None:
    for low, high, unit in (("temperature", "temperature", "°C"), ("humidity", "humidity", "%"), ("pressure", "pressure", "hPa")):
        lo, hi = getattr(rules, f"{low}_min"), getattr(rules, f"{high}_max")
        if lo >= hi:
            raise ConfigError(f"{low.upper()}_MIN", lo, f"a value below {low.upper()}_MAX ({hi} {unit})")


def _same_kind(settings: Settings, inbox: str = "DATA_FOLDER") -> None:
    """The inbox and the folders files move to are all local, or all in an object store (a move is a
    link there, a copy here); an object inbox is not its own archive. ``inbox``: what named the inbox."""
    remote = isinstance(settings.data_folder, S3Location)
    for variable, location in (("PROCESSED_FOLDER", settings.processed_folder), ("QUARANTINE_FOLDER", settings.quarantine_folder)):
        if isinstance(location, S3Location) != remote:
            raise ConfigError(variable, str(location), f"{'an s3://' if remote else 'a local'} location, as {inbox} is")
        if remote and location == settings.data_folder:
            raise ConfigError(variable, str(location), f"a prefix other than {inbox}'s")
    if settings.queue_url and not remote:
        raise ConfigError("QUEUE_URL", settings.queue_url, f"no queue unless {inbox} is an s3:// location")


def _rows(rules: Rules) -> None:
    """HEADER_ROW, UNITS_ROW, DATA_ROW and COLUMN_NAMES fit together: lines in order, names for a file without a header."""
    if rules.header_row == "none" and not rules.column_names:
        raise ConfigError(
            "HEADER_ROW", "none", "auto or a line number while COLUMN_NAMES is unset (a file without a header needs COLUMN_NAMES)"
        )
    if rules.units_row is not None and rules.headerless:
        raise ConfigError("UNITS_ROW", rules.units_row, "none for a file without a header (HEADER_ROW=none, or COLUMN_NAMES set)")
    above = [
        (variable, line) for variable, line in (("HEADER_ROW", rules.header_row), ("UNITS_ROW", rules.units_row)) if isinstance(line, int)
    ]
    for variable, line in ((v, n) for v, n in (("UNITS_ROW", rules.units_row), ("DATA_ROW", rules.data_row)) if n is not None):
        for other, before in above:
            if other != variable and line <= before:
                raise ConfigError(variable, line, f"a line below {other} ({before})")
    if rules.column_names:
        try:
            plan_columns(rules.column_names, rules.column_map, rules.default_units)
        except InvalidFile as exc:
            raise ConfigError(
                "COLUMN_NAMES", ",".join(rules.column_names), f"names for the columns of a file ({exc.problem.message})"
            ) from exc


def settings_from(env: Mapping[str, str], *, inbox: Location | None = None) -> Settings:
    """Build Settings from a mapping of variables (pure: used by tests and by ``load_settings``);
    ``inbox``: a command's input in DATA_FOLDER's place (``with_inbox``)."""
    rule_values, setting_values = _parse(env)
    rules = Rules(**rule_values)
    check_rules(rules)
    settings = Settings(rules=rules, **setting_values)
    if inbox is not None:
        return with_inbox(settings, inbox)
    _same_kind(settings)
    return settings


def with_inbox(settings: Settings, inbox: Location) -> Settings:
    """``settings`` reading ``inbox`` instead of DATA_FOLDER (the spark command's INPUT), checked against
    PROCESSED_FOLDER and QUARANTINE_FOLDER as DATA_FOLDER is: the same kind, not the same prefix."""
    changed = replace(settings, data_folder=inbox)
    _same_kind(changed, "INPUT")
    return changed


def load_settings(env_file: Path | None = None, *, inbox: Location | None = None) -> Settings:
    """Read ``.env`` (or ``env_file``), overlay the real environment, and validate; ``inbox`` as in ``settings_from``."""
    if env_file is not None and not env_file.is_file():
        raise ConfigError("--env-file", str(env_file), "an existing file")
    path = env_file if env_file is not None else Path(".env")
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    return settings_from({**from_file, **os.environ}, inbox=inbox)


def redact(dsn: str) -> str:
    """A DSN safe to log: any password is replaced by ***."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn, flags=re.IGNORECASE)
