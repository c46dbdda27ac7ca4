"""The shape in which rows leave a reader: text columns plus where each row stood in its file.

It lives in the core so that validation depends on this shape, not on the code that reads files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class BadRow:
    """A row whose field count differs from the header's; ``lines`` > 1 when a quote ran over line ends."""

    line: int
    lines: int
    text: str
    fields: int
    expected: int


@dataclass(frozen=True)
class Chunk:
    """Up to one read block of rows: text columns c0..cN-1, the first physical line of each row, and
    how many lines each row spans (more than one when a quoted value holds a line break)."""

    table: pa.Table
    lines: np.ndarray
    heights: np.ndarray
    bad_rows: tuple[BadRow, ...]
