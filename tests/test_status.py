"""``status`` and ``sql`` as a user runs them, on the daemon's embedded database, running or not."""

from __future__ import annotations

import json

import pytest

from sensor_etl.edges.embedded import EmbeddedPostgres
from tests.helpers.corpus import csv_text, good, row
from tests.helpers.terminal import run_on_terminal
from tests.helpers.workspace import Workspace

pytestmark = pytest.mark.slow  # each test starts an embedded server of its own

EMBEDDED = {"DATABASE_URL": "", "PGDATA_FOLDER": ".pgdata"}  # no server configured: the daemon's own


def embedded(ws: Workspace) -> EmbeddedPostgres:
    return EmbeddedPostgres(ws.root / ".pgdata")


def status(ws: Workspace) -> tuple[int, dict]:
    result = ws.cli("status", "--json", **EMBEDDED)
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout)


def test_status_json_with_the_daemon_running_and_stopped(workspace: Workspace) -> None:
    workspace.write("good.csv", good("g", 3))
    workspace.write("hot.csv", csv_text(row(0, "h"), row(1, "h", 61)))
    daemon = workspace.start(**EMBEDDED)
    workspace.wait_until_empty(daemon)
    daemon.wait_for("file_quarantined")

    code, running = status(workspace)
    assert code == 0, running
    assert running["ready"] is True and running["problems"] == {}
    assert running["reachable"] is True and running["database_bytes"] > 0
    assert running["database"] == f"embedded ({workspace.root / '.pgdata'})"
    assert running["inbox"] == {"files": 0, "bytes": 0, "oldest": None, "oldest_age_seconds": 0.0}
    assert running["claims"] == []
    assert [(load["file"], load["status"], load["rows"]) for load in running["recent_loads"]] == [("good.csv", "loaded", 3)]
    assert running["last_hour"] == running["last_day"] == {"loads": 1, "rows": 3}
    assert [(q["file"], q["rule"]) for q in running["recent_quarantines"]] == [("hot.csv", "out_of_range")]
    assert running["recent_quarantines"][0]["reason"].startswith("1 of 2 rows invalid (out_of_range: 1)")
    assert [(g["rule"], g["files"]) for g in running["quarantine_by_rule"]] == [("out_of_range", 1)]
    assert "widen the range" in running["quarantine_by_rule"][0]["hint"]

    assert daemon.alive() and embedded(workspace).is_running(), "status left the daemon's server alone"
    workspace.write("late.csv", good("l", 2))
    daemon.wait_for("file_loaded", 2)
    assert daemon.stop() == 0
    assert not embedded(workspace).is_running()

    workspace.write("waiting.csv", good("w", 1))
    code, stopped = status(workspace)
    assert code == 0, stopped
    assert [load["file"] for load in stopped["recent_loads"]] == ["late.csv", "good.csv"]
    assert stopped["last_day"] == {"loads": 2, "rows": 5}
    assert stopped["inbox"]["files"] == 1 and stopped["inbox"]["oldest"] == "waiting.csv"
    assert not embedded(workspace).is_running(), "the server started for status was stopped again"

    text = workspace.cli("status", **EMBEDDED)
    assert text.returncode == 0
    assert text.stdout.startswith("status: ready\ndatabase: embedded (")
    assert "inbox: 1 file(s) waiting" in text.stdout and "out_of_range: 1 file(s) - " in text.stdout


def test_status_exits_1_and_says_what_is_not_ready(workspace: Workspace) -> None:
    code, before = status(workspace)
    assert code == 1
    assert list(before["problems"]) == ["database"] and "no database there yet" in before["problems"]["database"]
    assert not (workspace.root / ".pgdata").exists(), "status creates no database"

    (workspace.root / "elsewhere").mkdir()
    result = workspace.cli("status", "--json", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", QUARANTINE_FOLDER="elsewhere/missing")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert report["reachable"] is False and report["ready"] is False
    assert set(report["problems"]) == {"database", "folders", "archive missing"}, report["problems"]


def test_sql_runs_a_query_with_the_embedded_server_stopped_and_running(workspace: Workspace) -> None:
    workspace.write("good.csv", good("g", 3))
    assert workspace.cli("--once", **EMBEDDED).returncode == 0
    assert not embedded(workspace).is_running()

    query = "select sensor_id, n from sensor_metrics_daily where metric = 'temperature_k'"
    stopped = workspace.cli("sql", query, **EMBEDDED)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.split() == ["sensor_id", "|", "n", "-----------+---", "g", "|", "3", "(1", "row)"]
    assert not embedded(workspace).is_running(), "the server started for the query was stopped again"

    daemon = workspace.start(**EMBEDDED)
    daemon.wait_for("database_ready")
    running = workspace.cli("sql", "select count(*) from sensor_readings", **EMBEDDED)
    assert running.returncode == 0 and running.stdout.split()[2] == "3"
    assert workspace.cli("sql", "select * from no_such_table", **EMBEDDED).returncode == 1
    assert daemon.alive() and embedded(workspace).is_running()
    assert daemon.stop() == 0


def test_sql_without_a_query_is_an_interactive_psql_on_a_terminal(workspace: Workspace) -> None:
    workspace.write("good.csv", good("g", 2))
    assert workspace.cli("--once", **EMBEDDED).returncode == 0
    output = run_on_terminal(workspace, ["sql"], "select 'rows: ' || count(*) from sensor_readings;\n\\q\n", **EMBEDDED)
    assert "rows: 2" in output.text, output.text
    assert output.code == 0
    assert not embedded(workspace).is_running()


def test_sql_on_a_configured_server_runs_one_query(workspace: Workspace) -> None:
    result = workspace.cli("sql", "select 40 + 2 as answer")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["answer", "--------", "42", "(1", "row)"]
