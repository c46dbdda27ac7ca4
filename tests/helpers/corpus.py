"""The hostile-input corpus: every case is a file name, its bytes and the outcome a careful operator wants.

``tests/test_corpus.py`` runs the daemon once over all of them in one inbox and checks each outcome.
To look at the files by hand: ``python tests/helpers/corpus.py DIR`` writes them into DIR (the symlink case's
target goes to DIR/../corpus-outside).

Outcomes:
- ``loaded``: in ``processed/``, ``rows`` rows in ``sensor_readings``, one ``ingested_files`` row;
- ``quarantined``: in ``quarantine/`` next to ``<name>.error.json`` whose first error has ``rule``
  (and ``line``, ``column``, ``value`` when given); ``problems`` lists every (line, rule) reported;
- ``duplicate``: same bytes as a file loaded before: moved to ``processed/``, not loaded again;
- ``skipped``: a symbolic link; not followed, left in place, logged once as ``file_skipped``;
- ``vanished``: deleted between the scan and the read: gone, nothing else (not logged: with several
  workers a file another one archived since our scan is routine);
- ``refused``: its settings (``env``) are a configuration error: the daemon does not start (exit 2)
  and names ``setting``.

A case with ``env`` is read under those settings, in an inbox of its own (``SETTINGS_CASES``); the
others share one inbox and the default settings (``CASES``).
"""

from __future__ import annotations

import gzip
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

HEADER = "timestamp,sensor_id,temperature,humidity,pressure"
SQL_HEADER = '"; DROP TABLE sensor_readings; --'
SQL_SENSOR = "'; DROP TABLE ingested_files; --"
SQL_NOTE = 'Robert\'); DROP TABLE sensor_readings;-- \\ back\\slash "quoted"'
HOSTILE_HEADERS = (SQL_HEADER, "a;b", 'say "hi"', "Température °C", "🌡️ emoji", "名前")
ODD_NAME = "odd name ünïcödé ✓\nsecond line.csv"


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    outcome: str  # loaded | quarantined | duplicate | skipped | vanished | refused
    why: str
    rows: int = 0
    rule: str | None = None
    line: int | None = None
    column: str | None = None
    value: str | None = None
    message: str | None = None  # a fragment the first error's message must contain
    problems: tuple[tuple[int, str], ...] | None = None
    env: dict[str, str] = field(default_factory=dict)  # settings it is read under (its own inbox)
    setting: str | None = None  # refused: the variable the configuration error names


def loaded(name: str, content: bytes | str, rows: int, why: str) -> Case:
    return Case(name, _bytes(content), "loaded", why, rows=rows)


def quarantined(name: str, content: bytes | str, rule: str, why: str, **first: object) -> Case:
    return Case(name, _bytes(content), "quarantined", why, rule=rule, **first)  # type: ignore[arg-type]


def under(case: Case, **env: str) -> Case:
    """``case`` read under these settings."""
    return replace(case, env=env)


def refused(name: str, content: bytes | str, setting: str, why: str, **env: str) -> Case:
    return Case(name, _bytes(content), "refused", why, env=env, setting=setting)


def _bytes(content: bytes | str) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8")


def csv_text(*rows: str, header: str = HEADER, end: str = "\n") -> str:
    return end.join([header, *rows]) + end


def row(minute: int, sensor: str, temperature: object = 20.5, humidity: object = 50, pressure: object = 1000, *extra: object) -> str:
    """One multi-sensor row at 2024-03-01 00:MM UTC."""
    return ",".join(str(v) for v in (f"2024-03-01T00:{minute:02d}:00Z", sensor, temperature, humidity, pressure, *extra))


def good(sensor: str, count: int = 2, **kwargs: object) -> str:
    """A valid file whose sensor id makes its bytes unique in the corpus (else it would be a duplicate)."""
    return csv_text(*(row(i, sensor) for i in range(count)), **kwargs)  # type: ignore[arg-type]


def _binary_garbage() -> bytes:
    return b"\xde\xad\xbe\xef" + random.Random(5).randbytes(4092)


