"""Stream a CSV file as chunks of text columns with their physical line numbers (pyarrow's reader).

Every field arrives as a string: deciding what is a number or a date is ``validate``'s job. Rows with
the wrong number of fields do not stop the read; they are returned as ``BadRow`` with their line.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import InvalidFile, Problem
from .sniff import check_not_data, choose_delimiter

MAX_HEADER_CHARS = 1 << 20


@dataclass(frozen=True)
class BadRow:
    """A line whose field count differs from the header's."""

    line: int
    text: str
    fields: int
    expected: int


@dataclass(frozen=True)
class Chunk:
    """Up to one read block of rows: text columns c0..cN-1 and the line each row came from."""

    table: pa.Table
    lines: np.ndarray
    bad_rows: tuple[BadRow, ...]


def column_names(count: int) -> list[str]:
    return [f"c{i}" for i in range(count)]


class _LineNumbers:
    """Assigns physical line numbers to the good rows, skipping lines the parser reported as bad."""

    def __init__(self) -> None:
        self.next = 2  # line 1 is the header
        self.skipped: list[int] = []

    def skip(self, first: int, count: int) -> None:
        self.skipped.extend(range(first, first + count))

    def take(self, rows: int) -> np.ndarray:
        start, end = self.next, self.next + rows
        while True:
            lo, hi = bisect.bisect_left(self.skipped, start), bisect.bisect_left(self.skipped, end)
            if end - start - (hi - lo) >= rows:
                break
            end = start + rows + (hi - lo)
        lines = np.arange(start, end, dtype=np.int64)
        if hi > lo:
            lines = np.setdiff1d(lines, np.asarray(self.skipped[lo:hi], dtype=np.int64), assume_unique=True)
        self.next = end
        return lines


def read_header(path: Path, encoding: str, delimiter: str) -> tuple[list[str], str]:
    """The header fields and the delimiter in use."""
    with open(path, encoding=encoding, newline="") as handle:
        first = handle.readline(MAX_HEADER_CHARS)
    first = first.removeprefix("\ufeff")
    if not first:
        raise InvalidFile(Problem("empty_file", "the file is empty"))
    if not first.endswith(("\n", "\r")) and len(first) >= MAX_HEADER_CHARS:
        raise InvalidFile(Problem("header", f"the header line is longer than {MAX_HEADER_CHARS} characters", line=1))
    if not first.strip():
        raise InvalidFile(Problem("no_header", "the first line is empty: a header row is required", line=1))
    chosen = choose_delimiter(first, delimiter)
    headers = next(csv.reader(io.StringIO(first.rstrip("\r\n")), delimiter=chosen))
    check_not_data(headers)
    return headers, chosen


def read_chunks(path: Path, width: int, encoding: str, delimiter: str, block_bytes: int) -> Iterator[Chunk]:
    """Yield the data rows after the header, block by block, as string columns."""
    names = column_names(width)
    numbers = _LineNumbers()
    bad: list[BadRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        text = row.text or ""
        spans = text.rstrip("\r\n").count("\n") + 1
        numbers.skip(row.number, spans)
        if text.strip():
            bad.append(BadRow(row.number, text.rstrip("\r\n"), row.actual_columns, row.expected_columns))
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False, block_size=block_bytes, encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    try:
        for batch in reader:
            reported, bad[:] = tuple(bad), []
            yield Chunk(pa.Table.from_batches([batch]), numbers.take(batch.num_rows), reported)
        if bad:
            yield Chunk(pa.table({name: pa.array([], pa.string()) for name in names}), np.empty(0, np.int64), tuple(bad))
    except pa.ArrowInvalid as exc:
        raise InvalidFile(Problem("structure", f"the CSV cannot be parsed: {exc}")) from exc
