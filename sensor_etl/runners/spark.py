"""Backlogs on Apache Spark: the driver lists the inputs, Spark's tasks run the daemon's own per-file
path (``Daemon.handle``: claim, fingerprint, ledger, ``check_file``, one transaction, archive), each
input as the inbox the daemon would open for it as DATA_FOLDER (``edges.inbox.open_inbox``): a folder
(``edges.local.FolderInbox``) or an ``s3://`` prefix read through boto3 (``edges.s3.S3Inbox``), archiving
to PROCESSED_FOLDER and QUARANTINE_FOLDER, its claims keyed by that input like a daemon's by its DATA_FOLDER.

Spark schedules the tasks, retries a failed one, spreads them over a cluster and shows them in its UI
and event log; the exactly-once promise stays where it is for the daemon. A retried task, a killed
executor or a rerun of the whole job meets files already archived (gone), a claim that a dead attempt
held (left to expire, then taken over) or a content already in the ledger (not loaded again).

Files are balanced over tasks by size, each task a run of the listing, oldest first (``core.balance``),
and never split. Like ``--once``, the driver
repeats the listing for files that were left waiting (still being written, database unavailable,
claimed by another worker) and the exit code is 0 only when nothing is left waiting.

Tasks get the driver's view of everything: its Settings (DATABASE_URL read from DATABASE_URL_SECRET
included), its sources, and its ``AWS_*`` environment variables (endpoint, region, credentials), so an
executor reaches the same store and database as the driver without a configuration of its own.

pyspark is an optional dependency (``pip install 'sensor-etl[spark]'``), imported only here and only
when the ``spark`` command runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor_etl.config import Location, Settings, with_inbox
from sensor_etl.core.balance import balance
from sensor_etl.edges.db import Database
from sensor_etl.edges.inbox import Candidate, Inbox, open_inbox
from sensor_etl.errors import FatalDatabaseError, FatalStorageError, TransientStorageError
from sensor_etl.ops import logs
from sensor_etl.runners import retry
from sensor_etl.runners.daemon import ONCE_ROUNDS, Daemon, Pass, Result
from sensor_etl.sources import Sources

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TASKS_PER_CORE = 4  # more tasks than cores: a slow task does not hold the others back, a retry redoes little
TASK_ATTEMPTS = 4  # spark.task.maxFailures' default, which local masters ignore unless written local[N,F]
_LOCAL = re.compile(r"^local(?:\[(\*|\d+)(,\d+)?\])?$")
FINAL = (Result.LOADED, Result.DUPLICATE, Result.QUARANTINED, Result.GONE)

Item = tuple[Location, Candidate]  # a file (or an object) and the input it is named relative to


class SparkUnavailable(Exception):
    """pyspark is not installed."""


class JobFailed(Exception):
    """Spark gave up on a task (it failed spark.task.maxFailures times) or the application died."""


@dataclass
class Tally:
    """What tasks did with their files; added up over tasks (and over the driver's rounds)."""

    files: Counter[str] = field(default_factory=Counter)  # Result value -> files
    rows: int = 0
    refused: str = ""  # the database refused a task (FatalDatabaseError): retrying cannot help

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.files + other.files, self.rows + other.rows, self.refused or other.refused)

    def count(self, result: Result) -> int:
        return self.files[result.value]


@dataclass
class Summary:
    """The job's end: files in their final state, what is still waiting, rows and time."""

    done: Tally
    waiting: int
    busy: int
    seconds: float

    @property
    def exit_code(self) -> int:
        """Like ``--once``: 0 when every file was loaded, found a duplicate or quarantined."""
        return 1 if self.waiting or self.busy or self.done.refused else 0

    def line(self) -> str:
        d = self.done
        rate = int(d.rows / self.seconds) if self.seconds > 0 else 0
        return (
            f"{d.count(Result.LOADED)} loaded, {d.count(Result.DUPLICATE)} duplicate, {d.count(Result.QUARANTINED)} quarantined, "
            f"{self.waiting + self.busy} waiting; {d.rows} rows in {self.seconds:.1f} s ({rate} rows/s)"
        )


# -- the session ----------------------------------------------------------------------------------
def require() -> None:
    """Raise SparkUnavailable unless pyspark is installed: checked before a server or a JVM starts."""
    if importlib.util.find_spec("pyspark") is None:
        raise SparkUnavailable("the spark command needs pyspark: pip install 'sensor-etl[spark]'")


