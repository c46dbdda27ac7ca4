"""Per-source settings (SOURCES_FILE) and subfolders of the inbox: one inbox, several stations, each file
loaded under its own source's settings, archived under its relative path; and a bad sources file
refused at start-up in one line (exit 2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensor_etl.config import Rules
from sensor_etl.core.rules import Rule
from sensor_etl.errors import SourcesError
from sensor_etl.sources import KEYS, parse_sources
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.workspace import REPO, Db, Workspace

TWO_STATIONS = """
# station A: Chicago local time, °F, the sensor id is the file name's first part (KORD_0301.csv)
[[source]]
name = "station_a"
match = "station_a/*.csv"
source_timezone = "America/Chicago"
temperature_unit = "F"
sensor_id_pattern = '^(?P<sensor>[^_]+)_'

# station B: UTC, °C, one fixed sensor id, a header with a comma in it
[[source]]
name = "station_b"
match = "station_b/*.csv"
sensor_id = "roof-b"
column_map = { "Temp, air" = "temperature" }
"""
KORD = "timestamp,temperature,humidity\n2024-03-01 00:00,32,80\n2024-07-01 12:30,68,55\n"  # CST in March, CDT in July
KMDW = "timestamp,temperature,humidity\n2024-03-01 00:00,41,75\n"
ROOF = 'timestamp,"Temp, air",pressure\n2024-03-01T00:00:00,20.5,1000\n'
TOP = "timestamp,temperature\n2024-03-01 00:00,20.5\n"


def _two_stations(workspace: Workspace) -> list[str]:
    (workspace.root / "sources.toml").write_text(TWO_STATIONS)
    workspace.write("station_a/KORD_0301.csv", KORD)
    workspace.write("station_a/KMDW_0301.csv", KMDW)
    workspace.write("station_b/b.csv", ROOF)
    workspace.write("top.csv", TOP)
    return [KORD, KMDW, ROOF, TOP]


def test_one_inbox_two_sources_in_their_own_time_zones_units_and_sensor_ids(workspace: Workspace, db: Db) -> None:
    contents = _two_stations(workspace)

    log = run_once(workspace.root, db.dsn)

    assert db.rows(
        "SELECT f.file_name, f.source, r.line_no, r.observed_at, r.sensor_id, r.temperature_k, r.humidity_pct, r.pressure_hpa"
        " FROM sensor_readings r JOIN ingested_files f USING (file_id) ORDER BY f.file_name, r.line_no"
    ) == [
        ("station_a/KMDW_0301.csv", "station_a", 2, datetime(2024, 3, 1, 6, tzinfo=UTC), "KMDW", 278.15, 75.0, None),
        ("station_a/KORD_0301.csv", "station_a", 2, datetime(2024, 3, 1, 6, tzinfo=UTC), "KORD", 273.15, 80.0, None),
        ("station_a/KORD_0301.csv", "station_a", 3, datetime(2024, 7, 1, 17, 30, tzinfo=UTC), "KORD", 293.15, 55.0, None),
        ("station_b/b.csv", "station_b", 2, datetime(2024, 3, 1, tzinfo=UTC), "roof-b", 293.65, None, 1000.0),
        ("top.csv", None, 2, datetime(2024, 3, 1, tzinfo=UTC), "default", 293.65, None, None),
    ]
    assert "file_loaded file=station_a/KORD_0301.csv" in log and "source=station_a" in log
    assert sorted(str(p.relative_to(workspace.processed)) for p in workspace.processed.rglob("*.csv")) == [
        "station_a/KMDW_0301.csv",
        "station_a/KORD_0301.csv",
        "station_b/b.csv",
        "top.csv",
    ]
    assert db.rows("SELECT archive_path FROM ingested_files WHERE file_name = 'station_b/b.csv'") == [
        (str((workspace.processed / "station_b" / "b.csv").resolve()),)
    ]
    assert [p.name for p in workspace.data.iterdir()] and not any(p.is_file() for p in workspace.data.rglob("*"))
    assert_exactly_once(workspace, db, [c.encode() for c in contents])


def test_subfolders_keep_their_path_into_quarantine_and_hidden_temporary_and_linked_folders_are_left(
    workspace: Workspace, db: Db, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (workspace.root / "sources.toml").write_text(TWO_STATIONS)
    hot = "timestamp,temperature\n2024-03-01T00:00:00,99\n"
    workspace.write("station_b/hot.csv", hot)
    workspace.write("station_a/nounderscore.csv", KMDW)  # the pattern finds no sensor id in this name
    workspace.write(".git/objects.csv", TOP)
    workspace.write("upload.tmp/partial.csv", TOP)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "elsewhere.csv").write_text(TOP)
    (workspace.data / "linked").symlink_to(outside, target_is_directory=True)

    log = run_once(workspace.root, db.dsn)

    quarantined = sorted(str(p.relative_to(workspace.quarantine)) for p in workspace.quarantine.rglob("*") if p.is_file())
    assert quarantined == [
        "station_a/nounderscore.csv",
        "station_a/nounderscore.csv.error.json",
        "station_b/hot.csv",
        "station_b/hot.csv.error.json",
    ]
    report = json.loads((workspace.quarantine / "station_a" / "nounderscore.csv.error.json").read_text())
    assert (report["file"], report["rule"]) == ("station_a/nounderscore.csv", Rule.SOURCE)
    assert report["reason"] == (
        "station_a/nounderscore.csv, value 'nounderscore.csv': source 'station_a': its sensor_id_pattern "
        "'^(?P<sensor>[^_]+)_' finds no sensor id in the file name [source]"
    )
    assert json.loads((workspace.quarantine / "station_b" / "hot.csv.error.json").read_text())["file"] == "station_b/hot.csv"
    assert (workspace.data / ".git" / "objects.csv").exists() and (workspace.data / "upload.tmp" / "partial.csv").exists()
    assert (outside / "elsewhere.csv").exists()
    assert f'file_skipped file=linked reason="symbolic link to {str(outside)!r}: linked folders are not followed"' in log
    assert db.value("SELECT count(*) FROM ingested_files") == 0

    result = workspace.cli("requeue", "station_b/hot.csv")
    assert (result.returncode, result.stdout) == (0, f"station_b/hot.csv: requeued as {workspace.data / 'station_b' / 'hot.csv'}\n")
    result = workspace.cli("requeue", "quarantine/station_a/nounderscore.csv")  # as typed from the working folder
    assert result.stdout == f"quarantine/station_a/nounderscore.csv: requeued as {workspace.data / 'station_a' / 'nounderscore.csv'}\n"
    assert workspace.cli("requeue", "station_a/../../processed/x.csv").returncode == 1


def test_processed_and_quarantine_inside_the_inbox_are_not_scanned(workspace: Workspace, db: Db) -> None:
    workspace.write("a.csv", TOP)
    workspace.write("b.csv", "timestamp,temperature\n2024-03-01T00:00:00,99\n")
    folders = {"PROCESSED_FOLDER": str(workspace.data / "done"), "QUARANTINE_FOLDER": str(workspace.data / "bad")}
    run_once(workspace.root, db.dsn, **folders)
    log = run_once(workspace.root, db.dsn, **folders)  # a second pass finds nothing to do
    assert "file_seen" not in log
    assert (workspace.data / "done" / "a.csv").exists() and (workspace.data / "bad" / "b.csv").exists()
    assert db.rows("SELECT file_name, rows_loaded FROM ingested_files") == [("a.csv", 1)]


def test_validate_show_prints_the_rows_as_they_would_be_stored_and_the_source(workspace: Workspace, db: Db) -> None:
    _two_stations(workspace)
    workspace.write("station_b/notes.csv", 'timestamp,"Temp, air",wind,note\n2024-03-01T00:00:00.5,20.5,3,"say ""hi"""\n')
    result = workspace.cli("validate", "--show", "1", "data/station_a/KORD_0301.csv", "data/station_b/notes.csv", "data/top.csv")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "data/station_a/KORD_0301.csv: would LOAD 2 rows from 1 sensor(s) (dates: ISO8601) [source: station_a]",
        "    line_no  observed_at           sensor_id  temperature_k  humidity_pct  pressure_hpa  extra",
        "    2        2024-03-01T06:00:00Z  KORD       273.15         80.0          NULL          {}",
        "data/station_b/notes.csv: would LOAD 1 rows from 1 sensor(s) (dates: ISO8601) [source: station_b]",
        "    line_no  observed_at                  sensor_id  temperature_k  humidity_pct  pressure_hpa  extra",
        '    2        2024-03-01T00:00:00.500000Z  roof-b     293.65         NULL          NULL          {"wind":3,"note":"say \\"hi\\""}',
        "data/top.csv: would LOAD 1 rows from 1 sensor(s) (dates: ISO8601) [source: none]",
        "    line_no  observed_at           sensor_id  temperature_k  humidity_pct  pressure_hpa  extra",
        "    2        2024-03-01T00:00:00Z  default    293.65         NULL          NULL          {}",
    ]
    run_once(workspace.root, db.dsn)  # what the daemon stores is what was shown
    assert db.rows(
        "SELECT r.observed_at, r.temperature_k, r.extra::text FROM sensor_readings r JOIN ingested_files f USING (file_id)"
        " WHERE f.file_name = 'station_b/notes.csv'"
    ) == [(datetime(2024, 3, 1, 0, 0, 0, 500000, tzinfo=UTC), 293.65, '{"wind":3,"note":"say \\"hi\\""}')]


