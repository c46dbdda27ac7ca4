"""Read a CSV file: its first lines for ``core.layout``, then its data rows as chunks of text columns
with their physical line numbers (pyarrow's CSV parser, one block at a time).

Every field arrives as a string: deciding what is a number or a date is ``validate``'s job. Rows the
parser cannot split into the file's columns do not stop the read: they come as ``BadRow`` with their
line. Memory is bounded by the settings, not by the file: blocks of about READ_BLOCK_BYTES, cut at
row ends (a quoted value may hold line breaks), and no row longer than MAX_LINE_BYTES is ever held:
such a line is skipped to its end and reported (docs/operations.md, "Memory").
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sensor_etl.config import Rules
from sensor_etl.core.chunk import BadRow, Chunk
from sensor_etl.core.layout import MAX_HEADER_BYTES, Layout, Line, squeeze
from sensor_etl.core.problems import MAX_SHOWN_CHARS
from sensor_etl.core.rules import Rule
from sensor_etl.edges.sniff import line_breaks
from sensor_etl.errors import InvalidFile, Problem

HEAD_PIECE_BYTES = 1 << 16  # the head is read in small pieces: most files need a line or two of it
_LINE_END = re.compile(rb"\r\n|\n|\r")
_LINE_BREAK = r"\r\n|\r|\n"
_QUOTE = ord('"')
_NO_TOGGLES = np.empty(0, np.int64)
_UTF8_BOM = codecs.BOM_UTF8


def column_names(count: int) -> list[str]:
    return [f"c{i}" for i in range(count)]


# -- bytes and physical lines ---------------------------------------------------------------------
def _utf8_pieces(path: Path, encoding: str, block_bytes: int) -> Iterator[bytes]:
    """The file's bytes in pieces of about ``block_bytes``, without a UTF-8 byte-order mark, re-encoded
    to UTF-8 when the file is in another encoding (so that a line end is always the byte it seems)."""
    if codecs.lookup(encoding).name == "utf-8":
        with open(path, "rb") as raw:
            data = raw.read(block_bytes)
            if data.startswith(_UTF8_BOM):
                data = data[len(_UTF8_BOM) :]
            while data:
                yield data
                data = raw.read(block_bytes)
        return
    with open(path, encoding=encoding, newline="") as text:
        while chunk := text.read(block_bytes // 2):
            yield chunk.encode("utf-8")


class _Lines:
    """Physical lines (ended by LF, CRLF or a lone CR, as the CSV parser counts them) out of a stream of
    byte pieces, each kept up to a cap: the rest of a longer line is skipped, never buffered."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._pending = b""
        self._ended = False

    def next(self, cap: int) -> tuple[bytes, int] | None:
        """The next line without its line end: its first ``cap`` bytes and its length; None at the end of the file."""
        kept, length = b"", 0
        while True:
            match = _LINE_END.search(self._pending)
            if match is not None and (match.end() < len(self._pending) or match.group() != b"\r" or self._ended):
                body, self._pending = self._pending[: match.start()], self._pending[match.end() :]
                return kept + body[: max(cap - len(kept), 0)], length + len(body)
            if self._ended:
                if not self._pending and not length:
                    return None
                body, self._pending = self._pending, b""
                return kept + body[: max(cap - len(kept), 0)], length + len(body)
            if len(self._pending) > cap:  # a long line: keep its start, count the rest and let it go
                keep = self._pending[:-1] if self._pending.endswith(b"\r") else self._pending  # a CR may start a CRLF
                kept += keep[: max(cap - len(kept), 0)]
                length += len(keep)
                self._pending = self._pending[len(keep) :]
            piece = next(self._pieces, None)
            if piece is None:
                self._ended = True
            else:
                self._pending += piece

    def rest(self) -> Iterator[bytes]:
        """The bytes after the lines taken so far."""
        if self._pending:
            yield self._pending
        yield from self._pieces


def head(path: Path, encoding: str) -> Generator[Line, None, None]:
    """The file's lines, one at a time, each cut at MAX_HEADER_BYTES bytes, for ``layout.locate``
    (which reads only as many as it needs)."""
    lines = _Lines(_utf8_pieces(path, encoding, HEAD_PIECE_BYTES))
    number = 0
    while (found := lines.next(MAX_HEADER_BYTES)) is not None:
        kept, length = found
        number += 1
        yield Line(number, kept.decode("utf-8", errors="replace"), cut=length > MAX_HEADER_BYTES)


