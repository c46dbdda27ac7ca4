"""Command line: run the daemon (default), ``validate`` files without loading, ``requeue`` quarantined files,
drop old months (``retention``), load a backlog on Apache Spark (``spark``)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensor_etl import __version__
from sensor_etl.config import ConfigError, Settings, load_settings, redact
from sensor_etl.edges import files, reports
from sensor_etl.edges.db import Database
from sensor_etl.edges.embedded import EmbeddedPostgres
from sensor_etl.errors import DatabaseError, FatalDatabaseError, InvalidFile, NotTaken, Problem, TransientDatabaseError
from sensor_etl.ops import logs
from sensor_etl.runners import pipeline, retention, spark, workers
from sensor_etl.runners.check import check_file, internal_problem
from sensor_etl.runners.daemon import Daemon


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("expected an integer from 1 to 64")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etl_pipeline.py",
        description="Load sensor CSV files dropped into DATA_FOLDER into PostgreSQL, each exactly once. "
        "Settings come from the environment and .env (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"sensor-etl {__version__}")
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from PATH instead of ./.env")
    parser.add_argument(
        "--once",
        action="store_true",
        help="process the files in the folder now, then exit (0: all loaded or quarantined; 1: a file could not be processed)",
    )
    parser.add_argument("--workers", type=_workers, metavar="N", help="worker processes sharing the folder (overrides WORKERS)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("validate", help="dry run: report what would happen to FILEs, touching neither database nor folders")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    requeue = commands.add_parser("requeue", help="move quarantined files back to the inbox (after fixing the file or the rules)")
    requeue.add_argument("names", nargs="+", metavar="NAME")
    keep = commands.add_parser("retention", help="drop the months of sensor_readings older than MONTHS months (metrics are kept)")
    keep.add_argument("months", type=_months, metavar="MONTHS")
    keep.add_argument("--dry-run", action="store_true", help="list the months that would be dropped, drop nothing")
    backlog = commands.add_parser(
        "spark",
        help="load the files of INPUT folders on Apache Spark (a backlog), each exactly once, then exit (exit codes as --once)",
    )
    backlog.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="a folder of input files (instead of DATA_FOLDER)")
    backlog.add_argument("--master", help="Spark master URL, e.g. local[2] or yarn (default: spark-submit's, else local[*])")
    backlog.add_argument("--tasks", type=_workers, metavar="N", help="tasks to spread the files over (default: 4 per core)")
    backlog.add_argument(
        "--conf", action="append", type=_spark_setting, default=[], metavar="KEY=VALUE", help="a Spark setting, as with spark-submit"
    )
    return parser


def _spark_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. spark.ui.enabled=false")
    return key.strip(), value


def _months(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a whole number of months, at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if args.workers is not None:
            settings = replace(settings, workers=args.workers)
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "validate":
        return validate_files(settings, args.files)
    if args.command == "requeue":
        return requeue(settings, args.names)
    if args.command == "retention":
        return drop_old_months(settings, args.months, dry_run=args.dry_run)
    if args.command == "spark":
        return run_spark(settings, args.inputs, master=args.master, tasks=args.tasks, conf=dict(args.conf))
    return run(settings, once=args.once)


def _prepare_folders(settings: Settings, *, inbox: bool = True) -> None:
    for variable, folder in (
        *((("DATA_FOLDER", settings.data_folder),) if inbox else ()),
        ("PROCESSED_FOLDER", settings.processed_folder),
        ("QUARANTINE_FOLDER", settings.quarantine_folder),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(variable, str(folder), f"a folder that exists or can be created ({exc.strerror})") from exc
        if not folder.is_dir():
            raise ConfigError(variable, str(folder), "a folder, not a file")


class ServerFailed(Exception):
    """The embedded PostgreSQL could not start (already logged)."""


@contextmanager
def database_server(settings: Settings) -> Iterator[Mapping[str, object]]:
    """The connection arguments of the configured server; with none configured, the embedded server
    is started for the block and stopped after it. Raises ServerFailed when it cannot start."""
    if not settings.embedded:
        yield settings.connection_kwargs()
        return
    server = EmbeddedPostgres(settings.pgdata_folder, settings.db_name)
    try:
        dsn = server.start()
    except (OSError, RuntimeError) as exc:
        logs.error("embedded_postgres_failed", pgdata=settings.pgdata_folder, error=exc)
        raise ServerFailed from exc
    logs.info("embedded_postgres_started", pgdata=settings.pgdata_folder.resolve(), connect=server.psql_command)
    try:
        yield {"dsn": dsn}
    finally:
        server.stop()
        logs.info("embedded_postgres_stopped")


def describe_target(settings: Settings) -> str:
    """Where the data goes, safe to log (no password)."""
    if settings.embedded:
        return "embedded"
    if settings.database_url:
        return redact(settings.database_url)
    return f"{settings.db_user}@{settings.db_host}:{settings.db_port}/{settings.db_name}"


def run(settings: Settings, once: bool) -> int:
    try:
        _prepare_folders(settings)
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    workers.stop_on_signals(stop)
    try:
        with database_server(settings) as connect:
            logs.info(
                "daemon_started",
                data=settings.data_folder,
                database=describe_target(settings),
                interval_s=settings.monitor_interval,
                workers=settings.workers,
                mode="once" if once else "watch",
            )
            if settings.workers > 1:
                code = workers.supervise(settings, connect, stop, once)
            else:
                code = Daemon(settings, Database(connect), stop).run(once)
    except ServerFailed:
        return 1
    logs.info("daemon_stopped", exit_code=code)
    return code


def run_spark(settings: Settings, inputs: list[Path], *, master: str | None, tasks: int | None, conf: Mapping[str, str]) -> int:
    """``spark INPUT...``: every file of the INPUT folders through the daemon's per-file path on Spark,
    then a summary line on stdout; exit code as ``--once``."""
    try:
        for folder in inputs:
            if not folder.is_dir():
                raise ConfigError("INPUT", str(folder), "a folder (s3:// prefixes come with the S3 inbox)")
        if settings.embedded and master and not spark.local_master(master):
            raise ConfigError("DATABASE_URL", "", f"a server every executor can reach (master {master}: the embedded one is local)")
        _prepare_folders(settings, inbox=False)
        spark.require()
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    except spark.SparkUnavailable as exc:
        print(f"sensor-etl: {exc}", file=sys.stderr)
        return 2
    try:
        with database_server(settings) as connect:
            clock = time.perf_counter()
            session = spark.session(master, conf)
            context = session.sparkContext
            logs.info(
                "spark_started",
                master=context.master,
                app_id=context.applicationId,
                cores=context.defaultParallelism,
                seconds=round(time.perf_counter() - clock, 2),
                inputs=len(inputs),
                database=describe_target(settings),
            )
            try:
                summary = spark.run_job(session, settings, connect, inputs, tasks=tasks)
            except TransientDatabaseError as exc:
                logs.error("database_unreachable", error=exc, attempts=settings.retry_attempts)
                return 1
            except FatalDatabaseError as exc:
                logs.error("database_refused", error=exc, sqlstate=exc.sqlstate)
                return 1
            except spark.JobFailed as exc:
                logs.error("spark_job_failed", error=exc, action="files not loaded wait in INPUT; run the command again")
                return 1
            finally:
                session.stop()
    except ServerFailed:
        return 1
    print(f"spark: {summary.line()}")
    done = summary.done
    logs.info(
        "spark_finished",
        loaded=done.count(spark.Result.LOADED),
        duplicate=done.count(spark.Result.DUPLICATE),
        quarantined=done.count(spark.Result.QUARANTINED),
        waiting=summary.waiting + summary.busy,
        rows=done.rows,
        seconds=round(summary.seconds, 2),
        exit_code=summary.exit_code,
    )
    return summary.exit_code


def drop_old_months(settings: Settings, months: int, *, dry_run: bool) -> int:
    """``retention MONTHS``: one line per month partition dropped (or that would be); exit 1 when the
    table is not partitioned or the database fails."""
    try:
        with database_server(settings) as connect:
            database = Database(connect)
            try:
                database.apply_schema()
                dropped = retention.drop_months(database, months, datetime.now(UTC), dry_run=dry_run)
            finally:
                database.close()
    except ServerFailed:
        return 1
    except retention.NotPartitioned as exc:
        print(f"sensor-etl: {exc}: nothing to drop; docs/schema.md shows how to migrate it", file=sys.stderr)
        return 1
    except DatabaseError as exc:
        print(f"sensor-etl: database error: {exc}", file=sys.stderr)
        return 1
    verb = "would drop" if dry_run else "dropped"
    for name in dropped:
        print(f"{verb} {name}")
    if not dropped:
        print(f"no month older than {months} month(s)")
    return 0


def validate_files(settings: Settings, paths: list[Path]) -> int:
    """Print, per file, what the daemon would do and every problem found; exit 0 when all would load.

    Same checks as the daemon, in the same order, without the database (so a content already loaded
    is not recognised as a duplicate) and without moving or writing anything."""
    all_good = True
    now = datetime.now(UTC)
    for path in paths:
        shown = _printable(str(path))
        verdict, problems, more = _dry_run(settings, path, now)
        all_good &= verdict.startswith("would LOAD")
        print(f"{shown}: {verdict}")
        for error in problems:
            print("  " + _describe(shown, error))
        if more:
            print(f"  ... and {more} more problem(s): only the first {pipeline.MAX_DETAILS} are listed")
    return 0 if all_good else 1


def _dry_run(settings: Settings, path: Path, now: datetime) -> tuple[str, list[dict[str, Any]], int]:
    """(what would happen, the problems to list, how many more there are)."""
    try:
        outcome = check_file(path, settings, now)
    except NotTaken as exc:
        return f"would be {'IGNORED' if exc.ignored else 'SKIPPED'}: {exc}", [], 0
    except InvalidFile as exc:
        errors, rule_counts = reports.listed_problems(exc.problem, exc.details)
        return f"would be QUARANTINED: {exc.details.get('reason') or exc.problem.message}", errors, sum(rule_counts.values()) - len(errors)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}", [], 0
    except Exception as exc:  # the daemon quarantines on a bug; say so rather than print a traceback
        problem = internal_problem(exc)
        return f"would be QUARANTINED: {problem.message} [{problem.rule}]", [], 0
    where = f"; {outcome.where}" if outcome.where else ""
    loaded = f"would LOAD {outcome.loaded} rows from {len(outcome.sensors)} sensor(s) (dates: {outcome.date_format}{where})"
    if not outcome.invalid_rows:
        return loaded, [], 0
    rejects = reports.rejects_csv_path(settings.quarantine_folder / path.name)
    verdict = f"{loaded} and REJECT {outcome.invalid_rows} invalid row(s) to {rejects} (MAX_INVALID_ROWS={settings.rules.max_invalid_rows})"
    return verdict, outcome.details, sum(outcome.rule_counts.values()) - len(outcome.details)


def _printable(text: str) -> str:
    """A file name on one line: control characters (a newline in a name) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _describe(shown: str, error: Mapping[str, Any]) -> str:
    return Problem(error["rule"], error["message"], error.get("line"), error.get("column") or None, error.get("value")).describe(shown)


def requeue(settings: Settings, names: list[str]) -> int:
    """Move quarantined files back to DATA_FOLDER and drop their reports.

    A quarantined file loses its ``.error.json``; a rejects file (``x.csv.rejects.csv``, fixed by
    hand) goes back as new input and loses its ``.rejects.json``."""
    code = 0
    for name in names:
        source = settings.quarantine_folder / Path(name).name
        if not files.is_input_name(source.name) or not source.is_file() or source.is_symlink():
            print(f"{_printable(name)}: no quarantined *.csv file of that name in {settings.quarantine_folder}", file=sys.stderr)
            code = 1
            continue
        try:
            target = files.move_unique(source, settings.data_folder, taken=reports.name_taken)
        except OSError as exc:
            print(f"{_printable(name)}: cannot move to {settings.data_folder}: {exc.strerror or exc}", file=sys.stderr)
            code = 1
            continue
        reports.report_of(source).unlink(missing_ok=True)
        print(f"{_printable(name)}: requeued as {_printable(str(target))}")
    return code
