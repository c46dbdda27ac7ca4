"""validate → transform → aggregate over the chunks of one file, loading through an optional sink.

The same run serves the daemon (sink = the file's load transaction) and the ``validate`` command (no
sink). Only reading the file is I/O here; each step it calls is a pure function.

Memory stays bounded by the settings, not by the file: one chunk (``READ_BLOCK_BYTES``) is in flight,
statistics are held up to the same size and then flushed to the sink (``aggregate.Statistics``), and
invalid rows are kept only while a rejects file may still be written. Without a sink nothing is
aggregated: ``validate`` only counts the distinct sensor ids, which it holds (about 20 bytes each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from sensor_etl.config import RejectLimit, Rules, Settings
from sensor_etl.core import aggregate
from sensor_etl.core.chunk import Chunk
from sensor_etl.core.columns import ColumnPlan
from sensor_etl.core.dates import detect_date_format, header_date_format, time_column, time_roles, timestamp_text
from sensor_etl.core.layout import Layout, locate
from sensor_etl.core.rules import Rule
from sensor_etl.core.transform import transform
from sensor_etl.core.validate import check_chunk
from sensor_etl.core.values import missing_tokens
from sensor_etl.edges import reader, reports
from sensor_etl.errors import Interrupted, InvalidFile, Problem

MAX_DETAILS = 100


class Loader(Protocol):
    """Where a run hands what it produced, chunk by chunk: the daemon's load transaction."""

    def rows(self, readings: pa.Table) -> None:
        """Take one chunk of transformed valid rows."""
        ...

    def statistics(self, flushed: aggregate.Flushed) -> None:
        """Take statistics flushed before the end of the file (``aggregate.Statistics``)."""
        ...


@dataclass
class Outcome:
    """What one pass over a file found and (with a sink) loaded."""

    layout: Layout | None = None
    date_format: str = ""
    rows: int = 0
    loaded: int = 0
    invalid_rows: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)  # invalid rows (first line, lines spanned), while a rejects file may follow
    rule_counts: Counter = field(default_factory=Counter)
    details: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_DETAILS problems
    reject_problems: list[pd.DataFrame] = field(default_factory=list)  # every problem, while rows are rejected rather than the file
    statistics: aggregate.Flushed = field(default_factory=aggregate.Flushed.nothing)  # with a sink: the rest, at the end
    sensors: int = 0  # distinct sensors of the loaded rows (with a sink: counted by it, see check.Sink.complete)

    @property
    def plan(self) -> ColumnPlan | None:
        return self.layout.plan if self.layout else None

    @property
    def data_line(self) -> int:
        """The first data line: the lines before it (preamble, header, units) head a rejects file."""
        return self.layout.data_line if self.layout else 2

    @property
    def preamble(self) -> str | None:
        return self.layout.preamble if self.layout else None

    @property
    def where(self) -> str:
        """Where the header, units and data were found, when that is not lines 1 and 2 ("" otherwise)."""
        return self.layout.describe() if self.layout else ""

    def add_problems(self, problems: pd.DataFrame, rejected: pd.DataFrame, keep_all: bool) -> None:
        """Count a chunk's problems (``Checked.problems``, its rejected rows ``Checked.rejected``); with
        ``keep_all`` (rows may still be rejected rather than the file) also keep its invalid rows and all
        their problems, for the rejects file."""
        if problems.empty:
            return
        self.rule_counts.update(problems["rule"].value_counts().to_dict())
        self.invalid_rows += len(rejected)
        if keep_all:
            self.rejected.append(rejected)
            self.reject_problems.append(problems)
        room = MAX_DETAILS - len(self.details)
        if room > 0:
            self.details.extend(_records(problems.sort_values("line", kind="stable").head(room)))

    def rejected_lines(self) -> set[int]:
        """Every physical line of the invalid rows (a row can span lines), for the rejects file."""
        if not self.rejected:
            return set()
        spans = pd.concat(self.rejected, ignore_index=True)
        counts = spans["lines"].to_numpy(np.int64)
        first = np.repeat(spans["line"].to_numpy(np.int64), counts)
        offset = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)  # 0, 1, ... within each row
        return set((first + offset).tolist())

    def first_problem(self) -> Problem:
        d = self.details[0]
        return Problem(d["rule"], d["message"], line=d["line"], column=d["column"] or None, value=d["value"])

    def counts(self) -> dict[str, int]:
        """Rule counts, most frequent first, ties by rule name (stable reports)."""
        return dict(sorted(self.rule_counts.items(), key=lambda item: (-item[1], item[0])))

    def rejected_problems(self) -> list[dict[str, Any]]:
        """Every problem of every rejected row, by line (kept only while rows are rejected rather than the file)."""
        return _records(pd.concat(self.reject_problems, ignore_index=True).sort_values("line", kind="stable"))


