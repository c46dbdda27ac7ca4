"""Files as stations, loggers and data services write them load with the settings docs/input.md gives
for them: exact stored values (UTC, K, %, hPa, extra), counts, preambles and daily metrics on the real
PostgreSQL; a partial load's rejects file keeps the lines before the data, so it reads the same way."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pytest

from sensor_etl.edges.db import schema_sql
from tests.helpers import station_files as sf
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.workspace import REPO, Db, Workspace

READINGS = (
    "SELECT r.line_no, r.observed_at::text, r.sensor_id, r.temperature_k, r.humidity_pct, r.pressure_hpa, r.extra"
    " FROM sensor_readings r JOIN ingested_files f USING (file_id) WHERE f.file_name = %s ORDER BY r.line_no"
)
INPUT_DOC = (REPO / "docs" / "input.md").read_text(encoding="utf-8")
STORED = "SELECT line_no, observed_at, sensor_id, temperature_k, humidity_pct, pressure_hpa, extra FROM sensor_readings"
DAILY = "SELECT sensor_id, day::text, metric, n, mean, std FROM sensor_metrics_daily ORDER BY 1, 2, 3"
# the daily view recomputed from the stored rows: count(v) and avg(v) skip NULLs, as the metrics must
DIRECT = """
    SELECT sensor_id, (observed_at AT TIME ZONE 'UTC')::date::text, metric, count(v), avg(v), stddev_samp(v)
    FROM sensor_readings,
         LATERAL (VALUES ('humidity_pct', humidity_pct), ('pressure_hpa', pressure_hpa), ('temperature_k', temperature_k)) AS m(metric, v)
    WHERE v IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def kelvin(celsius: object) -> float:
    return float(Decimal(str(celsius)) + Decimal("273.15"))


def assert_daily_metrics_match_the_rows(db: Db) -> list[tuple]:
    view, direct = db.rows(DAILY), db.rows(DIRECT)
    assert [row[:4] for row in view] == [row[:4] for row in direct]
    for got, want in zip(view, direct, strict=True):
        assert math.isclose(got[4], want[4], rel_tol=1e-12)
        assert (got[5] is None and want[5] is None) or math.isclose(got[5], want[5], rel_tol=1e-9, abs_tol=1e-12)
    return view


def test_typical_year_file(workspace: Workspace, db: Db) -> None:
    """A metadata line above the header (the preamble), split MM/DD/YYYY and HH:MM columns (the format
    read from the headers), hours 01:00-24:00 in local standard time, -9900 sentinels in measures
    (NULL) and in other columns (null)."""
    content = sf.tmy_csv()
    workspace.write("744860TYA.csv", content)
    run_once(workspace.root, db.dsn, **sf.TMY_SETTINGS)

    assert db.rows("SELECT file_name, rows_loaded, date_format, preamble FROM ingested_files") == [
        ("744860TYA.csv", 48, "%m/%d/%Y %H:%M", sf.TMY_METADATA)
    ]
    rows = db.rows(READINGS, ("744860TYA.csv",))
    expected = []
    for i, (_date, _time, dry_bulb, rhum, pressure) in enumerate(sf.tmy_rows()):
        day, hour = divmod(i + 1 + 5, 24)  # local hour i+1 at UTC-5; hour 24 is midnight of the next day
        expected.append(
            (
                i + 3,
                f"1988-01-{day + 1:02d} {hour:02d}:00:00+00",
                "default",
                kelvin(dry_bulb),
                None if i in sf.TMY_MISSING["humidity"] else float(rhum),
                None if i in sf.TMY_MISSING["pressure"] else float(pressure),
            )
        )
    assert [row[:6] for row in rows] == expected
    assert rows[22][:2] == (25, "1988-01-02 04:00:00+00") and rows[23][:2] == (26, "1988-01-02 05:00:00+00")  # 23:00, then 24:00
    assert rows[0][6] == {
        "ETR (W/m^2)": 0,
        "GHI (W/m^2)": 0,
        "Dew-point (C)": -8.0,
        "Wdir (degrees)": 0,
        "Wspd (m/s)": 0.0,
        "Lprecip depth (mm)": 0,
    }
    assert rows[1][6]["Lprecip depth (mm)"] is None  # -9900 in an ordinary column is null too

    view = assert_daily_metrics_match_the_rows(db)
    assert [(day, metric, n) for _, day, metric, n, _, _ in view] == [
        ("1988-01-01", "humidity_pct", 17),  # local 01:00-18:00 fall on 1 January UTC; one humidity is -9900
        ("1988-01-01", "pressure_hpa", 18),
        ("1988-01-01", "temperature_k", 18),
        ("1988-01-02", "humidity_pct", 23),
        ("1988-01-02", "pressure_hpa", 22),
        ("1988-01-02", "temperature_k", 24),
        ("1988-01-03", "humidity_pct", 6),
        ("1988-01-03", "pressure_hpa", 6),
        ("1988-01-03", "temperature_k", 6),
    ]
    humidity = [float(rhum) for i, (*_, rhum, _) in enumerate(sf.tmy_rows()[:18]) if i not in sf.TMY_MISSING["humidity"]]
    assert math.isclose(view[0][4], np.mean(humidity), rel_tol=1e-12)
    assert math.isclose(view[0][5], np.std(humidity, ddof=1), rel_tol=1e-9)
    assert_exactly_once(workspace, db, [content.encode()], rows=lambda _: 48)


