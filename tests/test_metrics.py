"""The metrics endpoint over real HTTP: counters of every worker on one endpoint, /healthz and /readyz."""

from __future__ import annotations

import gzip
import json
import platform
import re
import time
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensor_etl import __version__
from tests.helpers.corpus import csv_text, row
from tests.helpers.endpoint import get, port_of
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.samples import multi_csv

pytestmark = pytest.mark.slow  # end-to-end runs of the daemon: left out of `make test-fast`


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    status, text = get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def wait_until(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def sample(index: int, sensors: int = 2, rows: int = 3) -> bytes:
    return multi_csv(sensors, rows, start=datetime(2021, 1, 1) + timedelta(hours=index), seed=index).encode()


def test_two_workers_serve_one_endpoint_whose_counters_match_the_run_exactly(workspace, db):
    good = [sample(i) for i in range(6)]
    hot = csv_text(row(0, "h"), row(1, "h", 61)).encode()
    packed = gzip.compress(sample(99), mtime=0)
    for i, content in enumerate(good):
        workspace.write(f"good{i}.csv", content)
    workspace.write("again.csv", good[0])  # same content as good0.csv: a duplicate, whichever comes first
    workspace.write("hot.csv", hot)
    workspace.write("packed.csv", packed)
    dropped = [*good, good[0], hot, packed]

    daemon = workspace.start("--workers", "2", METRICS_PORT="0")
    port = port_of(daemon)
    workspace.wait_until_empty(daemon)
    daemon.wait_for("file_quarantined", 2)
    wait_until(lambda: len(daemon.events("file_loaded")) + len(daemon.events("file_duplicate")) == 7, "7 files loaded or duplicate")

    # a claim is released just after its file's last log line: wait for the releases, then read everything at once
    wait_until(lambda: value(samples(port), "sensor_etl_claims_held") == 0, "every claim released")
    found = samples(port)
    assert value(found, "sensor_etl_files_total", outcome="loaded") == 6
    assert value(found, "sensor_etl_files_total", outcome="duplicate") == 1
    assert value(found, "sensor_etl_files_total", outcome="quarantined") == 2
    assert value(found, "sensor_etl_files_total", outcome="partial") == 0
    assert value(found, "sensor_etl_quarantined_files_total", rule="out_of_range") == 1
    assert value(found, "sensor_etl_quarantined_files_total", rule="encoding") == 1
    assert value(found, "sensor_etl_rows_loaded_total") == 6 * 6 == db.value("SELECT count(*) FROM sensor_readings")
    assert value(found, "sensor_etl_rows_rejected_total") == 0
    assert value(found, "sensor_etl_bytes_read_total") == sum(map(len, dropped))
    assert value(found, "sensor_etl_load_duration_seconds_count") == 6
    assert value(found, "sensor_etl_load_duration_seconds_bucket", le="+Inf") == 6
    assert value(found, "sensor_etl_last_load_timestamp_seconds") > time.time() - 600
    assert value(found, "sensor_etl_inbox_files") == 0
    assert value(found, "sensor_etl_inbox_bytes") == 0
    assert value(found, "sensor_etl_quarantine_files") == 2
    assert value(found, "sensor_etl_quarantine_bytes") == sum(p.stat().st_size for p in workspace.quarantine.iterdir())
    assert value(found, "sensor_etl_build_info", version=__version__, python=platform.python_version()) == 1
    pids = {dict(labels)["pid"] for name, labels in found if name == "sensor_etl_loop_turned_timestamp_seconds"}
    assert pids == {re.search(r" pid=(\d+)", line).group(1) for line in daemon.events("worker_started")}, "one heartbeat per worker"
    assert get(port, "/healthz") == (200, '{"status": "ok"}\n')
    assert get(port, "/readyz") == (200, '{"status": "ok"}\n')
    assert get(port, "/nothing")[0] == 404

    assert daemon.stop() == 0
    summary = daemon.events("run_summary")
    assert len(summary) == 1, daemon.log
    assert (
        " loaded=6 partial=0 duplicate=1 recovered=0 quarantined=2 deferred=0 quarantined_by_rule=encoding:1,out_of_range:1 waiting=0 rows=36 "
        in summary[0]
    )
    assert_exactly_once(workspace, db, dropped, quarantined=[hot, packed])


def test_readyz_is_unready_while_the_database_is_stopped_and_ready_again_after(workspace, db, server):
    if server.embedded is None:
        pytest.skip("stops the server: needs the embedded one (unset TEST_DATABASE_URL)")
    daemon = workspace.start(METRICS_PORT="0", MONITOR_INTERVAL="0.2")
    port = port_of(daemon)
    daemon.wait_for("database_ready")
    assert get(port, "/readyz") == (200, '{"status": "ok"}\n')

    server.stop()
    try:
        status, body = get(port, "/readyz")
        assert status == 503
        failed = json.loads(body)
        assert failed["status"] == "fail" and list(failed["failed"]) == ["database"], body
        assert failed["failed"]["database"].startswith("unreachable: ")
        assert get(port, "/healthz")[0] == 200, "the loop still turns: alive, only not ready"
        assert "sensor_etl_claims_held" not in get(port, "/metrics")[1], "a gauge the database must answer is left out, not faked"
    finally:
        server.start()
    wait_until(lambda: get(port, "/readyz")[0] == 200, "/readyz ready again")

    content = sample(1)
    workspace.write("after.csv", content)
    daemon.wait_for("file_loaded")
    assert daemon.stop() == 0
    assert_exactly_once(workspace, db, [content])


def test_unready_archive_folder_is_named(workspace, db):
    daemon = workspace.start(METRICS_PORT="0")
    port = port_of(daemon)
    daemon.wait_for("database_ready")
    workspace.processed.rename(workspace.root / "elsewhere")
    workspace.processed.write_text("a file where the folder was\n")
    status, body = get(port, "/readyz")
    assert status == 503
    assert list(json.loads(body)["failed"]) == ["archive processed"], body
    assert daemon.stop() == 0


def test_a_metrics_port_in_use_is_a_configuration_error(workspace, db):
    daemon = workspace.start(METRICS_PORT="0")
    port = port_of(daemon)
    result = workspace.cli("--once", METRICS_PORT=str(port))
    assert result.returncode == 2
    assert f"sensor-etl: configuration error: METRICS_PORT='{port}' is invalid: expected a port free on 127.0.0.1 (" in result.stderr
    assert daemon.stop() == 0
