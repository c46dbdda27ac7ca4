"""The functional core on its own: columns, rules, conversions, statistics. No database, no daemon."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sensor_etl.config import Rules
from sensor_etl.core import aggregate
from sensor_etl.core.columns import plan_columns, recognise
from sensor_etl.core.dates import detect_date_format, parse_timestamps
from sensor_etl.core.units import to_hpa, to_kelvin, to_percent
from sensor_etl.errors import InvalidFile
from sensor_etl.runners import pipeline
from tests.helpers.samples import MULTI_HEADER, multi_csv, seed_csv, station_csv

NOW = datetime(2026, 11, 27, tzinfo=UTC)
DEFAULT_RULES = Rules()
UNITS = {"temperature": "C", "pressure": "hPa", "humidity": "percent"}


@pytest.mark.parametrize(
    ("header", "role", "suffix"),
    [
        ("T", "temperature", None),
        ("T (degC)", "temperature", "degc"),
        ("Temperature [K]", "temperature", "k"),
        ("temp_f", "temperature", "f"),
        ("rh (%)", "humidity", "%"),
        ("p (mbar)", "pressure", "mbar"),
        ("pressure_kpa", "pressure", "kpa"),
        ("Date Time", "timestamp", None),
        ("Sensor ID", "sensor_id", None),
        ("Tpot (K)", None, "k"),
        ("max. wv", None, None),
    ],
)
def test_aliases(header: str, role: str | None, suffix: str | None) -> None:
    assert recognise(header) == (role, suffix)


def test_plan_uses_units_and_column_map() -> None:
    plan = plan_columns(["Zeit", "Aussen", "rh", "p (kPa)", "note"], {"Zeit": "timestamp", "Aussen": "temperature"}, UNITS)
    assert dict(plan.roles) == {"timestamp": 0, "temperature": 1, "humidity": 2, "pressure": 3}
    assert plan.units["pressure"] == "kPa"
    assert plan.extras == (4,)


@pytest.mark.parametrize(
    ("headers", "rule", "text"),
    [
        (["date", "T", ""], "header", "column 3 of the header has an empty name"),
        (["date", "T", "x", "x"], "header", "column name 'x' appears twice (columns 3 and 4)"),
        (["date", "T", "temp"], "header", "columns 'T' and 'temp' both look like temperature"),
        (["value", "T"], "missing_column", "no timestamp column"),
        (["date", "wind"], "missing_column", "no temperature, humidity or pressure column"),
        (["date", "T (furlongs)"], "unit", "unknown temperature unit 'furlongs'"),
    ],
)
def test_header_rules(headers: list[str], rule: str, text: str) -> None:
    with pytest.raises(InvalidFile) as caught:
        plan_columns(headers, {}, UNITS)
    assert caught.value.problem.rule == rule
    assert text in caught.value.problem.message


def test_unit_conversions_exact() -> None:
    assert to_kelvin(np.array([0.0, -273.15, 100.0]), "C").tolist() == [273.15, 0.0, 373.15]
    assert to_kelvin(np.array([32.0, 212.0]), "F").tolist() == [273.15, 373.15]
    assert to_kelvin(np.array([300.0]), "K").tolist() == [300.0]
    assert to_hpa(np.array([101.325]), "kPa").tolist() == [1013.25]
    assert to_hpa(np.array([101325.0]), "Pa").tolist() == [1013.25]
    assert to_hpa(np.array([1013.25]), "mbar").tolist() == [1013.25]
    assert to_percent(np.array([0.5]), "fraction").tolist() == [50.0]


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (["2020-01-01 00:10:00", "2020-01-01 00:20:00"], "ISO8601"),
        (["2024-01-01T00:00:00+02:00", "2024-01-01T00:00:00Z"], "ISO8601"),
        (["01.01.2009 00:10:00", "13.01.2009 00:20:00"], "%d.%m.%Y %H:%M:%S"),
        (["12/31/2020 10:00", "01/02/2021 10:00"], "%m/%d/%Y %H:%M"),
    ],
)
def test_date_format_detection(samples: list[str], expected: str) -> None:
    assert detect_date_format(pd.Series(samples, dtype=object), None) == expected


def test_ambiguous_dates_are_refused() -> None:
    with pytest.raises(InvalidFile, match="ambiguous dates"):
        detect_date_format(pd.Series(["01/02/2020 10:00", "03/04/2020 10:00"], dtype=object), None)
    assert detect_date_format(pd.Series(["01/02/2020 10:00"], dtype=object), "%d/%m/%Y %H:%M") == "%d/%m/%Y %H:%M"


def test_naive_timestamps_are_read_in_source_timezone() -> None:
    values = pd.Series(["2024-07-01 12:00:00", "2024-07-01T12:00:00+00:00", "2024-03-31 02:30:00"], dtype=object)
    parsed = parse_timestamps(values, "ISO8601", "Europe/Berlin")
    assert parsed.utc[0] == np.datetime64("2024-07-01T10:00:00")
    assert parsed.utc[1] == np.datetime64("2024-07-01T12:00:00")
    assert np.isnat(parsed.utc[2]) and parsed.gap.tolist() == [False, False, True]  # does not exist: clocks jumped from 02:00 to 03:00
    all_naive = parse_timestamps(pd.Series(["2024-07-01 12:00:00", "2024-01-01T12:00"], dtype=object), "ISO8601", "Europe/Berlin")
    assert all_naive.utc.tolist() == [np.datetime64("2024-07-01T10:00:00", "us").item(), np.datetime64("2024-01-01T11:00:00", "us").item()]


def _run(tmp_path: Path, text: str, rules: Rules = DEFAULT_RULES, name: str = "f.csv") -> pipeline.Outcome:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return pipeline.run(path, rules, NOW)


@pytest.mark.parametrize(
    ("body", "rule", "line", "column", "value"),
    [
        ("2024-01-01T00:00:00Z,s1,,50,1000", "missing_value", 2, "temperature", ""),
        ("2024-01-01T00:00:00Z,,20,50,1000", "missing_value", 2, "sensor_id", ""),
        ("2024-02-30T00:00:00Z,s1,20,50,1000", "timestamp_format", 2, "timestamp", "2024-02-30T00:00:00Z"),
        ("1850-01-01T00:00:00Z,s1,20,50,1000", "timestamp_range", 2, "timestamp", "1850-01-01T00:00:00Z"),
        ("2099-01-01T00:00:00Z,s1,20,50,1000", "timestamp_range", 2, "timestamp", "2099-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00Z,s1,warm,50,1000", "not_a_number", 2, "temperature", "warm"),
        ('2024-01-01T00:00:00Z,s1,20,50,"1,013"', "not_a_number", 2, "pressure", "1,013"),
        ("2024-01-01T00:00:00Z,s1,NaN,50,1000", "missing_value", 2, "temperature", "NaN"),
        ("2024-01-01T00:00:00Z,s1,-inf,50,1000", "not_finite", 2, "temperature", "-inf"),
        ("2024-01-01T00:00:00Z,s1,20,50,1e309", "not_finite", 2, "pressure", "1e309"),
        ("2024-01-01T00:00:00Z,s1,60.01,50,1000", "out_of_range", 2, "temperature", "60.01"),
        ("2024-01-01T00:00:00Z,s1,20,100.5,1000", "out_of_range", 2, "humidity", "100.5"),
        ("2024-01-01T00:00:00Z,s1,20,50,299.9", "out_of_range", 2, "pressure", "299.9"),
        ("2024-01-01T00:00:00Z,s1,20,50", "column_count", 2, None, "2024-01-01T00:00:00Z,s1,20,50"),
    ],
)
def test_each_row_rule(tmp_path: Path, body: str, rule: str, line: int, column: str | None, value: str) -> None:
    good = "2024-01-01T01:00:00Z,s9,20,50,1000"
    with pytest.raises(InvalidFile) as caught:
        _run(tmp_path, f"{MULTI_HEADER}\n{good}\n{body}\n".replace("\n" + good + "\n" + body, "\n" + body + "\n" + good))
    details = caught.value.details
    assert details["rows_total"] == 2 and details["rows_invalid"] == 1
    assert details["rule_counts"] == {rule: 1}
    error = details["errors"][0]
    assert (error["rule"], error["line"], error["column"] or None, error["value"]) == (rule, line, column, value)


def test_bounds_are_inclusive_and_in_the_files_unit(tmp_path: Path) -> None:
    rows = [
        "2024-01-01T00:00:00Z,a,-90,0,300",
        "2024-01-01T00:00:00Z,b,60,100,1100",
        "2024-01-01T00:00:00Z,c,-89.99,0.01,300.01",
    ]
    assert _run(tmp_path, MULTI_HEADER + "\n" + "\n".join(rows) + "\n").loaded == 3
    fahrenheit = "timestamp,temp_f\n2024-01-01T00:00:00Z,140\n2024-01-01T01:00:00Z,140.1\n"
    with pytest.raises(InvalidFile) as caught:
        _run(tmp_path, fahrenheit, name="f2.csv")
    assert caught.value.details["errors"][0]["message"] == "outside -130..140 °F"
    assert caught.value.details["errors"][0]["line"] == 3


def test_duplicate_key_names_the_first_line(tmp_path: Path) -> None:
    text = (
        f"{MULTI_HEADER}\n2024-01-01T00:00:00Z,s1,20,50,1000\n2024-01-01T00:00:00Z,s2,20,50,1000\n2024-01-01T00:00:00+00:00,s1,21,50,1000\n"
    )
    with pytest.raises(InvalidFile) as caught:
        _run(tmp_path, text)
    error = caught.value.details["errors"][0]
    assert (error["rule"], error["line"], error["message"]) == ("duplicate_key", 4, "same sensor and timestamp as line 2")


def test_structure_rules(tmp_path: Path) -> None:
    for text, rule in [
        ("", "empty_file"),
        (MULTI_HEADER + "\n", "no_data_rows"),
        ("2024-01-01T00:00:00Z,s1,20,50,1000\n", "no_header"),
    ]:
        with pytest.raises(InvalidFile) as caught:
            _run(tmp_path, text)
        assert caught.value.problem.rule == rule


def test_three_shapes_read_with_lines_and_units(tmp_path: Path) -> None:
    seed = _run(tmp_path, seed_csv(5), name="seed.csv")
    assert (seed.loaded, seed.sensors, seed.date_format) == (5, 1, "ISO8601")
    station = _run(tmp_path, station_csv(5), name="station.csv")
    assert (station.loaded, station.date_format, station.plan.units["pressure"]) == (5, "%d.%m.%Y %H:%M:%S", "mbar")
    multi = _run(tmp_path, multi_csv(3, 4), name="multi.csv")
    assert (multi.loaded, multi.sensors) == (12, 3)


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    text = f"{MULTI_HEADER}\r\n\r\n2024-01-01T00:00:00Z,s1,20,50,1000\r\n2024-01-01T00:00:00Z,s2,bad,50,1000\r\n"
    with pytest.raises(InvalidFile) as caught:
        _run(tmp_path, text)
    assert caught.value.details["errors"][0]["line"] == 4
    assert caught.value.details["rows_total"] == 2


def test_summary_matches_numpy_and_merges_exactly() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    times = pd.date_range("2024-01-01", periods=n, freq="37min", tz="UTC")
    sensors = np.where(rng.random(n) < 0.5, "a", "b")
    temps = rng.normal(290, 5, n)
    table = pa.table(
        {
            "observed_at": pa.array(times),
            "sensor_id": pa.array(sensors),
            "temperature_k": pa.array(temps),
            "humidity_pct": pa.nulls(n, pa.float64()),
            "pressure_hpa": pa.array(rng.normal(1000, 10, n)),
        }
    )
    whole = aggregate.with_std(aggregate.summarize(table)).to_pandas()
    halves = aggregate.with_std(
        aggregate.merge([aggregate.summarize(table.slice(0, 1234)), aggregate.summarize(table.slice(1234))])
    ).to_pandas()
    assert set(whole["metric"]) == {"temperature_k", "pressure_hpa"}
    frame = pd.DataFrame({"sensor": sensors, "day": times.floor("D"), "t": temps})
    for (sensor, day), group in frame.groupby(["sensor", "day"]):
        for result in (whole, halves):
            row = result[(result.sensor_id == sensor) & (result.day == day) & (result.metric == "temperature_k")].iloc[0]
            values = group["t"].to_numpy()
            assert row.n == len(values)
            assert row["min"] == values.min() and row["max"] == values.max()
            assert math.isclose(row["mean"], values.mean(), rel_tol=1e-12)
            if len(values) > 1:
                assert math.isclose(row["std"], values.std(ddof=1), rel_tol=1e-9)
                assert math.isclose(row["m2"], ((values - values.mean()) ** 2).sum(), rel_tol=1e-9)


def _readings(sensors: int, per_sensor: int, seed: int = 5) -> pa.Table:
    """Rows in time order, every sensor once per 6 hours: a sensor's groups recur all through the table."""
    rng = np.random.default_rng(seed)
    n = sensors * per_sensor
    times = np.repeat(pd.date_range("2024-01-01", periods=per_sensor, freq="6h", tz="UTC").to_numpy(), sensors)
    return pa.table(
        {
            "observed_at": pa.array(times, pa.timestamp("us", tz="UTC")),
            "sensor_id": pa.array([f"s{i:05d}" for i in range(sensors)] * per_sensor),
            "temperature_k": pa.array(rng.normal(290, 5, n)),
            "humidity_pct": pa.nulls(n, pa.float64()),
            "pressure_hpa": pa.array(rng.normal(1000, 10, n)),
        }
    )


