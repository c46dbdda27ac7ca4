"""Command line: run the daemon (default), ``validate`` files without loading, ``requeue`` quarantined files,
``unload`` loaded files, ``status`` of the daemon's database and folders, ``sql`` on its database, drop old
months (``retention``), load a backlog on Apache Spark (``spark``)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
from psycopg2.extensions import make_dsn, parse_dsn

from sensor_etl import __version__
from sensor_etl.config import ConfigError, Location, S3Location, Settings, load_settings, redact
from sensor_etl.edges import files, inbox, memory, reports, state
from sensor_etl.edges.db import Database
from sensor_etl.edges.embedded import POSTGRES_BIN_PATH, EmbeddedPostgres
from sensor_etl.errors import (
    DatabaseError,
    FatalDatabaseError,
    FatalStorageError,
    InvalidFile,
    NotTaken,
    Problem,
    StorageError,
    TransientDatabaseError,
    TransientStorageError,
)
from sensor_etl.ops import logs
from sensor_etl.ops import status as status_view
from sensor_etl.runners import monitor, pipeline, retention, retry, spark, workers
from sensor_etl.runners.check import Preview, check_file, internal_problem
from sensor_etl.sources import Match, Sources, load_sources


def _between(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}")
        return value

    return parse


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
    parser.add_argument("--workers", type=_between(1, 64), metavar="N", help="worker processes sharing the folder (overrides WORKERS)")
    parser.add_argument("--quiet", action="store_true", help="no progress line and no summary table on a terminal (the log is unchanged)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "validate",
        help="dry run: report what would happen to FILEs (paths, s3://bucket/key, or every input object under s3://bucket/prefix/), "
        "touching neither database nor folders",
    )
    check.add_argument("--show", type=_between(1), metavar="N", help="also print the first N rows as they would be stored")
    check.add_argument("files", nargs="+", metavar="FILE")
    requeue = commands.add_parser("requeue", help="move quarantined files back to the inbox (after fixing the file or the rules)")
    requeue.add_argument("names", nargs="+", metavar="NAME")
    unload = commands.add_parser("unload", help="remove loaded files' readings, metrics and ledger rows (to load them again)")
    unload.add_argument("--requeue", action="store_true", help="also move each file from PROCESSED_FOLDER back to the inbox")
    unload.add_argument("keys", nargs="+", metavar="NAME|FILE_ID", help="a file's name in the ledger (its path in the inbox) or file_id")
    status = commands.add_parser(
        "status", help="database, inbox backlog, files being handled, recent loads and quarantines (exit 0: ready, 1: not ready)"
    )
    status.add_argument("--json", action="store_true", help="one JSON document instead of text")
    status.add_argument(
        "--last", type=_between(0, 1000), default=10, metavar="N", help="how many recent loads and quarantines to list (default 10)"
    )
    sql = commands.add_parser("sql", help="psql on the daemon's database (the embedded one is started for the session if needed)")
    sql.add_argument("query", nargs="?", metavar="QUERY", help="run this one query, print its result and exit (else: interactive psql)")
    keep = commands.add_parser("retention", help="drop the months of sensor_readings older than MONTHS months (metrics are kept)")
    keep.add_argument("months", type=_between(1), metavar="MONTHS")
    keep.add_argument("--dry-run", action="store_true", help="list the months that would be dropped, drop nothing")
    backlog = commands.add_parser(
        "spark",
        help="load the files of INPUT folders on Apache Spark (a backlog), each exactly once, then exit (exit codes as --once)",
    )
    backlog.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="a folder of input files (instead of DATA_FOLDER)")
    backlog.add_argument("--master", help="Spark master URL, e.g. local[2] or yarn (default: spark-submit's, else local[*])")
    backlog.add_argument("--tasks", type=_between(1, 64), metavar="N", help="tasks to spread the files over (default: 4 per core)")
    backlog.add_argument(
        "--conf", action="append", type=_spark_setting, default=[], metavar="KEY=VALUE", help="a Spark setting, as with spark-submit"
    )
    return parser


def _spark_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. spark.ui.enabled=false")
    return key.strip(), value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if args.workers is not None:
            settings = replace(settings, workers=args.workers)
        sources = load_sources(settings)
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "validate":
        return validate_files(settings, sources, args.files, show=args.show)
    if args.command == "requeue":
        return requeue(settings, args.names)
    if args.command == "unload":
        return unload(settings, args.keys, requeue_files=args.requeue)
    if args.command == "status":
        return show_status(settings, as_json=args.json, last=args.last)
    if args.command == "sql":
        return sql(settings, args.query)
    if args.command == "retention":
        return drop_old_months(settings, args.months, dry_run=args.dry_run)
    if args.command == "spark":
        return run_spark(settings, sources, args.inputs, master=args.master, tasks=args.tasks, conf=dict(args.conf))
    return run(settings, sources, once=args.once, show=sys.stderr.isatty() and not args.quiet)


def _open_inbox(settings: Settings, stop: threading.Event) -> inbox.Inbox[Any]:
    """The inbox of DATA_FOLDER, with its folders created or its buckets checked (raises
    ``ConfigError``, ``FatalStorageError``)."""
    opened = inbox.open_inbox(settings, retry.storage_retrier(settings, stop))
    opened.prepare()
    return opened


def _with_database_secret(settings: Settings, stop: threading.Event) -> Settings:
    """DATABASE_URL read from DATABASE_URL_SECRET, when that is set (``edges.secrets``: the s3 extra)."""
    if not settings.database_url_secret:
        return settings
    try:
        from sensor_etl.edges import secrets
    except ImportError as exc:
        raise ConfigError(
            "DATABASE_URL_SECRET", settings.database_url_secret, "no secret unless the s3 extra is installed: pip install 'sensor-etl[s3]'"
        ) from exc
    return secrets.with_database_secret(settings, retry.storage_retrier(settings, stop))


@contextmanager
def database_server(settings: Settings, *, own: bool = False) -> Iterator[tuple[Mapping[str, object] | None, str]]:
    """The database a command works on: (connection arguments, which server, safe to log), or (None,
    why there is none). The one way every command gets its database.

    With no server configured it is the embedded one. The daemon and ``spark`` own it (``own``): they
    create it the first time, start it and stop it when they end. The other commands (``unload``,
    ``status``, ``sql``, ``retention``) borrow it: started for the command if it is not running, left
    as found, never created."""
    if not settings.embedded:
        target = f"{settings.db_user}@{settings.db_host}:{settings.db_port}/{settings.db_name}"
        yield settings.connection_kwargs(), redact(settings.database_url) if settings.database_url else target
        return
    server = EmbeddedPostgres(settings.pgdata_folder, settings.db_name)
    described = f"embedded ({server.pgdata})"
    if not own and not server.initialised:
        yield None, f"{described}: no database there yet (the daemon creates it when it first starts; PGDATA_FOLDER)"
        return
    with ExitStack() as stack:
        try:
            dsn = stack.enter_context(_owned(server) if own else server.borrowed())
        except (OSError, RuntimeError) as exc:
            yield None, f"{described}: cannot be started: {exc}"
            return
        yield {"dsn": dsn}, described


@contextmanager
def _owned(server: EmbeddedPostgres) -> Iterator[str]:
    """The embedded server for a run of the daemon or ``spark``: started (created the first time), then stopped."""
    try:
        dsn = server.start()
    except (OSError, RuntimeError) as exc:
        logs.error("embedded_postgres_failed", pgdata=server.pgdata, error=exc)
        raise
    logs.info("embedded_postgres_started", pgdata=server.pgdata.resolve(), connect=server.psql_command)
    try:
        yield dsn
    finally:
        server.stop()
        logs.info("embedded_postgres_stopped")


def run(settings: Settings, sources: Sources, once: bool, show: bool = False) -> int:
    """The daemon; ``show``: a person watches (progress line with ``once``, summary table)."""
    stop = threading.Event()
    workers.stop_on_signals(stop)
    try:
        _open_inbox(settings, stop)
        settings = _with_database_secret(settings, stop)
        memory_limit = memory.worker_limit(settings.worker_memory_limit, settings.workers)
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    except FatalStorageError as exc:
        logs.error("storage_refused", inbox=settings.data_folder, error=exc)
        return 1
    except TransientStorageError as exc:
        logs.error("secret_unreadable", secret=settings.database_url_secret, error=exc)
        return 1
    with database_server(settings, own=True) as (connect, described):
        if connect is None:
            return 1  # logged: embedded_postgres_failed
        logs.info(
            "daemon_started",
            data=settings.data_folder,
            database=described,
            interval_s=settings.monitor_interval,
            workers=settings.workers,
            memory_limit=memory.size_text(memory_limit) if memory_limit else "off",
            mode="once" if once else "watch",
            sources=f"{sources.file} ({len(sources.sources)})" if sources.file else None,
        )
        try:
            with monitor.watched(settings, connect, once=once, show=show):
                if settings.workers > 1:
                    code = workers.supervise(settings, sources, connect, stop, once, memory_limit)
                else:
                    memory.limit(memory_limit)  # the one worker is this process; the embedded server started before, unlimited
                    code = workers.runner(settings, Database(connect), stop, sources).run(once)
        except ConfigError as exc:
            print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
            code = 2
    logs.info("daemon_stopped", exit_code=code, peak_rss_mb=memory.peak_rss() >> 20)
    return code


def run_spark(
    settings: Settings, sources: Sources, inputs: list[Path], *, master: str | None, tasks: int | None, conf: Mapping[str, str]
) -> int:
    """``spark INPUT...``: every file of the INPUT folders through the daemon's per-file path on Spark,
    under the same sources (SOURCES_FILE) as the daemon, then a summary line on stdout; exit code as ``--once``."""
    try:
        for folder in inputs:
            if not folder.is_dir():
                raise ConfigError("INPUT", str(folder), "a folder (s3:// prefixes come with the S3 inbox)")
        if settings.embedded and master and not spark.local_master(master):
            raise ConfigError("DATABASE_URL", "", f"a server every executor can reach (master {master}: the embedded one is local)")
        spark.inboxes(settings, inputs)  # creates PROCESSED_FOLDER and QUARANTINE_FOLDER
        spark.require()
    except ConfigError as exc:
        print(f"sensor-etl: configuration error: {exc}", file=sys.stderr)
        return 2
    except spark.SparkUnavailable as exc:
        print(f"sensor-etl: {exc}", file=sys.stderr)
        return 2
    with database_server(settings, own=True) as (connect, described):
        if connect is None:
            return 1  # logged: embedded_postgres_failed
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
            database=described,
            sources=f"{sources.file} ({len(sources.sources)})" if sources.file else None,
        )
        try:
            summary = spark.run_job(session, settings, connect, inputs, sources=sources, tasks=tasks)
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
    """``retention MONTHS``: one line per month partition dropped (or that would be); exit 1 when there
    is no database, the table is not partitioned or the database fails. The embedded server is
    borrowed (``database_server``): a daemon running on it keeps it."""
    with database_server(settings) as (connect, described):
        if connect is None:
            print(f"sensor-etl: retention: no database to drop months from: {described}", file=sys.stderr)
            return 1
        database = Database(connect)
        try:
            database.apply_schema()
            dropped = retention.drop_months(database, months, datetime.now(UTC), dry_run=dry_run)
        except retention.NotPartitioned as exc:
            print(f"sensor-etl: {exc}: nothing to drop; docs/schema.md shows how to migrate it", file=sys.stderr)
            return 1
        except DatabaseError as exc:
            print(f"sensor-etl: database error: {exc}", file=sys.stderr)
            return 1
        finally:
            database.close()
    verb = "would drop" if dry_run else "dropped"
    for name in dropped:
        print(f"{verb} {name}")
    if not dropped:
        print(f"no month older than {months} month(s)")
    return 0


def validate_files(settings: Settings, sources: Sources, targets: list[str], show: int | None = None) -> int:
    """Print, per file, what the daemon would do and every problem found; exit 0 when all would load.

    Same checks as the daemon, in the same order, under the settings of the source the file matches,
    without the database (so a content already loaded is not recognised as a duplicate, nor an overlap
    with other files) and without moving or writing anything. An s3:// target is an object, or (a
    URL ending in ``/``) every input object under that prefix, each read into a temporary file as the
    daemon reads it. With sources (or ``show``) each verdict names the source; ``show`` prints the
    first rows as they would be stored."""
    all_good = True
    now = datetime.now(UTC)
    for target in targets:
        for shown, path, name, match, fp in _checked(settings, sources, target):
            preview = Preview(show) if show else None
            verdict, problems, more = _dry_run(settings, path, name, match, now, preview, fp) if path else (name, [], 0)
            all_good &= verdict.startswith("would LOAD")
            source = f" [source: {match.source or 'none'}]" if path and (sources.sources or show) else ""
            print(f"{shown}: {verdict}{source}")
            if preview is not None and (table := preview.table()) is not None:
                for line in _rows_text(table):
                    print("    " + line)
            for error in problems:
                print("  " + _describe(shown, error))
            if more:
                print(f"  ... and {more} more problem(s): only the first {pipeline.MAX_DETAILS} are listed")
    return 0 if all_good else 1


Checked = tuple[str, Path | None, str, Match, files.Fingerprint | None]


def _checked(settings: Settings, sources: Sources, target: str) -> Iterator[Checked]:
    """(the file as shown, a local file to check, the name the daemon would know it by — its path in
    the inbox —, the source it matches, its fingerprint if taken) for a path, an object, or each
    object under a prefix; for what cannot be read, no file and the verdict in place of the name."""
    if not target.lower().startswith("s3://"):
        path = Path(target)
        relative = _in_folder(settings.data_folder, path) if isinstance(settings.data_folder, Path) else None
        yield _printable(target), path, relative or path.name, sources.rules_for(relative or path.as_posix()), None
        return
    unread = Match(None, settings.rules)
    try:
        for url, fetch in inbox.objects_at(target, retry.storage_retrier(settings, threading.Event())):
            inbox_url = settings.data_folder.url() if isinstance(settings.data_folder, S3Location) else None
            name = url.removeprefix(inbox_url) if inbox_url and url.startswith(inbox_url) else url.rpartition("/")[2]
            match = sources.rules_for(name)
            try:
                with fetch(match.rules.encoding) as fetched:
                    yield _printable(url), fetched.path, name, match, fetched.fp
            except (OSError, StorageError) as exc:
                yield _printable(url), None, f"cannot be read: {_reason(exc)}", unread, None
    except (OSError, StorageError, ConfigError) as exc:
        yield _printable(target), None, f"cannot be read: {_reason(exc)}", unread, None


def _reason(exc: Exception) -> str:
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def _in_folder(folder: Path, path: Path) -> str | None:
    """``path`` relative to ``folder`` (``tmy3/x.csv``), or None when it lies outside the folder; no link is followed."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return None if relative == os.pardir or relative.startswith(os.pardir + os.sep) else PurePosixPath(relative).as_posix()


