"""Benchmark sensor-etl against ``psql \\copy``: ``python -m bench.run [--smoke] [--shapes a,b] [--runs N]``.

Shapes: (a) one 1M-row seed-format file, (b) one 1M-row multi-sensor file, (c) 2,000 files of 100
rows with WORKERS=2 and (c1) the same with WORKERS=1, (d) one ~2 GB seed-format file (peak memory),
(e) one 1M-row file with a different sensor on every row (peak memory with as many statistics groups
as rows), and the pickup latency of an idle daemon.
Reference and daemon runs alternate, on the same server, so that background load hits both alike.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import generate, ours, reference
from bench.db import Server, drop_database, recreate_database, server_version
from bench.measure import Measurement
from sensor_etl.config import Rules, Settings

BENCH = Path(__file__).resolve().parent
MB = 1024 * 1024


def rss_bound_mb(read_block_bytes: int = Settings.read_block_bytes, max_line_bytes: int = Rules.max_line_bytes) -> float:
    """The documented bound of one worker's peak RSS, MiB (docs/operations.md#memory), whatever the
    file's size, line structure and number of sensor-day groups: about 170 MiB + 35 x READ_BLOCK_BYTES
    + 12 x MAX_LINE_BYTES."""
    return 170 + (35 * read_block_bytes + 12 * max_line_bytes) / MB


MANY_GROUPS_RSS_MB = rss_bound_mb()
LATENCY_SETTLE_SECONDS = 0.5
LATENCY_ROWS = 100
SHAPE_KEYS = ["a", "b", "c", "c1", "d", "e", "latency"]
REFERENCE_DATABASE = "bench_reference"


@dataclass
class Shape:
    """One input shape: its files, how its speed is expressed, and the goals set for it."""

    key: str
    description: str
    file_format: str
    unit: str
    workers: int
    min_ratio: float | None
    min_files_per_s: float | None = None
    max_rss_mb: float | None = None


SHAPES = {
    "a": Shape("a", "1 file, seed format", "seed", "rows/s", 1, min_ratio=0.5),
    "b": Shape("b", "1 file, multi-sensor (20 sensors)", "multi", "rows/s", 1, min_ratio=0.6),
    "c": Shape(
        "c",
        "many 100-row multi-sensor files, WORKERS=2",
        "multi",
        "files/s",
        2,
        min_ratio=0.5,
        min_files_per_s=200,
    ),
    "c1": Shape("c1", "many 100-row multi-sensor files, WORKERS=1", "multi", "files/s", 1, min_ratio=0.35),
    "d": Shape(
        "d",
        "1 file of ~2 GB, seed format (memory)",
        "seed",
        "rows/s",
        1,
        min_ratio=None,
        max_rss_mb=300e6 / MB,  # the issue's 300 MB, in SI units: 286 MiB (the bench's MB are MiB)
    ),
    "e": Shape(
        "e",
        "1 file, a different sensor on every row (memory)",
        "multi",
        "rows/s",
        1,
        min_ratio=None,
        max_rss_mb=MANY_GROUPS_RSS_MB,
    ),
}


@dataclass
class Sizes:
    """Input sizes: the issue's, or tiny ones for the smoke run that CI executes."""

    seed_rows: int
    multi_rows: int
    sensor_rows: int
    many_files: int
    big_file_bytes: int
    latency_samples: int


FULL = Sizes(
    seed_rows=1_000_000,
    multi_rows=1_000_000,
    sensor_rows=1_000_000,
    many_files=2_000,
    big_file_bytes=2_000_000_000,
    latency_samples=10,
)
SMOKE = Sizes(
    seed_rows=2_000,
    multi_rows=2_000,
    sensor_rows=2_000,
    many_files=20,
    big_file_bytes=5_000_000,
    latency_samples=3,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shapes",
        default=",".join(SHAPE_KEYS),
        help="comma-separated subset of a,b,c,c1,d,e,latency",
    )
    parser.add_argument(
        "--runs",
        type=int,
        help="runs per shape and side, median reported (default 3; 1 with --smoke)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny inputs: 2,000 rows, 20 files, 5 MB, 3 latency drops",
    )
    parser.add_argument(
        "--allow-no-daemon",
        action="store_true",
        help="exit 0 when etl_pipeline.py is missing (n/a)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="JSON report (default bench/results.json; smoke: bench/work/)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=BENCH / "work",
        help="cache and scratch folder (git-ignored)",
    )
    args = parser.parse_args(argv)
    args.shapes = [key.strip() for key in args.shapes.split(",") if key.strip()]
    unknown = set(args.shapes) - set(SHAPE_KEYS)
    if unknown:
        parser.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    args.runs = args.runs or (1 if args.smoke else 3)
    args.output = args.output or (args.work / "results-smoke.json" if args.smoke else BENCH / "results.json")
    return args


