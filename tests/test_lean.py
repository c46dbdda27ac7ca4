"""The lean path (many small files checked at once) finds exactly what ``pipeline.run`` finds in each file alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from sensor_etl.config import RejectLimit, Rules, settings_from
from sensor_etl.core import aggregate
from sensor_etl.errors import InvalidFile
from sensor_etl.runners import lean, pipeline
from tests.helpers.corpus import CASES
from tests.helpers.samples import multi_csv, seed_csv, station_csv
from tests.helpers.station_files import (
    DST_SETTINGS,
    METAR_SETTINGS,
    RADIATION_SETTINGS,
    STATION_FILES,
    TMY_SETTINGS,
    metar_csv,
    new_york_csv,
    radiation_csv,
    tmy_csv,
)

NOW = datetime(2026, 11, 27, tzinfo=UTC)
BLOCK = 1 << 16  # small read blocks: some corpus files are read in several chunks, as in the daemon


def alone(path: Path, rules: Rules) -> pipeline.Outcome | Exception:
    try:
        return pipeline.run(path, rules, NOW, block_bytes=BLOCK)
    except Exception as exc:
        return exc


def same(lean_result: pipeline.Outcome | Exception, expected: pipeline.Outcome | Exception) -> None:
    """Outcomes equal in everything a report, a log line or the ledger shows; errors equal in type and content."""
    if isinstance(expected, Exception):
        assert type(lean_result) is type(expected)
        assert vars(lean_result) == vars(expected) if hasattr(expected, "__dict__") else str(lean_result) == str(expected)
        return
    assert isinstance(lean_result, pipeline.Outcome), lean_result
    for name in ("plan", "date_format", "rows", "loaded", "sensors", "details", "invalid_rows"):
        assert getattr(lean_result, name) == getattr(expected, name), name
    assert lean_result.counts() == expected.counts()
    assert lean_result.rejected_lines() == expected.rejected_lines()
    if expected.reject_problems:
        assert lean_result.rejected_problems() == expected.rejected_problems()


def write(folder: Path, named: dict[str, bytes]) -> list[Path]:
    paths = []
    for index, content in enumerate(named.values()):
        path = folder / f"{index:03d}.csv"  # odd names are the daemon's business, not the checks'
        path.write_bytes(content)
        paths.append(path)
    return paths


CORPUS = {case.name: case.content for case in CASES if case.outcome in ("loaded", "quarantined")}
SHAPES = {
    "multi-a": multi_csv(3, 4, seed=1).encode(),
    "multi-b": multi_csv(3, 4, seed=2, offset="+02:00").encode(),
    "multi-naive": multi_csv(2, 3, seed=3, offset="").encode(),
    "seed": seed_csv(5).encode(),
    "station": station_csv(4).encode(),
    "multi-c": multi_csv(5, 2, seed=4).encode(),
    # read with the others in one Arrow call, or alone (bundle.body): line ends, blank and short rows, no final line end
    "crlf-blank-short": b"timestamp,T\r\n2024-01-01T00:00:00Z,20\r\n\r\n2024-01-01T01:00:00Z\r\n2024-01-01T02:00:00Z,21\r\n",
    "short-at-end": b"timestamp,T\n2024-01-01T00:00:00Z,20\n2024-01-01T00:00:00Z,22\nx\n \n2024\n",
    "only-short": b"timestamp,T\n1\n2\n",
    "no-final-line-end": b"timestamp,T\n2024-01-01T00:00:00Z,20\n2024-01-01T00:00:00Z,20",
    "cr-only": b"timestamp,T\r2024-01-01T00:00:00Z,20\r2024-01-01T01:00:00Z,x\r",
    "semicolons": b"timestamp;T;note\n2024-01-01T00:00:00Z;20;a,b\n2024-01-01T01:00:00Z;21;c\n",
}


@pytest.mark.parametrize(
    "rules",
    [Rules(), Rules(max_invalid_rows=RejectLimit(count=2)), Rules(max_invalid_rows=RejectLimit(percent=50.0))],
    ids=["default", "max-2", "max-50%"],
)
def test_a_batch_of_the_corpus_checks_as_each_file_alone(tmp_path: Path, rules: Rules) -> None:
    paths = write(tmp_path, {**CORPUS, **SHAPES})
    checks = lean.check(paths, rules, NOW, block_bytes=BLOCK)
    assert len(checks.outcomes) == len(paths)
    for path, result in zip(paths, checks.outcomes, strict=True):
        same(result, alone(path, rules))


STATIONS = {  # the station files of tests/test_station_files.py, each with its settings, and its first half as another file
    "typical-year": (TMY_SETTINGS, tmy_csv()),
    "metar": (METAR_SETTINGS, metar_csv()),
    "radiation": (RADIATION_SETTINGS, radiation_csv()),
    "new-york-reject": (DST_SETTINGS, new_york_csv()),
    "new-york-earliest": ({**DST_SETTINGS, "AMBIGUOUS_TIME": "earliest"}, new_york_csv()),
    **{station.name: (station.settings, station.text) for station in STATION_FILES},  # preambles, TOA5, aligned, quoted notes
}


def station_batch(text: str) -> dict[str, bytes]:
    lines = text.splitlines(keepends=True)
    return {**SHAPES, "station-file": text.encode(), "first-half": "".join(lines[: len(lines) // 2]).encode()}


@pytest.mark.parametrize("station", STATIONS)
def test_station_files_in_a_batch_check_as_each_file_alone(tmp_path: Path, station: str) -> None:
    settings, text = STATIONS[station]
    rules = settings_from(settings).rules
    paths = write(tmp_path, station_batch(text))
    checks = lean.check(paths, rules, NOW, block_bytes=BLOCK)
    for path, result in zip(paths, checks.outcomes, strict=True):
        same(result, alone(path, rules))


class Rows:
    """A ``pipeline.Loader`` that keeps the rows it is handed (the statistics are summarized from them)."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def rows(self, readings: pa.Table) -> None:
        self.tables.append(readings)

    def statistics(self, flushed: aggregate.Flushed) -> None:
        pass


