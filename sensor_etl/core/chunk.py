"""The shape in which rows leave a reader: text columns plus where each row stood in its file.

It lives in the core so that validation depends on this shape, not on the code that reads files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from sensor_etl.core.rules import Rule


@dataclass(frozen=True)
class BadRow:
    """A row the reader could not split into the file's columns (``column_count``: a field more or less;
    ``line_break``: a quote never closed; ``line_too_long``: longer than MAX_LINE_BYTES, never read
    whole), said the way a report shows it. ``lines`` > 1 when the row runs over several lines."""

    line: int
    lines: int
    rule: Rule
    message: str
    value: str
    column: str = ""
    part: int = 0  # the chunk it came from, in a chunk combined from several (``combine``)


@dataclass(frozen=True)
class Chunk:
    """Up to one read block of rows: text columns c0..cN-1, the first physical line of each row, and
    how many lines each row spans (more than one when a quoted value holds a line break)."""

    table: pa.Table
    lines: np.ndarray
    heights: np.ndarray
    bad_rows: tuple[BadRow, ...]
    parts: np.ndarray | None = None  # per row, the chunk it came from, in a chunk combined from several (``combine``)


def combine(chunks: Sequence[Chunk]) -> Chunk:
    """Several chunks (of many small files) as one, each row tagged with the index of its chunk in
    ``parts``: the row rules then run once over all of them, with the same per-chunk results
    (line numbers stay each file's own, and a duplicate key is one within its own chunk)."""
    tables = [chunk.table for chunk in chunks]
    sizes = [table.num_rows for table in tables]
    return Chunk(
        pa.concat_tables(tables),
        np.concatenate([chunk.lines for chunk in chunks]),
        np.concatenate([chunk.heights for chunk in chunks]),
        tuple(replace(bad, part=index) for index, chunk in enumerate(chunks) for bad in chunk.bad_rows),
        np.repeat(np.arange(len(chunks), dtype=np.int64), sizes),
    )
