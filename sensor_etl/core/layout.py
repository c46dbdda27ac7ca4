"""Where a file's header, units row and data are, and how its lines split into fields.

``locate`` reads the first lines of a file (handed over by the reader, one at a time) under the
settings HEADER_ROW, UNITS_ROW, DATA_ROW, COLUMN_NAMES and CSV_DELIMITER, and returns the
``Layout`` the reader follows, or raises InvalidFile saying which line is wrong and why. With
HEADER_ROW=auto the header is the first of the first 20 lines that names a timestamp and a measure
column; a Campbell Scientific TOA5 file (first field ``TOA5``) has its header on line 2, units on
line 3 and data from line 5. Pure: no I/O.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from sensor_etl.config import Rules
from sensor_etl.core.columns import ColumnPlan, plan_columns, recognise, with_units_row
from sensor_etl.core.rules import Rule
from sensor_etl.errors import InvalidFile, Problem

AUTO_HEADER_LINES = 20  # HEADER_ROW=auto looks for the header in this many lines
MAX_HEADER_BYTES = 1 << 20  # a longer line is not a header (the reader hands over only its start)
MAX_PREAMBLE_CHARS = 1 << 16  # the preamble kept in the ledger is cut here
DELIMITERS = (",", ";", "\t", "|")
WHITESPACE = "whitespace"
_DATA_LIKE = re.compile(r"^[\s\"']*[-+]?(\d+([.,:/ T-]\d+)*([eE][-+]?\d+)?)[\s\"']*$")
_TOA5 = re.compile(r'^\s*"?TOA5"?\s*(,|$)')  # Campbell Scientific's table format: environment line, header, units, processing, data
_ALIGNED = re.compile(r"\S[ \t]{2,}\S|\S\t\S")
_EDGE_SPACE = re.compile(rb"[ \t]*([\r\n]+)[ \t]*")
_INNER_SPACE = re.compile(rb"[ \t]+")
_QUOTED_OR_SPACE = re.compile(rb'("(?:[^"]|"")*"?)|([ \t]+)')


@dataclass(frozen=True)
class Line:
    """One physical line of a file as the reader hands it over: its number, its text without the line
    end (only the first MAX_HEADER_BYTES of a longer one) and whether it was cut there."""

    number: int
    text: str
    cut: bool = False


@dataclass(frozen=True)
class Layout:
    """How the reader reads a file: the columns (``plan``), the delimiter, and the first data line."""

    plan: ColumnPlan
    delimiter: str  # one character; a space for CSV_DELIMITER=whitespace (see ``squeeze``)
    whitespace: bool
    data_line: int
    header_line: int | None = None  # None: the names come from COLUMN_NAMES alone
    units_line: int | None = None
    preamble: str | None = None  # the lines before the header (before the data without one), cut at MAX_PREAMBLE_CHARS
    names_from: str = "the header"  # or "COLUMN_NAMES": how messages name where the column count comes from

    def describe(self) -> str:
        """Where the header, units and data were found, for a file not laid out as header then data."""
        if self.header_line == 1 and self.units_line is None and self.data_line == 2:
            return ""
        parts = [f"header on line {self.header_line}" if self.header_line else "no header (COLUMN_NAMES)"]
        if self.units_line:
            parts.append(f"units on line {self.units_line}")
        return ", ".join([*parts, f"data from line {self.data_line}"])


# -- splitting lines ---------------------------------------------------------------------------
def squeeze(data: bytes) -> bytes:
    """Whitespace-aligned text as space-delimited CSV: spaces and tabs at the start and end of each
    line dropped, every other run of them one space (quoted text kept as it is)."""
    if b'"' not in data:
        return _INNER_SPACE.sub(b" ", _EDGE_SPACE.sub(rb"\1", data).strip(b" \t"))
    data = _EDGE_SPACE.sub(rb"\1", data).strip(b" \t")  # quoted line ends are rare in such tables: trimming around them is harmless
    return _QUOTED_OR_SPACE.sub(lambda match: match.group(1) or b" ", data)


def choose_delimiter(line: str, configured: str) -> str:
    """The configured delimiter, or for ``auto`` the one of , ; tab | that splits the line into the
    most fields (outside quotes: ``timestamp;T;"a,b"`` is semicolon-separated); comma on a tie; a
    space for ``whitespace``."""
    if configured == WHITESPACE:
        return " "
    if configured != "auto":
        return configured
    return max(DELIMITERS, key=lambda candidate: _field_count(line, candidate))


def _field_count(line: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delimiter), []))
    except csv.Error:  # a value longer than the csv module's field limit: a line that is no header anyway
        return 0


def split(line: Line, delimiter: str, whitespace: bool) -> list[str]:
    """The fields of one line (a header or units row), or InvalidFile when its quotes do not close."""
    text = squeeze(line.text.encode()).decode() if whitespace else line.text
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        raise InvalidFile(
            Problem(Rule.HEADER, f"line {line.number} is not valid CSV ({exc}): is a quote not closed?", line=line.number, value=text[:200])
        ) from exc


def looks_like_data(fields: list[str]) -> bool:
    """Mostly numbers and dates: a data row, not a header."""
    return bool(fields) and sum(bool(_DATA_LIKE.match(f)) for f in fields) * 2 > len(fields)


# -- one candidate header ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Header:
    """A line that is a header: the delimiter it was split at, and its plan."""

    line: Line
    delimiter: str
    plan: ColumnPlan


@dataclass(frozen=True)
class _NotHeader:
    """A line tried as the header, the problem that rules it out, and how header-like it is (of several
    lines, the most header-like one's problem is reported): 0 empty or data, 1 names of no key
    column, 2 a header with something wrong in it (it names a key column, or it is an aligned table
    read with the wrong delimiter)."""

    line: Line
    problem: Problem
    score: int = 0


def _try_header(line: Line, rules: Rules, names: tuple[str, ...] = ()) -> _Header | _NotHeader:
    """``line`` as the header (its names replaced by ``names`` when given)."""
    number = line.number
    if line.cut:
        return _NotHeader(
            line, Problem(Rule.HEADER, f"line {number} is longer than {MAX_HEADER_BYTES:,} bytes: not a header", line=number), 1
        )
    if not line.text.strip():
        return _NotHeader(line, Problem(Rule.NO_HEADER, f"line {number} is empty", line=number))
    delimiter = choose_delimiter(line.text, rules.delimiter)
    try:
        fields = split(line, delimiter, rules.delimiter == WHITESPACE)
    except InvalidFile as exc:
        return _NotHeader(line, exc.problem, 1)
    if names and len(names) != len(fields):
        message = f"the header (line {number}) has {len(fields)} names where COLUMN_NAMES gives {len(names)}"
        return _NotHeader(line, Problem(Rule.HEADER, message, line=number), 2)
    if looks_like_data(fields) and not names:
        return _NotHeader(line, Problem(Rule.NO_HEADER, f"line {number} looks like data, not a header", line=number, value=line.text[:200]))
    try:
        return _Header(line, delimiter, plan_columns(names or fields, rules.column_map, rules.default_units))
    except InvalidFile as exc:  # plan_columns judges names, not where they stand: the line is ours to say
        problem = replace(exc.problem, line=number)
    if len(fields) == 1 and rules.delimiter == "auto" and _ALIGNED.search(line.text.strip()):
        message = "one column found: set CSV_DELIMITER=whitespace for a table aligned with spaces, or CSV_DELIMITER to the file's delimiter"
        return _NotHeader(line, replace(problem, message=message, value=line.text[:200]), 2)
    return _NotHeader(line, problem, 2 if any(recognise(name)[0] for name in names or fields) else 1)


# -- the file's head -------------------------------------------------------------------------------
class _Head:
    """The first lines of a file, read on demand and in order. Kept: the first AUTO_HEADER_LINES lines
    (auto and hints look at them again), the last line read, and the text of the lines read, up to
    MAX_PREAMBLE_CHARS (the preamble): a long head costs no more memory than that."""

    def __init__(self, lines: Iterable[Line]) -> None:
        self._lines: Iterator[Line] = iter(lines)
        self._first: list[Line] = []
        self._last: Line | None = None
        self._texts: list[str] = []
        self._chars = 0
        self.count = 0  # lines read so far: all of them once get() returned None

    def get(self, number: int) -> Line | None:
        """Line ``number`` (1-based), or None past the end of the file."""
        while self.count < number:
            line = next(self._lines, None)
            if line is None:
                return None
            self.count, self._last = line.number, line
            if len(self._first) < AUTO_HEADER_LINES:
                self._first.append(line)
            if self._chars < MAX_PREAMBLE_CHARS:
                self._texts.append(line.text[: MAX_PREAMBLE_CHARS - self._chars])
                self._chars += len(self._texts[-1]) + 1
        if number <= len(self._first):
            return self._first[number - 1]
        return self._last if self._last is not None and self._last.number == number else None

    def preamble(self, before: int) -> str | None:
        """Lines 1 .. ``before``-1 as one text (lines joined by LF), None when there are none."""
        return "\n".join(self._texts[: before - 1])[:MAX_PREAMBLE_CHARS] if before > 1 else None

    def candidates(self, rules: Rules) -> Iterator[_Header | _NotHeader]:
        """The first AUTO_HEADER_LINES lines, each tried as the header."""
        for number in range(1, AUTO_HEADER_LINES + 1):
            line = self.get(number)
            if line is None:
                return
            yield _try_header(line, rules)


def locate(lines: Iterable[Line], rules: Rules) -> Layout:
    """The layout of the file whose first lines ``lines`` yields (lazily: only what is needed is read)."""
    head = _Head(lines)
    if rules.headerless:
        return _headerless(head, rules)
    first = head.get(1)
    if first is None:
        raise InvalidFile(Problem(Rule.EMPTY_FILE, "the file is empty"))
    toa5 = rules.header_row == "auto" and bool(_TOA5.match(first.text))
    if isinstance(rules.header_row, int):
        header = _explicit(head, rules.header_row, rules, f"HEADER_ROW={rules.header_row}")
    else:
        header = _explicit(head, 2, rules, "the header of a TOA5 file (line 2)") if toa5 else _found(head, rules)
    plan, number = header.plan, header.line.number
    whitespace = rules.delimiter == WHITESPACE

    units = rules.units_row or (3 if toa5 else None)
    if units is not None:
        if units <= number:
            raise InvalidFile(Problem(Rule.UNIT, f"UNITS_ROW={units} is not below the header (line {number})", line=units))
        row = head.get(units)
        if row is None:
            raise InvalidFile(Problem(Rule.UNIT, f"the units row (line {units}) is beyond the end of the file ({head.count} lines)"))
        plan = with_units_row(plan, split(row, header.delimiter, whitespace), units)

    data = rules.data_row or (5 if toa5 else (units or number) + 1)
    if data <= (units or number):
        raise InvalidFile(Problem(Rule.HEADER, f"DATA_ROW={data} is not below the header and units (line {units or number})", line=data))
    return Layout(
        plan=plan,
        delimiter=header.delimiter,
        whitespace=whitespace,
        data_line=data,
        header_line=number,
        units_line=units,
        preamble=head.preamble(number),
        names_from="COLUMN_NAMES" if rules.column_names else "the header",
    )


def _found(head: _Head, rules: Rules) -> _Header:
    """HEADER_ROW=auto: the first of the first lines that is a header; else the problem of the most
    header-like of them (a header with a wrong name says what is wrong with it, not that line 1 is data)."""
    tried: list[_NotHeader] = []
    for candidate in head.candidates(rules):
        if isinstance(candidate, _Header):
            return candidate
        tried.append(candidate)
    best = max(tried, key=lambda c: c.score)
    if best.score == 2:  # most likely the header, with something wrong in it
        raise InvalidFile(best.problem)
    if best.score == 1:
        message = (
            f"no header row in the first {len(tried)} line(s) (none names a timestamp and a measure column; further down: set HEADER_ROW)"
        )
        raise InvalidFile(replace(best.problem, message=f"{message}; line {best.line.number}: {best.problem.message}"))
    data = next((c for c in tried if c.line.text.strip()), None)
    if data is None:
        raise InvalidFile(Problem(Rule.NO_HEADER, f"no header row: the first {len(tried)} line(s) are empty", line=1))
    message = f"no header row in the first {len(tried)} line(s): line {data.line.number} looks like data; add a header row, or name the columns with COLUMN_NAMES"
    raise InvalidFile(Problem(Rule.NO_HEADER, message, line=data.line.number, value=data.line.text[:200]))


def _explicit(head: _Head, number: int, rules: Rules, what: str) -> _Header:
    """The header on line ``number`` (``what``: HEADER_ROW=N, or a TOA5 file's line 2), its names
    replaced by COLUMN_NAMES when set."""
    line = head.get(number)
    if line is None:
        raise InvalidFile(Problem(Rule.NO_HEADER, f"{what} is beyond the end of the file ({head.count} lines)"))
    candidate = _try_header(line, rules, rules.column_names)
    if isinstance(candidate, _Header):
        return candidate
    problem = candidate.problem
    found = next((c.line.number for c in head.candidates(rules) if isinstance(c, _Header)), None)
    if found is not None:
        hint = f"set HEADER_ROW={found}" + (" or auto" if isinstance(rules.header_row, int) else "")
        problem = replace(problem, message=f"{problem.message}; line {found} looks like the header: {hint}")
    raise InvalidFile(problem)


def _headerless(head: _Head, rules: Rules) -> Layout:
    """No header: COLUMN_NAMES names the columns, data from DATA_ROW (line 1 by default)."""
    data = rules.data_row or 1
    first = head.get(data)
    delimiter = choose_delimiter(first.text if first is not None else "", rules.delimiter)
    return Layout(
        plan=plan_columns(rules.column_names, rules.column_map, rules.default_units),
        delimiter=delimiter,
        whitespace=rules.delimiter == WHITESPACE,
        data_line=data,
        preamble=head.preamble(data),
        names_from="COLUMN_NAMES",
    )