def inputs(shape: Shape, sizes: Sizes, cache: Path) -> tuple[list[Path], int]:
    """The cached input files of a shape and their total row count (generated on first use)."""
    if shape.key == "a":
        return [generate.seed_file(cache, sizes.seed_rows)], sizes.seed_rows
    if shape.key == "b":
        return [generate.multi_file(cache, sizes.multi_rows)], sizes.multi_rows
    if shape.key in ("c", "c1"):
        folder = generate.multi_files(cache, sizes.many_files, 100)
        return generate.csv_files(folder), sizes.many_files * 100
    if shape.key == "e":
        return [generate.sensors_file(cache, sizes.sensor_rows)], sizes.sensor_rows
    rows = generate.seed_rows_for_size(sizes.big_file_bytes)
    return [generate.seed_file(cache, rows)], rows


def summarize(runs: list[Measurement], rows: int, files: int) -> dict:
    """Medians over runs (time, rates, peak RSS), with every run's raw values kept."""
    seconds = statistics.median(run.seconds for run in runs)
    return {
        "median_seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        "files_per_s": round(files / seconds, 2),
        "peak_rss_mb": round(statistics.median(run.peak_rss_bytes for run in runs) / MB, 1),
        "runs_seconds": [round(run.seconds, 3) for run in runs],
        "runs_peak_rss_mb": [round(run.peak_rss_bytes / MB, 1) for run in runs],
    }


def reference_run(dsn: str, shape: Shape, files: list[Path], rows: int, scratch: Path) -> tuple[Measurement, str]:
    """One timed reference load into an emptied table; returns it and why it failed ("" if it did not)."""
    reference.prepare(dsn, shape.file_format)
    measurement = reference.copy_files(dsn, shape.file_format, files, scratch / f"copy-{shape.key}.sql")
    if measurement.returncode != 0:
        return (
            measurement,
            f"psql exit code {measurement.returncode}: {measurement.stderr_tail[-500:]}",
        )
    loaded = reference.loaded_rows(dsn, shape.file_format)
    return measurement, "" if loaded == rows else f"psql loaded {loaded} of {rows} rows"


def bench_shape(
    shape: Shape,
    args: argparse.Namespace,
    sizes: Sizes,
    admin_dsn: str,
    reference_dsn: str,
) -> dict:
    """Generate a shape's inputs, then alternate reference and daemon runs; returns its report entry."""
    started = time.perf_counter()
    files, rows = inputs(shape, sizes, args.work / "data")
    generated = time.perf_counter() - started
    entry = {
        "description": shape.description,
        "format": shape.file_format,
        "files": len(files),
        "rows": rows,
        "input_mb": round(sum(path.stat().st_size for path in files) / MB, 1),
        "workers": shape.workers,
        "unit": shape.unit,
        "generation_seconds": round(generated, 1),
    }
    folders = ours.Folders(args.work / "daemon-run")
    reference_runs, our_runs, errors = [], [], {}
    for number in range(args.runs):
        print(
            f"  shape {shape.key}: run {number + 1}/{args.runs}",
            file=sys.stderr,
            flush=True,
        )
        if "reference" not in errors:
            measurement, problem = reference_run(reference_dsn, shape, files, rows, args.work)
            reference_runs.append(measurement) if not problem else errors.setdefault("reference", problem)
        if ours.daemon_available() and "ours" not in errors:
            measurement, problem = ours.load_once(admin_dsn, files, rows, folders, shape.workers)
            our_runs.append(measurement) if not problem else errors.setdefault("ours", problem)
    entry["reference"] = summarize(reference_runs, rows, len(files)) if reference_runs and not errors.get("reference") else None
    entry["ours"] = summarize(our_runs, rows, len(files)) if our_runs and not errors.get("ours") else None
    entry["errors"] = errors
    entry["ours_status"] = status(entry["ours"], errors.get("ours"))
    entry["ratio"] = ratio(entry["reference"], entry["ours"])
    entry["targets"] = targets(shape, entry)
    return entry


def status(result: dict | None, error: str | None) -> str:
    """ "ok", "failed: ..." or "n/a" (the daemon is not on this branch yet)."""
    if error:
        return f"failed: {error}"
    if result is None:
        return "n/a: etl_pipeline.py not found"
    return "ok"


def ratio(reference_result: dict | None, our_result: dict | None) -> float | None:
    """Our speed over the reference's: equal for rows/s and files/s, since both load the same files."""
    if not reference_result or not our_result:
        return None
    return round(reference_result["median_seconds"] / our_result["median_seconds"], 3)


def targets(shape: Shape, entry: dict) -> list[dict]:
    """The issue's goals for this shape, each with whether it was met (None when not measured)."""
    our_result = entry["ours"]
    goals = []
    if shape.min_ratio is not None:
        met = None if entry["ratio"] is None else entry["ratio"] >= shape.min_ratio
        goals.append({"goal": f"ours/reference >= {shape.min_ratio}", "met": met})
    if shape.min_files_per_s is not None:
        met = None if our_result is None else our_result["files_per_s"] >= shape.min_files_per_s
        goals.append({"goal": f"files/s >= {shape.min_files_per_s:g}", "met": met})
    if shape.max_rss_mb is not None:
        met = None if our_result is None else our_result["peak_rss_mb"] <= shape.max_rss_mb
        goals.append({"goal": f"peak RSS <= {shape.max_rss_mb:.0f} MiB", "met": met})
    return goals


