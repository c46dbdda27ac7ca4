"""The reader on its own: where the header, units and data are (``core.layout``), blocks cut at row
ends whatever the piece size and line ends, long lines skipped unread, quotes never closed. No database."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor_etl.config import Rules, settings_from
from sensor_etl.core.layout import Line, locate, squeeze
from sensor_etl.edges import files, reader
from sensor_etl.edges.reader import _Overlong, _rows, _Unclosed
from sensor_etl.errors import InvalidFile
from sensor_etl.runners import pipeline
from tests.helpers.inprocess import Received

NOW = datetime(2026, 11, 27, tzinfo=UTC)
HEADER = "timestamp,sensor_id,temperature,note"


def rules(**env: str) -> Rules:
    return settings_from(env).rules


def layout_of(text: str, **env: str) -> Any:
    """The Layout of a file of this text, or the problem that makes it unreadable."""
    lines = [Line(number, line) for number, line in enumerate(text.split("\n") if text else [], start=1)]
    try:
        return locate(lines, rules(**env))
    except InvalidFile as exc:
        return exc.problem


# -- where the header is ---------------------------------------------------------------------------
def test_auto_takes_the_first_header_and_keeps_the_lines_before_it() -> None:
    layout = layout_of(f"Station 7, roof\n\n{HEADER}\n2024-03-01T00:00:00Z,s,1,n")
    assert (layout.header_line, layout.data_line, layout.preamble) == (3, 4, "Station 7, roof\n")
    assert layout.describe() == "header on line 3, data from line 4"
    assert layout_of(f"{HEADER}\nx").describe() == ""


def test_toa5_is_recognised_by_its_first_field() -> None:
    text = '"TOA5","CR1000","x"\n"TIMESTAMP","RECORD","T","RH"\n"TS","RN","Deg F","RH%"\n"","","Avg","Smp"\n'
    layout = layout_of(text)
    assert (layout.header_line, layout.units_line, layout.data_line) == (2, 3, 5)
    assert (layout.plan.units["temperature"], layout.plan.units["humidity"]) == ("F", "percent")
    assert layout.preamble == '"TOA5","CR1000","x"'
    assert layout_of(text, DATA_ROW="6").data_line == 6


@pytest.mark.parametrize(
    ("text", "env", "rule", "line", "message"),
    [
        ("", {}, "empty_file", None, "the file is empty"),
        ("\n\n", {}, "no_header", 1, "no header row: the first 3 line(s) are empty"),
        ("2024-03-01,1\n2024-03-02,2", {}, "no_header", 1, "no header row in the first 2 line(s): line 1 looks like data"),
        ("2024-03-01,1\n" + HEADER, {"HEADER_ROW": "1"}, "no_header", 1, "line 2 looks like the header: set HEADER_ROW=2 or auto"),
        (HEADER + "\nx", {"HEADER_ROW": "4"}, "no_header", None, "HEADER_ROW=4 is beyond the end of the file (2 lines)"),
        ("Station 7\ntimestamp,T (degX)\nx", {}, "unit", 2, "unknown temperature unit 'degx'"),
        ("a\nb\nc", {}, "missing_column", 1, "no header row in the first 3 line(s) (none names a timestamp and a measure column"),
        ("time    T     rh\n0  1  2", {}, "missing_column", 1, "one column found: set CSV_DELIMITER=whitespace"),
        (HEADER + "\nTS,,Deg X,", {"UNITS_ROW": "2"}, "unit", 2, "unknown temperature unit in the units row"),
        ("timestamp,T (degC)\nTS,K", {"UNITS_ROW": "2"}, "unit", 2, "the units row says K where the header says 'degc'"),
        (HEADER + "\nTS,,K", {"UNITS_ROW": "2"}, "unit", 2, "the units row has 3 fields where the header has 4"),
        (HEADER, {"UNITS_ROW": "3"}, "unit", None, "the units row (line 3) is beyond the end of the file"),
        ("x\n" + HEADER, {"UNITS_ROW": "2"}, "unit", 2, "UNITS_ROW=2 is not below the header (line 2)"),
        ("a,b,c\n" + HEADER, {"HEADER_ROW": "2", "COLUMN_NAMES": "time,T"}, "header", 2, "has 4 names where COLUMN_NAMES gives 2"),
    ],
)
def test_where_the_header_is_not(text: str, env: dict[str, str], rule: str, line: int | None, message: str) -> None:
    problem = layout_of(text, **env)
    assert (problem.rule, problem.line) == (rule, line), problem
    assert message in problem.message


def test_column_names_read_a_file_without_header_from_data_row() -> None:
    layout = layout_of("a\nb\n1;2\n", COLUMN_NAMES="time,T", DATA_ROW="3")
    assert (layout.header_line, layout.data_line, layout.delimiter, layout.preamble) == (None, 3, ";", "a\nb")
    assert layout.plan.headers == ("time", "T") and layout.names_from == "COLUMN_NAMES"
    replaced = layout_of("x,y\n1,2\n", HEADER_ROW="1", COLUMN_NAMES="time,T")
    assert (replaced.header_line, replaced.plan.headers, replaced.data_line) == (1, ("time", "T"), 2)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HEADER_ROW": "none"}, "HEADER_ROW"),
        ({"HEADER_ROW": "3", "UNITS_ROW": "2"}, "UNITS_ROW"),
        ({"HEADER_ROW": "3", "DATA_ROW": "3"}, "DATA_ROW"),
        ({"UNITS_ROW": "4", "DATA_ROW": "4"}, "DATA_ROW"),
        ({"COLUMN_NAMES": "a,b", "UNITS_ROW": "2"}, "UNITS_ROW"),
        ({"COLUMN_NAMES": "time,colour"}, "COLUMN_NAMES"),
        ({"COLUMN_NAMES": "time,T,T"}, "COLUMN_NAMES"),
        ({"HEADER_ROW": "0"}, "HEADER_ROW"),
        ({"DATA_ROW": "1001"}, "DATA_ROW"),
        ({"MAX_LINE_BYTES": "1000"}, "MAX_LINE_BYTES"),
    ],
)
def test_reading_settings_that_cannot_work_are_configuration_errors(env: dict[str, str], variable: str) -> None:
    from sensor_etl.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        settings_from(env)
    assert caught.value.variable == variable


def test_squeeze_turns_an_aligned_table_into_one_space_between_fields() -> None:
    assert squeeze(b"  a   b\t\tc  \r\n\r\n   1  2 3\n") == b"a b c\r\n\r\n1 2 3\n"
    assert squeeze(b'  "x  y"   2\n') == b'"x  y" 2\n'


# -- cutting blocks ----------------------------------------------------------------------------------
def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value


values = st.text(alphabet=st.sampled_from(list('ab ,"\n\r')), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(values, values), min_size=1, max_size=12),
    end=st.sampled_from(["\n", "\r\n", "\r"]),
    piece=st.integers(1, 40),
)
def test_blocks_hold_whole_rows_whatever_the_pieces_and_line_ends(rows: list[tuple[str, str]], end: str, piece: int) -> None:
    """Values with quotes, delimiters and line breaks quoted as RFC 4180 says, cut in pieces of any
    size: every block ends at a row end, and the blocks are the file."""
    data = "".join(",".join(_quoted(v) for v in row) + end for row in rows).encode()
    blocks = list(_rows(_pieces(data, piece), 1 << 20, b",\r\n"))
    assert all(isinstance(b, bytes) for b in blocks)
    assert b"".join(blocks) == data  # type: ignore[arg-type]
    for block in blocks:
        parsed = list(csv.reader(io.StringIO(block.decode(), newline="")))  # type: ignore[union-attr]
        assert parsed and all(len(r) == 2 for r in parsed if r)


raw_values = st.text(alphabet=st.sampled_from(list('ab"')), max_size=5).filter(lambda v: not v.startswith('"'))


def _parsed(data: bytes) -> list[dict]:
    options = pacsv.ReadOptions(column_names=["a", "b"], use_threads=False, block_size=len(data) + 1)
    convert = pacsv.ConvertOptions(column_types={"a": pa.string(), "b": pa.string()}, strings_can_be_null=False)
    return pacsv.read_csv(pa.py_buffer(data), read_options=options, convert_options=convert).to_pylist()


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(st.one_of(raw_values, values.map(_quoted)), values.map(_quoted)), min_size=1, max_size=12),
    piece=st.integers(1, 30),
)
def test_blocks_follow_pyarrow_on_quotes_inside_values(rows: list[tuple[str, str]], piece: int) -> None:
    """A quote inside an unquoted value (``5" pipe``) is a character to pyarrow: the blocks, parsed one
    by one, give the rows the whole file gives."""
    data = "".join(f"{a},{b}\n" for a, b in rows).encode()
    blocks = list(_rows(_pieces(data, piece), 1 << 20, b",\r\n"))
    assert all(isinstance(b, bytes) for b in blocks)
    assert [r for block in blocks for r in _parsed(block)] == _parsed(data)  # type: ignore[arg-type]


def test_a_line_longer_than_max_line_is_skipped_unread_and_the_next_rows_follow() -> None:
    for end in ("\n", "\r\n", "\r"):
        data = f"a,1{end}{'x' * 5000}{end}b,2{end}".encode()
        for size in (7, 100, 4999, 5001, 6000):
            items = list(_rows(_pieces(data, size), 1000, b",\r\n"))
            left_out = [i for i in items if isinstance(i, _Overlong)]
            assert [(o.size, o.lines, o.head[:3]) for o in left_out] == [(5000 + len(end), 1, b"xxx")], (end, size)
            assert b"".join(i for i in items if isinstance(i, bytes)) == f"a,1{end}b,2{end}".encode(), (end, size)


def test_a_quote_never_closed_is_the_last_row_and_one_left_open_too_long_loses_only_its_line() -> None:
    data = b'a,1\nb,"open\nc,3\n'
    items = list(_rows(_pieces(data, 3), 1000, b",\r\n"))
    assert items[-1] == _Unclosed(b'b,"open\nc,3\n', 2)
    assert b"".join(i for i in items if isinstance(i, bytes)) == b"a,1\n"
    long = b'a,"open\n' + b"c,3\n" * 400
    items = list(_rows(_pieces(long, 64), 1000, b",\r\n"))
    assert isinstance(items[0], _Overlong) and not items[0].closed and items[0].head == b'a,"open'
    assert b"".join(i for i in items if isinstance(i, bytes)) == b"c,3\n" * 400


def _read(tmp_path: Path, content: bytes | str, block: int = 1 << 16, **env: str) -> pipeline.Outcome | InvalidFile:
    path = tmp_path / "x.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    got = Received()
    try:
        outcome = pipeline.run(path, rules(**env), NOW, block_bytes=block, sink=got)
    except InvalidFile as exc:
        return exc
    outcome.readings = got.readings  # type: ignore[attr-defined]
    return outcome


def test_values_over_lines_keep_their_rows_line_numbers_in_tiny_blocks(tmp_path: Path) -> None:
    body = [
        f'2024-03-01T00:{i:02d}:00Z,s,20,"note {i}\r\nsecond line\r\n""third"""' if i % 3 == 0 else f"2024-03-01T00:{i:02d}:00Z,s,20,n{i}"
        for i in range(30)
    ]
    outcome = _read(tmp_path, "\r\n".join([HEADER, *body]) + "\r\n", block=64)
    assert isinstance(outcome, pipeline.Outcome)
    rows = [r for table in outcome.readings for r in table.select(["line_no", "extra"]).to_pylist()]  # type: ignore[attr-defined]
    expected, line = [], 2
    for i in range(30):
        note = f'note {i}\r\nsecond line\r\n"third"' if i % 3 == 0 else f"n{i}"
        expected.append((line, note))
        line += 3 if i % 3 == 0 else 1
    assert [(r["line_no"], __import__("json").loads(r["extra"])["note"]) for r in rows] == expected


