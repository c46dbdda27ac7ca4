"""Stream a CSV file as chunks of text columns with their physical line numbers (pyarrow's reader).

Every field arrives as a string: deciding what is a number or a date is ``validate``'s job. Rows with
the wrong number of fields do not stop the read; they are returned as ``BadRow`` with their line.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sensor_etl.core.chunk import BadRow, Chunk
from sensor_etl.core.rules import Rule
from sensor_etl.edges.sniff import check_not_data, choose_delimiter, line_breaks
from sensor_etl.errors import InvalidFile, Problem

MAX_HEADER_CHARS = 1 << 20
_LINE_END = re.compile(rb"\r\n|\n|\r")
_LINE_BREAK = r"\r\n|\r|\n"


def column_names(count: int) -> list[str]:
    return [f"c{i}" for i in range(count)]


@dataclass(frozen=True)
class _Invalid:
    number: int  # pyarrow's row number (the header is row 1)
    height: int
    text: str
    fields: int
    expected: int


class _LineNumbers:
    """Turns pyarrow's row numbers into physical line numbers.

    pyarrow numbers rows, not lines, and reports invalid rows to the handler before the batch that
    holds the rows around them. So rows are placed in row order, each taking as many lines as it
    spans, and an invalid row is placed once the batch reaching past it arrives."""

    def __init__(self) -> None:
        self.row = 2  # the next row number to place (row 1 is the header)
        self.line = 2  # the physical line it starts on
        self.pending: list[_Invalid] = []

    def place(self, heights: np.ndarray, final: bool = False) -> tuple[np.ndarray, list[BadRow]]:
        """First lines of a batch's rows (of the given heights), and the invalid rows placed before its last row."""
        rows = len(heights)
        if not self.pending and (heights == 1).all():
            lines = np.arange(self.line, self.line + rows, dtype=np.int64)
            self.row, self.line = self.row + rows, self.line + rows
            return lines, []
        if rows == 0 and not final:
            return np.empty(0, np.int64), []
        self.pending.sort(key=lambda r: r.number)
        skipped = np.array([r.number for r in self.pending], dtype=np.int64)
        # the batch's rows take the row numbers the invalid rows left free, in order
        numbers = np.arange(self.row, self.row + rows, dtype=np.int64)
        numbers += np.searchsorted(skipped - np.arange(len(skipped)), numbers, side="right")
        placed = self.pending if final else [r for r in self.pending if r.number < numbers[-1]]
        self.pending = self.pending[len(placed) :]
        order = np.concatenate([numbers, np.array([r.number for r in placed], dtype=np.int64)])
        spans = np.concatenate([heights, np.array([r.height for r in placed], dtype=np.int64)])
        sort = np.argsort(order, kind="stable")
        ends = self.line + np.cumsum(spans[sort])
        starts = np.empty_like(spans)
        starts[sort] = ends - spans[sort]
        self.row, self.line = int(order[sort[-1]]) + 1, int(ends[-1])
        bad = [
            BadRow(int(start), r.height, r.text, r.fields, r.expected)
            for r, start in zip(placed, starts[rows:], strict=True)
            if r.text.strip()
        ]
        return starts[:rows], bad


def _heights(table: pa.Table) -> np.ndarray:
    """Physical lines each row spans: one, plus the line breaks inside its (quoted) values."""
    heights = np.ones(table.num_rows, dtype=np.int64)
    for column in table.columns:
        if _may_hold_line_break(column):
            heights += pc.count_substring_regex(column, _LINE_BREAK).to_numpy(zero_copy_only=False)
    return heights


def _may_hold_line_break(column: pa.ChunkedArray) -> bool:
    """A memchr over the column's character buffers, which hold every value: False is certain, and
    it is about 30 times cheaper than a string kernel on the common file without such values."""
    for chunk in column.chunks:
        data = chunk.buffers()[2]
        if data is not None:
            raw = data.to_pybytes()
            if b"\n" in raw or b"\r" in raw:
                return True
    return False