def local_master(master: str) -> bool:
    return _LOCAL.match(master) is not None


def with_task_retries(master: str) -> str:
    """``local[N]`` as ``local[N,4]``: in local mode Spark retries a failed task only when the master
    says so (``local[N,F]``, which is kept as given)."""
    match = _LOCAL.match(master)
    if match is None or match.group(2):
        return master
    return f"local[{match.group(1) or 1},{TASK_ATTEMPTS}]"


def session(master: str | None, conf: Mapping[str, str]) -> SparkSession:
    """A SparkSession: ``master`` if given, else what spark-submit set, else ``local[*]``. A local driver
    binds to 127.0.0.1, and the Python workers run this interpreter (they need this package)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    SparkContext._ensure_initialized()  # the JVM first, so that SparkConf reads what spark-submit passed (--master...)
    spark_conf = SparkConf()
    for key, value in conf.items():
        spark_conf.set(key, value)
    chosen = master or spark_conf.get("spark.master", "local[*]") or "local[*]"
    spark_conf.setMaster(with_task_retries(chosen)).setIfMissing("spark.app.name", "sensor-etl")
    if "spark.ui.showConsoleProgress" not in conf:  # its bar would break our one-line-per-event log (pyspark turns it on)
        spark_conf.set("spark.ui.showConsoleProgress", "false")
    if local_master(chosen):  # on a cluster, PYSPARK_PYTHON is the cluster's (deploy/emr/configurations.json)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # read when the SparkContext starts
        spark_conf.setIfMissing("spark.driver.host", "127.0.0.1").setIfMissing("spark.driver.bindAddress", "127.0.0.1")
    return SparkSession.builder.config(conf=spark_conf).getOrCreate()


def inboxes(settings: Settings, inputs: Sequence[Location]) -> dict[Location, Inbox[Any]]:
    """Each input as the inbox the daemon opens for it as DATA_FOLDER, prepared: PROCESSED_FOLDER and
    QUARANTINE_FOLDER created, or their buckets checked. Raises ``ConfigError`` (an input of another
    kind than PROCESSED_FOLDER and QUARANTINE_FOLDER, or one of them; a folder that cannot be created),
    ``FatalStorageError`` or ``TransientStorageError`` (a bucket refused, missing or unreachable)."""
    retrying = retry.storage_retrier(settings, threading.Event())
    found = {location: open_inbox(with_inbox(settings, location), retrying) for location in inputs}
    for inbox in found.values():
        inbox.prepare()
    return found


def aws_environment() -> dict[str, str]:
    """The driver's ``AWS_*`` variables (endpoint, region, credentials...), for its tasks: on a cluster
    an executor does not inherit the driver's environment, nor in local mode what changed since the JVM started."""
    return {variable: value for variable, value in os.environ.items() if variable.startswith("AWS_")}


# -- the tasks ------------------------------------------------------------------------------------
def run_task(
    settings: Settings, sources: Sources, connect: Mapping[str, Any], environment: Mapping[str, str], groups: Iterable[list[Item]]
) -> Iterator[Tally]:
    """One Spark task: the daemon's per-file handling of each file of its group(s), one daemon per input
    (its inbox), under claims kept alive by a heartbeat like a daemon's, and under each file's source
    settings (SOURCES_FILE, read once by the driver), with the driver's AWS variables (``environment``).
    Runs in a Python worker of an executor."""
    logs.configure(settings.log_level, settings.log_format)
    os.environ.update(environment)  # before any boto3 client of this worker reads them
    database = Database(connect, application_name="sensor-etl-spark")
    daemons: dict[Location, Daemon] = {}
    tally, paused = Tally(), False
    try:
        with ExitStack() as beating:
            for location, candidate in (item for group in groups for item in group):
                if tally.refused or paused:  # the rest waits for the driver's next round, as in the daemon's scan
                    tally.files[Result.WAITING.value] += 1
                    continue
                try:
                    daemon = daemons.get(location)
                    if daemon is None:
                        inbox = inboxes(settings, [location])[location]
                        daemon = daemons[location] = Daemon(settings, database, sources=sources, inbox=inbox)
                        beating.enter_context(daemon.claims.heartbeat(database.another("sensor-etl-heartbeat")))
                    result = daemon.handle(candidate)
                except FatalDatabaseError as exc:
                    logs.error("database_refused", error=exc, sqlstate=exc.sqlstate)
                    tally.refused, result = str(exc), Result.WAITING
                except FatalStorageError as exc:
                    logs.error("storage_refused", inbox=location, error=exc)
                    tally.refused, result = str(exc), Result.WAITING
                tally.files[result.value] += 1
                if result is Result.WAITING and not tally.refused and not database.alive():
                    logs.warning("scan_paused", reason="database unavailable; this task's remaining files wait for the next round")
                    paused = True
    finally:
        database.close()
    tally.rows = sum(daemon.rows_loaded for daemon in daemons.values())
    yield tally


