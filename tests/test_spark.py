"""The Spark runner on a real Spark (local[2]) and the real PostgreSQL: it leaves the database and the
folders (or the prefixes of an S3 inbox on SeaweedFS) exactly as the daemon does, and every file exactly
once through a killed Python worker, a database restart and a killed-and-rerun job (from folders, and
from a prefix with the database URL in a secret on moto). One SparkSession for the module (a JVM start
costs seconds)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensor_etl import cli
from sensor_etl.config import S3Location, settings_from
from sensor_etl.core.balance import FILE_COST_BYTES, balance
from sensor_etl.sources import load_sources
from tests.helpers.corpus import CASES
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.s3servers import MotoServer, aws_env, client
from tests.helpers.samples import multi_csv, seed_csv, station_csv
from tests.helpers.workspace import REPO, Db, ObjectWorkspace, Server, Workspace

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")
from sensor_etl.runners import spark  # noqa: E402  (after the skip: it is only usable with pyspark)

# Everything but load times and file ids: a file is known by its content, since Spark may load the
# other one of two files with the same bytes first (and the daemon the oldest).
READINGS = (
    "SELECT f.sha256, r.line_no, r.observed_at, r.sensor_id, r.temperature_k, r.humidity_pct, r.pressure_hpa, r.extra::text"
    " FROM sensor_readings r JOIN ingested_files f USING (file_id) ORDER BY 1, 2"
)
METRICS = (
    "SELECT f.sha256, m.sensor_id, m.day, m.metric, m.n, m.min, m.max, m.mean, m.std, m.m2, m.first_at, m.last_at"
    " FROM sensor_metrics m JOIN ingested_files f USING (file_id) ORDER BY 1, 2, 3, 4"
)
LEDGER = "SELECT sha256, status, rows_loaded, rows_rejected, sensors, date_format, size_bytes FROM ingested_files ORDER BY 1"
PARTITIONS = "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r' ORDER BY 1"


@pytest.fixture(scope="module")
def session() -> Iterator[object]:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = spark.session("local[2]", {"spark.ui.enabled": "false"})
    yield started
    started.stop()


def settings(ws: Workspace, **env: str):
    return settings_from({**ws.env, **env})


def sample(index: int, per_sensor: int = 4) -> bytes:
    return multi_csv(3, per_sensor, start=datetime(2024, 1, 1) + timedelta(days=index * 11), seed=index).encode()


# -- pure ----------------------------------------------------------------------------------------
def test_files_are_balanced_by_size_in_runs_of_the_listing_and_never_split() -> None:
    sizes = [100_000_000, 5, 60_000_000, 40_000_000, *([1_000] * 50)]
    groups = balance(sizes, 3)
    assert [i for g in groups for i in g] == list(range(len(sizes)))  # each file once, runs in listing order (oldest first)
    work = [sum(sizes[i] + FILE_COST_BYTES for i in g) for g in groups]
    assert groups[0] == [0] and max(work) == work[0]  # the big file alone: no task can be lighter than it
    assert [len(g) for g in balance([5] * 10, 3)] == [4, 4, 2]
    assert balance(sizes[:2], 8) == [[0], [1]] and balance([], 4) == []


def test_local_masters_get_task_retries() -> None:
    assert spark.with_task_retries("local[2]") == "local[2,4]"
    assert spark.with_task_retries("local") == "local[1,4]"
    assert spark.with_task_retries("local[*]") == "local[*,4]"
    assert spark.with_task_retries("local[2,9]") == "local[2,9]"
    assert spark.with_task_retries("yarn") == "yarn"
    assert spark.local_master("local[2,9]") and not spark.local_master("spark://host:7077")


def test_configuration_errors_are_one_line_and_exit_2_before_spark_starts(workspace: Workspace) -> None:
    missing = workspace.cli("spark", str(workspace.root / "nowhere"))
    assert missing.returncode == 2
    assert (
        missing.stderr
        == f"sensor-etl: configuration error: INPUT='{workspace.root / 'nowhere'}' is invalid: expected a folder, or an s3://bucket/prefix/\n"
    )
    embedded = workspace.cli("spark", str(workspace.data), "--master", "yarn", DATABASE_URL="")
    assert embedded.returncode == 2 and "DATABASE_URL" in embedded.stderr and "every executor" in embedded.stderr
    assert len(embedded.stderr.splitlines()) == 1


def test_inputs_of_another_kind_than_the_archive_are_refused_in_one_line(workspace: Workspace) -> None:
    """PROCESSED_FOLDER and QUARANTINE_FOLDER are of one kind, so the INPUTs are too, as DATA_FOLDER is
    for the daemon: all folders (archived by hard links) or all s3:// prefixes (by copies)."""
    archive = {"PROCESSED_FOLDER": "s3://archive/processed/", "QUARANTINE_FOLDER": "s3://archive/quarantine/"}
    refusals = {
        (str(workspace.data),): ("PROCESSED_FOLDER='s3://archive/processed/'", "a local location, as INPUT is", archive),
        ("s3://archive/incoming/",): (f"PROCESSED_FOLDER='{workspace.processed}'", "an s3:// location, as INPUT is", {}),
        ("s3://archive/incoming/", str(workspace.data)): (
            f"INPUT='{workspace.data}'",
            "an s3:// prefix, as the first INPUT is (PROCESSED_FOLDER and QUARANTINE_FOLDER take one kind)",
            archive,
        ),
        ("s3://archive/incoming", "s3://archive/processed"): (
            "PROCESSED_FOLDER='s3://archive/processed/'",
            "a prefix other than INPUT's",
            archive,
        ),
    }
    for inputs, (setting, expected, env) in refusals.items():
        refused = workspace.cli("spark", *inputs, **env)
        assert (refused.returncode, refused.stdout) == (2, ""), inputs
        assert refused.stderr == f"sensor-etl: configuration error: {setting} is invalid: expected {expected}\n", inputs
    malformed = workspace.cli("spark", "s3://No_Such Bucket/")
    assert malformed.returncode == 2 and "argument INPUT: expected a folder path, or s3://bucket/prefix/" in malformed.stderr


