"""The lean path for small files: validate → transform → aggregate a batch of them at once.

Each file's layout is found on its own (``reader.head`` and ``layout.locate``: its header, columns,
delimiter and first data line); its rows are parsed with the rows of the other files in one Arrow call
where that gives the same chunks (``bundle``), else on their own. Then the row rules, the transformation and the statistics run once over the chunks of
all the files that share a column plan and a date format (``chunk.combine``). Those steps cost about the same on 100
rows as on 100,000 — some 40 Arrow, numpy and pandas calls with microseconds of overhead each — so
one call for a whole batch instead of one per file is where a small file's time went. Every result
is split back per file (its rows, problems, rejected lines, sensors and verdict), so each outcome,
report and line number is exactly what ``pipeline.run`` gives the file alone; tests/test_lean.py
compares the two on the hostile-input corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.config import Rules
from sensor_etl.core.chunk import Chunk, combine
from sensor_etl.core.columns import ColumnPlan
from sensor_etl.core.dates import plain_iso
from sensor_etl.core.layout import Layout, locate
from sensor_etl.core.problems import no_problems
from sensor_etl.core.transform import transform
from sensor_etl.core.validate import Checked, check_chunk
from sensor_etl.core.values import Missing, missing_tokens
from sensor_etl.edges import bundle, reader
from sensor_etl.errors import Interrupted, InvalidFile
from sensor_etl.runners.pipeline import Outcome, configured_date_format, date_format, date_text, verdict


@dataclass
class _File:
    """One small file, read: its place in the batch, its layout, its chunks and its date format."""

    index: int
    path: Path
    layout: Layout
    chunks: list[Chunk]
    date_format: str = ""
    body: bundle.Body | None = None  # its data lines, while they wait to be parsed with others

    @property
    def plan(self) -> ColumnPlan:
        return self.layout.plan


@dataclass(frozen=True)
class _Group:
    """The combined check of files sharing a plan and a date format; per part (chunk), its file and
    whether its valid rows load."""

    plan: ColumnPlan
    checked: Checked
    files: np.ndarray
    loads: np.ndarray


@dataclass
class Checks:
    """What checking a batch found: per file an ``Outcome`` or the error that decides its fate
    (``InvalidFile``, ``OSError``... as ``check.check_file`` raises them), and the rows to load."""

    outcomes: list[Outcome | Exception]
    groups: list[_Group]
    missing: Missing  # NA_VALUES, for the transformation

    def readings(self, file_ids: Mapping[int, int]) -> list[pa.Table]:
        """The transformed valid rows of the files in ``file_ids`` (batch index → file_id), one table
        per group of files with one column plan (so each has the same measures: summarize each alone)."""
        tables = []
        for group in self.groups:
            ids = np.array([file_ids.get(int(index), 0) for index in group.files], dtype=np.int64)
            keep = (group.loads & (ids > 0))[group.checked.parts]
            if keep.any():
                chosen = group.checked.select(keep)
                tables.append(transform(chosen, group.plan, ids[chosen.parts], self.missing))
        return tables


def sharing_keys(files: Sequence[tuple[Checks, int]]) -> set[tuple[int, int]]:
    """The files of ``files`` (``(id(checks), index)``, in the order they would load one by one) that
    hold a reading (sensor, time) an earlier one of them holds: ON_OVERLAP must see such a file after
    the earlier one has committed, as it would without batches."""
    position = {(id(checks), index): number for number, (checks, index) in enumerate(files)}
    owners, sensors, times = [], [], []
    for checks in {id(checks): checks for checks, _ in files}.values():
        for group in checks.groups:
            rows = group.loads[group.checked.parts]
            number = np.array([position.get((id(checks), int(index)), -1) for index in group.files], dtype=np.int64)[group.checked.parts]
            rows &= number >= 0
            owners.append(number[rows])
            sensors.extend(pc.filter(group.checked.sensor_id, pa.array(rows)).chunks)
            times.append(group.checked.observed_at[rows].view(np.int64))
    if not owners or len(position) < 2:
        return set()
    owner, at = np.concatenate(owners), np.concatenate(times)
    code = pc.dictionary_encode(pa.chunked_array(sensors, pa.string())).combine_chunks().indices.to_numpy().astype(np.int64)
    order = np.lexsort((owner, at, code))
    same = (code[order][1:] == code[order][:-1]) & (at[order][1:] == at[order][:-1])
    first = np.maximum.accumulate(np.where(np.concatenate(([True], ~same)), np.arange(len(order)), 0))
    later = owner[order] != owner[order][first]
    return {key for key, number in position.items() if number in set(owner[order][later].tolist())}


def check(
    paths: Sequence[Path],
    rules: Rules,
    now: datetime,
    *,
    block_bytes: int,
    contents: Sequence[bytes | None] = (),
    should_stop: Callable[[], bool] = lambda: False,
) -> Checks:
    """Check every row of the small files ``paths`` as ``pipeline.run`` checks each one (no sink:
    the rows are transformed by ``Checks.readings`` once the files have their ids). ``contents``:
    the bytes of each file when the caller has them (the daemon's fingerprint), else they are read."""
    outcomes: dict[int, Outcome | Exception] = {}
    files: list[_File] = []
    for index, path in enumerate(paths):
        if should_stop():
            raise Interrupted(f"stopped while reading {path.name}")
        try:
            files.append(_read(index, path, rules, block_bytes, contents[index] if contents else None))
        except Exception as exc:  # its own decision, as check_file would raise it: the others go on
            outcomes[index] = exc
    files = _read_bundles(files, rules, block_bytes, outcomes)
    groups: dict[tuple, list[_File]] = {}
    for file in _with_date_formats(files, rules, outcomes):
        if file.chunks:
            groups.setdefault(_key(file), []).append(file)
        else:  # a header and nothing else
            outcomes[file.index] = _verdict(Outcome(layout=file.layout), file.layout, rules)
    checked = [group for members in groups.values() for group in _check_groups(members, rules, now, outcomes)]
    pa.default_memory_pool().release_unused()
    return Checks([outcomes[index] for index in range(len(paths))], checked, missing_tokens(rules.na_values))


def _read(index: int, path: Path, rules: Rules, block_bytes: int, content: bytes | None) -> _File:
    """The file's layout; its rows too, unless they can wait to be parsed with others."""
    with closing(reader.head(path, rules.encoding)) as lines:
        layout = locate(lines, rules)
    data = bundle.body(path.read_bytes() if content is None else content, layout, rules, block_bytes)
    if data is not None:
        return _File(index, path, layout, [], body=data)
    return _File(index, path, layout, list(reader.read_chunks(path, layout, rules, block_bytes)))


def _read_bundles(files: list[_File], rules: Rules, block_bytes: int, outcomes: dict[int, Outcome | Exception]) -> list[_File]:
    """Parse the waiting bodies, one Arrow call per delimiter and width (each file alone when Arrow
    refuses a bundle); the files read, without those whose reading failed."""
    waiting: dict[tuple[str, int], list[tuple[_File, bundle.Body]]] = {}
    for file in files:
        if file.body is not None:
            waiting.setdefault((file.layout.delimiter, len(file.plan.headers)), []).append((file, file.body))
            file.body = None
    for (delimiter, width), members in waiting.items():
        parsed = bundle.read_bundle([data for _, data in members], width, delimiter)
        for position, (file, _) in enumerate(members):
            if parsed is not None:
                file.chunks = parsed[position]
                continue
            try:
                file.chunks = list(reader.read_chunks(file.path, file.layout, rules, block_bytes))
            except Exception as exc:
                outcomes[file.index] = exc
    return [file for file in files if file.index not in outcomes]


def _with_date_formats(files: list[_File], rules: Rules, outcomes: dict[int, Outcome | Exception]) -> list[_File]:
    """Each file's date format, as ``pipeline.date_format`` finds it. When the samples of all files
    left to detect are plain ISO 8601, so are each file's, and one Arrow cast answers for all of them."""
    firsts = {file.index: chunk for file in files if (chunk := next((c for c in file.chunks if c.table.num_rows), None))}
    texts = {file.index: date_text(firsts[file.index], file.plan) for file in files if file.index in firsts}
    detect = [text for file in files if (text := texts.get(file.index)) is not None and not configured_date_format(file.plan, rules)]
    values = pa.chunked_array([piece for text in detect for piece in text.chunks], pa.string())
    shared = bool(detect) and plain_iso(pc.filter(values, pc.greater(pc.utf8_length(values), 0)))
    ready = []
    for file in files:
        if file.index in firsts:
            text = texts[file.index]
            try:
                plain = shared and text is not None and not configured_date_format(file.plan, rules)
                file.date_format = "ISO8601" if plain else date_format(firsts[file.index], file.plan, rules, text)
            except Exception as exc:  # InvalidFile: ambiguous, or no known format fits
                outcomes[file.index] = exc
                continue
        ready.append(file)
    return ready


def _key(file: _File) -> tuple:
    plan = file.plan
    return plan.headers, tuple(sorted(plan.roles.items())), tuple(sorted(plan.units.items())), file.date_format or "ISO8601"


def _check_groups(files: list[_File], rules: Rules, now: datetime, outcomes: dict[int, Outcome | Exception]) -> list[_Group]:
    """One combined check; should it fail, each file alone, so that a bug is met only by its file."""
    try:
        return [_check_group(files, rules, now, outcomes)]
    except Exception as exc:
        if len(files) == 1:
            outcomes[files[0].index] = exc
            return []
        return [group for file in files for group in _check_groups([file], rules, now, outcomes)]


def _check_group(files: list[_File], rules: Rules, now: datetime, outcomes: dict[int, Outcome | Exception]) -> _Group:
    """``pipeline.run``'s loop over chunks, for every file of the group, on one combined check."""
    chunks = [chunk for file in files for chunk in file.chunks]
    first = files[0]
    checked = check_chunk(combine(chunks), first.plan, rules, first.date_format or "ISO8601", now)
    assert checked.parts is not None  # a combined chunk's result
    count = len(chunks)
    valid = np.bincount(checked.parts, minlength=count)
    rejected_rows = np.bincount(checked.rejected["part"].to_numpy(np.int64), minlength=count)
    problems, rejected = _by_part(checked.problems, count), _by_part(checked.rejected, count)
    sensors = _sensors_by_part(checked, count)
    loads = np.zeros(count, dtype=bool)
    limit = rules.max_invalid_rows
    part = 0
    verdicts: dict[int, Outcome | Exception] = {}
    for file in files:
        outcome = Outcome(layout=file.layout, date_format=file.date_format)
        loaded: set[str] = set()  # the sensors of its loaded rows
        for _ in file.chunks:
            outcome.rows += int(valid[part] + rejected_rows[part])
            outcome.add_problems(problems[part], rejected[part], keep_all=limit.enabled and limit.may_allow(outcome.invalid_rows))
            if limit.may_allow(outcome.invalid_rows) and valid[part]:
                loads[part] = True
                outcome.loaded += int(valid[part])
                loaded.update(sensors[part])
            part += 1
        outcome.sensors = len(loaded)
        verdicts[file.index] = _verdict(outcome, file.layout, rules)
    for index, result in verdicts.items():  # only once the whole group went through
        outcomes[index] = result
    files_of_part = np.repeat(np.array([file.index for file in files], dtype=np.int64), [len(file.chunks) for file in files])
    return _Group(first.plan, checked, files_of_part, loads)


def _verdict(outcome: Outcome, layout: Layout, rules: Rules) -> Outcome | Exception:
    try:
        return verdict(outcome, layout, rules.max_invalid_rows)
    except InvalidFile as exc:  # quarantined: its rows do not load
        return exc


def _by_part(frame: pd.DataFrame, count: int) -> list[pd.DataFrame]:
    """A combined check's problems (or rejected rows) split by part, in their order, without the part column."""
    if frame.empty:
        return [no_problems()] * count
    parts = {int(part): rows.drop(columns="part") for part, rows in frame.groupby("part", sort=False)}
    return [parts.get(part, no_problems()) for part in range(count)]


def _sensors_by_part(checked: Checked, count: int) -> list[list[str]]:
    """The distinct sensor ids of each part's valid rows."""
    found: list[list[str]] = [[] for _ in range(count)]
    if not len(checked.lines):
        return found
    assert checked.parts is not None
    encoded = pc.dictionary_encode(checked.sensor_id).combine_chunks()
    names = encoded.dictionary.to_pylist()
    pairs = np.unique(checked.parts * len(names) + encoded.indices.to_numpy().astype(np.int64))
    for part, code in zip(*np.divmod(pairs, len(names)), strict=True):
        found[int(part)].append(names[int(code)])
    return found