def _dry_run(
    settings: Settings, path: Path, name: str, match: Match, now: datetime, preview: Preview | None, fp: files.Fingerprint | None = None
) -> tuple[str, list[dict[str, Any]], int]:
    """(what would happen, the problems to list, how many more there are); ``name`` is the name the
    daemon would know the file by (its path in the inbox); ``fp``, its fingerprint if already taken."""
    if not all(files.is_scanned_folder(folder) for folder in PurePosixPath(name).parts[:-1]):
        return "would be IGNORED: the daemon does not enter hidden or temporary folders of the inbox", [], 0
    try:
        outcome = check_file(path, settings, now, match=match, fp=fp, sink=preview)
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
    loaded = f"would LOAD {outcome.loaded} rows from {outcome.sensors} sensor(s) (dates: {outcome.date_format}{where})"
    if not outcome.invalid_rows:
        return loaded, [], 0
    rejects = _within(settings.quarantine_folder, reports.rejects_csv_name(name))
    verdict = f"{loaded} and REJECT {outcome.invalid_rows} invalid row(s) to {rejects} (MAX_INVALID_ROWS={match.rules.max_invalid_rows})"
    return verdict, outcome.details, sum(outcome.rule_counts.values()) - len(outcome.details)


def _within(location: Location, name: str) -> str:
    return location.url(name) if isinstance(location, S3Location) else str(location / name)