def test_without_pyspark_the_command_says_what_to_install(workspace: Workspace, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "pyspark" else real(name, *rest))
    for variable, value in workspace.env.items():
        monkeypatch.setenv(variable, value)
    assert cli.main(["spark", str(workspace.data)]) == 2
    assert capsys.readouterr().err == "sensor-etl: the spark command needs pyspark: pip install 'sensor-etl[spark]'\n"


# -- same results as the daemon ------------------------------------------------------------------
def inbox_files() -> dict[str, bytes]:
    """The hostile-input corpus (but the file that vanishes mid-scan) and the three input shapes."""
    found = {c.name: c.content for c in CASES if c.outcome not in ("vanished", "skipped")}
    found |= {
        "shape_seed.csv": seed_csv(300).encode(),
        "shape_station.csv": station_csv(200).encode(),
        "shape_multi.csv": multi_csv(4, 300, start=datetime(2024, 2, 28)).encode(),  # into March
    }
    return found


def lay_out(ws: Workspace, contents: dict[str, bytes]) -> None:
    for folder in (ws.data, ws.processed, ws.quarantine):
        shutil.rmtree(folder)
        folder.mkdir()
    outside = ws.root / "outside"
    outside.mkdir(exist_ok=True)
    base = time.time_ns() - 10**12
    for index, (name, content) in enumerate(contents.items()):
        (ws.data / name).write_bytes(content)
        os.utime(ws.data / name, ns=(base + index * 10**9, base + index * 10**9))
    (outside / "target.csv").write_bytes(b"timestamp,temperature\n2024-01-01T00:00:00Z,1\n")
    (ws.data / "symlink_outside.csv").symlink_to(outside / "target.csv")


