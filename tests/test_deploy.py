"""deploy/: the systemd unit passes ``systemd-analyze verify``; the Grafana dashboard names only metrics the
endpoint serves and tables the schema has, and its SQL runs; deploy/emr/ is well-formed: the bootstrap
action parses as bash, the definitions as JSON, and they agree with each other and with the settings registry."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from sensor_etl.config import VARIABLES, settings_from
from tests.helpers.corpus import csv_text, good, row
from tests.helpers.endpoint import get, port_of
from tests.helpers.workspace import REPO, Db, Workspace

UNIT = REPO / "deploy" / "sensor-etl.service"
DASHBOARD = REPO / "deploy" / "grafana" / "sensor-etl.json"
EMR = REPO / "deploy" / "emr"
INSTALLED = "/opt/sensor-etl/.venv/bin/sensor-etl"  # where docs/operations.md installs it


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_service_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    # verify checks that ExecStart exists: point it at this checkout's console script instead of the installed one
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(Path(sys.executable).parent / "sensor-etl")))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"warnings: {result.stderr}"


def test_the_service_unit_runs_a_dedicated_user_restarts_on_failure_and_waits_for_a_file_to_finish() -> None:
    unit = unit_settings()
    assert unit["ExecStart"] == [INSTALLED]
    assert unit["User"] == ["sensor-etl"] and unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"], "a configuration error is not retried"
    assert unit["Environment"] == ["LOG_FORMAT=json"] and unit["StandardError"] == ["journal"]
    assert unit["TimeoutStopSec"] == ["15min"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "CapabilityBoundingSet"):
        assert hardening in unit


def dashboard_targets() -> list[dict]:
    document = json.loads(DASHBOARD.read_text())
    return [target for panel in document["panels"] for target in panel["targets"]]


@pytest.mark.slow
def test_every_metric_and_table_the_dashboard_names_exists_and_its_sql_runs(workspace: Workspace, db: Db) -> None:
    workspace.write("good.csv", good("g", 3))
    workspace.write("hot.csv", csv_text(row(0, "h"), row(1, "h", 61)))
    daemon = workspace.start(METRICS_PORT="0")
    port = port_of(daemon)
    workspace.wait_until_empty(daemon)
    daemon.wait_for("file_quarantined")
    status, exposition = get(port, "/metrics")
    assert status == 200
    assert daemon.stop() == 0

    served = set(re.findall(r"^(sensor_etl_\w+)", exposition, flags=re.MULTILINE))
    named = {name for target in dashboard_targets() if "expr" in target for name in re.findall(r"\bsensor_etl_\w+", target["expr"])}
    assert len(named) >= 12
    assert named <= served, f"not served: {sorted(named - served)}"

    relations = {name for (name,) in db.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    queries = [target["rawSql"] for target in dashboard_targets() if "rawSql" in target]
    used = {name for sql in queries for name in re.findall(r"\bFROM\s+(\w+)", sql)}
    assert used == {"sensor_metrics_daily", "ingested_files"}
    assert used <= relations
    for sql in queries:  # Grafana's macro made plain SQL: the query must run on the real schema
        rows = db.rows(re.sub(r"\$__timeFilter\(([^()]*(?:\([^()]*\))?[^()]*)\)", r"\1 > now() - interval '100 years'", sql))
        assert rows, sql


def test_the_bootstrap_action_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(EMR / "bootstrap.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_step_runs_what_the_bootstrap_installs_with_the_configured_python() -> None:
    (step,) = json.loads((EMR / "step.json").read_text())
    assert step["Jar"] == "command-runner.jar" and step["ActionOnFailure"] in {"CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER"}
    args = step["Args"]
    assert args[0] == "spark-submit" and args[args.index("--master") + 1] == "yarn"
    script = next(a for a in args if a.endswith("etl_pipeline.py"))
    assert args[args.index(script) + 1 : args.index(script) + 3] == ["--env-file", "/home/hadoop/sensor-etl/sensor-etl.env"]
    assert args[args.index("spark", args.index(script)) + 1].startswith("/mnt/sensor-etl/")
    bootstrap = (EMR / "bootstrap.sh").read_text()
    (home,) = re.findall(r"^HOME_DIR=(\S+)", bootstrap, re.MULTILINE)
    (python,) = re.findall(r"^PYTHON=(\S+)", bootstrap, re.MULTILINE)
    assert script == f"{home}/etl_pipeline.py" and "etl_pipeline.py" in bootstrap and "sensor-etl.env" in bootstrap

    configurations = {c["Classification"]: c for c in json.loads((EMR / "configurations.json").read_text())}
    (exported,) = configurations["spark-env"]["Configurations"]
    assert exported["Properties"]["PYSPARK_PYTHON"] == exported["Properties"]["PYSPARK_DRIVER_PYTHON"] == python
    assert configurations["spark-defaults"]["Properties"]["spark.speculation"] == "false"
    assert "spark.speculation=false" in shlex.join(args)


def test_the_settings_file_names_only_real_settings_and_parses() -> None:
    values = {k: v for k, v in dotenv_values(EMR / "sensor-etl.env").items() if v is not None}
    assert set(values) <= set(VARIABLES) and "DATABASE_URL" in values
    settings = settings_from(values)
    assert not settings.embedded and str(settings.processed_folder).startswith("/mnt/sensor-etl/")