# -- cutting the data into blocks of whole rows ------------------------------------------------------
@dataclass(frozen=True)
class _Overlong:
    """A row longer than MAX_LINE_BYTES, left out of the blocks: its size (line ends included), the
    lines it spans and its first bytes. ``closed`` False: a quote opened on its first line is not
    closed within MAX_LINE_BYTES; only that line is left out, the next one is read as a row."""

    size: int
    lines: int
    head: bytes
    closed: bool = True


@dataclass(frozen=True)
class _Unclosed:
    """The last row of the file, in which a quote opens and is never closed; ``opener``: its offset."""

    text: bytes
    opener: int


def _toggles(data: bytes, separators: bytes) -> np.ndarray:
    """Offsets of the quotes at which the parser enters or leaves a quoted value, in ``data`` that
    starts at the start of a row.

    pyarrow opens a quoted value only with a quote at the value's start (after a delimiter or a line
    end), and an odd run of quotes closes one (pairs are escaped quotes). Counting every odd run is
    the same whenever each run that would open a value does stand at a value's start, which is
    checked for the whole block at once; otherwise (a stray quote inside a value, ``5" pipe``) the
    runs are walked one by one."""
    if b'"' not in data:
        return _NO_TOGGLES
    array = np.frombuffer(data, np.uint8)
    quotes = np.flatnonzero(array == _QUOTE)
    run_start = np.ones(len(quotes), bool)
    run_start[1:] = np.diff(quotes) > 1
    starts = np.flatnonzero(run_start)
    odd = quotes[starts[np.diff(np.append(starts, len(quotes))) % 2 == 1]]
    at_value_start = (odd == 0) | np.isin(array[np.maximum(odd - 1, 0)], np.frombuffer(separators, np.uint8))
    if at_value_start[0::2].all():
        return odd
    toggles, inside = [], False
    for offset, opens in zip(odd.tolist(), at_value_start.tolist(), strict=True):
        if inside or opens:
            toggles.append(offset)
            inside = not inside
    return np.array(toggles, np.int64)


def _last_row_end(data: bytes, toggles: np.ndarray, end: int) -> int:
    """Offset just past the last line end before ``end`` that is not inside a quoted value (0: none).
    A file with LF line ends is cut after a LF, one with CR-only line ends after a CR (never after
    the last byte: a CR there may be the first half of a CRLF)."""
    newline = b"\n" if b"\n" in data else b"\r"
    high = end if newline == b"\n" else min(end, len(data) - 1)
    while True:
        cut = data.rfind(newline, 0, high) + 1
        if cut == 0 or len(toggles) == 0:
            return cut
        passed = int(np.searchsorted(toggles, cut - 1))
        if passed % 2 == 0:
            return cut
        high = int(toggles[passed - 1])  # the line end is in a quoted value: look before the quote that opened it


