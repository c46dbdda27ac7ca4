"""How field values become readings, on the functional core alone: missing values, dates and times,
time zones and daylight saving, unit hints, rounding, aliases. No database."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor_etl.config import Rules, settings_from
from sensor_etl.core import aggregate
from sensor_etl.core.columns import plan_columns, recognise
from sensor_etl.core.dates import fixed_offset, parse_timestamps, standard_offset
from sensor_etl.core.units import to_hpa, to_kelvin, to_percent
from sensor_etl.core.values import missing_tokens
from sensor_etl.errors import ConfigError, InvalidFile
from sensor_etl.runners import pipeline
from tests.helpers.inprocess import Received

NOW = datetime(2026, 11, 27, tzinfo=UTC)
UNITS = {"temperature": "C", "pressure": "hPa", "humidity": "percent"}


def rules(**env: str) -> Rules:
    return settings_from(env).rules


def run(tmp_path: Path, text: str, **env: str) -> tuple[pipeline.Outcome, pa.Table]:
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8", newline="")
    received = Received()
    outcome = pipeline.run(path, rules(**env), NOW, sink=received)
    return outcome, pa.concat_tables(received.readings) if received.readings else pa.table({})


def refused(tmp_path: Path, text: str, **env: str) -> InvalidFile:
    with pytest.raises(InvalidFile) as caught:
        run(tmp_path, text, **env)
    return caught.value


def utc(table: pa.Table) -> list[str]:
    return [f"{t:%Y-%m-%d %H:%M}" for t in table.column("observed_at").to_pylist()]


# -- settings ----------------------------------------------------------------------------------------
def test_value_settings_parse_and_refuse_with_one_line() -> None:
    assert rules().na_values == ("NA", "N/A", "n/a", "#N/A", "NaN", "nan", "null", "NULL")
    assert rules(NA_VALUES=" -9999 , NA,NA,").na_values == ("-9999", "NA")
    assert rules(NA_VALUES="").na_values == ()  # set but blank: no token, only the empty field is missing
    assert (rules().missing_values, rules().ambiguous_time) == ("reject", "reject")
    assert rules(SOURCE_TIMEZONE="+05:30").source_timezone == "+05:30"
    assert rules(DATE_FORMAT="EPOCH_MS").date_format == "epoch_ms"
    for variable, value in [
        ("SOURCE_TIMEZONE", "+25:00"),
        ("SOURCE_TIMEZONE", "Mars/Olympus"),
        ("AMBIGUOUS_TIME", "first"),
        ("MISSING_VALUES", "drop"),
        ("DATE_FORMAT", "epoch_us"),
        ("COLUMN_MAP", "Jahr:yeer"),
    ]:
        with pytest.raises(ConfigError) as caught:
            settings_from({variable: value})
        assert str(caught.value).startswith(f"{variable}={value!r} is invalid: expected ")


def test_fixed_offsets_and_standard_offsets() -> None:
    assert [fixed_offset(text) for text in ("-08:00", "+0530", "UTC+1", "+24:00", "Europe/Berlin")] == [
        -pd.Timedelta(hours=8),
        pd.Timedelta(hours=5, minutes=30),
        pd.Timedelta(hours=1),
        None,
        None,
    ]
    assert [standard_offset(zone) for zone in ("America/New_York", "Australia/Sydney", "Asia/Kolkata")] == ["-05:00", "+10:00", "+05:30"]


def test_tokens_and_sentinels() -> None:
    missing = missing_tokens(("NA", "-9999", "NaN", "1e3"))
    text = pa.chunked_array([pa.array(["NA", " NA ", "na", "-9999", "-9999.0", "1000", "NaN", "x"])])
    assert missing.token(text).tolist() == [True, True, False, True, False, False, True, False]
    assert missing.text_token(text).tolist() == [True, True, False, False, False, False, True, False]
    assert missing.sentinel(np.array([-9999.0, -9999.5, 1000.0, np.nan])).tolist() == [True, False, True, False]


# -- missing values ----------------------------------------------------------------------------------
MULTI = "timestamp,sensor_id,temperature,humidity,pressure,wind_gust"


def test_reject_names_the_token_and_the_rule(tmp_path: Path) -> None:
    text = f"{MULTI}\n2024-01-01T00:00Z,s1,20,NA,1000,3\n2024-01-01T01:00Z,s1,-9999.0,50,1000,4\n2024-01-01T02:00Z,s1,20,50,,5\n"
    errors = refused(tmp_path, text, NA_VALUES="NA,-9999").details["errors"]
    assert [(e["line"], e["column"], e["value"], e["rule"], e["message"]) for e in errors] == [
        (2, "humidity", "NA", "missing_value", "missing humidity: the value is in NA_VALUES (MISSING_VALUES=null stores it as NULL)"),
        (
            3,
            "temperature",
            "-9999.0",
            "missing_value",
            "missing temperature: the value equals a sentinel of NA_VALUES (MISSING_VALUES=null stores it as NULL)",
        ),
        (4, "pressure", "", "missing_value", "empty pressure (MISSING_VALUES=null stores it as NULL)"),
    ]


def test_without_the_token_today_s_rules_apply(tmp_path: Path) -> None:
    text = f"{MULTI}\n2024-01-01T00:00Z,s1,20,NA,1000,3\n2024-01-01T01:00Z,s1,NaN,50,-9999,4\n"
    errors = refused(tmp_path, text, NA_VALUES="").details["errors"]
    assert [(e["line"], e["rule"]) for e in errors] == [(2, "not_a_number"), (3, "not_finite"), (3, "out_of_range")]


def test_null_stores_missing_measures_as_null_and_extras_as_json_null(tmp_path: Path) -> None:
    text = (
        f"{MULTI}\n"
        "2024-01-01T00:00Z,s1,20,NA,1000,NA\n"
        "2024-01-01T01:00Z,s1,,55,-9999.0,7.5\n"
        "2024-01-01T02:00Z,s1,21,60,NaN, \n"
        "2024-01-01T03:00Z,s1,22,65,1001,-9999\n"
    )
    outcome, table = run(tmp_path, text, NA_VALUES="NA,NaN,-9999", MISSING_VALUES="null")
    assert outcome.loaded == 4 and outcome.invalid_rows == 0
    assert table.column("temperature_k").to_pylist() == [293.15, None, 294.15, 295.15]
    assert table.column("humidity_pct").to_pylist() == [None, 55.0, 60.0, 65.0]
    assert table.column("pressure_hpa").to_pylist() == [1000.0, None, None, 1001.0]
    assert table.column("extra").to_pylist() == ['{"wind_gust":null}', '{"wind_gust":7.5}', '{"wind_gust":null}', '{"wind_gust":null}']


def test_a_row_without_any_measure_or_without_timestamp_stays_invalid(tmp_path: Path) -> None:
    text = (
        f"{MULTI}\n2024-01-01T00:00Z,s1,NA,,NA,1\nNA,s1,20,50,1000,2\n2024-01-01T02:00Z,NA,20,50,1000,3\n2024-01-01T03:00Z,s1,20,NA,NA,4\n"
    )
    outcome, table = run(tmp_path, text, MISSING_VALUES="null", MAX_INVALID_ROWS="3")
    assert (outcome.loaded, outcome.invalid_rows) == (1, 3)
    assert [(p["line"], p["column"], p["value"], p["rule"], p["message"]) for p in outcome.rejected_problems()] == [
        (2, "temperature", "NA", "missing_value", "no measure in this row: temperature, humidity, pressure are all missing"),
        (3, "timestamp", "NA", "missing_value", "missing timestamp (empty, or a value of NA_VALUES)"),
        (4, "sensor_id", "NA", "missing_value", "missing sensor id (empty, or a value of NA_VALUES)"),
    ]
    assert table.column("line_no").to_pylist() == [5]


def test_metrics_count_only_present_values() -> None:
    at = pa.array([datetime(2024, 1, 1, h, tzinfo=UTC) for h in (0, 1, 2, 3)] + [datetime(2024, 1, 2, 0, tzinfo=UTC)])
    readings = pa.table(
        {
            "sensor_id": ["s"] * 5,
            "observed_at": at.cast(pa.timestamp("us", tz="UTC")),
            "temperature_k": [280.0, None, 282.0, 286.0, None],
            "humidity_pct": pa.nulls(5, pa.float64()),
            "pressure_hpa": [None, 1000.0, None, None, 1002.0],
        }
    )
    summary = aggregate.with_std(aggregate.summarize(readings)).to_pylist()
    assert [(r["metric"], f"{r['day']:%m-%d}", r["n"], r["min"], r["max"], r["mean"], r["std"]) for r in summary] == [
        ("temperature_k", "01-01", 3, 280.0, 286.0, 282.6666666666667, pytest.approx(math.sqrt(28 / 3), rel=1e-12)),
        ("pressure_hpa", "01-01", 1, 1000.0, 1000.0, 1000.0, None),
        ("pressure_hpa", "01-02", 1, 1002.0, 1002.0, 1002.0, None),
    ]
    assert [(f"{r['first_at']:%H}", f"{r['last_at']:%H}") for r in summary] == [("00", "03"), ("01", "01"), ("00", "00")]
    halves = aggregate.merge([aggregate.summarize(readings.slice(0, 2)), aggregate.summarize(readings.slice(2))])
    assert aggregate.with_std(halves).sort_by([("metric", "descending"), ("day", "ascending")]).to_pylist() == summary


# -- dates and times ---------------------------------------------------------------------------------
def test_date_only_values_follow_the_source_timezone(tmp_path: Path) -> None:
    text = "timestamp,temperature\n2012-01-01,1\n2012-01-02 00:00,2\n2012-01-03T00:00:00Z,3\n2012-07-01,4\n"
    _, table = run(tmp_path, text, SOURCE_TIMEZONE="America/Los_Angeles")
    assert utc(table) == ["2012-01-01 08:00", "2012-01-02 08:00", "2012-01-03 00:00", "2012-07-01 07:00"]
    _, fixed = run(tmp_path, text, SOURCE_TIMEZONE="+05:30")
    assert utc(fixed) == ["2011-12-31 18:30", "2012-01-01 18:30", "2012-01-03 00:00", "2012-06-30 18:30"]


def test_split_date_and_time_columns_with_the_format_the_headers_spell(tmp_path: Path) -> None:
    plan = plan_columns(["Time (HH:MM)", "Date (DD/MM/YYYY)", "T"], {}, UNITS)
    assert (plan.roles["date"], plan.roles["time"], plan.extras) == (1, 0, ())
    # 01/02 could be either day first or month first: the header says which
    outcome, table = run(tmp_path, "Date (DD/MM/YYYY),Time (HH:MM),T\n01/02/2024,23:00,1\n01/02/2024,24:00,2\n")
    assert outcome.date_format == "%d/%m/%Y %H:%M"
    assert utc(table) == ["2024-02-01 23:00", "2024-02-02 00:00"]
    # plain headers: detected on the joined text, or DATE_FORMAT for the joined text
    outcome, table = run(tmp_path, "date,time,T\n12/31/2023,23:30,1\n01/01/2024,00:30,2\n")
    assert (outcome.date_format, utc(table)) == ("%m/%d/%Y %H:%M", ["2023-12-31 23:30", "2024-01-01 00:30"])
    _, table = run(tmp_path, "Day,Clock,T\n2024.01.05,7h30,1\n", COLUMN_MAP="Day:date,Clock:time", DATE_FORMAT="%Y.%m.%d %Hh%M")
    assert utc(table) == ["2024-01-05 07:30"]


def test_split_date_and_time_problems_name_both_columns(tmp_path: Path) -> None:
    text = "Date,Time,T\n2024-01-01,10:00,1\n2024-01-01,,2\n2024-01-01,25:00,3\n"
    errors = refused(tmp_path, text, MAX_INVALID_ROWS="0").details["errors"]
    assert [(e["line"], e["column"], e["value"], e["rule"]) for e in errors] == [
        (3, "Date + Time", "2024-01-01 ", "missing_value"),
        (4, "Date + Time", "2024-01-01 25:00", "timestamp_format"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-12-31 24:00", "2025-01-01 00:00"),
        ("2024-02-28T24:00:00", "2024-02-29 00:00"),
        ("2024-02-28T24:00:00Z", "2024-02-29 00:00"),
        ("2024-02-28 24:00:00+01:00", "2024-02-28 23:00"),
    ],
)
def test_hour_24_is_midnight_of_the_next_day(value: str, expected: str) -> None:
    parsed = parse_timestamps(pd.Series([value, "2024-01-01 12:00"], dtype=object), "ISO8601", "UTC")
    assert f"{pd.Timestamp(parsed.utc[0]):%Y-%m-%d %H:%M}" == expected


def test_hour_24_with_minutes_is_no_time(tmp_path: Path) -> None:
    error = refused(tmp_path, "timestamp,T\n2024-01-01 23:00,1\n2024-01-01 24:30,2\n").details["errors"][0]
    assert (error["line"], error["rule"]) == (3, "timestamp_format")


def test_unix_times(tmp_path: Path) -> None:
    _, seconds = run(tmp_path, "ts,T\n1700000000,1\n1700000000.25,2\n", DATE_FORMAT="epoch_s", SOURCE_TIMEZONE="Europe/Berlin")
    assert seconds.column("observed_at").to_pylist() == [
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC),  # Unix time is UTC whatever SOURCE_TIMEZONE says
    ]
    outcome, millis = run(tmp_path, "ts,T\n1700000000123,1\n", DATE_FORMAT="epoch_ms")
    assert (outcome.date_format, millis.column("observed_at").to_pylist()) == (
        "epoch_ms",
        [datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)],
    )
    errors = refused(tmp_path, "ts,T\n1700000000,1\nyesterday,2\n1e30,3\n", DATE_FORMAT="epoch_s").details["errors"]
    assert [(e["line"], e["rule"], e["message"]) for e in errors] == [
        (3, "timestamp_format", "not a valid date/time in this file's format (epoch_s)"),
        (4, "timestamp_format", "not a valid date/time in this file's format (epoch_s)"),
    ]


def test_numeric_time_columns(tmp_path: Path) -> None:
    text = "year,month,day,hour,minute,second,T\n2024,2,29,23,59,30.5,1\n2024,12,31,24,0,0,2\n2023,2,29,0,0,0,3\n2024,4,31,0,0,0,4\n"
    outcome, table = run(tmp_path, text, MAX_INVALID_ROWS="2")
    assert outcome.date_format == "columns year, month, day, hour, minute, second"
    assert table.column("observed_at").to_pylist() == [
        datetime(2024, 2, 29, 23, 59, 30, 500000, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
    ]
    assert [(p["line"], p["column"], p["value"], p["rule"]) for p in outcome.rejected_problems()] == [
        (4, "year + month + day + hour + minute + second", "year=2023 month=2 day=29 hour=0 minute=0 second=0", "timestamp_format"),
        (5, "year + month + day + hour + minute + second", "year=2024 month=4 day=31 hour=0 minute=0 second=0", "timestamp_format"),
    ]
    _, by_doy = run(tmp_path, "Year,DOY,HR,MIN,T\n2023,365,23,0,1\n2024,366,1,0,2\n", SOURCE_TIMEZONE="-07:00")
    assert utc(by_doy) == ["2024-01-01 06:00", "2024-12-31 08:00"]  # day 366 of a leap year; local time at -07:00


@pytest.mark.parametrize(
    ("headers", "column_map", "roles"),
    [
        (["timestamp", "day", "hour", "T"], {}, {"timestamp": 0}),  # beside a timestamp, a day column is an extra
        (["year", "jday", "month", "day", "hour", "min", "T"], {}, {"year": 0, "month": 2, "day": 3, "hour": 4, "minute": 5}),
        (["Jahr", "Tag", "T"], {"Jahr": "year", "Tag": "doy"}, {"year": 0, "doy": 1}),
        (["Datum", "T"], {"Datum": "date"}, {"date": 0}),
    ],
)
def test_time_roles(headers: list[str], column_map: dict[str, str], roles: dict[str, int]) -> None:
    plan = plan_columns(headers, column_map, UNITS)
    assert {role: index for role, index in plan.roles.items() if role != "temperature"} == roles


@pytest.mark.parametrize(
    ("headers", "column_map", "rule", "text"),
    [
        (["year", "hour", "T"], {}, "missing_column", "no timestamp column"),
        (["a", "b", "T"], {"a": "time"}, "header", "no timestamp can be read from 'a' as time"),
        (["timestamp", "b", "T"], {"b": "year"}, "header", "'timestamp' as timestamp, 'b' as year"),
        (["year", "month", "day", "mon", "T"], {}, "header", "columns 'month' and 'mon' both look like month"),
        (["Date", "Time", "Timestamp", "T"], {}, "header", "'Timestamp' as timestamp, 'Date' as date, 'Time' as time"),
    ],
)
def test_time_roles_refused(headers: list[str], column_map: dict[str, str], rule: str, text: str) -> None:
    with pytest.raises(InvalidFile) as caught:
        plan_columns(headers, column_map, UNITS)
    assert caught.value.problem.rule == rule and text in caught.value.problem.message


# -- daylight saving -----------------------------------------------------------------------------------
FALL = "timestamp,T\n2024-11-03 00:30,1\n2024-11-03 01:30,2\n2024-11-03 02:30,3\n"


@pytest.mark.parametrize(("ambiguous", "expected"), [("earliest", "05:30"), ("latest", "06:30")])
def test_ambiguous_time_picks_one_of_the_two(tmp_path: Path, ambiguous: str, expected: str) -> None:
    _, table = run(tmp_path, FALL, SOURCE_TIMEZONE="America/New_York", AMBIGUOUS_TIME=ambiguous)
    assert utc(table) == ["2024-11-03 04:30", f"2024-11-03 {expected}", "2024-11-03 07:30"]


def test_a_repeated_hour_written_twice_is_the_same_instant_twice(tmp_path: Path) -> None:
    twice = "timestamp,T\n2024-11-03 01:30,1\n2024-11-03 01:30,2\n"
    error = refused(tmp_path, twice, SOURCE_TIMEZONE="America/New_York", AMBIGUOUS_TIME="earliest").details["errors"][0]
    assert (error["line"], error["rule"], error["message"]) == (3, "duplicate_key", "same sensor and timestamp as line 2")


def test_daylight_saving_messages(tmp_path: Path) -> None:
    error = refused(tmp_path, FALL, SOURCE_TIMEZONE="America/New_York").details["errors"][0]
    assert (error["line"], error["rule"], error["message"]) == (
        3,
        "daylight_saving",
        "falls in the daylight-saving change: this local time occurs twice in America/New_York; set AMBIGUOUS_TIME=earliest or latest",
    )
    spring = "timestamp,T\n2024-03-10 01:30,1\n2024-03-10 02:30,2\n2024-03-10 03:30,3\n"
    for ambiguous in ("reject", "earliest"):
        error = refused(tmp_path, spring, SOURCE_TIMEZONE="America/Chicago", AMBIGUOUS_TIME=ambiguous).details["errors"][0]
        assert (error["line"], error["value"], error["rule"], error["message"]) == (
            3,
            "2024-03-10 02:30",
            "daylight_saving",
            "falls in the daylight-saving change: this local time does not exist in America/Chicago (clocks went forward over it); "
            "a logger on standard time all year needs its fixed offset: SOURCE_TIMEZONE=-06:00",
        )
    _, table = run(tmp_path, spring, SOURCE_TIMEZONE="-06:00")
    assert utc(table) == ["2024-03-10 07:30", "2024-03-10 08:30", "2024-03-10 09:30"]


# -- units -------------------------------------------------------------------------------------------
def test_converted_values_carry_no_binary_noise() -> None:
    assert to_kelvin(np.array([39.02, 21.123, 39.03]), "F").tolist() == [277.05, 267.107222, 277.055556]
    assert to_kelvin(np.array([21.123, 8.15]), "C").tolist() == [294.273, 281.3]
    assert to_percent(np.array([0.57, 0.291]), "fraction").tolist() == [57.0, 29.1]
    assert to_hpa(np.array([101325.5]), "Pa").tolist() == [1013.255]
    assert to_hpa(np.array([101.33]), "kPa").tolist() == [1013.3]
    raw = np.array([1013.123456789])
    assert to_hpa(raw, "hPa") is raw  # in the stored unit already: stored as read


@pytest.mark.parametrize(
    ("header", "values", "env", "hint"),
    [
        ("temp", ["68.5", "71.2", "59.0"], {}, "all values fit °F: set TEMPERATURE_UNIT=F, or name the unit in the header (temp_F)"),
        ("T", ["293.15", "295.2"], {}, "all values fit K: set TEMPERATURE_UNIT=K, or name the unit in the header (T_K)"),
        ("T (degC)", ["68.5", "75"], {}, "all values fit °F: name the unit in the header (T_F)"),
        ("air temp", ["68.5", "75"], {}, "all values fit °F: set TEMPERATURE_UNIT=F, or name the unit in the header (air temp_F)"),
        ("temp_c", ["293.15", "300"], {}, "all values fit K: name the unit in the header (temp_K)"),
        ("pressure", ["101.3", "99.8"], {}, "all values fit kPa: set PRESSURE_UNIT=kPa, or name the unit in the header (pressure_kPa)"),
        ("p", ["101325", "99800"], {}, "all values fit Pa: set PRESSURE_UNIT=Pa, or name the unit in the header (p_Pa)"),
        (
            "rh",
            ["45", "52.5"],
            {"HUMIDITY_UNIT": "fraction"},
            "all values fit %: set HUMIDITY_UNIT=percent, or name the unit in the header (rh_pct)",
        ),
    ],
)
def test_a_column_in_another_unit_gets_a_hint(tmp_path: Path, header: str, values: list[str], env: dict[str, str], hint: str) -> None:
    rows = "".join(f"2024-01-01T0{i}:00Z,{v}\n" for i, v in enumerate(values))
    error = refused(tmp_path, f"timestamp,{header}\n{rows}", **env).details["errors"][0]
    assert error["rule"] == "out_of_range" and error["message"].endswith(f"; {hint}")


def test_no_hint_for_an_outlier_or_values_no_unit_explains(tmp_path: Path) -> None:
    outlier = "timestamp,T\n2024-01-01T00:00Z,20\n2024-01-01T01:00Z,71.4\n2024-01-01T02:00Z,21\n"
    assert refused(tmp_path, outlier).details["errors"][0]["message"] == "outside -90..60 °C"
    inches = "timestamp,p\n2024-01-01T00:00Z,29.92\n2024-01-01T01:00Z,30.01\n"  # inHg: no known unit fits
    assert refused(tmp_path, inches).details["errors"][0]["message"] == "outside 300..1100 hPa"


# -- names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "role", "suffix"),
    [
        ("humid", "humidity", None),
        ("Air Temperature", "temperature", None),
        ("dry bulb", "temperature", None),
        ("Dry-bulb (C)", "temperature", "c"),
        ("drybulb", "temperature", None),
        ("rel humidity", "humidity", None),
        ("RHum (%)", "humidity", "%"),
        ("station pressure", "pressure", None),
        ("Barometric Pressure (mBar)", "pressure", "mbar"),
        ("temp_c", "temperature", "c"),
        ("temp_F", "temperature", "f"),
        ("Tair", "temperature", None),
        ("rh_pct", "humidity", "pct"),
        ("Air temperature [deg C]", "temperature", "degc"),
        ("pressure (mbar)", "pressure", "mbar"),
        ("Rel. humidity [%]", "humidity", "%"),
        ("jday", "doy", None),
        ("Date (MM/DD/YYYY)", "timestamp", "mmddyyyy"),
    ],
)
def test_more_aliases_and_unit_spellings(header: str, role: str, suffix: str | None) -> None:
    assert recognise(header) == (role, suffix)


def test_units_written_in_brackets_convert(tmp_path: Path) -> None:
    text = "timestamp,Air temperature [deg C],Station pressure (mBar),Rel humidity [%]\n2024-01-01T00:00Z,8.15,1013.2,55\n"
    outcome, table = run(tmp_path, text)
    assert dict(outcome.plan.units) == {"temperature": "C", "pressure": "mbar", "humidity": "percent"}
    assert table.select(["temperature_k", "pressure_hpa", "humidity_pct"]).to_pylist() == [
        {"temperature_k": 281.3, "pressure_hpa": 1013.2, "humidity_pct": 55.0}
    ]


# -- a property: missing values land as NULL exactly where they were ---------------------------------
MISSING_TOKENS = ("", " ", "NA", "NaN", "null", "-9999", "-9999.0", "-9.999e3")
measure = st.one_of(st.sampled_from(MISSING_TOKENS), st.integers(-4000, 4000).map(lambda v: f"{v / 100:.2f}"))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(measure, measure, measure), min_size=1, max_size=60))
def test_missing_values_become_null_where_they_were(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, str]]) -> None:
    text = "timestamp,sensor_id,temperature,humidity,pressure\n" + "".join(
        f"2024-01-01T00:{i:02d}:00Z,s,{t},{h},{p}\n" for i, (t, h, p) in enumerate(rows)
    )
    env = {
        "NA_VALUES": "NA,NaN,null,-9999",
        "MISSING_VALUES": "null",
        "MAX_INVALID_ROWS": "100%",
        "HUMIDITY_MIN": "-90",
        "PRESSURE_MIN": "-90",
    }
    path = tmp_path_factory.mktemp("missing") / "f.csv"
    path.write_text(text, encoding="utf-8")
    received = Received()
    try:
        outcome = pipeline.run(path, rules(**env), NOW, sink=received)
    except InvalidFile as exc:  # every row without a measure: nothing to load
        assert all(all(v.strip() in MISSING_TOKENS for v in row) for row in rows) and exc.problem.rule == "missing_value"
        return

    def stored(value: str, offset: str) -> float | None:
        return None if value.strip() in MISSING_TOKENS else float(Decimal(value) + Decimal(offset))

    expected = [
        (i + 2, stored(t, "273.15"), stored(h, "0"), stored(p, "0"))
        for i, (t, h, p) in enumerate(rows)
        if not all(v.strip() in MISSING_TOKENS for v in (t, h, p))
    ]
    table = pa.concat_tables(received.readings)
    got = list(zip(*(table.column(c).to_pylist() for c in ("line_no", "temperature_k", "humidity_pct", "pressure_hpa")), strict=True))
    assert got == expected
    assert outcome.invalid_rows == len(rows) - len(expected)
    counts = {r["metric"]: r["n"] for r in outcome.statistics.new.to_pylist()}  # a small file: its statistics all held to its end
    for index, metric in enumerate(("temperature_k", "humidity_pct", "pressure_hpa"), start=1):
        assert counts.get(metric, 0) == sum(row[index] is not None for row in expected)