def metar_expected() -> list[tuple]:
    def number(text: str) -> float | None:
        return None if text == "NA" else float(text)

    expected = []
    for i, row in enumerate(sf.metar_rows()):
        tmpf = row["tmpf"]
        k = None if tmpf == "NA" else float(((Decimal(tmpf) - 32) * 5 / 9 + Decimal("273.15")).quantize(Decimal("0.000001")))
        expected.append((i + 2, f"{row['valid']}:00+00", row["station"], k, number(row["relh"]), number(row["mslp"])))
    return expected


def test_metar_export_of_several_airports(workspace: Workspace, db: Db) -> None:
    """°F with NA gaps, one station column for three airports: every row loads, NA measures are NULL,
    NA elsewhere is null, and 39.02 °F is 277.05 K."""
    content = sf.metar_csv()
    workspace.write("iowa_asos_2016.csv", content)
    run_once(workspace.root, db.dsn, **sf.METAR_SETTINGS)

    assert db.rows("SELECT rows_loaded, rows_rejected, sensors FROM ingested_files") == [(18, 0, 3)]
    rows = db.rows(READINGS, ("iowa_asos_2016.csv",))
    assert [row[:6] for row in rows] == metar_expected()
    assert rows[0][:4] == (2, "2016-01-01 00:54:00+00", "AMW", 277.05)
    assert rows[9][6] == {
        "lon": -93.619,
        "lat": 41.99,
        "dwpf": 21.56,
        "drct": 270.0,
        "sknt": 6.0,
        "alti": 30.14,
        "gust": None,
        "wxcodes": "-SN",
        "metar": "KAMW 010354Z AUTO 33011KT 10SM CLR A3014 RMK AO2",
    }

    view = assert_daily_metrics_match_the_rows(db)
    present = {(station, metric): 0 for station in sf.METAR_STATIONS for metric in ("humidity_pct", "pressure_hpa", "temperature_k")}
    for _, _, station, *measures in metar_expected():
        for metric, value in zip(("temperature_k", "humidity_pct", "pressure_hpa"), measures, strict=True):
            present[station, metric] += value is not None
    assert {(sensor, metric): n for sensor, _, metric, n, _, _ in view} == present
    assert present["DSM", "humidity_pct"] == 4 and present["AMW", "pressure_hpa"] == 5  # the NA gaps are not counted
    assert_exactly_once(workspace, db, [content.encode()])


