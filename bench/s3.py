"""The S3 inbox against a local folder, same files, same server, same run: ``python -m bench.s3``.

Two shapes: many small files (``--files``, default 2,000 files of 100 multi-sensor rows, WORKERS=2)
and one big file (``--rows``, default 1,000,000 multi-sensor rows, WORKERS=1). Each is loaded by
``etl_pipeline.py --once`` from a local folder and from an ``s3://`` inbox on SeaweedFS (an object
store with an S3 API, on loopback: what is measured is the daemon's S3 path — listing, downloads,
copies and deletes — without a network's latency), the two sides alternating. Reported: files/s,
rows/s and peak RSS (bench/measure.py), written to ``--output`` (default bench/results-s3.json).
See bench/README.md "S3".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import generate, ours
from bench.db import Server, drop_database, execute, recreate_database
from bench.measure import Measurement, run_measured
from tests.helpers.s3servers import SeaweedFS, aws_env, client

BENCH = Path(__file__).resolve().parent
MB = 1024 * 1024


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="small files (100 rows each)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big file")
    parser.add_argument("--runs", type=int, default=1, help="runs per shape and side (median reported)")
    parser.add_argument("--work", type=Path, default=BENCH / "work", help="cache and scratch folder (git-ignored)")
    parser.add_argument("--output", type=Path, default=BENCH / "results-s3.json")
    return parser.parse_args(argv)


def s3_load(
    admin_dsn: str, store: SeaweedFS, files: list[Path], rows: int, workers: int, run: str, scratch: Path
) -> tuple[Measurement, str]:
    """One timed ``--once`` over ``files`` uploaded (untimed) into a new bucket's incoming/ prefix."""
    dsn = recreate_database(admin_dsn, ours.RUN_DATABASE)
    bucket = f"bench-{run}-{os.urandom(3).hex()}"
    s3 = client("s3", store.endpoint)
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda path: s3.upload_file(str(path), bucket, f"incoming/{path.name}"), files))
    folders = ours.Folders(scratch).fresh()  # unused by an s3:// inbox, but the environment names them
    environment = {
        **ours.daemon_environment(dsn, folders, workers, settle_seconds=0),
        **aws_env(store.endpoint),
        "DATA_FOLDER": f"s3://{bucket}/incoming/",
        "PROCESSED_FOLDER": f"s3://{bucket}/processed/",
        "QUARANTINE_FOLDER": f"s3://{bucket}/quarantine/",
    }
    measurement = run_measured([sys.executable, str(ours.DAEMON), "--once"], env=environment, cwd=ours.REPO)
    try:
        if measurement.returncode != 0:
            return measurement, f"exit code {measurement.returncode}: {measurement.stderr_tail[-500:]}"
        counts = execute(dsn, "SELECT count(*), coalesce(sum(rows_loaded), 0) FROM ingested_files")[0]
        left = s3.list_objects_v2(Bucket=bucket, Prefix="incoming/").get("KeyCount", 0)
        quarantined = s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/").get("KeyCount", 0)
        if counts != (len(files), rows) or quarantined:
            return (
                measurement,
                f"loaded {counts[0]} files and {counts[1]} rows of {len(files)} and {rows}; {quarantined} quarantined, {left} left",
            )
        return measurement, ""
    finally:
        drop_database(admin_dsn, ours.RUN_DATABASE)


def summary(runs: list[Measurement], files: int, rows: int) -> dict:
    seconds = statistics.median(run.seconds for run in runs)
    return {
        "median_seconds": round(seconds, 2),
        "files_per_s": round(files / seconds, 1),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(statistics.median(run.peak_rss_bytes for run in runs) / MB, 1),
        "runs_seconds": [round(run.seconds, 2) for run in runs],
    }


def bench_shape(
    name: str, files: list[Path], rows: int, workers: int, runs: int, sides: dict[str, Callable[[], tuple[Measurement, str]]]
) -> dict:
    results: dict[str, list[Measurement]] = {side: [] for side in sides}
    errors: dict[str, str] = {}
    for number in range(runs):
        for side, load in sides.items():  # alternating, so that background load hits both alike
            print(f"  {name}: {side} run {number + 1}/{runs}", file=sys.stderr, flush=True)
            measurement, problem = load()
            if problem:
                errors[side] = problem
            else:
                results[side].append(measurement)
    entry = {"files": len(files), "rows": rows, "workers": workers, "errors": errors}
    for side, measured in results.items():
        entry[side] = summary(measured, len(files), rows) if measured else None
    if entry.get("local") and entry.get("s3"):
        entry["s3_over_local"] = round(entry["local"]["median_seconds"] / entry["s3"]["median_seconds"], 2)
    return entry


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cache = args.work / "data"
    args.work.mkdir(parents=True, exist_ok=True)
    small = generate.csv_files(generate.multi_files(cache, args.files, 100))
    big = [generate.multi_file(cache, args.rows)]
    shutil.rmtree(args.work / "seaweedfs", ignore_errors=True)
    store = SeaweedFS(args.work / "seaweedfs")
    store.start()
    report: dict = {"load_average_at_start": [round(v, 2) for v in os.getloadavg()], "shapes": {}}
    try:
        with Server(args.work, os.environ.get("BENCH_DATABASE_URL")) as server:
            scratch = args.work / "daemon-run"
            for name, files, rows, workers in (("small", small, args.files * 100, 2), ("big", big, args.rows, 1)):
                sides = {
                    "local": functools.partial(ours.load_once, server.admin_dsn, files, rows, ours.Folders(scratch), workers),
                    "s3": functools.partial(s3_load, server.admin_dsn, store, files, rows, workers, name, scratch),
                }
                report["shapes"][name] = bench_shape(name, files, rows, workers, args.runs, sides)
    finally:
        store.stop()
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'shape':<32} {'side':<6} {'files/s':>9} {'rows/s':>10} {'seconds':>8} {'peak RSS':>9}")
    for entry in report["shapes"].values():
        for side in ("local", "s3"):
            result = entry.get(side)
            label = f"{entry['rows']:,} rows in {entry['files']:,} file(s), W={entry['workers']}"
            if result:
                print(
                    f"{label:<32} {side:<6} {result['files_per_s']:>9,.1f} {result['rows_per_s']:>10,} {result['median_seconds']:>8.2f} {result['peak_rss_mb']:>6,.0f} MB"
                )
            else:
                print(f"{label:<32} {side:<6} failed: {entry['errors'].get(side)}")
    print(f"written to {args.output}")
    return 1 if any(entry["errors"] for entry in report["shapes"].values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
