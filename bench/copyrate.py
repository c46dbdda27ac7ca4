"""COPY into ``sensor_readings``, partitioned by month or a plain table: ``python -m bench.copyrate``.

Both layouts get the same rows, through the daemon's own load path (``Database.load``: ledger row,
partitions made on demand, COPY on the copier thread, commit), alternating, into a fresh schema each
run. Reported per layout: rows/s of wall time, rows per CPU-second of the server process that ran
the COPY (read from /proc, so the figure holds on a machine other work is sharing), and the bytes a
row takes on disk (table and indexes) and in the WAL (docs/scaling.md sizes from them). The plain table is
the layout of every version before partitioning (``tests/test_partitions.py`` LEGACY_READINGS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from bench import generate
from bench.db import Server, drop_database, recreate_database
from sensor_etl.config import Rules
from sensor_etl.edges.db import Database, FileMeta
from sensor_etl.runners import pipeline

LEGACY = """
DROP TABLE sensor_readings;
CREATE TABLE sensor_readings (
    file_id bigint NOT NULL, line_no bigint NOT NULL, observed_at timestamptz NOT NULL, sensor_id text COLLATE "C" NOT NULL,
    temperature_k double precision, humidity_pct double precision, pressure_hpa double precision,
    extra json NOT NULL DEFAULT '{}'::json, loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (file_id, line_no));
CREATE UNIQUE INDEX sensor_readings_sensor_time ON sensor_readings (sensor_id, observed_at, file_id);
"""
TICKS = 100  # clock ticks per second of /proc/<pid>/stat (sysconf CLK_TCK on Linux)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class _Chunks(list[pa.Table]):
    """A pipeline sink keeping the transformed chunks (the statistics are not measured here)."""

    def rows(self, readings: pa.Table) -> None:
        self.append(readings)

    def statistics(self, flushed: object) -> None:
        """Not part of this measurement."""


def readings(path: Path) -> list[pa.Table]:
    """The transformed chunks the daemon would COPY for ``path``."""
    chunks = _Chunks()
    pipeline.run(path, Rules(), datetime.now(UTC), sink=chunks)
    return chunks


SIZE = "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('sensor_readings')"


def one_load(dsn: str, chunks: list[pa.Table], layout: str) -> tuple[float, float, int, int]:
    """(wall seconds, server CPU seconds, bytes on disk, bytes of WAL) of one file's load transaction into a fresh schema."""
    database = Database({"dsn": dsn})
    database.apply_schema()
    if layout == "plain":
        database.query(LEGACY)
    pid, wal = database.query("SELECT pg_backend_pid(), pg_current_wal_lsn()")[0]
    now = datetime.now(UTC)
    cpu, started = cpu_seconds(pid), time.perf_counter()
    with database.load(FileMeta("bench", f"bench-{layout}.csv", "0" * 64, 0, now, now, "bench")) as load:
        for chunk in chunks:
            load.copy_readings(chunk.set_column(0, "file_id", pa.array([load.file_id] * chunk.num_rows, pa.int64())))
    wall = time.perf_counter() - started
    used = cpu_seconds(pid) - cpu
    disk, wal_bytes = database.query("SELECT (" + SIZE + "), pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (wal,))[0]
    database.close()
    return wall, used, int(disk), int(wal_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "work")
    args = parser.parse_args()
    inputs = {
        "a (seed)": generate.seed_file(args.work / "data", args.rows),
        "b (multi)": generate.multi_file(args.work / "data", args.rows),
    }
    report: dict[str, dict] = {}
    with Server(args.work, None) as server:
        for shape, path in inputs.items():
            chunks = readings(path)
            rows = sum(c.num_rows for c in chunks)
            runs: dict[str, list[tuple[float, float, int, int]]] = {"plain": [], "partitioned": []}
            for _ in range(args.runs):
                for layout in runs:
                    dsn = recreate_database(server.admin_dsn, "bench_copyrate")
                    runs[layout].append(one_load(dsn, chunks, layout))
            drop_database(server.admin_dsn, "bench_copyrate")
            report[shape] = {
                layout: {
                    "rows_per_s_median": round(rows / statistics.median(w for w, *_ in r)),
                    "rows_per_s_best": round(rows / min(w for w, *_ in r)),
                    "rows_per_server_cpu_s": round(rows / statistics.median(c for _, c, *_ in r)),
                    "disk_bytes_per_row": round(statistics.median(d for *_, d, _ in r) / rows),
                    "wal_bytes_per_row": round(statistics.median(w for *_, w in r) / rows),
                    "runs": [[round(w, 2), round(c, 2)] for w, c, *_ in r],
                }
                for layout, r in runs.items()
            }
            for measure in ("rows_per_s_median", "rows_per_s_best", "rows_per_server_cpu_s"):
                report[shape][f"partitioned/plain {measure}"] = round(
                    report[shape]["partitioned"][measure] / report[shape]["plain"][measure], 3
                )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
