"""Files as stations and loggers write them (tests/helpers/station_files.py) load with the settings
docs/input.md gives for them, and store exactly the rows, times (UTC), units (K, %, hPa) and preamble
they hold; a partial load's rejects file keeps the lines before the data, so it reads the same way."""

from __future__ import annotations

import json

import pytest

from sensor_etl.edges.db import schema_sql
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.station_files import HEADERLESS, STATION_FILES, TOA5, StationFile
from tests.helpers.workspace import REPO, Db, Workspace

INPUT_DOC = (REPO / "docs" / "input.md").read_text(encoding="utf-8")
READINGS = "SELECT line_no, observed_at, sensor_id, temperature_k, humidity_pct, pressure_hpa, extra FROM sensor_readings"


def _stored(db: Db, where: str = "") -> list[tuple]:
    return [
        (line, at, sensor, *(None if v is None else round(v, 6) for v in (t, h, p)), extra)
        for line, at, sensor, t, h, p, extra in db.rows(f"{READINGS} {where} ORDER BY file_id, line_no")
    ]


@pytest.mark.parametrize("station", STATION_FILES, ids=[s.name for s in STATION_FILES])
def test_a_station_file_loads_with_its_documented_settings(workspace: Workspace, db: Db, station: StationFile) -> None:
    for variable, value in station.settings.items():
        assert f"{variable}={value}\n" in INPUT_DOC, f"docs/input.md does not give {variable}={value} for {station.name}"
    workspace.write(station.name, station.content)
    log = run_once(workspace.root, db.dsn, **station.settings)
    assert _stored(db) == station.rows
    assert db.rows("SELECT file_name, rows_loaded, rows_rejected, sensors, preamble FROM ingested_files") == [
        (station.name, len(station.rows), 0, 1, station.preamble)
    ]
    assert_exactly_once(workspace, db, [station.content], rows=lambda _: len(station.rows))
    assert "Traceback" not in log


def test_validate_says_where_the_header_units_and_data_were_found(workspace: Workspace) -> None:
    path = workspace.write(TOA5.name, TOA5.content)
    done = workspace.cli("validate", str(path), **TOA5.settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        "would LOAD 3 rows from 1 sensor(s) (dates: ISO8601; header on line 2, units on line 3, data from line 5)\n"
    )
    headerless = workspace.write(HEADERLESS.name, HEADERLESS.content)
    done = workspace.cli("validate", str(headerless), **HEADERLESS.settings)
    assert "no header (COLUMN_NAMES), data from line 9)" in done.stdout


def test_a_rejects_file_keeps_preamble_header_and_units_so_it_reads_the_same_way(workspace: Workspace, db: Db) -> None:
    lines = TOA5.text.split("\r\n")
    lines[5] = lines[5].replace(",3,", ",hot,")  # line 6: AirTC_Avg is not a number
    content = "\r\n".join(lines).encode()
    workspace.write(TOA5.name, content)
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="1", **TOA5.settings)
    rejects = workspace.quarantine / f"{TOA5.name}.rejects.csv"
    assert rejects.read_bytes() == "\r\n".join([*lines[:4], lines[5]]).encode() + b"\r\n"
    report = json.loads((workspace.quarantine / f"{TOA5.name}.rejects.json").read_text())
    assert [(e["line"], e["column"], e["value"], e["rule"]) for e in report["errors"]] == [(6, "AirTC_Avg", "hot", "not_a_number")]
    assert [row[0] for row in _stored(db)] == [5, 7]

    rejects.write_bytes(rejects.read_bytes().replace(b",hot,", b",3,"))  # the fix a person makes, then requeue
    assert workspace.cli("requeue", rejects.name).returncode == 0
    run_once(workspace.root, db.dsn, **TOA5.settings)
    assert _stored(db, f"WHERE file_id = (SELECT file_id FROM ingested_files WHERE file_name = '{rejects.name}')") == [
        (5, *TOA5.rows[1][1:])
    ]
    assert db.value("SELECT preamble FROM ingested_files WHERE file_name = %s", (rejects.name,)) == TOA5.preamble


def test_a_database_made_before_the_preamble_column_gets_it_at_start_up(workspace: Workspace, db: Db) -> None:
    db.execute("\n".join(line for line in schema_sql().splitlines() if "preamble" not in line))  # the schema of the last release
    assert db.rows("SELECT column_name FROM information_schema.columns WHERE column_name = 'preamble'") == []
    workspace.write(TOA5.name, TOA5.content)
    run_once(workspace.root, db.dsn, **TOA5.settings)
    assert db.rows("SELECT preamble FROM ingested_files") == [(TOA5.preamble,)]
