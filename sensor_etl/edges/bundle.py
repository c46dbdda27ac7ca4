"""Many small files parsed by one Arrow call: the data lines of each, as ``reader.read_chunks`` gives them.

Arrow's CSV reader costs about 0.3 ms per call on a 100-row file, most of it fixed; the bodies of a
batch's small files, joined, cost about as much as one of them. Only files whose rows cannot run into
each other are joined: UTF-8, no quote character (so each physical line is one row and no value spans
lines), not whitespace-aligned, ending with a line end, and read by ``read_chunks`` in one block with
no line longer than MAX_LINE_BYTES. Every other file is read alone, and so is a bundle Arrow refuses.
The rows are split back per file with their own line numbers (from the layout's first data line), so
each file gets exactly the chunk ``read_chunks`` would give it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from sensor_etl.config import Rules
from sensor_etl.core.chunk import BadRow, Chunk
from sensor_etl.core.layout import Layout
from sensor_etl.core.rules import Rule
from sensor_etl.edges.reader import column_names

_LINE_END = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True)
class Body:
    """A file's data lines, waiting to be parsed with others: the bytes, the line they start on, and how
    a column count message names where the columns come from (``Layout.names_from``)."""

    data: bytes
    first_line: int
    names_from: str

    @property
    def lines(self) -> int:
        """Its rows: one per line end, counted as ``sniff.line_breaks`` counts them."""
        return self.data.count(b"\n") + self.data.count(b"\r") - self.data.count(b"\r\n")


def body(content: bytes, layout: Layout, rules: Rules, block_bytes: int) -> Body | None:
    """The data lines of a file (from ``layout.data_line``) when it may be read with others, else None."""
    if (
        codecs.lookup(rules.encoding).name != "utf-8"
        or layout.whitespace
        or len(content) > min(block_bytes, rules.max_line_bytes)
        or b'"' in content
    ):
        return None
    data, start = content.removeprefix(codecs.BOM_UTF8), 0
    for _ in range(layout.data_line - 1):  # the preamble, header and units lines
        found = _LINE_END.search(data, start)
        if found is None:
            return Body(b"", layout.data_line, layout.names_from)
        start = found.end()
    data = data[start:]
    return Body(data, layout.data_line, layout.names_from) if not data or data.endswith(b"\n") else None


def read_bundle(bodies: Sequence[Body], width: int, delimiter: str) -> list[list[Chunk]] | None:
    """Each body's chunks (none for an empty body, else one), from one parse; None when Arrow refuses
    the bundle or counts its rows differently (then each file is read alone and meets its own error)."""
    names = column_names(width)
    invalid: list[tuple[int, str, int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number - 1, (row.text or "").rstrip("\r\n"), row.actual_columns, row.expected_columns))
        return "skip"

    data = b"".join(part.data for part in bodies)
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    options = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1)
    try:
        table = pacsv.read_csv(pa.py_buffer(data), read_options=options, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid:
        return None
    lines = np.array([part.lines for part in bodies], dtype=np.int64)
    if table.num_rows + len(invalid) != lines.sum():
        return None
    ends = np.cumsum(lines)
    starts = ends - lines
    first_lines = np.array([part.first_line for part in bodies], dtype=np.int64)
    rows = np.delete(np.arange(ends[-1] if len(ends) else 0, dtype=np.int64), [number for number, *_ in invalid])
    owner = np.searchsorted(ends, rows, side="right")
    numbers = rows - starts[owner] + first_lines[owner]
    counts = np.bincount(owner, minlength=len(bodies))
    offsets = np.cumsum(counts) - counts
    bad: list[list[BadRow]] = [[] for _ in bodies]
    for number, text, fields, expected in invalid:
        index = int(np.searchsorted(ends, number, side="right"))
        if text.strip():  # an empty line is no row at all, as in read_chunks
            message = f"{fields} fields where {bodies[index].names_from} has {expected}"
            bad[index].append(BadRow(int(number - starts[index] + first_lines[index]), 1, Rule.COLUMN_COUNT, message, text))
    chunks: list[list[Chunk]] = []
    for index, count in enumerate(lines.tolist()):
        if not count:
            chunks.append([])
            continue
        start, size = int(offsets[index]), int(counts[index])
        piece = table.slice(start, size)
        chunks.append([Chunk(piece, numbers[start : start + size], np.ones(size, dtype=np.int64), tuple(bad[index]))])
    return chunks
