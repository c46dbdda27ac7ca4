"""validate → transform → aggregate over the chunks of one file, loading through an optional sink.

The same run serves the daemon (sink = the file's COPY) and the ``validate`` command (no sink).
Only reading the file is I/O here; each step it calls is a pure function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from . import aggregate
from .columns import ColumnPlan, plan_columns
from .config import Rules
from .errors import Interrupted, InvalidFile, Problem
from .reader import read_chunks, read_header
from .transform import transform
from .validate import check_chunk, detect_date_format

MAX_DETAILS = 100


def default_units(rules: Rules) -> dict[str, str]:
    return {"temperature": rules.temperature_unit, "pressure": rules.pressure_unit, "humidity": rules.humidity_unit}


@dataclass
class Outcome:
    """What one pass over a file found and (with a sink) loaded."""

    plan: ColumnPlan | None = None
    date_format: str = ""
    rows: int = 0
    loaded: int = 0
    invalid_lines: list[np.ndarray] = field(default_factory=list)
    rule_counts: Counter = field(default_factory=Counter)
    details: list[dict] = field(default_factory=list)
    summaries: list[pd.DataFrame] = field(default_factory=list)
    sensors: set[str] = field(default_factory=set)

    @property
    def invalid_rows(self) -> int:
        return int(sum(len(lines) for lines in self.invalid_lines))

    def add_problems(self, problems: pd.DataFrame) -> None:
        if problems.empty:
            return
        self.rule_counts.update(problems["rule"].value_counts().to_dict())
        self.invalid_lines.append(np.unique(problems["line"].to_numpy(dtype=np.int64)))
        room = MAX_DETAILS - len(self.details)
        if room > 0:
            first = problems.sort_values("line", kind="stable").head(room)
            self.details.extend({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in first.to_dict("records"))

    def summary(self) -> pd.DataFrame:
        return aggregate.merge(self.summaries)

    def first_problem(self) -> Problem:
        d = self.details[0]
        return Problem(d["rule"], d["message"], line=d["line"], column=d["column"] or None, value=d["value"])

    def reason(self) -> str:
        counts = ", ".join(f"{rule}: {count}" for rule, count in self.rule_counts.most_common())
        return f"{self.invalid_rows} of {self.rows} rows invalid ({counts})"


def run(
    path: Path,
    rules: Rules,
    now: datetime,
    *,
    block_bytes: int = 16 << 20,
    file_id: int = 0,
    sink: Callable[[pa.Table], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Check every row of ``path``; with a sink, hand it the transformed valid rows chunk by chunk.

    Raises InvalidFile when the file as a whole must be quarantined (structure, or more invalid rows
    than MAX_INVALID_ROWS allows); the caller then rolls back whatever the sink received."""
    outcome = Outcome()
    headers, delimiter = read_header(path, rules.encoding, rules.delimiter)
    outcome.plan = plan = plan_columns(headers, rules.column_map, default_units(rules))
    limit = rules.max_invalid_rows
    for chunk in read_chunks(path, len(headers), rules.encoding, delimiter, block_bytes):
        if should_stop():
            raise Interrupted(f"stopped while reading {path.name}")
        if not outcome.date_format and chunk.table.num_rows:
            samples = pd.Series(chunk.table.column(plan.roles["timestamp"]).to_pandas(), dtype=object)
            outcome.date_format = detect_date_format(samples, rules.date_format)
        checked = check_chunk(chunk, plan, rules, outcome.date_format or "ISO8601", now)
        outcome.rows += checked.rows
        outcome.add_problems(checked.problems)
        still_loadable = outcome.invalid_rows == 0 or (limit.enabled and (limit.percent is not None or outcome.invalid_rows <= limit.count))
        if still_loadable and len(checked.lines):
            readings = transform(checked, plan, file_id)
            if sink is not None:
                sink(readings)
            outcome.loaded += readings.num_rows
            outcome.summaries.append(aggregate.summarize(readings))
            outcome.sensors.update(pd.unique(checked.sensor_id))
    if outcome.rows == 0:
        raise InvalidFile(Problem("no_data_rows", "the file has a header but no data rows", line=2))
    if not limit.allows(outcome.invalid_rows, outcome.rows):
        raise InvalidFile(outcome.first_problem(), details={"reason": outcome.reason(), **report_body(outcome)})
    return outcome


def report_body(outcome: Outcome) -> dict:
    """The part of a quarantine or reject report that lists what was wrong."""
    return {
        "rows_total": outcome.rows,
        "rows_invalid": outcome.invalid_rows,
        "rule_counts": dict(outcome.rule_counts.most_common()),
        "errors": outcome.details,
        "errors_shown": len(outcome.details),
        "date_format": outcome.date_format or None,
    }