def test_metar_export_without_missing_values_null_is_quarantined_naming_the_token(workspace: Workspace, db: Db) -> None:
    content = sf.metar_csv()
    workspace.write("iowa_asos_2016.csv", content)
    run_once(workspace.root, db.dsn, **{k: v for k, v in sf.METAR_SETTINGS.items() if k != "MISSING_VALUES"})
    report = json.loads((workspace.quarantine / "iowa_asos_2016.csv.error.json").read_text())
    assert (report["rows_total"], report["rows_invalid"], report["rule_counts"]) == (18, 7, {"missing_value": 8})
    assert report["reason"] == (
        "7 of 18 rows invalid (missing_value: 8); first: iowa_asos_2016.csv:3, column 'mslp', value 'NA': "
        "missing pressure: the value is in NA_VALUES (MISSING_VALUES=null stores it as NULL) [missing_value]"
    )
    assert_exactly_once(workspace, db, [content.encode()], quarantined=[content.encode()])


def test_radiation_table_with_year_day_of_year_hour_minute_columns(workspace: Workspace, db: Db) -> None:
    """Numeric time columns found by their names (year, jday, hour, min); day 60 of 2020 is 29 February."""
    content = sf.radiation_csv()
    workspace.write("bon20059.csv", content)
    run_once(workspace.root, db.dsn, **sf.RADIATION_SETTINGS)

    assert db.rows("SELECT rows_loaded, date_format FROM ingested_files") == [(6, "columns year, doy, hour, minute")]
    rows = db.rows(READINGS, ("bon20059.csv",))
    times = ["2020-02-28 23:57", "2020-02-28 23:58", "2020-02-28 23:59", "2020-02-29 00:00", "2020-02-29 00:01", "2020-02-29 00:02"]
    assert [row[:6] for row in rows] == [
        (i + 2, f"{at}:00+00", "default", None if i == sf.RADIATION_MISSING_TEMPERATURE else kelvin(temp), rh, pressure)
        for i, (at, (*_, temp, rh, pressure)) in enumerate(zip(times, sf.radiation_rows(), strict=True))
    ]
    assert rows[3][6] == {"dt": 0.0, "zen": 95.2, "dw_solar": None, "uw_solar": 0.0}
    view = assert_daily_metrics_match_the_rows(db)
    assert [(day, metric, n) for _, day, metric, n, _, _ in view if metric == "temperature_k"] == [
        ("2020-02-28", "temperature_k", 3),
        ("2020-02-29", "temperature_k", 2),
    ]
    assert_exactly_once(workspace, db, [content.encode()])


@pytest.mark.parametrize(("ambiguous", "fall_back"), [("earliest", "05:00"), ("latest", "06:00")])
def test_new_york_across_both_daylight_saving_changes(workspace: Workspace, db: Db, ambiguous: str, fall_back: str) -> None:
    content = sf.new_york_csv()
    workspace.write("ny.csv", content)
    run_once(workspace.root, db.dsn, **sf.DST_SETTINGS, AMBIGUOUS_TIME=ambiguous)
    rows = db.rows(READINGS, ("ny.csv",))
    assert [(line, at, k) for line, at, _, k, *_ in rows] == [
        (2, "2024-03-10 05:00:00+00", 283.65),  # 00:00 EST
        (3, "2024-03-10 06:00:00+00", 284.65),
        (4, "2024-03-10 07:00:00+00", 285.65),  # 03:00 EDT: the clock skipped 02:00
        (5, "2024-03-10 08:00:00+00", 286.65),
        (6, "2024-03-10 09:00:00+00", 287.65),
        (7, "2024-11-03 04:00:00+00", 288.65),  # 00:00 EDT
        (8, f"2024-11-03 {fall_back}:00+00", 289.65),  # 01:00, shown twice by the clock
        (9, "2024-11-03 07:00:00+00", 290.65),  # 02:00 EST
        (10, "2024-11-03 08:00:00+00", 291.65),
    ]
    assert_exactly_once(workspace, db, [content.encode()])


