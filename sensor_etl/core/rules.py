"""Every validation rule a file can break: its name (``Rule``), what it checks and what to do about it.

A ``Problem`` names one ``Rule``; reports, logs and JSON show the rule's value (``out_of_range``), and
``docs/rules.md`` is generated from ``RULES`` (``python -m sensor_etl.docgen``). The members are in the
order the checks run. Adding a rule: one member and one ``RULES`` entry (a test fails without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Rule(StrEnum):
    """A rule's name as reports show it; equal to its string, so ``Rule.OUT_OF_RANGE == "out_of_range"``."""

    ENCODING = "encoding"
    WORKER_DIED = "worker_died"
    EMPTY_FILE = "empty_file"
    NO_HEADER = "no_header"
    HEADER = "header"
    UNIT = "unit"
    MISSING_COLUMN = "missing_column"
    STRUCTURE = "structure"
    NO_DATA_ROWS = "no_data_rows"
    COLUMN_COUNT = "column_count"
    LINE_BREAK = "line_break"
    FIELD_TOO_LONG = "field_too_long"
    TIMESTAMP_FORMAT = "timestamp_format"
    TIMESTAMP_RANGE = "timestamp_range"
    MISSING_VALUE = "missing_value"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    DUPLICATE_KEY = "duplicate_key"
    DATABASE = "database"
    INTERNAL_ERROR = "internal_error"

    @property
    def doc(self) -> RuleDoc:
        return RULES[self]


@dataclass(frozen=True)
class RuleDoc:
    """What a rule requires of a file, what to do when a file breaks it, and the settings that shape it."""

    checks: str
    fix: str
    settings: tuple[str, ...] = ()


