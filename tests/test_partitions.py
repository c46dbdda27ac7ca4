"""sensor_readings partitioned by UTC month: partitions made on demand by the loads (also by concurrent
ones), one partition per query of one sensor and one month, ``retention``, and a table made before
partitioning, which keeps loading and migrates with the SQL of docs/schema.md."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import psycopg2
import pyarrow as pa
import pytest

from sensor_etl.core import partitions
from sensor_etl.edges.db import Database, FileMeta
from tests.helpers.endstate import assert_exactly_once
from tests.helpers.inprocess import run_once
from tests.helpers.samples import multi_csv
from tests.helpers.workspace import REPO, Db, Workspace

# sensor_readings as every version before partitioning created it
LEGACY_READINGS = """
CREATE TABLE sensor_readings (
    file_id        bigint           NOT NULL,
    line_no        bigint           NOT NULL,
    observed_at    timestamptz      NOT NULL,
    sensor_id      text COLLATE "C" NOT NULL,
    temperature_k  double precision,
    humidity_pct   double precision,
    pressure_hpa   double precision,
    extra          json             NOT NULL DEFAULT '{}'::json,
    loaded_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, line_no)
);
CREATE UNIQUE INDEX sensor_readings_sensor_time ON sensor_readings (sensor_id, observed_at, file_id);
"""
READINGS = "SELECT file_id, line_no, observed_at, sensor_id, temperature_k, humidity_pct, pressure_hpa, extra::text FROM sensor_readings"


def month_partitions(db: Db) -> list[str]:
    return [name for (name,) in db.rows("SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r' ORDER BY 1")]


def month_start(months_ago: int) -> datetime:
    now = datetime.now(UTC)
    total = now.year * 12 + now.month - 1 - months_ago
    return datetime(total // 12, total % 12 + 1, 1)


# -- pure ----------------------------------------------------------------------------------------
def test_months_names_and_bounds() -> None:
    at = pa.array([datetime(2024, 1, 31, 23, 59, 59, 999999), datetime(2023, 12, 1), datetime(2024, 1, 1)], pa.timestamp("us", tz="UTC"))
    assert partitions.months_of(at) == [datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)]
    assert partitions.months_of(pa.array([], pa.timestamp("us", tz="UTC"))) == []
    assert partitions.next_month(datetime(2023, 12, 1, tzinfo=UTC)) == datetime(2024, 1, 1, tzinfo=UTC)
    assert partitions.partition_name(datetime(1900, 1, 1, tzinfo=UTC)) == "sensor_readings_1900_01"
    assert partitions.month_of_partition("sensor_readings_2024_02") == datetime(2024, 2, 1, tzinfo=UTC)
    assert partitions.month_of_partition("sensor_readings_2024_13") is None
    assert partitions.month_of_partition("sensor_readings_old") is None


def test_retention_drops_a_month_only_when_all_of_it_is_older_than_the_limit() -> None:
    now = datetime(2025, 3, 31, 12, tzinfo=UTC)
    assert partitions.retention_cutoff(now, 1) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert partitions.retention_cutoff(now, 14) == datetime(2024, 1, 31, 12, tzinfo=UTC)
    names = ["sensor_readings_2024_02", "sensor_readings_2023_12", "sensor_readings_2024_01", "sensor_readings_2025_03", "notes"]
    assert partitions.expired(names, now, 14) == ["sensor_readings_2023_12"]  # January 2024 still has readings < 14 months old
    assert partitions.expired(names, datetime(2025, 4, 1, tzinfo=UTC), 14) == ["sensor_readings_2023_12", "sensor_readings_2024_01"]


# -- loads ---------------------------------------------------------------------------------------
def test_a_file_across_months_lands_in_one_partition_per_month(workspace: Workspace, db: Db) -> None:
    text = multi_csv(2, 200, start=datetime(2024, 1, 30, 12))  # 15-minute steps over 50 hours: January into February
    workspace.write("across.csv", text)
    log = run_once(workspace.root, db.dsn)
    assert month_partitions(db) == ["sensor_readings_2024_01", "sensor_readings_2024_02"]
    assert log.count(" partition_created ") == 2
    per_partition = dict(db.rows("SELECT tableoid::regclass::text, count(*) FROM sensor_readings GROUP BY 1"))
    january = db.value("SELECT count(*) FROM sensor_readings WHERE observed_at < '2024-02-01T00:00Z'")
    assert per_partition == {"sensor_readings_2024_01": january, "sensor_readings_2024_02": 400 - january}
    assert 0 < january < 400
    assert db.value("SELECT relkind FROM pg_class WHERE relname = 'sensor_readings'") == "p"
    workspace.write("later.csv", multi_csv(2, 3, start=datetime(2024, 2, 10)))
    assert " partition_created " not in run_once(workspace.root, db.dsn)  # February exists now


def test_a_query_for_one_sensor_and_one_month_reads_one_partition(workspace: Workspace, db: Db) -> None:
    for month in (1, 2, 3):
        workspace.write(f"m{month}.csv", multi_csv(3, 20, start=datetime(2024, month, 10), seed=month))
    run_once(workspace.root, db.dsn)
    assert len(month_partitions(db)) == 3
    ((plan,),) = db.rows(
        "EXPLAIN (FORMAT JSON) SELECT avg(temperature_k) FROM sensor_readings"
        " WHERE sensor_id = 'sensor-02' AND observed_at >= '2024-02-01T00:00Z' AND observed_at < '2024-03-01T00:00Z'"
    )
    text = json.dumps(plan)
    assert set(re.findall(r"sensor_readings_\d{4}_\d{2}", text)) == {"sensor_readings_2024_02"}


def test_concurrent_loads_that_need_the_same_new_month_wait_for_each_other_and_both_load(db: Db) -> None:
    """The first load creates February and holds the creators' lock until its commit; the second one,
    which needs February too, waits for that commit and then finds the partition (no duplicate-name error)."""
    Database({"dsn": db.dsn}).apply_schema()
    february = pa.table(
        {
            "file_id": pa.array([0], pa.int64()),
            "line_no": pa.array([2], pa.int64()),
            "observed_at": pa.array([datetime(2024, 2, 3)], pa.timestamp("us", tz="UTC")),
            "sensor_id": ["s"],
            "temperature_k": [280.0],
            "humidity_pct": pa.nulls(1, pa.float64()),
            "pressure_hpa": pa.nulls(1, pa.float64()),
            "extra": ["{}"],
        }
    )

    def meta(name: str) -> FileMeta:
        now = datetime.now(UTC)
        return FileMeta("/inbox", name, name[0] * 64, 1, now, now, "test")

    first, second = Database({"dsn": db.dsn}), Database({"dsn": db.dsn})
    second_done = threading.Event()
    order: list[str] = []

    def load_second() -> None:
        with second.load(meta("b")) as load:
            load.copy_readings(february.set_column(0, "file_id", pa.array([load.file_id], pa.int64())))
            load.wait()
        order.append("second committed")
        second_done.set()

    with first.load(meta("a")) as load:
        load.copy_readings(february.set_column(0, "file_id", pa.array([load.file_id], pa.int64())))
        load.wait()
        thread = threading.Thread(target=load_second)
        thread.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'sensor_readings'::regclass"
        for _ in range(600):  # the second load queues for the creators' lock (bounded poll, no timing assertion)
            if db.value(waiting):
                break
            second_done.wait(0.05)
        assert db.value(waiting) == 1 and not second_done.is_set()
        order.append("first commits")
    thread.join(60)
    assert order == ["first commits", "second committed"]
    assert month_partitions(db) == ["sensor_readings_2024_02"]
    assert db.value("SELECT count(*) FROM sensor_readings") == 2
    first.close()
    second.close()


@pytest.mark.slow
def test_two_workers_loading_files_of_many_new_months_load_each_once(workspace: Workspace, db: Db) -> None:
    contents = [multi_csv(2, 30, start=datetime(2023, 1 + i % 12, 1 + i // 12 * 3), seed=i).encode() for i in range(36)]
    for i, content in enumerate(contents):
        workspace.write(f"f{i:02d}.csv", content)
    result = workspace.cli("--once", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert len(month_partitions(db)) == 12
    assert result.stderr.count(" partition_created ") == 12
    assert_exactly_once(workspace, db, contents)


# -- retention -----------------------------------------------------------------------------------
def test_retention_drops_old_months_and_keeps_metrics_and_ledger(workspace: Workspace, db: Db) -> None:
    starts = {ago: month_start(ago) + timedelta(days=2) for ago in (15, 14, 13, 2)}
    for ago, start in starts.items():
        workspace.write(f"ago{ago}.csv", multi_csv(2, 10, start=start, seed=ago))
    run_once(workspace.root, db.dsn)
    metrics_before = db.rows("SELECT * FROM sensor_metrics ORDER BY file_id, sensor_id, metric, day")
    daily_before = db.rows("SELECT * FROM sensor_metrics_daily ORDER BY sensor_id, day, metric")
    ledger_before = db.rows("SELECT file_id, file_name, rows_loaded FROM ingested_files ORDER BY file_id")
    kept = db.rows(READINGS + " WHERE observed_at >= %s ORDER BY file_id, line_no", (month_start(13),))
    names = {ago: partitions.partition_name(month_start(ago)) for ago in starts}

    dry = workspace.cli("retention", "13", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"would drop {names[15]}", f"would drop {names[14]}"]
    assert len(month_partitions(db)) == 4

    result = workspace.cli("retention", "13")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"dropped {names[15]}", f"dropped {names[14]}"]
    assert month_partitions(db) == sorted([names[13], names[2]])
    assert db.rows(READINGS + " ORDER BY file_id, line_no") == kept
    assert db.rows("SELECT * FROM sensor_metrics ORDER BY file_id, sensor_id, metric, day") == metrics_before
    assert db.rows("SELECT * FROM sensor_metrics_daily ORDER BY sensor_id, day, metric") == daily_before
    assert db.rows("SELECT file_id, file_name, rows_loaded FROM ingested_files ORDER BY file_id") == ledger_before

    again = workspace.cli("retention", "13")
    assert (again.returncode, again.stdout) == (0, "no month older than 13 month(s)\n")
    workspace.write("again.csv", (workspace.processed / "ago15.csv").read_bytes())  # a dropped month's file comes back:
    assert "file_duplicate file=again.csv loaded_as=ago15.csv" in run_once(workspace.root, db.dsn)  # in the ledger: not loaded
    assert month_partitions(db) == sorted([names[13], names[2]])
    assert workspace.cli("retention", "0").returncode == 2  # at least one month


# -- a table created before partitioning ----------------------------------------------------------
def test_a_table_made_before_partitioning_keeps_loading_and_migrates_with_the_documented_sql(workspace: Workspace, db: Db) -> None:
    db.execute(LEGACY_READINGS)
    first = [multi_csv(2, 400, start=datetime(2024, m, 27), seed=m).encode() for m in (1, 2)]  # 100 hours each: into March
    for i, content in enumerate(first):
        workspace.write(f"old{i}.csv", content)
    run_once(workspace.root, db.dsn)
    assert db.value("SELECT relkind FROM pg_class WHERE relname = 'sensor_readings'") == "r"
    assert month_partitions(db) == []
    refused = workspace.cli("retention", "1")
    assert refused.returncode == 1 and "not partitioned" in refused.stderr and "docs/schema.md" in refused.stderr
    before = db.rows(READINGS + " ORDER BY file_id, line_no")

    with psycopg2.connect(db.dsn) as conn, conn.cursor() as cur:
        cur.execute(migration_sql())  # no parameters: the % of format() stay as they are
    conn.close()
    assert db.value("SELECT relkind FROM pg_class WHERE relname = 'sensor_readings'") == "p"
    assert month_partitions(db) == ["sensor_readings_2024_01", "sensor_readings_2024_02", "sensor_readings_2024_03"]
    assert db.rows(READINGS + " ORDER BY file_id, line_no") == before
    assert db.value("SELECT to_regclass('sensor_readings_unpartitioned')") is None

    later = multi_csv(2, 10, start=datetime(2024, 4, 2), seed=9).encode()
    workspace.write("new.csv", later)
    run_once(workspace.root, db.dsn)
    assert month_partitions(db)[-1] == "sensor_readings_2024_04"
    assert_exactly_once(workspace, db, [*first, later])


def migration_sql() -> str:
    """The migration steps of docs/schema.md, in order: its sql blocks under "Migrating", with script.sql where it says so."""
    doc = (REPO / "docs" / "schema.md").read_text(encoding="utf-8")
    section = doc.split("## Migrating", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, "docs/schema.md: the migration is two sql blocks, script.sql between them"
    return blocks[0] + (REPO / "script.sql").read_text(encoding="utf-8") + blocks[1]