def build() -> list[Case]:
    """Every case, in the order their mtimes are set (oldest first: the daemon's order)."""
    note_header = HEADER + ",note"
    hostile = HEADER.rsplit(",", 2)[0] + "," + ",".join('"' + h.replace('"', '""') + '"' for h in HOSTILE_HEADERS)
    return [
        # -- bytes and encodings ----------------------------------------------------------------
        quarantined("empty.csv", b"", "empty_file", "nothing to load; a writer that crashed before writing"),
        quarantined("header_only.csv", HEADER + "\n", "no_data_rows", "a header is not data", line=2),
        quarantined("header_then_blank_lines.csv", HEADER + "\n\n\r\n\n", "no_data_rows", "blank lines are not rows", line=2),
        quarantined("blank_fields_only.csv", HEADER + "\n,,,,\n,,,,\n", "no_data_rows", "rows of empty fields are blank lines", line=2),
        quarantined(
            "no_header.csv",
            "\n".join([row(0, "s1"), row(1, "s1")]) + "\n",
            "no_header",
            "the first row would be eaten as a header",
            line=1,
        ),
        quarantined("binary_garbage.csv", _binary_garbage(), "encoding", "not text at all", message="not valid utf-8"),
        quarantined("gzip_named_csv.csv", gzip.compress(good("gz").encode(), mtime=0), "encoding", "compressed", line=1, message="gzip"),
        quarantined(
            "utf16_bom.csv", good("u16").encode("utf-16"), "encoding", "UTF-16 unless ENCODING says so", line=1, message="ENCODING=utf-16"
        ),
        quarantined(
            "utf16le_no_bom.csv",
            good("u16le").encode("utf-16-le"),
            "encoding",
            "UTF-16 without a BOM is named as such",
            message="utf-16-le",
        ),
        quarantined(
            "latin1.csv",
            csv_text(row(0, "ok"), row(1, "Zürich")).encode("latin-1"),
            "encoding",
            "Latin-1 bytes are not UTF-8: decoding would guess",
            line=3,
            message="ENCODING",
        ),
        loaded("utf8_bom.csv", b"\xef\xbb\xbf" + good("bom").encode(), 2, "a UTF-8 BOM is just a marker"),
        loaded("crlf.csv", good("crlf", 3, end="\r\n"), 3, "Windows line ends"),
        loaded(
            "cr_only.csv", good("cr", 3, end="\r"), 3, "classic Mac line ends: the CSV reader and line numbers both take CR as a line end"
        ),
        quarantined(
            "nul_byte.csv", csv_text(row(0, "nul"), row(1, "nul"), "2024-03-01T00:02:00Z,nul,2\x001,50,1000"), "encoding", "binary", line=4
        ),
        # -- sizes and shapes -------------------------------------------------------------------
        quarantined(
            "field_10mb.csv",
            csv_text(row(0, "big", 20.5, 50, 1000, "x" * 10_000_000), header=note_header),
            "field_too_long",
            "a 10 MB value is not a sensor reading; the report shows 200 characters of it",
            line=2,
            column="note",
            value="x" * 200 + "… (10000000 characters)",
        ),
        loaded(
            "line_100k.csv",
            csv_text(row(0, "long", 20.5, 50, 1000, "short"), row(1, "long", 20.5, 50, 1000, "y" * 100_000), header=note_header),
            2,
            "a 100,000-character value is text like any other, under MAX_FIELD_BYTES (1 MiB)",
        ),
        quarantined(
            "field_over_1mib.csv",
            csv_text(row(0, "over", 20.5, 50, 1000, "o" * ((1 << 20) + 1)), header=note_header),
            "field_too_long",
            "one byte over MAX_FIELD_BYTES",
            line=2,
            column="note",
            message="MAX_FIELD_BYTES",
        ),
        loaded(
            "columns_2000.csv",
            csv_text(
                *(row(i, "wide", 20.5, 50, 1000, *(f"v{i}-{j}" for j in range(1995))) for i in range(3)),
                header=HEADER + "," + ",".join(f"x{j}" for j in range(1995)),
            ),
            3,
            "2,000 columns: 1,995 of them go to extra",
        ),
        quarantined(
            "ragged_too_many.csv",
            csv_text(row(0, "rag"), row(1, "rag", 20.5, 50, 1000, "surplus"), row(2, "rag")),
            "column_count",
            "a surplus field means the columns are shifted",
            line=3,
            message="6 fields where the header has 5",
        ),
        quarantined(
            "ragged_too_few.csv",
            csv_text(row(0, "few"), row(1, "few"), "2024-03-01T00:02:00Z,few,20.5"),
            "column_count",
            "a short row lost fields",
            line=4,
            value="2024-03-01T00:02:00Z,few,20.5",
        ),
        quarantined(
            "unbalanced_quote.csv",
            csv_text(row(0, "q"), '2024-03-01T00:01:00Z,"q,20.5,50,1000', row(2, "q"), row(3, "q")),
            "line_break",
            "an opened quote swallows the rest of the file into one row: report where it starts",
            line=3,
            column="sensor_id",
            message="runs over lines 3-5",
            problems=((3, "line_break"),),
        ),
        quarantined(
            "unclosed_quote_last_field.csv",
            csv_text(
                row(0, "uq", 20.5, 50, 1000, "ok"),
                row(1, "uq", 20.5, 50, 1000, '"open'),
                row(2, "uq", 20.5, 50, 1000, "ok"),
                header=note_header,
            ),
            "line_break",
            "the swallowed row must not load as part of a note",
            line=3,
            column="note",
        ),
        loaded(
            "quoted_line_break.csv",
            csv_text(
                row(0, "nl", 20.5, 50, 1000, '"two\nlines"'),
                row(1, "nl", 20.5, 50, 1000, "ok"),
                row(2, "nl", 20.5, 50, 1000, "ok"),
                header=note_header,
            ),
            3,
            "a quoted value may hold a line break (RFC 4180); the row's line_no is its first line",
        ),
        quarantined(
            "quoted_line_break_then_short_row.csv",
            csv_text(
                row(0, "nls", 20.5, 50, 1000, '"two\r\nlines"'),
                row(1, "nls", 20.5, 50, 1000, "ok"),
                row(2, "nls", 20.5, 50),
                header=note_header,
                end="\r\n",
            ),
            "column_count",
            "the lines after a value with a line break keep their true numbers",
            line=5,
            problems=((5, "column_count"),),
        ),
        loaded(
            "stray_quotes_and_a_value_over_lines.csv",
            csv_text(
                row(0, "sq", 20.5, 50, 1000, 'a 5" pipe'),
                row(1, "sq", 20.5, 50, 1000, '"x\ny"'),
                row(2, "sq", 20.5, 50, 1000, 'c 7" pipe'),
                header=note_header,
            ),
            3,
            "a quote inside a value is a character, one at its start opens a quoted value (pyarrow's reading, followed when blocks are cut)",
        ),
        # -- headers ----------------------------------------------------------------------------
        quarantined(
            "duplicate_header.csv",
            csv_text(row(0, "dh", 20.5, 50, 1000, 1), header=HEADER + ",pressure"),
            "header",
            "which pressure?",
            line=1,
            column="pressure",
        ),
        quarantined(
            "empty_header_name.csv", csv_text(row(0, "eh", 20.5, 50, 1000, 1), header=HEADER + ", "), "header", "unnamed data", line=1
        ),
        quarantined(
            "trailing_delimiter.csv", csv_text(row(0, "td") + ",", header=HEADER + ","), "header", "an unnamed last column", line=1
        ),
        quarantined(
            "header_unclosed_quote.csv", '"timestamp,temperature\n2024-03-01T00:00:00Z,20\n', "header", "a header must be one line", line=1
        ),
        quarantined(
            "header_1mb.csv",
            csv_text(row(0, "h1"), header=HEADER + "," + "h" * (1 << 20)),
            "header",
            "a header longer than 1 MiB characters is not a header",
            line=1,
        ),
        quarantined(
            "unknown_unit.csv", good("uu", header="timestamp,sensor_id,T (degX),humidity,pressure"), "unit", "degX is no unit", line=1
        ),
        quarantined(
            "no_timestamp_column.csv", "when,temperature\n2024-03-01T00:00:00Z,20\n", "missing_column", "COLUMN_MAP exists", line=1
        ),
        quarantined(
            "no_measure_column.csv", "timestamp,colour\n2024-03-01T00:00:00Z,red\n", "missing_column", "nothing to measure", line=1
        ),
        quarantined(
            "two_temperature_columns.csv",
            "timestamp,T,temperature\n2024-03-01T00:00:00Z,20,21\n",
            "header",
            "two candidates for one role",
            line=1,
            column="temperature",
        ),
        loaded(
            "header_hostile_names.csv",
            csv_text(row(0, "hostile", 20.5, 1, 2, 3, 4, 5, 6), header=hostile),
            1,
            "quotes, semicolons, SQL, unicode and emoji in names are just names: stored verbatim as extra keys",
        ),
        # -- where the header is (HEADER_ROW=auto) ------------------------------------------------
        loaded(
            "preamble_two_lines.csv",
            "Station: roof, Lat 52.5\nExported 2024-03-02\n" + good("pre"),
            2,
            "a preamble before the header is kept with the ledger row, not refused",
        ),
        quarantined(
            "header_after_20_lines.csv",
            "".join(f"# note {i}\n" for i in range(20)) + good("late"),
            "missing_column",
            "auto looks at 20 lines: further down, HEADER_ROW says where",
            line=1,
            message="no header row in the first 20 line(s)",
        ),
        quarantined(
            "whitespace_table_read_as_one_column.csv",
            "timestamp              temperature  humidity\n2024-03-01T00:00:00Z   20.5         50\n",
            "missing_column",
            "one column found is the delimiter's fault, not a missing timestamp",
            line=1,
            message="CSV_DELIMITER=whitespace",
        ),
        loaded(
            "toa5_minimal.csv",
            '"TOA5","CR1000","CR1000","7","CR1000.Std.32","CPU:x.CR1","1","Table1"\n"TIMESTAMP","RECORD","Temp","RH","Press"\n'
            '"TS","RN","Deg C","%","kPa"\n"","","Avg","Smp","Smp"\n"2024-03-01 00:00:00",0,20.5,50,100\n',
            1,
            "a TOA5 file is recognised by its first field: header, units and data lines without settings",
        ),
        quarantined(
            "toa5_unknown_unit.csv",
            '"TOA5","CR1000"\n"TIMESTAMP","RECORD","Temp","RH"\n"TS","RN","Deg X","%"\n"","","Avg","Smp"\n"2024-03-01 00:00:00",0,20.5,50\n',
            "unit",
            "a unit the units row names and nobody knows: refuse rather than guess",
            line=3,
            column="Temp",
            value="Deg X",
        ),
        # -- values -----------------------------------------------------------------------------
        loaded(
            "values_sql.csv",
            csv_text('2024-03-01T00:00:00Z,"' + SQL_SENSOR + '",20.5,50,1000,"' + SQL_NOTE.replace('"', '""') + '"', header=note_header),
            1,
            "SQL in a value is text: bound or COPY data, never statement text",
        ),
        quarantined(
            "sql_in_measure.csv",
            csv_text(row(0, "sqlm", "1; DROP TABLE sensor_readings")),
            "not_a_number",
            "reported verbatim",
            line=2,
            column="temperature",
            value="1; DROP TABLE sensor_readings",
        ),
        loaded(
            "formula_values.csv",
            csv_text(row(0, "fx", 20.5, 50, 1000, "=cmd|' /C calc'!A0"), header=note_header),
            1,
            "spreadsheet formulas are text like any other",
        ),
        quarantined(
            "nan.csv",
            csv_text(row(0, "snan", "NaN")),
            "missing_value",
            "NaN is in NA_VALUES: a missing reading, and MISSING_VALUES=reject",
            line=2,
            column="temperature",
            value="NaN",
        ),
        quarantined(
            "inf.csv", csv_text(row(0, "inf", 20.5, "inf")), "not_finite", "no infinite humidity", line=2, column="humidity", value="inf"
        ),
        quarantined("minus_inf.csv", csv_text(row(0, "ninf", "-inf")), "not_finite", "", line=2, column="temperature", value="-inf"),
        quarantined(
            "overflow_1e309.csv", csv_text(row(0, "ovf", 20.5, 50, "1e309")), "not_finite", "overflows a double", line=2, column="pressure"
        ),
        quarantined(
            "empty_field.csv",
            csv_text(row(0, "ef"), row(1, "ef", "")),
            "missing_value",
            "',,': a reading is missing",
            line=3,
            column="temperature",
            value="",
        ),
        quarantined(
            "thousands_separator.csv",
            csv_text(row(0, "ts", 20.5, 50, '"1,013.25"')),
            "not_a_number",
            "1,013.25 could be 1.01325 or 1013.25",
            line=2,
            column="pressure",
            value="1,013.25",
        ),
        quarantined(
            "decimal_comma.csv",
            good("dc").replace(",", ";").replace("20.5", "20,5"),
            "not_a_number",
            "decimal commas are refused rather than guessed",
            line=2,
            column="temperature",
            value="20,5",
        ),
        loaded("semicolon.csv", good("semi").replace(",", ";"), 2, "the delimiter is detected from the header"),
        loaded("tab.csv", good("tab").replace(",", "\t"), 2, "tabs too"),
        loaded(
            "whitespace_around_values.csv",
            csv_text(" 2024-03-01T00:00:00Z , ws , 20.5 , 50 , 1000 "),
            1,
            "spaces around values are trimmed",
        ),
        # -- dates ------------------------------------------------------------------------------
        quarantined(
            "date_impossible.csv",
            csv_text(row(0, "di"), "2023-02-30T00:00:00Z,di,20.5,50,1000"),
            "timestamp_format",
            "February 30th",
            line=3,
            value="2023-02-30T00:00:00Z",
        ),
        quarantined(
            "date_ambiguous.csv",
            csv_text("01/02/2024 00:00,amb,20.5,50,1000", "03/04/2024 00:00,amb,20.5,50,1000"),
            "timestamp_format",
            "1 February or 2 January? refuse to guess",
            line=2,
            column="timestamp",
            message="ambiguous",
        ),
        loaded(
            "date_day_first.csv",
            csv_text("01/02/2024 00:00,dayfirst,20.5,50,1000", "13/02/2024 00:00,dayfirst,20.5,50,1000"),
            2,
            "13/02 settles the order for the whole file",
        ),
        quarantined(
            "date_far_future.csv",
            csv_text(row(0, "fut"), "2999-01-01T00:00:00Z,fut,20.5,50,1000"),
            "timestamp_range",
            "a clock far off",
            line=3,
            message="MAX_FUTURE_SECONDS",
        ),
        quarantined(
            "date_before_1900.csv",
            csv_text("1899-12-31T23:59:59Z,old,20.5,50,1000"),
            "timestamp_range",
            "an unset clock",
            line=2,
            message="TIMESTAMP_MIN",
        ),
        loaded("date_at_1900.csv", csv_text("1900-01-01T00:00:00Z,at1900,20.5,50,1000"), 1, "the bound itself is allowed"),
        quarantined(
            "dates_mixed_formats.csv",
            csv_text(row(0, "mix"), "2024-03-01 00:10:00,mix,20.5,50,1000", "01.03.2024 00:20:00,mix,20.5,50,1000"),
            "timestamp_format",
            "one format per file: the odd one out is named",
            line=4,
            value="01.03.2024 00:20:00",
        ),
        # -- ranges (defaults: -90..60 °C, 0..100 %, 300..1100 hPa) --------------------------
        loaded("bounds_exact.csv", csv_text(row(0, "edge", -90, 0, 300), row(1, "edge", 60, 100, 1100)), 2, "bounds are inclusive"),
        loaded(
            "bounds_exact_other_units.csv",
            csv_text(
                row(0, "edgek", 183.15, 0, 30),
                row(1, "edgek", 333.15, 1, 110),
                header="timestamp,sensor_id,T (K),humidity_fraction,pressure_kpa",
            ),
            2,
            "bounds compared in the file's units: 183.15 K, 1.0 fraction, 110 kPa are on the bounds",
        ),
        loaded(
            "bounds_exact_fahrenheit.csv",
            csv_text(row(0, "edgef", -130), row(1, "edgef", 140), header="timestamp,sensor_id,temp_f,humidity,pressure"),
            2,
            "-130 °F and 140 °F are -90 °C and 60 °C",
        ),
        *(
            quarantined(
                f"{name}.csv", csv_text(row(0, name, *values)), "out_of_range", "just beyond the bound", line=2, column=column, value=value
            )
            for name, values, column, value in (
                ("temperature_below", (-90.01,), "temperature", "-90.01"),
                ("temperature_above", (60.01,), "temperature", "60.01"),
                ("humidity_below", (20.5, -0.1), "humidity", "-0.1"),
                ("humidity_above", (20.5, 100.1), "humidity", "100.1"),
                ("pressure_below", (20.5, 50, 299.9), "pressure", "299.9"),
                ("pressure_above", (20.5, 50, 1100.1), "pressure", "1100.1"),
            )
        ),
        quarantined(
            "kelvin_below.csv",
            csv_text(row(0, "kb", 183.14), header="timestamp,sensor_id,T (K),humidity,pressure"),
            "out_of_range",
            "0.01 K below -90 °C",
            line=2,
            column="T (K)",
        ),
        # -- keys -------------------------------------------------------------------------------
        quarantined(
            "duplicate_key.csv",
            csv_text(row(0, "dk"), row(1, "dk"), row(0, "dk", 21)),
            "duplicate_key",
            "two readings for one sensor and time: which is true?",
            line=4,
            message="as line 2",
        ),
        loaded("same_time_two_sensors.csv", csv_text(row(0, "pair-a"), row(0, "pair-b")), 2, "the key is sensor and time"),
        # -- the inbox ----------------------------------------------------------------------------
        loaded(ODD_NAME, good("oddname"), 2, "spaces, unicode and a newline in a name are only a name"),
        Case("duplicate_content_first.csv", good("twin").encode(), "loaded", "the first copy loads", rows=2),
        Case("duplicate_content_second.csv", good("twin").encode(), "duplicate", "same bytes: loaded once, set aside"),
        Case("symlink_outside.csv", good("linked").encode(), "skipped", "a link could point anywhere (/etc/shadow)"),
        Case("vanished.csv", good("gone").encode(), "vanished", "deleted between scan and read: nothing to do"),
    ]