def bench_latency(args: argparse.Namespace, sizes: Sizes, admin_dsn: str) -> dict:
    """Median pickup latency of an idle daemon over ``latency_samples`` dropped 100-row files."""
    entry = {
        "settle_seconds": LATENCY_SETTLE_SECONDS,
        "monitor_interval": 1,
        "rows_per_file": LATENCY_ROWS,
    }
    entry["samples"] = sizes.latency_samples
    if not ours.daemon_available():
        entry.update(median_seconds=None, status=status(None, None))
        goal_met = None
    else:
        folder = generate.multi_files(
            args.work / "data",
            sizes.latency_samples,
            LATENCY_ROWS,
            generate.LATENCY_START,
        )
        try:
            samples = ours.pickup_latency(
                admin_dsn,
                generate.csv_files(folder),
                ours.Folders(args.work / "daemon-run"),
                LATENCY_SETTLE_SECONDS,
            )
        except RuntimeError as error:
            entry.update(median_seconds=None, status=status(None, str(error)))
            goal_met = None
        else:
            entry.update(
                median_seconds=round(statistics.median(samples), 3),
                max_seconds=round(max(samples), 3),
                status="ok",
            )
            entry["runs_seconds"] = [round(sample, 3) for sample in samples]
            goal_met = entry["median_seconds"] <= 2.0
    entry["targets"] = [{"goal": "median <= 2 s", "met": goal_met}]
    return entry


def machine(dsn: str) -> dict:
    """What the numbers were measured on; other work may share the machine, hence the load average."""
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=BENCH,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server_version(dsn),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "git_commit": commit,
    }


def fmt_rate(result: dict | None, unit: str) -> str:
    if result is None:
        return "n/a"
    value = result["files_per_s"] if unit == "files/s" else result["rows_per_s"]
    return f"{value:,.0f} {unit}"


def fmt_goals(goals: list[dict]) -> str:
    marks = {True: "met", False: "MISSED", None: "n/a"}
    return "; ".join(f"{goal['goal']}: {marks[goal['met']]}" for goal in goals)


def print_table(report: dict) -> None:
    """The one table of the issue: shape, reference, ours, ratio, peak RSS, targets."""
    header = f"{'shape':<44} {'reference':>18} {'ours':>18} {'ours/ref':>8} {'RSS ours':>9} {'RSS psql':>9}  targets"
    print(header)
    print("-" * len(header))
    for key, entry in report["shapes"].items():
        name = f"({key}) {entry['rows']:,} rows in {entry['files']:,} file(s), {entry['input_mb']:,.0f} MB"
        ref, our = entry["reference"], entry["ours"]
        ratio_text = f"{entry['ratio']:.2f}x" if entry["ratio"] is not None else "n/a"
        rss = [f"{result['peak_rss_mb']:,.0f} MB" if result else "n/a" for result in (our, ref)]
        print(
            f"{name:<44} {fmt_rate(ref, entry['unit']):>18} {fmt_rate(our, entry['unit']):>18} {ratio_text:>8}"
            f" {rss[0]:>9} {rss[1]:>9}  {fmt_goals(entry['targets'])}"
        )
        for side, error in entry["errors"].items():
            print(f"    {side} failed: {error}")
    latency = report.get("latency")
    if latency:
        value = f"{latency['median_seconds']:.2f} s" if latency["median_seconds"] is not None else latency["status"]
        print(
            f"latency, median of {latency['samples']} (settle {latency['settle_seconds']} s, scan every 1 s): {value}"
            f"  {fmt_goals(latency['targets'])}"
        )


def failed(report: dict, allow_no_daemon: bool) -> bool:
    """Whether to exit non-zero: a measurement failed, or the daemon is missing without --allow-no-daemon."""
    entries = [
        *report["shapes"].values(),
        *([report["latency"]] if "latency" in report else []),
    ]
    if any(entry.get("errors") or entry.get("status", "").startswith("failed") for entry in entries):
        return True
    return not ours.daemon_available() and not allow_no_daemon


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    args.work.mkdir(parents=True, exist_ok=True)
    if not ours.daemon_available():
        print(
            f"{ours.DAEMON} not found: the daemon's columns will read n/a",
            file=sys.stderr,
        )
    with Server(args.work, os.environ.get("BENCH_DATABASE_URL")) as server:
        reference_dsn = recreate_database(server.admin_dsn, REFERENCE_DATABASE)
        report = {
            "machine": machine(server.admin_dsn),
            "settings": {"runs": args.runs, "smoke": args.smoke},
            "shapes": {},
        }
        for key in args.shapes:
            if key in SHAPES:
                report["shapes"][key] = bench_shape(SHAPES[key], args, sizes, server.admin_dsn, reference_dsn)
        if "latency" in args.shapes:
            report["latency"] = bench_latency(args, sizes, server.admin_dsn)
        drop_database(server.admin_dsn, REFERENCE_DATABASE)
    report["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"written to {args.output}")
    return 1 if failed(report, args.allow_no_daemon) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