@pytest.mark.parametrize("station", ["default", *STATIONS])
def test_the_readings_and_metrics_of_a_batch_are_each_files_own(tmp_path: Path, station: str) -> None:
    settings, text = STATIONS.get(station, ({}, ""))
    rules = settings_from(settings).rules
    named = station_batch(text) if text else dict(SHAPES)
    paths = write(tmp_path, {**named, "bad": b"timestamp,T\nyesterday,20\n"})
    checks = lean.check(paths, rules, NOW, block_bytes=BLOCK)
    ids = {index: 100 + index for index, outcome in enumerate(checks.outcomes) if isinstance(outcome, pipeline.Outcome)}
    assert sorted(ids) == [i for i, path in enumerate(paths) if isinstance(alone(path, rules), pipeline.Outcome)]
    assert len(paths) - 1 not in ids  # the bad file has no id: it is quarantined
    groups = checks.readings(ids)
    readings = pa.concat_tables(groups)
    summary = pa.concat_tables([aggregate.summarize(group, by_file=True) for group in groups])
    for index, file_id in ids.items():
        rows = Rows()
        pipeline.run(paths[index], rules, NOW, block_bytes=BLOCK, file_id=file_id, sink=rows)
        expected = aggregate.merge([aggregate.summarize(table) for table in rows.tables])
        mine = readings.filter(pa.compute.equal(readings.column("file_id"), file_id))
        assert mine.to_pylist() == pa.concat_tables(rows.tables).to_pylist()
        theirs = summary.filter(pa.compute.equal(summary.column("file_id"), file_id)).drop_columns("file_id")
        assert theirs.sort_by([("sensor_id", "ascending"), ("day", "ascending"), ("metric", "ascending")]).to_pylist() == (
            expected.sort_by([("sensor_id", "ascending"), ("day", "ascending"), ("metric", "ascending")]).to_pylist()
        )


def test_a_file_without_rows_and_a_missing_file_get_their_own_outcome(tmp_path: Path) -> None:
    paths = write(tmp_path, {"good": SHAPES["multi-a"], "header-only": b"timestamp,T\n"})
    paths.append(tmp_path / "gone.csv")
    checks = lean.check(paths, Rules(), NOW, block_bytes=BLOCK)
    assert isinstance(checks.outcomes[0], pipeline.Outcome)
    header_only = checks.outcomes[1]
    assert isinstance(header_only, InvalidFile) and header_only.problem.rule == "no_data_rows"
    assert isinstance(checks.outcomes[2], FileNotFoundError)