def test_daylight_saving_rejects_are_quarantined_with_what_to_set(workspace: Workspace, db: Db) -> None:
    fall = sf.new_york_csv()
    spring = "timestamp,temperature\n2024-03-10 01:30,1.5\n2024-03-10 02:30,2.5\n"
    workspace.write("ny.csv", fall)
    workspace.write("ny_standard_time.csv", spring)
    run_once(workspace.root, db.dsn, **sf.DST_SETTINGS)
    reports = {name: json.loads((workspace.quarantine / f"{name}.error.json").read_text()) for name in ("ny.csv", "ny_standard_time.csv")}
    assert reports["ny.csv"]["reason"] == (
        f"1 of 9 rows invalid (daylight_saving: 1); first: ny.csv:{sf.DST_FALL_LINE}, column 'timestamp', value '2024-11-03 01:00': "
        "falls in the daylight-saving change: this local time occurs twice in America/New_York; set AMBIGUOUS_TIME=earliest or latest "
        "[daylight_saving]"
    )
    assert reports["ny_standard_time.csv"]["errors"] == [
        {
            "line": 3,
            "column": "timestamp",
            "value": "2024-03-10 02:30",
            "rule": "daylight_saving",
            "message": "falls in the daylight-saving change: this local time does not exist in America/New_York (clocks went forward "
            "over it); a logger on standard time all year needs its fixed offset: SOURCE_TIMEZONE=-05:00",
        }
    ]
    assert_exactly_once(workspace, db, [fall.encode(), spring.encode()], quarantined=[fall.encode(), spring.encode()])


def test_date_only_values_and_fixed_offsets_are_stored_in_utc(workspace: Workspace, db: Db) -> None:
    dates = "timestamp,sensor_id,temperature\n2012-01-01,a,1\n2012-01-01 00:00,b,1\n"
    workspace.write("la.csv", dates)
    run_once(workspace.root, db.dsn, SOURCE_TIMEZONE="America/Los_Angeles")
    assert db.rows("SELECT sensor_id, observed_at::text FROM sensor_readings ORDER BY 1") == [
        ("a", "2012-01-01 08:00:00+00"),
        ("b", "2012-01-01 08:00:00+00"),
    ]
    offset = "timestamp,temperature\n2012-01-01 00:00,1\n"
    workspace.write("kolkata.csv", offset)
    run_once(workspace.root, db.dsn, SOURCE_TIMEZONE="+05:30")
    assert db.value("SELECT observed_at::text FROM sensor_readings WHERE sensor_id = 'default'") == "2011-12-31 18:30:00+00"
    assert_exactly_once(workspace, db, [dates.encode(), offset.encode()])


def test_a_column_in_another_unit_is_quarantined_with_a_hint(workspace: Workspace, db: Db) -> None:
    office = "timestamp,room,temp,rh\n2024-01-08T09:00Z,r1,68.9,41\n2024-01-08T10:00Z,r1,71.6,40\n"
    workspace.write("office.csv", office)
    run_once(workspace.root, db.dsn, COLUMN_MAP="room:sensor_id")
    report = json.loads((workspace.quarantine / "office.csv.error.json").read_text())
    assert [error["message"] for error in report["errors"]] == [
        "outside -90..60 °C; all values fit °F: set TEMPERATURE_UNIT=F, or name the unit in the header (temp_F)"
    ] * 2
    workspace.write("office_f.csv", office.replace("temp,", "temp_F,"))
    run_once(workspace.root, db.dsn, COLUMN_MAP="room:sensor_id")
    assert db.rows("SELECT temperature_k FROM sensor_readings ORDER BY line_no") == [(293.65,), (295.15,)]
    assert_exactly_once(workspace, db, [office.encode(), office.replace("temp,", "temp_F,").encode()], quarantined=[office.encode()])


# -- Reading files: preambles, units rows, no header, aligned tables, values over lines --------------
def _stored_rows(db: Db, where: str = "") -> list[tuple]:
    """The readings exactly as stored (converted values are rounded to 6 decimals on the way in)."""
    return db.rows(f"{STORED} {where} ORDER BY file_id, line_no")