CASES = build()


def build_with_settings() -> list[Case]:
    """Cases read under settings of their own (``env``), each in its own inbox."""
    return [
        under(
            quarantined(
                "header_row_beyond_the_file.csv", good("hrb"), "no_header", "a header row that is not there", message="beyond the end"
            ),
            HEADER_ROW="9",
        ),
        under(
            quarantined(
                "units_row_unknown.csv",
                csv_text(row(0, "uru"), header=HEADER + "\nTS,,degX,%,hPa"),
                "unit",
                "the units row names a unit nobody knows",
                line=2,
                column="temperature",
                value="degX",
            ),
            UNITS_ROW="2",
        ),
        under(
            quarantined(
                "column_names_wrong_count.csv",
                "\n".join([row(0, "cnw"), row(1, "cnw")]) + "\n",
                "column_count",
                "COLUMN_NAMES names 3 columns, the file has 5",
                line=1,
                message="5 fields where COLUMN_NAMES has 3",
                problems=((1, "column_count"), (2, "column_count")),
            ),
            HEADER_ROW="none",
            COLUMN_NAMES="timestamp,temperature,humidity",
        ),
        refused("headerless_without_names.csv", good("hwn"), "HEADER_ROW", "no header and no names: nothing to read", HEADER_ROW="none"),
        under(
            quarantined(
                "line_over_max_line_bytes.csv",
                csv_text(row(0, "lol"), "x" * 100_000, row(2, "lol")),
                "line_too_long",
                "a line longer than MAX_LINE_BYTES is skipped to its end, never held; the rows after it are read",
                line=3,
                message="100,001 bytes",
                problems=((3, "line_too_long"),),
            ),
            MAX_LINE_BYTES="65536",
        ),
    ]


SETTINGS_CASES = build_with_settings()


def main(folder: str) -> None:
    """Write the corpus into ``folder`` (the symlink target next to it)."""
    target = Path(folder)
    outside = target.parent / "corpus-outside"
    target.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if case.outcome == "skipped":
            (outside / case.name).write_bytes(case.content)
            (target / case.name).symlink_to(outside / case.name)
        else:
            (target / case.name).write_bytes(case.content)


if __name__ == "__main__":
    main(sys.argv[1])