def run_round(
    spark: SparkSession,
    settings: Settings,
    sources: Sources,
    connect: Mapping[str, Any],
    ready: Sequence[Item],
    tasks: int,
    environment: Mapping[str, str],
) -> Tally:
    """One Spark job over ``ready``: groups of nearly equal size, one group per task, heaviest first."""
    groups = [[ready[i] for i in members] for members in balance([candidate.size for _, candidate in ready], tasks)]
    context = spark.sparkContext
    context.setJobDescription(f"sensor-etl: {len(ready)} file(s) in {len(groups)} task(s)")
    rdd = context.parallelize(groups, len(groups))  # one group per partition: parallelize slices a list evenly
    try:
        tallies = rdd.mapPartitions(lambda part: run_task(settings, sources, connect, environment, part)).collect()
    except Exception as exc:  # py4j's Py4JJavaError: the files of the failed task wait for a rerun
        message = str(exc).strip().splitlines()
        raise JobFailed(message[0] if message else type(exc).__name__) from exc
    return sum(tallies, Tally())


def run_job(
    spark: SparkSession,
    settings: Settings,
    connect: Mapping[str, Any],
    inputs: Sequence[Location],
    *,
    sources: Sources | None = None,
    tasks: int | None = None,
) -> Summary:
    """List ``inputs`` and load every ready file through Spark; repeat, like ``--once``, while files
    wait (at most ONCE_ROUNDS listings for files still being written or deferred). Raises
    TransientDatabaseError / FatalDatabaseError when the database cannot be reached at the start,
    FatalStorageError when the store refuses a listing, and what ``inboxes`` raises."""
    started = time.perf_counter()
    boxes = inboxes(settings, inputs)
    driver = Daemon(
        settings, Database(connect, application_name="sensor-etl-spark-driver"), sources=sources, inbox=next(iter(boxes.values()), None)
    )
    try:
        driver.connect(settings.retry_attempts)
    finally:
        driver.db.close()
    tasks = tasks or TASKS_PER_CORE * spark.sparkContext.defaultParallelism
    environment = aws_environment()
    done, rounds = Tally(), 0
    while True:
        ready, unready = _listing(driver, boxes)
        tally = run_round(spark, settings, driver.sources, connect, ready, tasks, environment) if ready else Tally()
        done += Tally(Counter({r.value: tally.count(r) for r in FINAL}), tally.rows, tally.refused)
        waiting = unready + tally.count(Result.WAITING)
        left = Pass(waiting=waiting > 0, busy=tally.count(Result.BUSY) > 0)
        if left.settled:  # on the driver's own connection, closed again: the tasks hold the others
            driver.sweep_claims([inbox.location for inbox in boxes.values()])
            driver.db.close()
        if left.settled or done.refused:
            break
        rounds += left.waiting
        if rounds >= ONCE_ROUNDS:
            break
        time.sleep(settings.file_settle_seconds if left.waiting else settings.monitor_interval)
    return Summary(done, waiting, tally.count(Result.BUSY), time.perf_counter() - started)


def _listing(driver: Daemon, inboxes: Mapping[Location, Inbox[Any]]) -> tuple[list[Item], int]:
    """The ready files of every input (its subfolders included, named relative to it, as the daemon
    names them relative to the inbox; oldest first within each input), and how many are not ready:
    still settling, plus one for each input that could not be listed. Links, processed/ and
    quarantine/ inside an input are left out as the daemon's scan leaves them."""
    found: list[Item] = []
    unready = 0
    for location, inbox in inboxes.items():
        try:
            listing = inbox.scan()
        except (OSError, TransientStorageError) as exc:
            logs.error("inbox_unreadable", folder=inbox.location, error=exc)
            unready += 1
            continue
        driver.report_skips((item.name, item.reason) for item in listing.skipped)
        found += ((location, candidate) for candidate in listing.ready)
        unready += listing.settling
    return found, unready