def test_a_long_line_is_reported_with_its_line_and_length(tmp_path: Path) -> None:
    content = f"Station\n{HEADER}\n2024-03-01T00:00:00Z,s,20,a\n{'z' * 300_000}\n2024-03-01T00:01:00Z,s,21,b\n"
    outcome = _read(tmp_path, content, block=1 << 16, MAX_LINE_BYTES="65536", MAX_INVALID_ROWS="1")
    assert isinstance(outcome, pipeline.Outcome)
    assert (outcome.rows, outcome.loaded, outcome.invalid_rows) == (3, 2, 1)
    (problem,) = outcome.details
    assert (problem["line"], problem["rule"], problem["value"]) == (4, "line_too_long", "z" * 200)
    assert problem["message"] == "a line of 300,001 bytes: longer than MAX_LINE_BYTES (65,536); skipped unread"
    assert outcome.rejected_lines() == {4}


def test_whitespace_tables_and_headerless_files_read_with_their_settings(tmp_path: Path) -> None:
    table = "  timestamp            T      rh\n  2024-03-01T00:00:00Z   20.5   50\n\n  2024-03-01T00:10:00Z  -1.25   51\n"
    outcome = _read(tmp_path, table, CSV_DELIMITER="whitespace")
    assert isinstance(outcome, pipeline.Outcome)
    assert outcome.readings[0].select(["line_no", "temperature_k"]).to_pylist() == [  # type: ignore[attr-defined]
        {"line_no": 2, "temperature_k": 293.65},
        {"line_no": 4, "temperature_k": 271.9},
    ]
    headerless = "\ufeffexported by x\n2024-03-01T00:00:00Z,20.5\n"
    outcome = _read(tmp_path, headerless, COLUMN_NAMES="time,T", DATA_ROW="2")
    assert isinstance(outcome, pipeline.Outcome) and outcome.preamble == "exported by x"
    short = _read(tmp_path, headerless, COLUMN_NAMES="time,T", DATA_ROW="5")
    assert isinstance(short, InvalidFile) and short.problem.message == "the file has no data rows from line 5 on"


def test_rejects_copy_long_lines_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_READ_CHARS", 4)
    path = tmp_path / "x.csv"
    path.write_bytes(b"h1\r\nabcdefg\r\nabc\r\nzz\rq\n")
    assert "".join(files.read_lines(path, {2, 3, 4, 5}, "utf-8")) == "abcdefg\r\nabc\r\nzz\rq\n"
    assert "".join(files.read_lines(path, {1, 3}, "utf-8")) == "h1\r\nabc\r\n"


def test_the_head_is_read_lazily_with_long_lines_cut(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbf" + b"a" * 3_000_000 + b"\r\nb\r")
    assert [(line.number, len(line.text), line.cut) for line in reader.head(path, "utf-8")] == [(1, 1 << 20, True), (2, 1, False)]