@pytest.mark.parametrize("station", sf.STATION_FILES, ids=[s.name for s in sf.STATION_FILES])
def test_a_station_file_loads_with_its_documented_settings(workspace: Workspace, db: Db, station: sf.StationFile) -> None:
    for variable, value in station.settings.items():
        assert f"{variable}={value}\n" in INPUT_DOC, f"docs/input.md does not give {variable}={value} for {station.name}"
    workspace.write(station.name, station.content)
    log = run_once(workspace.root, db.dsn, **station.settings)
    assert _stored_rows(db) == station.rows
    assert db.rows("SELECT file_name, rows_loaded, rows_rejected, sensors, preamble FROM ingested_files") == [
        (station.name, len(station.rows), 0, 1, station.preamble)
    ]
    assert_exactly_once(workspace, db, [station.content], rows=lambda _: len(station.rows))
    assert "Traceback" not in log


def test_validate_and_the_log_say_where_the_header_units_and_data_were_found(workspace: Workspace, db: Db) -> None:
    path = workspace.write(sf.TOA5.name, sf.TOA5.content)
    done = workspace.cli("validate", str(path), **sf.TOA5.settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        "would LOAD 3 rows from 1 sensor(s) (dates: ISO8601; header on line 2, units on line 3, data from line 5)\n"
    )
    log = run_once(workspace.root, db.dsn, **sf.TOA5.settings)
    assert 'layout="header on line 2, units on line 3, data from line 5"' in log
    headerless = workspace.write(sf.HEADERLESS.name, sf.HEADERLESS.content)
    done = workspace.cli("validate", str(headerless), **sf.HEADERLESS.settings)
    assert "no header (COLUMN_NAMES), data from line 9)" in done.stdout


def test_a_rejects_file_keeps_preamble_header_and_units_so_it_reads_the_same_way(workspace: Workspace, db: Db) -> None:
    lines = sf.TOA5.text.split("\r\n")
    lines[5] = lines[5].replace(",3,", ",hot,")  # line 6: AirTC_Avg is not a number
    content = "\r\n".join(lines).encode()
    workspace.write(sf.TOA5.name, content)
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="1", **sf.TOA5.settings)
    rejects = workspace.quarantine / f"{sf.TOA5.name}.rejects.csv"
    assert rejects.read_bytes() == "\r\n".join([*lines[:4], lines[5]]).encode() + b"\r\n"
    report = json.loads((workspace.quarantine / f"{sf.TOA5.name}.rejects.json").read_text())
    assert [(e["line"], e["column"], e["value"], e["rule"]) for e in report["errors"]] == [(6, "AirTC_Avg", "hot", "not_a_number")]
    assert [row[0] for row in _stored_rows(db)] == [5, 7]

    rejects.write_bytes(rejects.read_bytes().replace(b",hot,", b",3,"))  # the fix a person makes, then requeue
    assert workspace.cli("requeue", rejects.name).returncode == 0
    run_once(workspace.root, db.dsn, **sf.TOA5.settings)
    assert _stored_rows(db, f"WHERE file_id = (SELECT file_id FROM ingested_files WHERE file_name = '{rejects.name}')") == [
        (5, *sf.TOA5.rows[1][1:])
    ]
    assert db.value("SELECT preamble FROM ingested_files WHERE file_name = %s", (rejects.name,)) == sf.TOA5.preamble


def test_a_database_made_before_the_preamble_column_gets_it_at_start_up(workspace: Workspace, db: Db) -> None:
    db.execute(schema_sql())
    db.execute("ALTER TABLE ingested_files DROP COLUMN preamble")  # the ledger of the last release
    assert db.rows("SELECT column_name FROM information_schema.columns WHERE column_name = 'preamble'") == []
    workspace.write(sf.TOA5.name, sf.TOA5.content)
    run_once(workspace.root, db.dsn, **sf.TOA5.settings)
    assert db.rows("SELECT preamble FROM ingested_files") == [(sf.TOA5.preamble,)]