def _row_spans(block: bytes, toggles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the rows of ``block``."""
    newline = ord("\n") if b"\n" in block else ord("\r")
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == newline) + 1
    if len(toggles):
        ends = ends[np.searchsorted(toggles, ends - 1) % 2 == 0]
    if not len(ends) or ends[-1] != len(block):
        ends = np.append(ends, len(block))
    return np.concatenate(([0], ends[:-1])), ends


def _line_count(row: bytes) -> int:
    return line_breaks(row.decode("latin-1")) + (not row.endswith((b"\n", b"\r")))


class _Rows:
    """Cuts the bytes of the data lines into blocks of whole rows, leaving out (as ``_Overlong``) every
    row longer than ``max_line`` bytes and (as ``_Unclosed``) a last row whose quote never closes.
    At most about ``max_line`` plus one piece is held at any time."""

    def __init__(self, max_line: int, separators: bytes) -> None:
        self.max_line = max_line
        self.separators = separators
        self.pending = b""
        self.skipping: _Overlong | None = None  # a line too long, read to its end without keeping it
        self.after_cr = False  # that line ended with a CR at the end of a piece: a LF next belongs to it

    def feed(self, piece: bytes) -> Iterator[bytes | _Overlong]:
        if self.after_cr:
            self.after_cr = False
            piece = piece.removeprefix(b"\n")
        if self.skipping is not None:
            piece = yield from self._skip(self.skipping, piece)
        self.pending += piece
        while self.pending:
            toggles = _toggles(self.pending, self.separators)
            cut = _last_row_end(self.pending, toggles, len(self.pending))
            if cut:
                block, self.pending = self.pending[:cut], self.pending[cut:]
                yield from self._blocks(block, toggles)
                return
            if len(self.pending) <= self.max_line or self.pending.endswith(b"\r"):
                return  # the row goes on in the next piece (after a CR: if a LF follows, it is a CRLF)
            yield from self._overlong()

    def end(self) -> Iterator[bytes | _Overlong | _Unclosed]:
        """What is left at the end of the file: the last rows, or the line being skipped."""
        if self.skipping is not None:
            yield self.skipping
            return
        if not self.pending:
            return
        toggles = _toggles(self.pending, self.separators)
        if len(toggles) % 2 == 0:
            yield from self._blocks(self.pending, toggles)
            return
        start = _last_row_end(self.pending, toggles, int(toggles[-1]))  # the row whose quote is left open starts here
        if start:
            yield from self._blocks(self.pending[:start], toggles)
        yield _Unclosed(self.pending[start:], int(toggles[-1]) - start)

    def _skip(self, skipping: _Overlong, piece: bytes) -> Generator[_Overlong, None, bytes]:
        """Go on skipping the long line through ``piece``; returns (via ``yield from``) the bytes after its end."""
        match = _LINE_END.search(piece)
        if match is None:
            self.skipping = _Overlong(skipping.size + len(piece), 1, skipping.head)
            return b""
        yield _Overlong(skipping.size + match.end(), 1, skipping.head)
        self.skipping = None
        self.after_cr = match.group() == b"\r" and match.end() == len(piece)
        return piece[match.end() :]

    def _overlong(self) -> Iterator[_Overlong]:
        """``pending`` is longer than ``max_line`` and holds no row end: leave out its first row."""
        match = _LINE_END.search(self.pending)
        if match is None:  # one physical line, still going on: skip it to its end
            self.skipping = _Overlong(len(self.pending), 1, self.pending[:MAX_SHOWN_CHARS])
            self.pending = b""
            return
        # its line ends are all inside a quoted value: the quote opened on its first line is left open
        yield _Overlong(len(self.pending), 1, self.pending[: min(match.start(), MAX_SHOWN_CHARS)], closed=False)
        self.pending = self.pending[match.end() :]

    def _blocks(self, block: bytes, toggles: np.ndarray) -> Iterator[bytes | _Overlong]:
        """``block`` (whole rows), without the rows longer than ``max_line``, which come apart."""
        if len(block) <= self.max_line:
            yield block
            return
        starts, ends = _row_spans(block, toggles)
        done = 0
        for index in np.flatnonzero(ends - starts > self.max_line).tolist():
            start, end = int(starts[index]), int(ends[index])
            if start > done:
                yield block[done:start]
            row = block[start:end]
            yield _Overlong(len(row), _line_count(row), row[:MAX_SHOWN_CHARS])
            done = end
        if done < len(block):
            yield block[done:]


def _rows(pieces: Iterable[bytes], max_line: int, separators: bytes) -> Iterator[bytes | _Overlong | _Unclosed]:
    rows = _Rows(max_line, separators)
    for piece in pieces:
        yield from rows.feed(piece)
    yield from rows.end()


# -- parsing blocks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Invalid:
    number: int  # pyarrow's row number in the block, from 1, counting valid and invalid rows
    text: str
    fields: int
    expected: int

    @property
    def height(self) -> int:
        return line_breaks(self.text) + 1


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


def _place(first: int, heights: np.ndarray, invalid: list[_Invalid]) -> tuple[np.ndarray, list[int], int]:
    """First lines of a block's valid rows and of its invalid rows, and the line after the block.

    pyarrow numbers the block's rows, valid or not, and gives the valid ones in order: each row, in
    that order, takes as many lines as it spans."""
    spans = heights
    valid = np.ones(len(heights) + len(invalid), bool)
    if invalid:
        positions = np.array([row.number - 1 for row in invalid], np.int64)
        valid[positions] = False
        spans = np.empty(len(valid), np.int64)
        spans[valid] = heights
        spans[positions] = [row.height for row in invalid]
    ends = first + np.cumsum(spans)
    starts = ends - spans
    return starts[valid], starts[~valid].tolist(), int(ends[-1]) if len(ends) else first


class _Parser:
    """Turns the blocks and left-out rows of one file into ``Chunk``s with physical line numbers."""

    def __init__(self, layout: Layout, max_line: int) -> None:
        self.layout = layout
        self.max_line = max_line
        self.names = column_names(len(layout.plan.headers))
        self.line = layout.data_line  # where the next block starts
        self._invalid: list[_Invalid] = []
        self.parse = pacsv.ParseOptions(delimiter=layout.delimiter, invalid_row_handler=self._on_invalid, ignore_empty_lines=False)
        self.convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(self.names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
        )

    def _on_invalid(self, row: pacsv.InvalidRow) -> str:
        self._invalid.append(_Invalid(row.number, (row.text or "").rstrip("\r\n"), row.actual_columns, row.expected_columns))
        return "skip"

    def block(self, block: bytes) -> Chunk:
        if self.layout.whitespace:
            block = squeeze(block)
        self._invalid = []
        options = pacsv.ReadOptions(column_names=self.names, use_threads=False, block_size=len(block) + 1)
        try:
            table = pacsv.read_csv(pa.py_buffer(block), read_options=options, parse_options=self.parse, convert_options=self.convert)
        except pa.ArrowInvalid as exc:
            raise InvalidFile(Problem(Rule.STRUCTURE, f"the CSV cannot be parsed near line {self.line}: {exc}", line=self.line)) from exc
        heights = _heights(table) if b'"' in block else np.ones(table.num_rows, dtype=np.int64)  # no quote, no line break in a value
        self._invalid.sort(key=lambda row: row.number)
        lines, invalid_lines, self.line = _place(self.line, heights, self._invalid)
        bad = tuple(self._column_count(row, line) for row, line in zip(self._invalid, invalid_lines, strict=True) if row.text.strip())
        return Chunk(table, lines, heights, bad)

    def _column_count(self, row: _Invalid, line: int) -> BadRow:
        message = f"{row.fields} fields where {self.layout.names_from} has {row.expected}"
        if row.height > 1:
            message += f" (the row runs over lines {line}-{line + row.height - 1}: is a quote not closed?)"
        return BadRow(line, row.height, Rule.COLUMN_COUNT, message, row.text)

    def left_out(self, row: _Overlong | _Unclosed) -> Chunk:
        """A chunk of no rows but the one left out."""
        bad = self._overlong(row) if isinstance(row, _Overlong) else self._unclosed(row)
        self.line += bad.lines
        empty = np.empty(0, np.int64)
        return Chunk(pa.table({name: pa.array([], pa.string()) for name in self.names}), empty, empty, (bad,))

    def _overlong(self, row: _Overlong) -> BadRow:
        line, head = self.line, row.head.decode("utf-8", errors="ignore")
        if not row.closed:
            message = f"a quote opened on this line is not closed within MAX_LINE_BYTES ({self.max_line:,} bytes): the line is left out"
        elif row.lines > 1:
            message = (
                f"a row of {row.size:,} bytes over lines {line}-{line + row.lines - 1}: longer than MAX_LINE_BYTES ({self.max_line:,})"
            )
        else:
            message = f"a line of {row.size:,} bytes: longer than MAX_LINE_BYTES ({self.max_line:,}); skipped unread"
        return BadRow(line, row.lines, Rule.LINE_TOO_LONG, message, head)

    def _unclosed(self, row: _Unclosed) -> BadRow:
        """The quote's column: the fields of the row up to the quote, the quote closed (the last is its value)."""
        up_to_quote = row.text[: row.opener + 1] + b'"'
        if self.layout.whitespace:
            up_to_quote = squeeze(up_to_quote)
        reader = csv.reader(io.StringIO(up_to_quote.decode("utf-8", errors="replace"), newline=""), delimiter=self.layout.delimiter)
        index = len(next(reader, [""])) - 1
        headers = self.layout.plan.headers
        column = headers[index] if index < len(headers) else ""
        lines = _line_count(row.text)
        first_line = _LINE_END.split(row.text, 1)[0].decode("utf-8", errors="replace")
        message = (
            f"a quote opened here is never closed: the value runs over lines {self.line}-{self.line + lines - 1}, to the end of the file"
        )
        return BadRow(self.line, lines, Rule.LINE_BREAK, message, first_line, column)


def read_chunks(path: Path, layout: Layout, rules: Rules, block_bytes: int) -> Iterator[Chunk]:
    """Yield the data rows (from ``layout.data_line``), block by block, as string columns."""
    lines = _Lines(_utf8_pieces(path, rules.encoding, block_bytes))
    for _ in range(layout.data_line - 1):
        if lines.next(0) is None:
            return
    separators = (b" \t" if layout.whitespace else layout.delimiter.encode()) + b"\r\n"
    parser = _Parser(layout, rules.max_line_bytes)
    for item in _rows(lines.rest(), rules.max_line_bytes, separators):
        yield parser.block(item) if isinstance(item, bytes) else parser.left_out(item)
