"""The shape in which rows leave a reader: text columns plus where each row stood in its file.

It lives in the core so that validation depends on this shape, not on the code that reads files."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Chunk:
    """Up to one read block of rows: text columns c0..cN-1, the first physical line of each row, and
    how many lines each row spans (more than one when a quoted value holds a line break)."""

    table: pa.Table
    lines: np.ndarray
    heights: np.ndarray
    bad_rows: tuple[BadRow, ...]