def _rows_text(table: pa.Table) -> list[str]:
    """Rows as they would be stored, one line each under a header of the column names: UTC times,
    floats as PostgreSQL shows a double (the shortest text that reads back the same), NULL, extra's JSON."""
    cells = [[_cell(value) for value in row.values()] for row in table.to_pylist()]
    widths = [max(len(text) for text in column) for column in zip(table.column_names, *cells, strict=True)]
    return [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() for line in (table.column_names, *cells)
    ]


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return _printable(str(value))


def _printable(text: str) -> str:
    """A file name on one line: control characters (a newline in a name) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _describe(shown: str, error: Mapping[str, Any]) -> str:
    return Problem(error["rule"], error["message"], error.get("line"), error.get("column") or None, error.get("value")).describe(shown)


def requeue(settings: Settings, names: list[str]) -> int:
    """Move quarantined files back to DATA_FOLDER (into the subfolder they came from) and drop their reports.

    NAME is a path in QUARANTINE_FOLDER (``tmy3/x.csv``), or a path to a file there as typed from the
    current folder (``quarantine/tmy3/x.csv``; for an s3:// quarantine, its URL). A quarantined file
    loses its ``.error.json``; a rejects file (``x.csv.rejects.csv``, fixed by hand) goes back as new
    input and loses its ``.rejects.json``."""
    try:
        opened = _open_inbox(settings, threading.Event())
    except (ConfigError, FatalStorageError) as exc:
        print(f"sensor-etl: cannot requeue: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    code = 0
    for name in names:
        quarantine = settings.quarantine_folder
        relative = _quarantined(quarantine, name) if isinstance(quarantine, Path) else name.removeprefix(quarantine.url())
        try:
            target = opened.requeue(relative) if relative else None
        except (OSError, StorageError) as exc:
            print(f"{_printable(name)}: cannot move to {settings.data_folder}: {_reason(exc)}", file=sys.stderr)
            code = 1
            continue
        if target is None:
            print(f"{_printable(name)}: no quarantined *.csv file of that name in {quarantine}", file=sys.stderr)
            code = 1
            continue
        print(f"{_printable(name)}: requeued as {_printable(target)}")
    return code


def _quarantined(folder: Path, name: str) -> str | None:
    """NAME as a path relative to the quarantine folder: typed with the folder (it exists as given and
    lies inside), else relative to it; None when it would lead outside."""
    for path in (Path(name), folder / name):
        relative = _in_folder(folder, path)
        if relative is not None and (path.exists() or path.is_symlink()):
            return relative
    return None


def unload(settings: Settings, keys: list[str], *, requeue_files: bool) -> int:
    """Remove loaded files' readings, metrics and ledger rows, each in one transaction, so that a file
    loaded with wrong settings can be loaded again; with ``requeue_files`` also move each file from
    PROCESSED_FOLDER back to the inbox (its subfolder and name as it was loaded). A key that is not a
    loaded file is refused (exit 1). The embedded server is borrowed (``database_server``)."""
    with database_server(settings) as (connect, described):
        if connect is None:
            print(f"sensor-etl: unload: no database to unload from: {described}", file=sys.stderr)
            return 1
        database = Database(connect)
        try:
            database.apply_schema()
            codes = [_unload_one(settings, database, key, requeue_files) for key in keys]
        except DatabaseError as exc:
            print(f"sensor-etl: unload: the database is not available: {exc}", file=sys.stderr)
            return 1
        finally:
            database.close()
    return max(codes)


def _unload_one(settings: Settings, database: Database, key: str, requeue_file: bool) -> int:
    shown = _printable(key)
    found = database.find_loaded(key, str(Path(key).resolve()))
    if len(found) != 1:
        ids = ", ".join(str(entry.file_id) for entry in found)
        reason = f"{len(found)} loaded files have this name (file_id {ids}): give the file_id" if found else "not a loaded file"
        print(f"{shown}: {reason}; nothing unloaded", file=sys.stderr)
        return 1
    entry = found[0]
    readings = database.unload(entry.file_id)
    if readings is None:
        print(f"{shown}: not a loaded file (unloaded meanwhile); nothing unloaded", file=sys.stderr)
        return 1
    done = f"{shown}: unloaded file_id {entry.file_id} ({_printable(entry.file_name)}): {readings} readings and their metrics"
    if not requeue_file:
        print(done)
        return 0
    relative = PurePosixPath(entry.file_name)
    if relative.is_absolute() or ".." in relative.parts:  # not a name a scan gives: keep the file name only
        relative = PurePosixPath(relative.name)
    try:
        target = inbox.open_inbox(settings, retry.storage_retrier(settings, threading.Event())).restore(
            entry.archive_path, relative.as_posix()
        )
    except (OSError, StorageError, ConfigError) as exc:
        print(f"{done}; not requeued: cannot move {entry.archive_path} to {settings.data_folder}: {_reason(exc)}", file=sys.stderr)
        return 1
    if target is None:
        print(f"{done}; not requeued: its archived copy {entry.archive_path} is not there", file=sys.stderr)
        return 1
    print(f"{done}; requeued as {_printable(target)}")
    return 0


def show_status(settings: Settings, *, as_json: bool, last: int) -> int:
    """Print the daemon's state (``ops.status``); exit 0 when it can work, 1 when something stops it."""
    with database_server(settings) as (connect, described):
        report = state.report(settings, Database(connect, "sensor-etl-status") if connect is not None else None, described, last)
    print(status_view.to_json(report) if as_json else status_view.render(report))
    return 0 if report.ready else 1


def sql(settings: Settings, query: str | None) -> int:
    """psql on the daemon's database: ``query`` printed, or an interactive session on this terminal."""
    with database_server(settings) as (connect, described):
        if connect is None:
            print(f"sensor-etl: no database to open: {described}", file=sys.stderr)
            return 1
        conninfo, password = _conninfo(connect)
        command = [_psql(settings), conninfo]
        if query is not None:
            command += ["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-c", query]
        env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to psql: it cancels the query
        try:
            code = subprocess.run(command, env=env).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
    return 0 if code == 0 else 1


def _psql(settings: Settings) -> str:
    """The embedded wheel's psql, or for a configured server the one on PATH if there is one."""
    found = None if settings.embedded else shutil.which("psql")
    return found or str(POSTGRES_BIN_PATH / "psql")


def _conninfo(connect: Mapping[str, object]) -> tuple[str, str]:
    """psql's connection string for psycopg2's arguments, and the password apart (it goes in PGPASSWORD, not on a command line)."""
    params = {k: str(v) for k, v in connect.items() if v is not None and k != "dsn"}
    if "dsn" in connect:
        params = {**parse_dsn(str(connect["dsn"])), **params}
    password = params.pop("password", "")
    return make_dsn(**params), password