def _keys(table: pa.Table) -> list[tuple]:
    return list(zip(*(table.column(name).to_pylist() for name in ("sensor_id", "day", "metric")), strict=True))


def test_statistics_past_the_bound_are_flushed_once_as_new_then_as_again_and_merge_to_the_whole() -> None:
    table = _readings(sensors=500, per_sensor=8)  # 500 sensors x 2 days x 2 metrics = 2,000 groups, each in 4 chunks
    statistics = aggregate.Statistics(max_bytes=20_000)  # about 200 groups
    flushed = [f for start in range(0, table.num_rows, 400) if (f := statistics.add(aggregate.summarize(table.slice(start, 400))))]
    flushed.append(statistics.rest())
    assert len(flushed) > 4 and all(f.new.num_rows + f.again.num_rows <= 200 + 800 for f in flushed)  # held ones and one chunk's
    new = [key for f in flushed for key in _keys(f.new)]
    again = [key for f in flushed for key in _keys(f.again)]
    assert len(new) == len(set(new)) == 2000  # every group written once as new...
    assert set(again) <= set(new) and again  # ...and merged into later (false positives aside, none here)
    whole = aggregate.summarize(table).sort_by([("sensor_id", "ascending"), ("day", "ascending"), ("metric", "ascending")])
    parts = aggregate.merge([t for f in flushed for t in (f.new, f.again)])
    parts = parts.sort_by([("sensor_id", "ascending"), ("day", "ascending"), ("metric", "ascending")])
    for name in ("sensor_id", "day", "metric", "n", "min", "max", "first_at", "last_at"):
        assert parts.column(name).equals(whole.column(name)), name
    np.testing.assert_allclose(parts.column("mean").to_numpy(), whole.column("mean").to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(parts.column("m2").to_numpy(), whole.column("m2").to_numpy(), rtol=1e-9)


def test_statistics_that_fit_once_merged_are_held_and_never_flushed() -> None:
    table = _readings(sensors=20, per_sensor=400)  # 20 sensors x 100 days x 2 metrics, 4 readings a day
    statistics = aggregate.Statistics(max_bytes=1 << 20)
    assert all(statistics.add(aggregate.summarize(table.slice(start, 100))) is None for start in range(0, table.num_rows, 100))
    rest = statistics.rest()
    assert rest.again.num_rows == 0 and rest.new.num_rows == 20 * 100 * 2


def test_seen_groups_never_forget_a_group() -> None:
    seen = aggregate.SeenGroups(1024)  # 8,192 bits for 12,000 keys: crowded, so false positives occur
    first = aggregate.summarize(_readings(sensors=3000, per_sensor=4))
    assert seen.check_and_add(first).sum() < first.num_rows  # mostly new
    assert seen.check_and_add(first).all()  # every one seen: no false negative