def end_state(ws: Workspace, db: Db) -> dict[str, object]:
    reports = {}
    for path in ws.quarantine.glob("*.error.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        report.pop("quarantined_at")
        reports[report["file"]] = report
    return {
        "readings": db.rows(READINGS),
        "metrics": db.rows(METRICS),
        "ledger": db.rows(LEDGER),
        "partitions": db.rows(PARTITIONS),
        "reports": reports,
        "folders": {f.name: ws.names(f) for f in (ws.data, ws.processed, ws.quarantine)},
    }


@pytest.mark.slow
def test_spark_and_the_daemon_leave_the_same_database_and_folders(session, workspace: Workspace, db: Db) -> None:
    contents = inbox_files()
    env = {"READ_BLOCK_BYTES": str(16 << 20)}  # as test_corpus: the 10 MB field is judged as a field
    lay_out(workspace, contents)
    run_once(workspace.root, db.dsn, **env)
    daemon = end_state(workspace, db)

    db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    lay_out(workspace, contents)
    summary = spark.run_job(session, settings(workspace, **env), {"dsn": db.dsn}, [workspace.data])
    ours = end_state(workspace, db)

    assert ours["readings"] == daemon["readings"] and len(ours["readings"]) > 1000
    assert ours["metrics"] == daemon["metrics"] and ours["metrics"]
    assert ours["ledger"] == daemon["ledger"]
    assert ours["partitions"] == daemon["partitions"]
    assert ours["reports"] == daemon["reports"] and len(ours["reports"]) > 20
    assert ours["folders"] == daemon["folders"] and ours["folders"]["data"] == ["symlink_outside.csv"]
    quarantined = len(daemon["reports"])
    assert (summary.done.count(spark.Result.QUARANTINED), summary.waiting, summary.exit_code) == (quarantined, 0, 0)
    assert summary.done.count(spark.Result.LOADED) + summary.done.count(spark.Result.DUPLICATE) == len(daemon["folders"]["processed"])
    assert summary.done.rows == len(daemon["readings"])


def empty(ws: ObjectWorkspace) -> None:
    for place in ("data", "processed", "quarantine"):
        for name in ws.listed(place):
            ws.s3.delete_object(Bucket=ws.bucket, Key=ws.key(place, name))


def upload(ws: ObjectWorkspace, contents: dict[str, bytes]) -> None:
    empty(ws)
    for name, content in contents.items():
        ws.write(name, content)


def s3_end_state(ws: ObjectWorkspace, db: Db) -> dict[str, object]:
    """As ``end_state``, the reports read from the quarantine prefix and every object of the three prefixes listed."""
    reports = {}
    for name in ws.listed("quarantine"):
        if name.endswith(".error.json"):
            report = json.loads(ws.read("quarantine", name))
            report.pop("quarantined_at")
            reports[report["file"]] = report
    return {
        "readings": db.rows(READINGS),
        "metrics": db.rows(METRICS),
        "ledger": db.rows(LEDGER),
        "partitions": db.rows(PARTITIONS),
        "reports": reports,
        "prefixes": {place: ws.listed(place) for place in ("data", "processed", "quarantine")},
    }


@pytest.mark.slow
def test_spark_on_an_s3_prefix_and_the_daemon_on_it_leave_the_same_database_and_prefixes(
    session, s3_workspace: ObjectWorkspace, db: Db, monkeypatch
) -> None:
    contents = inbox_files()
    env = {"READ_BLOCK_BYTES": str(16 << 20)}
    upload(s3_workspace, contents)
    once = s3_workspace.cli("--once", timeout=600, **env)
    assert once.returncode == 0, once.stderr[-3000:]
    daemon = s3_end_state(s3_workspace, db)

    db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    upload(s3_workspace, contents)
    # The driver's AWS variables, set after the JVM started: its Python workers only have them from the driver.
    assert session.sparkContext._jvm.java.lang.System.getenv("AWS_ENDPOINT_URL") is None
    for variable, value in aws_env(s3_workspace.proxy.endpoint).items():
        monkeypatch.setenv(variable, value)
    inbox = S3Location(s3_workspace.bucket, s3_workspace.prefixes["data"])
    summary = spark.run_job(session, settings_from({**s3_workspace.env, **env}, inbox=inbox), {"dsn": db.dsn}, [inbox])
    ours = s3_end_state(s3_workspace, db)

    assert ours["readings"] == daemon["readings"] and len(ours["readings"]) > 1000
    assert ours["metrics"] == daemon["metrics"] and ours["metrics"]
    assert ours["ledger"] == daemon["ledger"]
    assert ours["partitions"] == daemon["partitions"]
    assert ours["reports"] == daemon["reports"] and len(ours["reports"]) > 20
    assert ours["prefixes"] == daemon["prefixes"] and ours["prefixes"]["data"] == []
    assert (summary.done.count(spark.Result.QUARANTINED), summary.waiting, summary.exit_code) == (len(daemon["reports"]), 0, 0)
    assert summary.done.rows == len(daemon["readings"])
    assert db.rows("SELECT DISTINCT inbox FROM ingested_files") == [(inbox.url(),)]
    assert {path.rpartition("/")[0] for (path,) in db.rows("SELECT archive_path FROM ingested_files")} == {
        s3_workspace.url("processed")[:-1]
    }


# Two stations in subfolders with their own settings, and two exports of station B that share readings
# (the same values: whichever file loads first keeps them, so what is stored does not depend on the order).
SOURCES = """
[[source]]
name = "station_a"
match = "station_a/*.csv"
source_timezone = "America/Chicago"
temperature_unit = "F"
sensor_id_pattern = '^(?P<sensor>[^_]+)_'

[[source]]
name = "station_b"
match = "station_b/*.csv"
sensor_id = "roof-b"
on_overlap = "skip"
"""
STATIONS = {
    "station_a/KORD_0301.csv": "timestamp,temperature,humidity\n2024-03-01 00:00,32,80\n2024-07-01 12:30,68,55\n",
    "station_a/KMDW_0301.csv": "timestamp,temperature,humidity\n2024-03-01 00:00,41,75\n",
    "station_b/march.csv": "timestamp,temperature\n2024-03-01T00:00:00,20.5\n2024-03-01T01:00:00,21\n",
    "station_b/march_again.csv": "timestamp,temperature\n2024-03-01T00:00:00,20.5\n2024-03-01T01:00:00,21\n2024-04-01T00:00:00,9\n",
    "misc/2024/top.csv": "timestamp,temperature\n2024-03-01 00:00,20.5\n",
}
# What is stored, whichever of two overlapping files holds it.
STORED = (
    "SELECT sensor_id, observed_at, temperature_k, humidity_pct, pressure_hpa FROM sensor_readings ORDER BY 1, 2",
    "SELECT file_name, source, status, rows_loaded + rows_skipped, rows_rejected, rows_replaced FROM ingested_files ORDER BY 1",
    "SELECT sum(rows_loaded), sum(rows_skipped) FROM ingested_files",
    "SELECT sensor_id, day, metric, n, min, max, round(mean::numeric, 9) FROM sensor_metrics_daily ORDER BY 1, 2, 3",
    PARTITIONS,
)


@pytest.mark.slow
def test_spark_follows_the_sources_subfolders_and_overlaps_as_the_daemon_does(session, workspace: Workspace, db: Db) -> None:
    (workspace.root / "sources.toml").write_text(SOURCES)
    env = {"SOURCES_FILE": str(workspace.root / "sources.toml")}

    def lay_out_stations() -> None:
        for name, content in STATIONS.items():
            workspace.write(name, content)

    def loaded() -> tuple[list[list[tuple]], list[str]]:
        archived = sorted(str(p.relative_to(workspace.processed)) for p in workspace.processed.rglob("*.csv"))
        return [db.rows(query) for query in STORED], archived

    lay_out_stations()
    run_once(workspace.root, db.dsn)
    daemon = loaded()
    db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    shutil.rmtree(workspace.processed)
    workspace.processed.mkdir()
    lay_out_stations()
    configured = settings(workspace, **env)
    summary = spark.run_job(session, configured, {"dsn": db.dsn}, [workspace.data], sources=load_sources(configured))
    ours = loaded()

    assert ours == daemon
    readings, ledger, totals, _, partitions = ours[0]
    assert ("KORD", datetime(2024, 3, 1, 6, tzinfo=UTC), 273.15, 80.0, None) in readings  # station A: Chicago time, °F
    assert [row[:2] for row in ledger] == [
        ("misc/2024/top.csv", None),
        ("station_a/KMDW_0301.csv", "station_a"),
        ("station_a/KORD_0301.csv", "station_a"),
        ("station_b/march.csv", "station_b"),
        ("station_b/march_again.csv", "station_b"),
    ]
    assert totals == [(7, 2)]  # 9 rows, the 2 shared readings stored once
    assert partitions == [("sensor_readings_2024_03",), ("sensor_readings_2024_04",), ("sensor_readings_2024_07",)]
    assert ours[1] == sorted(STATIONS) and (summary.done.count(spark.Result.LOADED), summary.exit_code) == (5, 0)


# -- faults --------------------------------------------------------------------------------------
def background_job(session, ws: Workspace, db: Db, **env: str) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def job() -> None:
        try:
            outcome["summary"] = spark.run_job(session, settings(ws, LEASE_SECONDS="5", **env), {"dsn": db.dsn}, [ws.data], tasks=4)
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    return thread, outcome


def wait_until(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def copying(db: Db) -> bool:
    return bool(db.rows("SELECT 1 FROM pg_stat_progress_copy WHERE relid = to_regclass('sensor_readings')"))


def claim_holders(db: Db) -> list[int]:
    """Pids of the Python workers holding a claim (owner = host:pid:token)."""
    return [int(owner.split(":")[1]) for (owner,) in db.rows("SELECT owner FROM file_claims")]


def failed_tasks(session) -> int:
    tracker = session.sparkContext.statusTracker()
    stages = [s for job in tracker.getJobIdsForGroup() for s in (tracker.getJobInfo(job).stageIds if tracker.getJobInfo(job) else [])]
    return sum(info.numFailedTasks for s in stages if (info := tracker.getStageInfo(s)) is not None)


@pytest.mark.slow
def test_a_python_worker_killed_mid_file_is_retried_by_spark_and_every_file_loads_once(session, workspace: Workspace, db: Db) -> None:
    contents = [sample(i, per_sensor=30_000 if i % 4 == 0 else 20) for i in range(16)]  # 4 files of 90,000 rows
    for i, content in enumerate(contents):
        workspace.write(f"f{i:02d}.csv", content)
    failed_before = failed_tasks(session)
    thread, outcome = background_job(session, workspace, db, READ_BLOCK_BYTES=str(1 << 19))
    wait_until(lambda: copying(db) and claim_holders(db), "COPY under a claim")
    victim = claim_holders(db)[0]
    assert victim != os.getpid()
    os.kill(victim, signal.SIGKILL)
    thread.join(600)
    assert "error" not in outcome, outcome
    assert failed_tasks(session) > failed_before  # Spark saw the task fail, and retried it
    assert outcome["summary"].exit_code == 0
    assert_exactly_once(workspace, db, contents)


@pytest.mark.slow
def test_the_database_restarted_during_the_job_loses_and_doubles_nothing(session, workspace: Workspace, db: Db, server: Server) -> None:
    contents = [sample(i, per_sensor=30_000 if i % 3 == 0 else 10) for i in range(12)]  # 4 files of 90,000 rows: COPYs last
    for i, content in enumerate(contents):
        workspace.write(f"g{i:02d}.csv", content)
    thread, outcome = background_job(session, workspace, db, READ_BLOCK_BYTES=str(1 << 18))
    wait_until(lambda: copying(db), "COPY")
    server.stop("immediate")  # a crash: open transactions vanish in recovery
    try:
        time.sleep(1)
    finally:
        server.start()
    thread.join(600)
    assert "error" not in outcome, outcome
    assert outcome["summary"].exit_code == 0
    assert_exactly_once(workspace, db, contents)


@pytest.mark.slow
def test_the_job_killed_and_rerun_through_spark_submit_loads_every_file_once(workspace: Workspace, db: Db) -> None:
    contents = [sample(i, per_sensor=2_000 if i % 5 == 0 else 10) for i in range(30)]
    bad = [f"timestamp,sensor_id,temperature\n2024-02-01T00:00:00Z,s{i},999\n".encode() for i in range(3)]
    for i, content in enumerate(contents + bad):
        workspace.write(f"h{i:02d}.csv", content)
    env = {
        "LEASE_SECONDS": "5",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT": "0.3",
    }
    job = workspace.start("spark", str(workspace.data), "--master", "local[2]", "--conf", "spark.ui.enabled=false", **env)
    job.wait_for("file_loaded", count=3, timeout=300)
    job.kill()  # the driver, its JVM and the Python workers: one process group
    assert workspace.names(workspace.data), "the job finished before it was killed"

    submit = Path(sys.executable).parent / "spark-submit"
    rerun = subprocess_run(
        [
            str(submit),
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            str(REPO / "etl_pipeline.py"),
            "spark",
            str(workspace.data),
        ],
        workspace,
        {**env, "SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT": "0"},
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (line,) = [line for line in rerun.stdout.splitlines() if line.startswith("spark: ")]
    assert line.endswith(" rows/s)") and " 0 waiting;" in line
    assert " spark_started master=local[2,4] " in rerun.stdout  # spark-submit sends its Python driver's stderr to stdout
    assert_exactly_once(workspace, db, contents + bad, quarantined=bad)


@pytest.mark.slow
def test_an_s3_job_killed_and_rerun_with_the_database_url_in_a_secret_loads_every_object_once(
    s3_workspace: ObjectWorkspace, db: Db, moto_server: MotoServer
) -> None:
    contents = [sample(i, per_sensor=2_000 if i % 5 == 0 else 10) for i in range(20)]
    bad = [f"timestamp,sensor_id,temperature\n2024-02-01T00:00:00Z,s{i},999\n".encode() for i in range(3)]
    for i, content in enumerate(contents + bad):
        s3_workspace.write(f"h{i:02d}.csv", content)
    env = {"LEASE_SECONDS": "5", "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    command = ("spark", s3_workspace.url("data"), "--master", "local[2]", "--conf", "spark.ui.enabled=false")
    job = s3_workspace.start(*command, **env, SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT="0.3")
    job.wait_for("file_loaded", count=3, timeout=300)
    job.kill()  # the driver, its JVM and the Python workers: one process group
    assert [name for name in s3_workspace.listed("data") if name.endswith(".csv")], "the job finished before it was killed"

    secret = client("secretsmanager", moto_server.endpoint).create_secret(Name=f"db-{s3_workspace.bucket}", SecretString=db.dsn)
    rerun = s3_workspace.cli(
        *command,
        timeout=600,
        **env,
        DATABASE_URL="",
        DATABASE_URL_SECRET=secret["ARN"],
        AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_server.endpoint,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (line,) = [line for line in rerun.stdout.splitlines() if line.startswith("spark: ")]
    assert " 0 waiting;" in line
    assert " embedded_postgres_started " not in rerun.stderr  # the server named by the secret, not one of its own
    assert_exactly_once(s3_workspace, db, contents + bad, quarantined=bad)


def subprocess_run(command: list[str], ws: Workspace, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ws.root, env={**ws.env, **env}, capture_output=True, text=True, timeout=600)
