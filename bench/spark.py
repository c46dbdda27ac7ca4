"""The Spark runner against the daemon: ``python -m bench.spark [--scale 0.2] [--runs 1]``.

Two inputs, as in issue 13: 5,000 files of 100 multi-sensor rows, and 10 files of 1,000,000 rows (ten
days of one month, 20 sensors each). Each goes through ``etl_pipeline.py spark DATA --master local[2]``
and through the daemon with ``--once`` and ``WORKERS=2``, alternating, on the same embedded server,
each run into a fresh database (``bench.ours.load_once``). The fixed start-up cost is the same two
commands on an empty folder (Python, the JVM and the SparkSession, the schema, one listing). Besides
wall time, each run's CPU seconds are recorded on both sides: the loader's process tree (Python, JVM,
workers, sampled every 50 ms: ``bench.measure``) and the PostgreSQL server (its postmaster, the backends it reaped, and
the live ones), which docs/scaling.md turns into cores per file and per row.
``--scale`` multiplies the number of small files and the rows of the large ones (not the number of
large files), for machines where the full size takes too long. Writes bench/work/results-spark.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from bench import generate, ours
from bench.db import Server
from bench.run import machine

BENCH = Path(__file__).resolve().parent
MASTER = "local[2]"
LARGE_FILES = 10
LARGE_START = np.datetime64("2023-06-01T00:00:00", "s")


def large_files(cache: Path, count: int, rows: int) -> list[Path]:
    """``count`` multi-sensor files of ``rows`` rows, one day apart (distinct contents, one month)."""
    folder = cache / f"spark-large-{count}x{rows}-v{generate.GENERATOR_VERSION}"
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(count):
            start = LARGE_START + np.timedelta64(number, "D")
            chunks = (generate.multi_chunk(start, s, min(generate.CHUNK_ROWS, rows - s)) for s in range(0, rows, generate.CHUNK_ROWS))
            generate.write_rows(folder / f"large-{number:02d}.csv", generate.MULTI_HEADER, chunks)
        (folder / ".complete").touch()
    return generate.csv_files(folder)


@dataclass
class Run:
    seconds: float
    peak_rss_bytes: int
    loader_cpu: float
    server_cpu: float


def server_cpu(postmaster: int | None) -> float:
    """CPU seconds the server has used so far: the postmaster, the backends it reaped, the live ones."""
    if postmaster is None:
        return 0.0
    main = psutil.Process(postmaster)
    times = main.cpu_times()
    live = 0.0
    for child in main.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        live += child_times.user + child_times.system
    return times.user + times.system + times.children_user + times.children_system + live


def measure(server: Server, files: list[Path], rows: int, folders: ours.Folders, master: str | None) -> Run:
    postmaster = server.postmaster_pid()
    before = server_cpu(postmaster)
    measurement, problem = ours.load_once(server.admin_dsn, files, rows, folders, workers=2, spark_master=master)
    if problem:
        raise RuntimeError(f"{'spark' if master else 'daemon'} run failed: {problem}")
    return Run(measurement.seconds, measurement.peak_rss_bytes, measurement.cpu_seconds, server_cpu(postmaster) - before)


def summary(runs: list[Run], files: int, rows: int) -> dict:
    seconds = statistics.median(run.seconds for run in runs)
    return {
        "median_seconds": round(seconds, 2),
        "files_per_s": round(files / seconds, 1),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(statistics.median(run.peak_rss_bytes for run in runs) / 2**20),
        "loader_cpu_s": round(statistics.median(run.loader_cpu for run in runs), 2),
        "server_cpu_s": round(statistics.median(run.server_cpu for run in runs), 2),
        "runs_seconds": [round(run.seconds, 2) for run in runs],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the issue's sizes (default 1)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=BENCH / "work")
    parser.add_argument("--output", type=Path, default=BENCH / "work" / "results-spark.json")
    args = parser.parse_args(argv)
    cache = args.work / "data"
    small_count, large_rows = max(1, round(5_000 * args.scale)), max(20, round(1_000_000 * args.scale) // 20 * 20)
    inputs = {
        "startup": ([], 0),
        "small": (generate.csv_files(generate.multi_files(cache, small_count, 100)), small_count * 100),
        "large": (large_files(cache, LARGE_FILES, large_rows), LARGE_FILES * large_rows),
    }
    folders = ours.Folders(args.work / "spark-run")
    report: dict = {"scale": args.scale, "master": MASTER, "daemon_workers": 2, "inputs": {}}
    with Server(args.work, None) as server:
        report["machine"] = machine(server.admin_dsn)
        for key, (files, rows) in inputs.items():
            runs: dict[str, list[Run]] = {"daemon": [], "spark": []}
            for number in range(args.runs):
                print(f"  {key}: run {number + 1}/{args.runs}", file=sys.stderr, flush=True)
                runs["daemon"].append(measure(server, files, rows, folders, None))
                runs["spark"].append(measure(server, files, rows, folders, MASTER))
            report["inputs"][key] = {"files": len(files), "rows": rows, **{side: summary(r, len(files), rows) for side, r in runs.items()}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for key, entry in report["inputs"].items():
        d, s = entry["daemon"], entry["spark"]
        print(
            f"{key:<8} {entry['files']:>6} files {entry['rows']:>10,} rows   daemon WORKERS=2: {d['median_seconds']:>7.1f} s"
            f" ({d['files_per_s']:,} files/s, {d['rows_per_s']:,} rows/s)   spark {MASTER}: {s['median_seconds']:>7.1f} s"
            f" ({s['files_per_s']:,} files/s, {s['rows_per_s']:,} rows/s)   CPU s loader/server: daemon"
            f" {d['loader_cpu_s']}/{d['server_cpu_s']}, spark {s['loader_cpu_s']}/{s['server_cpu_s']}"
        )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
