"""Command line: run the daemon (default), ``validate`` files without loading, ``requeue`` quarantined files."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensor_etl import __version__
from sensor_etl.config import ConfigError, Settings, load_settings, redact
from sensor_etl.edges import files, reports
from sensor_etl.edges.db import Database
from sensor_etl.edges.embedded import EmbeddedPostgres
from sensor_etl.errors import InvalidFile, NotTaken, Problem
from sensor_etl.ops import logs
from sensor_etl.runners import pipeline, workers
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
    return parser


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
    return run(settings, once=args.once)


def _prepare_folders(settings: Settings) -> None:
    for variable, folder in (
        ("DATA_FOLDER", settings.data_folder),
        ("PROCESSED_FOLDER", settings.processed_folder),
        ("QUARANTINE_FOLDER", settings.quarantine_folder),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(variable, str(folder), f"a folder that exists or can be created ({exc.strerror})") from exc
        if not folder.is_dir():
            raise ConfigError(variable, str(folder), "a folder, not a file")


def run(settings: Settings, once: bool) -> int:
    try:
        _prepare_folders(settings)
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    workers.stop_on_signals(stop)

    server: EmbeddedPostgres | None = None
    connect: Mapping[str, object]
    if settings.embedded:
        server = EmbeddedPostgres(settings.pgdata_folder, settings.db_name)
        try:
            dsn = server.start()
        except (OSError, RuntimeError) as exc:
            logs.error("embedded_postgres_failed", pgdata=settings.pgdata_folder, error=exc)
            return 1
        logs.info("embedded_postgres_started", pgdata=settings.pgdata_folder.resolve(), connect=server.psql_command)
        connect = {"dsn": dsn}
    else:
        connect = settings.connection_kwargs()
    target = (
        redact(settings.database_url)
        if settings.database_url
        else f"{settings.db_user}@{settings.db_host}:{settings.db_port}/{settings.db_name}"
    )
    logs.info(
        "daemon_started",
        data=settings.data_folder,
        database="embedded" if server else target,
        interval_s=settings.monitor_interval,
        workers=settings.workers,
        mode="once" if once else "watch",
    )
    try:
        if settings.workers > 1:
            code = workers.supervise(settings, connect, stop, once)
        else:
            code = Daemon(settings, Database(connect), stop).run(once)
    finally:
        if server is not None:
            server.stop()
            logs.info("embedded_postgres_stopped")
    logs.info("daemon_stopped", exit_code=code)
    return code


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