def read_header(path: Path, encoding: str, delimiter: str) -> tuple[list[str], str]:
    """The header fields and the delimiter in use."""
    with open(path, encoding=encoding, newline="") as handle:
        first = handle.readline(MAX_HEADER_CHARS)
    first = first.removeprefix("\ufeff")
    if not first:
        raise InvalidFile(Problem(Rule.EMPTY_FILE, "the file is empty"))
    if not first.endswith(("\n", "\r")) and len(first) >= MAX_HEADER_CHARS:
        raise InvalidFile(Problem(Rule.HEADER, f"the header line is longer than {MAX_HEADER_CHARS} characters", line=1))
    if not first.strip():
        raise InvalidFile(Problem(Rule.NO_HEADER, "the first line is empty: a header row is required", line=1))
    line = first.rstrip("\r\n")
    chosen = choose_delimiter(line, delimiter)
    try:
        headers = next(csv.reader([line], delimiter=chosen, strict=True))
    except csv.Error as exc:
        raise InvalidFile(
            Problem(Rule.HEADER, f"the header line is not valid CSV ({exc}): is a quote not closed?", line=1, value=line[:200])
        ) from exc
    check_not_data(headers)
    return headers, chosen


def _utf8_pieces(path: Path, encoding: str, block_bytes: int) -> Iterator[bytes]:
    """The file's bytes in pieces of about ``block_bytes``, re-encoded to UTF-8 when it is in another encoding."""
    if codecs.lookup(encoding).name == "utf-8":
        with open(path, "rb") as raw:
            while data := raw.read(block_bytes):
                yield data
        return
    with open(path, encoding=encoding, newline="") as text:
        while chunk := text.read(block_bytes // 2):
            yield chunk.encode("utf-8")


def _utf8_blocks(path: Path, encoding: str, block_bytes: int) -> Iterator[bytes]:
    """The data lines after the header as UTF-8 blocks cut at line ends.

    We cut the blocks ourselves (rather than letting Arrow stream the file) because Arrow's streaming
    reader reads ahead without bound: a 2 GB file would end up in memory. Other encodings are decoded
    and re-encoded to UTF-8 here, so that cutting after a ``\n`` is always safe. (A quoted value
    holding a line break is invalid anyway, see ``line_break``.)"""
    rest, header_done = b"", False
    for piece in _utf8_pieces(path, encoding, block_bytes):
        data = rest + piece
        if not header_done:  # the header was parsed by read_header; its line end may be LF, CRLF or CR
            end = _first_line_end(data)
            if end is None:
                rest = data
                continue
            data, header_done = data[end:], True
        cut = _last_line_end(data)
        if cut == 0:  # no line end yet (a line longer than a block): keep reading
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]
    if rest and header_done:
        yield rest


def _first_line_end(data: bytes) -> int | None:
    """Offset just past the first line end, or None when there is none yet."""
    match = _LINE_END.search(data)
    if match is None or (match.group() == b"\r" and match.end() == len(data)):  # a CR whose LF may follow
        return None
    return match.end()


def _last_line_end(data: bytes) -> int:
    """Offset just past the last complete line end (0 if none): after the last LF, or, in a file
    with CR-only line ends, after the last CR that is not the final byte."""
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        cut = data.rfind(b"\r", 0, len(data) - 1) + 1
    return cut


def read_chunks(path: Path, width: int, encoding: str, delimiter: str, block_bytes: int) -> Iterator[Chunk]:
    """Yield the data rows after the header, block by block, as string columns."""
    names = column_names(width)
    numbers = _LineNumbers()
    rows_before = 1  # pyarrow numbers rows from 1 in each block; the file's header is row 1
    invalid_in_block = 0

    def on_invalid(row: pacsv.InvalidRow) -> str:
        nonlocal invalid_in_block
        invalid_in_block += 1
        text = (row.text or "").rstrip("\r\n")
        numbers.pending.append(_Invalid(rows_before + row.number, line_breaks(text) + 1, text, row.actual_columns, row.expected_columns))
        return "skip"

    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    for block in _utf8_blocks(path, encoding, block_bytes):
        invalid_in_block = 0
        options = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(block) + 1)
        try:
            table = pacsv.read_csv(pa.py_buffer(block), read_options=options, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise InvalidFile(
                Problem(Rule.STRUCTURE, f"the CSV cannot be parsed near line {numbers.line}: {exc}", line=numbers.line)
            ) from exc
        rows_before += table.num_rows + invalid_in_block
        heights = _heights(table) if b'"' in block else np.ones(table.num_rows, dtype=np.int64)  # no quote, no line break in a value
        lines, bad = numbers.place(heights)
        yield Chunk(table, lines, heights, tuple(bad))
    if numbers.pending:
        _, bad = numbers.place(np.empty(0, np.int64), final=True)
        empty = np.empty(0, np.int64)
        yield Chunk(pa.table({name: pa.array([], pa.string()) for name in names}), empty, empty, tuple(bad))
