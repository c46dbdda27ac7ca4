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
    SOURCE = "source"
    WORKER_DIED = "worker_died"
    EMPTY_FILE = "empty_file"
    NO_HEADER = "no_header"
    HEADER = "header"
    UNIT = "unit"
    MISSING_COLUMN = "missing_column"
    STRUCTURE = "structure"
    NO_DATA_ROWS = "no_data_rows"
    LINE_TOO_LONG = "line_too_long"
    COLUMN_COUNT = "column_count"
    LINE_BREAK = "line_break"
    FIELD_TOO_LONG = "field_too_long"
    TIMESTAMP_FORMAT = "timestamp_format"
    DAYLIGHT_SAVING = "daylight_saving"
    TIMESTAMP_RANGE = "timestamp_range"
    MISSING_VALUE = "missing_value"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    DUPLICATE_KEY = "duplicate_key"
    OVERLAP = "overlap"
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
    Rule.SOURCE: RuleDoc(
        "a file of a source with `sensor_id_pattern` (in `SOURCES_FILE`) has a name the pattern finds a non-empty sensor id in",
        "rename the file, or correct the source's `sensor_id_pattern` or `match` ([sources](sources.md))",
        ("SOURCES_FILE",),
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
        "a header row: with `HEADER_ROW=auto` one of the first 20 lines, else line `HEADER_ROW`, which exists and is "
        "not data (mostly numbers and dates)",
        "add a header row naming the columns, set `HEADER_ROW` to its line, or name the columns with `COLUMN_NAMES`",
        ("HEADER_ROW", "COLUMN_NAMES"),
    ),
    Rule.HEADER: RuleDoc(
        "the header line is valid CSV (no unclosed quote) and at most 1 MiB; no empty or repeated column names; "
        "no two columns for one role; as many names as `COLUMN_NAMES` when that replaces them; `DATA_ROW` below it",
        "close the quote, give every column a name of its own; when two columns look like one role, name the right one in `COLUMN_MAP`",
        ("COLUMN_MAP", "COLUMN_NAMES", "DATA_ROW"),
    ),
    Rule.UNIT: RuleDoc(
        "a unit suffix on a key column, or its entry in the units row (`UNITS_ROW`, a TOA5 file's line 3), is a known "
        "unit, and the two agree; the units row is below the header and has its number of fields",
        "write a known unit (`T (degC)`, `temp_f`, `pressure_kpa`; in a units row `Deg C`, `%`, `mbar`...), or none "
        "and set the `*_UNIT` settings",
        ("UNITS_ROW",),
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
    Rule.LINE_TOO_LONG: RuleDoc(
        "no row longer than `MAX_LINE_BYTES`: a longer line is never held in memory, the reader skips to its end and "
        "reports its line and length (a quote not closed within `MAX_LINE_BYTES` leaves out the line it opens on); "
        "the rows after it are read as usual",
        "look for a missing line end or a quote left open on that line; raise `MAX_LINE_BYTES` if such rows are real",
        ("MAX_LINE_BYTES",),
    ),
    Rule.COLUMN_COUNT: RuleDoc(
        "each row has as many fields as the header (or `COLUMN_NAMES`); a row that runs over several lines says which",
        "give the row the header's number of fields: quote values holding the delimiter, close open quotes",
    ),
    Rule.LINE_BREAK: RuleDoc(
        "every quote opened in a value is closed: one left open runs over every line after it to the end of the file "
        "(a quoted value may hold line breaks, RFC 4180: such a row loads, its `line_no` is its first line)",
        "close the quote",
    ),
    Rule.FIELD_TOO_LONG: RuleDoc(
        "no value longer than `MAX_FIELD_BYTES` (1 MiB; reports show values cut at 200 characters)",
        "look for a quote left open or text that is not sensor data in that column; raise `MAX_FIELD_BYTES` if such values are real",
        ("MAX_FIELD_BYTES",),
    ),
    Rule.TIMESTAMP_FORMAT: RuleDoc(
        "one date format per file fits (detected, or spelled by the headers as in `Date (MM/DD/YYYY)`; ambiguous day/month "
        "refused, naming a line) and each value parses in it (hour `24:00` is 00:00 of the next day): impossible dates "
        "(`2023-02-30`, day 366 of a common year) and other formats in the same file are errors",
        "write every timestamp of the file in one format, or set `DATE_FORMAT` to the file's format (`epoch_s`, `epoch_ms` for Unix times)",
        ("DATE_FORMAT",),
    ),
    Rule.DAYLIGHT_SAVING: RuleDoc(
        "a local time is not in a daylight-saving change of `SOURCE_TIMEZONE`: one that occurs twice (clocks going back) "
        "unless `AMBIGUOUS_TIME` picks one, one that does not exist (clocks going forward) ever",
        "set `AMBIGUOUS_TIME=earliest` or `latest` for repeated times; for times that do not exist the logger probably keeps "
        "standard time all year: set `SOURCE_TIMEZONE` to its fixed offset (`-05:00`); or write times with an offset or in UTC",
        ("SOURCE_TIMEZONE", "AMBIGUOUS_TIME"),
    ),
    Rule.TIMESTAMP_RANGE: RuleDoc(
        "not before `TIMESTAMP_MIN`, not more than `MAX_FUTURE_SECONDS` after now (both bounds allowed)",
        "check the sensor's clock and the time zone; widen the settings if such dates are real",
        ("TIMESTAMP_MIN", "MAX_FUTURE_SECONDS"),
    ),
    Rule.MISSING_VALUE: RuleDoc(
        "no missing timestamp or sensor id, and, unless `MISSING_VALUES=null`, no missing measure; with `null`, at least one "
        "measure per row. Missing: empty, or a value of `NA_VALUES` (numeric sentinels such as `-9999` match by value)",
        "fill in the value or remove the row; set `MISSING_VALUES=null` to load the row with the measure as NULL; add the "
        "file's marker for missing values to `NA_VALUES`",
        ("NA_VALUES", "MISSING_VALUES"),
    ),
    Rule.NOT_A_NUMBER: RuleDoc(
        "measures parse as numbers: decimal point, no thousands separator (`1,013.25` and `20,5` are refused rather than guessed)",
        "write numbers with a decimal point and without thousands separators",
    ),
    Rule.NOT_FINITE: RuleDoc(
        "no infinity (`inf`, `-inf`, `1e309`), and no NaN unless `NA_VALUES` lists it (by default `NaN` and `nan` are missing values)",
        "leave the sensor's error marker out: remove the row, or fix the value",
    ),
    Rule.OUT_OF_RANGE: RuleDoc(
        "temperature -90..60 °C, humidity 0..100 %, pressure 300..1100 hPa, bounds included, compared in the file's unit "
        "(183.15 K, -130 °F, 30 kPa, 1.0 fraction are on the bounds)",
        "check the column's unit (a header suffix or the `*_UNIT` settings: when every value of the column fits another unit, "
        "the message says which) and the sensor; widen the range if such values are real",
        ("TEMPERATURE_MIN", "TEMPERATURE_MAX", "HUMIDITY_MIN", "HUMIDITY_MAX", "PRESSURE_MIN", "PRESSURE_MAX"),
    ),
    Rule.DUPLICATE_KEY: RuleDoc(
        "no repeated (sensor, timestamp) within a file; checked per read block (`READ_BLOCK_BYTES`), across blocks the "
        "database's unique index refuses the file (no line number then, and the whole file is quarantined even with "
        "`MAX_INVALID_ROWS`)",
        "keep one row per sensor and timestamp (the message names the line of the first one)",
    ),
    Rule.OVERLAP: RuleDoc(
        "with `ON_OVERLAP=reject`: no reading whose sensor and timestamp another loaded file already holds (the message "
        "names the first such line and the file that holds it)",
        "drop the rows another file already delivered, or load the file with `ON_OVERLAP=skip` or `replace` "
        "(for its source only, in `SOURCES_FILE`); `unload` the other file if it was the wrong one",
        ("ON_OVERLAP",),
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
