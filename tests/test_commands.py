"""The commands for people: ``validate`` (a dry run), ``requeue`` (back to the inbox) and ``unload`` (out of the
database, to load again), run as a user would."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensor_etl.edges.embedded import EmbeddedPostgres
from tests.helpers.corpus import csv_text, good, row
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.workspace import REPO, Db, Workspace


def _tables(db: Db) -> list[tuple]:
    return db.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")


def test_validate_says_what_would_happen_to_each_file_and_touches_nothing(workspace: Workspace, db: Db) -> None:
    workspace.write("good.csv", good("g", 3))
    workspace.write("hot.csv", csv_text(row(0, "h"), row(1, "h", 61), row(2, "h", 20.5, 101)))
    workspace.write("packed.csv", gzip.compress(good("p").encode(), mtime=0))
    workspace.write("notes.txt", "not input\n")
    (workspace.data / "link.csv").symlink_to(workspace.data / "good.csv")
    before = sorted(p.name for p in workspace.data.iterdir())

    result = workspace.cli(
        "validate", "data/good.csv", "data/hot.csv", "data/packed.csv", "data/notes.txt", "data/link.csv", "data/gone.csv"
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "data/good.csv: would LOAD 3 rows from 1 sensor(s) (dates: ISO8601)",
        "data/hot.csv: would be QUARANTINED: 2 of 3 rows invalid (out_of_range: 2)",
        "  data/hot.csv:3, column 'temperature', value '61': outside -90..60 °C [out_of_range]",
        "  data/hot.csv:4, column 'humidity', value '101': outside 0..100 % [out_of_range]",
        "data/packed.csv: would be QUARANTINED: the file is gzip-compressed, not CSV text; decompress or convert it first",
        "  data/packed.csv:1: the file is gzip-compressed, not CSV text; decompress or convert it first [encoding]",
        "data/notes.txt: would be IGNORED: the daemon takes *.csv names that are not hidden or temporary",
        f"data/link.csv: would be SKIPPED: symbolic link to {str(workspace.data / 'good.csv')!r}: links are not followed",
        "data/gone.csv: cannot be read: No such file or directory",
    ]
    assert result.stderr == ""
    assert sorted(p.name for p in workspace.data.iterdir()) == before
    assert workspace.names(workspace.processed) == workspace.names(workspace.quarantine) == []
    assert _tables(db) == []
    assert not (workspace.root / ".pgdata").exists()


def test_validate_exits_0_when_every_file_would_load(workspace: Workspace) -> None:
    workspace.write("a.csv", good("a"))
    workspace.write("b b\nc.csv", good("b").replace(",", ";"))
    result = workspace.cli("validate", "data/a.csv", "data/b b\nc.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "data/a.csv: would LOAD 2 rows from 1 sensor(s) (dates: ISO8601)",
        "data/b b\\nc.csv: would LOAD 2 rows from 1 sensor(s) (dates: ISO8601)",
    ]


def test_validate_lists_the_first_100_problems_and_counts_the_rest(workspace: Workspace) -> None:
    workspace.write("many.csv", csv_text(*(row(i % 60, f"s{i // 60}", 99) for i in range(150))))
    result = workspace.cli("validate", "data/many.csv")
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[0] == "data/many.csv: would be QUARANTINED: 150 of 150 rows invalid (out_of_range: 150)"
    assert lines[1:101] == [
        f"  data/many.csv:{n}, column 'temperature', value '99': outside -90..60 °C; all values fit °F: "
        "set TEMPERATURE_UNIT=F, or name the unit in the header (temperature_F) [out_of_range]"
        for n in range(2, 102)
    ]
    assert lines[101:] == ["  ... and 50 more problem(s): only the first 100 are listed"]


def test_validate_in_rejects_mode_says_which_rows_would_be_set_aside(workspace: Workspace) -> None:
    workspace.write("some.csv", csv_text(row(0, "s"), row(1, "s", "warm"), row(2, "s")))
    result = workspace.cli("validate", "data/some.csv", MAX_INVALID_ROWS="1")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "data/some.csv: would LOAD 2 rows from 1 sensor(s) (dates: ISO8601) and REJECT 1 invalid row(s) to "
        f"{workspace.quarantine / 'some.csv.rejects.csv'} (MAX_INVALID_ROWS=1)",
        "  data/some.csv:3, column 'temperature', value 'warm': not a number (use a point for decimals and no thousands separator) [not_a_number]",
    ]
    assert workspace.names(workspace.quarantine) == []


def test_validate_with_a_bad_setting_exits_2(workspace: Workspace) -> None:
    workspace.write("a.csv", good("a"))
    result = workspace.cli("validate", "data/a.csv", MAX_INVALID_ROWS="lots")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("sensor-etl: configuration error: MAX_INVALID_ROWS='lots' is invalid")


def test_requeue_puts_a_quarantined_file_back_and_it_loads_under_fixed_rules(workspace: Workspace, db: Db) -> None:
    workspace.write("hot.csv", csv_text(row(0, "h"), row(1, "h", 65)))
    run_once(workspace.root, db.dsn)
    assert workspace.names(workspace.quarantine) == ["hot.csv", "hot.csv.error.json"]

    result = workspace.cli("requeue", "hot.csv")

    assert (result.returncode, result.stdout, result.stderr) == (0, f"hot.csv: requeued as {workspace.data / 'hot.csv'}\n", "")
    assert workspace.names(workspace.quarantine) == []
    assert workspace.names(workspace.data) == ["hot.csv"]
    loaded = workspace.cli("--once", TEMPERATURE_MAX="70")
    assert loaded.returncode == 0, loaded.stderr
    assert workspace.names(workspace.processed) == ["hot.csv"]
    assert db.rows("SELECT file_name, rows_loaded FROM ingested_files") == [("hot.csv", 2)]


def test_requeue_refuses_what_is_not_a_quarantined_csv(workspace: Workspace, db: Db) -> None:
    workspace.write("hot.csv", csv_text(row(0, "h", 65)))
    run_once(workspace.root, db.dsn)
    (workspace.processed / "done.csv").write_text("x\n")

    result = workspace.cli("requeue", "hot.csv.error.json", "missing.csv", "../processed/done.csv")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{name}: no quarantined *.csv file of that name in {workspace.quarantine}"
        for name in ("hot.csv.error.json", "missing.csv", "../processed/done.csv")
    ]
    assert workspace.names(workspace.quarantine) == ["hot.csv", "hot.csv.error.json"]
    assert workspace.names(workspace.processed) == ["done.csv"]
    assert workspace.names(workspace.data) == []


def test_requeue_never_overwrites_a_file_in_the_inbox(workspace: Workspace, db: Db) -> None:
    workspace.write("hot.csv", csv_text(row(0, "h", 65)))
    run_once(workspace.root, db.dsn)
    workspace.write("hot.csv", "a newer upload\n")
    result = workspace.cli("requeue", "hot.csv")
    assert result.stdout == f"hot.csv: requeued as {workspace.data / 'hot__2.csv'}\n"
    assert (workspace.data / "hot.csv").read_text() == "a newer upload\n"


def test_a_fixed_rejects_file_can_be_requeued_and_loads(workspace: Workspace, db: Db) -> None:
    workspace.write("part.csv", csv_text(row(0, "p"), row(1, "p", '"21,5"'), row(2, "p")))
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="1")
    rejects = workspace.quarantine / "part.csv.rejects.csv"
    assert rejects.read_text() == csv_text(row(1, "p", '"21,5"'))
    rejects.write_text(rejects.read_text().replace("21,5", "21.5"))  # the person's fix

    result = workspace.cli("requeue", "part.csv.rejects.csv")

    assert result.returncode == 0, result.stderr
    assert workspace.names(workspace.quarantine) == []
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="1")
    assert db.rows("SELECT file_name, status, rows_loaded, rows_rejected FROM ingested_files ORDER BY file_id") == [
        ("part.csv", "partial", 2, 1),
        ("part.csv.rejects.csv", "loaded", 1, 0),
    ]
    assert db.rows("SELECT temperature_k FROM sensor_readings WHERE observed_at = '2024-03-01T00:01:00Z'") == [(294.65,)]
    assert workspace.names(workspace.processed) == ["part.csv", "part.csv.rejects.csv"]


# -- unload ------------------------------------------------------------------------------------
def test_unload_requeue_then_reload_under_fixed_settings(workspace: Workspace, db: Db) -> None:
    content = "timestamp,sensor_id,temperature\n2024-03-01T00:00:00Z,s,50\n2024-03-01T01:00:00Z,s,59\n"  # °F, loaded as °C
    workspace.write("station/x.csv", content)
    run_once(workspace.root, db.dsn)
    assert db.rows("SELECT temperature_k FROM sensor_readings ORDER BY line_no") == [(323.15,), (332.15,)]

    result = workspace.cli("unload", "--requeue", "station/x.csv")

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"station/x.csv: unloaded file_id 1 (station/x.csv): 2 readings and their metrics; requeued as {workspace.data / 'station' / 'x.csv'}\n"
    )
    assert db.value("SELECT count(*) FROM ingested_files") == db.value("SELECT count(*) FROM sensor_metrics") == 0
    assert db.value("SELECT count(*) FROM sensor_readings") == 0
    assert (workspace.data / "station" / "x.csv").read_text() == content and not (workspace.processed / "station" / "x.csv").exists()
    run_once(workspace.root, db.dsn, TEMPERATURE_UNIT="F")
    assert db.rows("SELECT temperature_k FROM sensor_readings ORDER BY line_no") == [(283.15,), (288.15,)]
    assert_exactly_once(workspace, db, [content.encode()])


def test_unload_refuses_what_is_not_loaded_and_a_name_that_is_not_one_file(workspace: Workspace, db: Db) -> None:
    workspace.write("x.csv", good("first"))
    run_once(workspace.root, db.dsn)
    workspace.write("x.csv", good("second"))  # another content under the same name
    run_once(workspace.root, db.dsn)
    assert workspace.names(workspace.processed) == ["x.csv", "x__2.csv"]

    refused = workspace.cli("unload", "nope.csv", "99", "x.csv")

    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.splitlines() == [
        "nope.csv: not a loaded file; nothing unloaded",
        "99: not a loaded file; nothing unloaded",
        "x.csv: 2 loaded files have this name (file_id 1, 2): give the file_id; nothing unloaded",
    ]
    assert db.value("SELECT count(*) FROM ingested_files") == 2
    by_id = workspace.cli("unload", "1", "processed/x__2.csv")  # a file_id, or the archived copy's path
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout.splitlines() == [
        "1: unloaded file_id 1 (x.csv): 2 readings and their metrics",
        "processed/x__2.csv: unloaded file_id 2 (x.csv): 2 readings and their metrics",
    ]
    assert db.value("SELECT count(*) FROM ingested_files") == db.value("SELECT count(*) FROM sensor_readings") == 0
    again = workspace.cli("unload", "1")
    assert (again.returncode, again.stderr) == (1, "1: not a loaded file; nothing unloaded\n")
    assert workspace.names(workspace.processed) == ["x.csv", "x__2.csv"]  # without --requeue the archive stays


@pytest.mark.slow
def test_unload_and_retention_borrow_the_embedded_server_when_no_database_is_configured(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.csv").write_text(good("embedded"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(PYTHONPATH=str(REPO), FILE_SETTLE_SECONDS="0")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "etl_pipeline.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True)

    embedded = EmbeddedPostgres(tmp_path / ".pgdata")
    try:
        nothing = cli("retention", "1")
        assert (nothing.returncode, nothing.stdout) == (1, "")
        assert nothing.stderr.startswith("sensor-etl: retention: no database to drop months from: embedded (")
        assert not embedded.initialised, "retention creates no database"
        assert cli("--once").returncode == 0
        assert not embedded.is_running()
        dry = cli("retention", "1", "--dry-run")
        assert (dry.returncode, dry.stdout) == (0, "would drop sensor_readings_2024_03\n"), dry.stderr
        assert not embedded.is_running(), "retention stops the server it started"
        result = cli("unload", "--requeue", "m.csv")
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"m.csv: unloaded file_id 1 (m.csv): 2 readings and their metrics; requeued as {Path('data') / 'm.csv'}\n"
        assert not embedded.is_running(), "the command stops the server it started"
        assert (tmp_path / "data" / "m.csv").exists()
        assert Db(embedded.start()).value("SELECT count(*) FROM ingested_files") == 0
    finally:
        embedded.destroy()
