"""Many small files parsed by one Arrow call: the data lines of each, as ``reader.read_chunks`` gives them.

Arrow's CSV reader costs about 0.3 ms per call on a 100-row file, most of it fixed; the bodies of a
batch's small files, joined, cost about as much as one of them. Only files whose rows cannot run into
each other are joined: UTF-8, no quote character (so each physical line is one row and no value spans
lines), ending with a line end, and read by ``read_chunks`` in one block. Every other file is read
alone, and so is a bundle Arrow refuses. The rows are split back per file with their own line numbers
(the header is line 1), so each file gets exactly the chunk ``read_chunks`` would give it.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from sensor_etl.core.chunk import BadRow, Chunk
from sensor_etl.edges.reader import column_names


def body(content: bytes, encoding: str, block_bytes: int) -> bytes | None:
    """The data lines of a file (what follows its header line) when it may be read with others, else None."""
    if codecs.lookup(encoding).name != "utf-8" or len(content) > block_bytes or b'"' in content:
        return None
    newline, carriage = content.find(b"\n"), content.find(b"\r")
    ends = [end for end in (newline, carriage) if end >= 0]
    if not ends:
        return b""
    end = min(ends)
    start = end + 2 if content[end : end + 2] == b"\r\n" else end + 1
    data = content[start:]
    return data if not data or data.endswith(b"\n") else None


def read_bundle(bodies: Sequence[bytes], width: int, delimiter: str) -> list[list[Chunk]] | None:
    """Each body's chunks (none for an empty body, else one), from one parse; None when Arrow refuses
    the bundle or counts its rows differently (then each file is read alone and meets its own error)."""
    names = column_names(width)
    invalid: list[tuple[int, str, int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number - 1, (row.text or "").rstrip("\r\n"), row.actual_columns, row.expected_columns))
        return "skip"

    data = b"".join(bodies)
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    options = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1)
    try:
        table = pacsv.read_csv(pa.py_buffer(data), read_options=options, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid:
        return None
    lines = np.array(
        [part.count(b"\n") + part.count(b"\r") - part.count(b"\r\n") for part in bodies], dtype=np.int64
    )  # as line_breaks counts
    if table.num_rows + len(invalid) != lines.sum():
        return None
    ends = np.cumsum(lines)
    starts = ends - lines
    rows = np.delete(np.arange(ends[-1] if len(ends) else 0, dtype=np.int64), [number for number, *_ in invalid])
    owner = np.searchsorted(ends, rows, side="right")
    numbers = rows - starts[owner] + 2  # the header is line 1
    counts = np.bincount(owner, minlength=len(bodies))
    offsets = np.cumsum(counts) - counts
    bad: list[list[BadRow]] = [[] for _ in bodies]
    for number, text, fields, expected in invalid:
        index = int(np.searchsorted(ends, number, side="right"))
        if text.strip():  # an empty line is no row at all, as in read_chunks
            bad[index].append(BadRow(int(number - starts[index] + 2), 1, text, fields, expected))
    chunks: list[list[Chunk]] = []
    for index, count in enumerate(lines):
        if not count:
            chunks.append([])
            continue
        take = slice(int(offsets[index]), int(offsets[index] + counts[index]))
        piece = table.slice(take.start, take.stop - take.start)
        chunks.append([Chunk(piece, numbers[take], np.ones(piece.num_rows, dtype=np.int64), tuple(bad[index]))])
    return chunks