def _records(problems: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in problems.to_dict("records")]


def date_text(chunk: Chunk, plan: ColumnPlan) -> pa.ChunkedArray | None:
    """The values a file's date format is detected from: the timestamp text of the first 2,000 rows
    of its first chunk with rows; None when the timestamp is assembled from numeric columns."""
    return timestamp_text(chunk.table.slice(0, 2000), plan)


def configured_date_format(plan: ColumnPlan, rules: Rules) -> str | None:
    """DATE_FORMAT, else what the headers spell (``Date (MM/DD/YYYY)``): then nothing is detected."""
    return rules.date_format or header_date_format(plan)


def date_format(chunk: Chunk, plan: ColumnPlan, rules: Rules, text: pa.ChunkedArray | None = None) -> str:
    """The file's date format, from its first chunk (``text``: its ``date_text`` when already taken):
    configured, else detected on the first values; or which columns it is assembled from."""
    text = date_text(chunk, plan) if text is None else text
    if text is None:
        return "columns " + ", ".join(time_roles(plan))
    first = text.to_numpy(zero_copy_only=False)
    samples = pd.Series(first, index=chunk.lines[: len(first)], name=time_column(plan), dtype=object)
    return detect_date_format(samples, configured_date_format(plan, rules))


def run(
    path: Path,
    rules: Rules,
    now: datetime,
    *,
    block_bytes: int = Settings.read_block_bytes,  # READ_BLOCK_BYTES's default
    file_id: int = 0,
    sink: Loader | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Check every row of ``path``; with a sink, hand it the transformed valid rows chunk by chunk,
    and the statistics of their sensor-day groups when more are held than ``block_bytes``.

    Raises InvalidFile when the file as a whole must be quarantined (structure, or more invalid rows
    than MAX_INVALID_ROWS allows); the caller then rolls back whatever the sink received."""
    outcome = Outcome()
    statistics = aggregate.Statistics(block_bytes)
    sensor_ids = pa.array([], pa.string())
    with closing(reader.head(path, rules.encoding)) as lines:
        outcome.layout = layout = locate(lines, rules)
    plan = layout.plan
    limit = rules.max_invalid_rows
    missing = missing_tokens(rules.na_values)
    for chunk in reader.read_chunks(path, layout, rules, block_bytes):
        if should_stop():
            raise Interrupted(f"stopped while reading {path.name}")
        if not outcome.date_format and chunk.table.num_rows:
            outcome.date_format = date_format(chunk, plan, rules)
        checked = check_chunk(chunk, plan, rules, outcome.date_format or "ISO8601", now)
        outcome.rows += checked.rows
        outcome.add_problems(checked.problems, checked.rejected, keep_all=limit.enabled and limit.may_allow(outcome.invalid_rows))
        if limit.may_allow(outcome.invalid_rows) and len(checked.lines):
            readings = transform(checked, plan, file_id, missing)
            outcome.loaded += readings.num_rows
            if sink is None:
                sensor_ids = aggregate.distinct(sensor_ids, readings.column("sensor_id"))
            else:
                sink.rows(readings)
                flushed = statistics.add(aggregate.summarize(readings))
                if flushed is not None:
                    sink.statistics(flushed)
        pa.default_memory_pool().release_unused()  # hand freed chunk memory back to the OS: flat RSS on huge files
    outcome.statistics, outcome.sensors = statistics.rest(), len(sensor_ids)
    return verdict(outcome, layout, limit)


def verdict(outcome: Outcome, layout: Layout, limit: RejectLimit) -> Outcome:
    """The file's fate once all of it was checked: the outcome, or InvalidFile when it must be quarantined."""
    if outcome.rows == 0:
        message = "the file has a header but no data rows" if layout.header_line else "the file has no data rows"
        if layout.data_line != (layout.header_line or 0) + 1:
            message += f" from line {layout.data_line} on"
        raise InvalidFile(Problem(Rule.NO_DATA_ROWS, message, line=layout.data_line))
    if not limit.allows(outcome.invalid_rows, outcome.rows) or outcome.invalid_rows == outcome.rows:
        raise InvalidFile(outcome.first_problem(), details=reports.rows_details(outcome, limit))
    return outcome