RULES: dict[Rule, RuleDoc] = {
    Rule.ENCODING: RuleDoc(
        "text in `ENCODING`: no invalid bytes, no NUL, not gzip/zip/bzip2/xz/PDF/PNG/Parquet, not UTF-16 (with or without "
        "byte-order mark) unless set; the line of the first bad byte",
        "save the file as UTF-8 text, or set `ENCODING` to the encoding it is in; decompress or convert a binary file first",
        ("ENCODING",),
    ),
    Rule.WORKER_DIED: RuleDoc(
        "loading the file did not end abnormally `MAX_FILE_ATTEMPTS` times: its worker killed (by a signal, such as the "
        "kernel's out-of-memory killer) or crashed while it held the file, or the file needing more than `WORKER_MEMORY_LIMIT`; "
        "the report's `attempts` say how each ended",
        "read `attempts` and the log: for memory, a smaller `READ_BLOCK_BYTES` or a larger `WORKER_MEMORY_LIMIT`; for a crash, "
        "report the bug with the file; then requeue the file",
        ("MAX_FILE_ATTEMPTS", "WORKER_MEMORY_LIMIT", "READ_BLOCK_BYTES"),
    ),
    Rule.EMPTY_FILE: RuleDoc(
        "the file has at least a header",
        "send the file again once its writer has finished it (an empty file is usually a failed export)",
    ),
    Rule.NO_HEADER: RuleDoc(
        "the first line is a header, not data (mostly numbers and dates)",
        "add a header row naming the columns",
    ),
    Rule.HEADER: RuleDoc(
        "the header line is valid CSV (no unclosed quote) and at most 1 MiB; no empty or repeated column names; "
        "no two columns for one role",
        "close the quote, give every column a name of its own; when two columns look like one role, name the right one in `COLUMN_MAP`",
        ("COLUMN_MAP",),
    ),
    Rule.UNIT: RuleDoc(
        "a unit suffix on a key column is a known unit",
        "write a known unit in the header (`T (degC)`, `temp_f`, `pressure_kpa`...), or none and set the `*_UNIT` settings",
    ),
    Rule.MISSING_COLUMN: RuleDoc(
        "a timestamp column and at least one measure column",
        "rename the columns to a known alias, or name them in `COLUMN_MAP`",
        ("COLUMN_MAP",),
    ),
    Rule.STRUCTURE: RuleDoc(
        "the CSV can be parsed at all",
        "open the file near the reported line and repair the CSV (quotes, delimiters)",
    ),
    Rule.NO_DATA_ROWS: RuleDoc(
        "at least one data row (blank lines and rows of empty fields are skipped, not rows)",
        "send the file again with its data rows",
    ),
    Rule.COLUMN_COUNT: RuleDoc(
        "each row has as many fields as the header (a row swallowed by an unclosed quote says which lines it runs over)",
        "give the row the header's number of fields: quote values holding the delimiter, close open quotes",
    ),
    Rule.LINE_BREAK: RuleDoc(
        "no value runs over a line end: a quoted value holding a line break, typically a quote left open that swallowed the lines after it",
        "close the quote, or remove the line break from the value",
    ),
    Rule.FIELD_TOO_LONG: RuleDoc(
        "no value longer than 4,096 characters (reports show values cut at 200 characters)",
        "look for a quote left open or text that is not sensor data in that column",
    ),
    Rule.TIMESTAMP_FORMAT: RuleDoc(
        "one date format per file fits (detected; ambiguous day/month refused, naming a line) and each value parses in it: "
        "impossible dates (`2023-02-30`) and other formats in the same file are errors",
        "write every timestamp of the file in one format, or set `DATE_FORMAT` to the file's format",
        ("DATE_FORMAT",),
    ),
    Rule.TIMESTAMP_RANGE: RuleDoc(
        "not before `TIMESTAMP_MIN`, not more than `MAX_FUTURE_SECONDS` after now (both bounds allowed)",
        "check the sensor's clock and the time zone; widen the settings if such dates are real",
        ("TIMESTAMP_MIN", "MAX_FUTURE_SECONDS"),
    ),
    Rule.MISSING_VALUE: RuleDoc(
        "no empty timestamp, sensor id or present measure",
        "fill in the value, or remove the row",
    ),
    Rule.NOT_A_NUMBER: RuleDoc(
        "measures parse as numbers: decimal point, no thousands separator (`1,013.25` and `20,5` are refused rather than guessed)",
        "write numbers with a decimal point and without thousands separators",
    ),
    Rule.NOT_FINITE: RuleDoc(
        "no NaN or infinity (`NaN`, `inf`, `-inf`, `1e309`)",
        "leave the sensor's error marker out: remove the row, or fix the value",
    ),
    Rule.OUT_OF_RANGE: RuleDoc(
        "temperature -90..60 °C, humidity 0..100 %, pressure 300..1100 hPa, bounds included, compared in the file's unit "
        "(183.15 K, -130 °F, 30 kPa, 1.0 fraction are on the bounds)",
        "check the column's unit (a header suffix or the `*_UNIT` settings) and the sensor; widen the range if such values are real",
        ("TEMPERATURE_MIN", "TEMPERATURE_MAX", "HUMIDITY_MIN", "HUMIDITY_MAX", "PRESSURE_MIN", "PRESSURE_MAX"),
    ),
    Rule.DUPLICATE_KEY: RuleDoc(
        "no repeated (sensor, timestamp) within a file; checked per read block (`READ_BLOCK_BYTES`), across blocks the "
        "database's unique index refuses the file (no line number then, and the whole file is quarantined even with "
        "`MAX_INVALID_ROWS`)",
        "keep one row per sensor and timestamp (the message names the line of the first one)",
    ),
    Rule.DATABASE: RuleDoc(
        "a value the database itself rejects (SQLSTATE 22/23)",
        "read the database's message in the report and fix the value it names",
    ),
    Rule.INTERNAL_ERROR: RuleDoc(
        "a bug met on this file: quarantined (with a traceback in the log) so the daemon does not stop or loop",
        "report the bug with the log line and the file; requeue the file once it is fixed",
    ),
}