def test_validate_names_the_source_only_when_there_are_sources(workspace: Workspace) -> None:
    workspace.write("top.csv", TOP)
    workspace.write(".git/top.csv", TOP)
    assert workspace.cli("validate", "data/top.csv", "data/.git/top.csv").stdout.splitlines() == [
        "data/top.csv: would LOAD 1 rows from 1 sensor(s) (dates: ISO8601)",
        "data/.git/top.csv: would be IGNORED: the daemon does not enter hidden or temporary folders of the inbox",
    ]


# -- a bad sources file: one line, exit 2, naming the file, the source and the key ----------------
A = '[[source]]\nname = "a"\nmatch = "station_a/*.csv"\n'
BAD_SOURCES = {
    "toml_syntax": (
        '[[source]\nname = "a"\n',
        "sources.toml: not valid TOML: Expected ']]' at the end of an array declaration (at line 1, column 9)",
    ),
    "unknown_key": (
        A + 'temprature_unit = "F"\n',
        "sources.toml: [[source]] 1 'a': unknown key 'temprature_unit' (did you mean 'temperature_unit'?)",
    ),
    "regex_without_group": (
        A + "sensor_id_pattern = '^[^_]+_'\n",
        "sources.toml: [[source]] 1 'a': sensor_id_pattern='^[^_]+_' is invalid: it has 0 groups; expected a regular expression "
        "with one group, found in the file name, e.g. ^(?P<sensor>[^_]+)_",
    ),
    "regex_that_does_not_compile": (
        A + "sensor_id_pattern = '^(?P<sensor>[^_+)_'\n",
        "sources.toml: [[source]] 1 'a': sensor_id_pattern='^(?P<sensor>[^_+)_' is invalid (unterminated character set at "
        "position 12): expected a regular expression with one group, found in the file name, e.g. ^(?P<sensor>[^_]+)_",
    ),
    "bad_value": (
        A + 'temperature_unit = "R"\n',
        "sources.toml: [[source]] 1 'a': temperature_unit='R' is invalid: expected one of C, F, K",
    ),
    "bad_number": (
        A + "max_invalid_rows = -1\n",
        "sources.toml: [[source]] 1 'a': max_invalid_rows=-1 is invalid: expected a row count (0 = any invalid row quarantines the file) or a percentage like 1%",
    ),
    "min_above_max": (
        A + "temperature_min = 70\n",
        "sources.toml: [[source]] 1 'a': TEMPERATURE_MIN=70.0 is invalid: expected a value below TEMPERATURE_MAX (60.0 °C)",
    ),
    "missing_match": (
        '[[source]]\nname = "a"\n',
        "sources.toml: [[source]] 1 'a': 'match' is missing: a glob on the file's path relative to the inbox, e.g. \"tmy3/*.csv\" or \"*_ASOS.csv\"",
    ),
    "missing_name": (
        '[[source]]\nmatch = "*.csv"\n',
        "sources.toml: [[source]] 1: 'name' is missing: every source needs a name (the ledger records it with each file)",
    ),
    "two_sensor_ids": (
        A + 'sensor_id = "x"\nsensor_id_pattern = "(.)"\n',
        "sources.toml: [[source]] 1 'a': sensor_id and sensor_id_pattern each set the sensor id: keep one",
    ),
    "not_file_level": (
        A + "workers = 2\n",
        "sources.toml: [[source]] 1 'a': 'workers' is not a file-level setting: set WORKERS in the environment or .env",
    ),
    "same_name_twice": (A + A, "sources.toml: [[source]] 2 'a': this name is already used by an earlier source"),
    "top_level_key": (
        'on_overlap = "skip"\n' + A,
        "sources.toml: unknown key 'on_overlap' at the top: the file holds [[source]] tables only",
    ),
    "table_for_a_text": (
        A + 'date_format = { a = "b" }\n',
        f"sources.toml: [[source]] 1 'a': date_format={{'a': 'b'}} is invalid: expected {KEYS['date_format'].parser.accepted}",
    ),
    "comma_in_list_item": (
        A + 'date_format = ["%Y", "%m,%d"]\n',
        "sources.toml: [[source]] 1 'a': date_format=['%Y', '%m,%d'] is invalid: an item holds a comma, which this setting's list cannot take",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_a_bad_sources_file_is_one_line_naming_source_and_key(case: str, tmp_path: Path) -> None:
    text, message = BAD_SOURCES[case]
    with pytest.raises(SourcesError) as caught:
        parse_sources(text, Path("sources.toml"), Rules())
    assert "\n" not in str(caught.value)
    if message is not None:
        assert str(caught.value) == message


def test_a_bad_sources_file_stops_every_command_with_exit_2(workspace: Workspace) -> None:
    workspace.write("top.csv", TOP)
    (workspace.root / "sources.toml").write_text(BAD_SOURCES["unknown_key"][0])
    expected = f"sensor-etl: configuration error: {BAD_SOURCES['unknown_key'][1]}\n"
    for args in (("--once",), ("validate", "data/top.csv"), ("requeue", "x.csv"), ("unload", "x.csv")):
        result = workspace.cli(*args)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", expected), args
    assert (workspace.data / "top.csv").exists()
    missing = workspace.cli("validate", "data/top.csv", SOURCES_FILE="elsewhere.toml")
    assert (missing.returncode, missing.stderr) == (
        2,
        "sensor-etl: configuration error: elsewhere.toml: cannot be read: No such file or directory\n",
    )


def test_a_glob_that_matches_nothing_is_no_error(workspace: Workspace) -> None:
    workspace.write("top.csv", TOP)
    (workspace.root / "sources.toml").write_text('[[source]]\nname = "tmy3"\nmatch = "tmy3/*.csv"\ntemperature_unit = "F"\n')
    result = workspace.cli("validate", "data/top.csv")
    assert (result.returncode, result.stdout) == (0, "data/top.csv: would LOAD 1 rows from 1 sensor(s) (dates: ISO8601) [source: none]\n")


# -- pure: the registry drives the keys, the first match wins ------------------------------------
@pytest.mark.parametrize("key", list(KEYS))
def test_every_file_level_setting_is_a_key_parsed_by_its_own_parser(key: str) -> None:
    """A setting added to the registry works in sources.toml with no code of its own: given its
    default text it gives the default value, given a bad one it names the setting's accepted values."""
    setting = KEYS[key]
    sources = parse_sources(f"{A}{key} = {json.dumps(setting.default)}\n", Path("s.toml"), Rules())
    assert sources.rules_for("station_a/x.csv").rules == Rules()
    bad = "\x00not: valid\x00"
    try:
        setting.parser.parse(bad)
    except (ValueError, LookupError, TypeError):
        with pytest.raises(SourcesError) as caught:
            parse_sources(f"{A}{key} = {json.dumps(bad)}\n", Path("s.toml"), Rules())
        assert str(caught.value) == f"s.toml: [[source]] 1 'a': {key}={bad!r} is invalid: expected {setting.parser.accepted}"


def test_toml_values_reach_the_parsers_as_the_environment_would_give_them() -> None:
    sources = parse_sources(
        A
        + "temperature_max = 45\nmax_invalid_rows = '2%'\ntimestamp_min = 2000-01-01\nmax_future_seconds = 0.5\n"
        + 'column_map = { "Temp (°F), air" = "temperature", "Station: name" = "sensor_id" }\n'
        + '[[source]]\nname = "list"\nmatch = "*.csv"\ncolumn_map = ["T1, air:temperature", "RH:humidity"]\n',
        Path("s.toml"),
        Rules(),
    )
    rules = sources.rules_for("station_a/x.csv").rules
    assert (rules.temperature_max, str(rules.max_invalid_rows), rules.max_future_seconds) == (45.0, "2%", 0.5)
    assert rules.timestamp_min == datetime(2000, 1, 1, tzinfo=UTC)
    assert rules.column_map == {"Temp (°F), air": "temperature", "Station: name": "sensor_id"}
    assert sources.rules_for("other/y.csv").rules.column_map == {"T1, air": "temperature", "RH": "humidity"}
    names = parse_sources(A + 'column_names = ["Date", "Temp, °F", "RH"]\nna_values = ["NA", -9999]\n', Path("s.toml"), Rules())
    rules = names.rules_for("station_a/x.csv").rules
    assert (rules.column_names, rules.na_values) == (("Date", "Temp, °F", "RH"), ("NA", "-9999"))


def test_the_first_matching_source_wins_case_aside_and_others_follow_the_global_settings() -> None:
    base = Rules(source_timezone="Europe/Berlin")
    sources = parse_sources(
        '[[source]]\nname = "asos"\nmatch = "*_ASOS.csv"\ntemperature_unit = "F"\nsensor_id_pattern = "^([^_]+)_"\n'
        '[[source]]\nname = "all"\nmatch = "*.csv"\ntemperature_unit = "K"\n',
        Path("s.toml"),
        base,
    )
    asos = sources.rules_for("airports/KORD_ASOS.CSV")
    assert (asos.source, asos.rules.temperature_unit, asos.rules.default_sensor_id, asos.problem) == ("asos", "F", "KORD", None)
    assert asos.rules.source_timezone == "Europe/Berlin"  # a source starts from the global settings
    assert sources.rules_for("x.csv").source == "all"
    assert sources.rules_for("_ASOS.csv").problem is not None  # no sensor id in the name: quarantined
    unmatched = parse_sources("", Path("s.toml"), base).rules_for("x.csv")
    assert (unmatched.source, unmatched.rules, unmatched.problem) == (None, base, None)


def test_the_sources_files_in_the_docs_are_valid() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / "docs" / "sources.md").read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        assert parse_sources(block, Path("sources.toml"), Rules()).sources
