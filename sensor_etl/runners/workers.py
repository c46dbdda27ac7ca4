"""Processes: the stop signals, and WORKERS=N — one supervisor and N worker processes on one inbox.

The supervisor owns the embedded PostgreSQL (``cli.run`` starts it once and hands the DSN down),
starts each worker with multiprocessing's spawn context, restarts one that dies, forwards SIGTERM
and SIGINT, and with --once waits for all of them and combines their exit codes. Workers share
nothing but the database: they coordinate through ``claims`` exactly like daemons started by hand
on several hosts, so a supervisor needs no bookkeeping of which file is where. When a worker dies,
the supervisor writes how it ended (signal or exit code) on the claims it held and expires them
(``claims.end_owner``): the next worker takes the file over at once and counts a failed attempt.
Each worker caps its own memory (WORKER_MEMORY_LIMIT, ``edges/memory.py``); the supervisor has none.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from collections.abc import Mapping
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from sensor_etl.config import Settings
from sensor_etl.edges import claims, memory
from sensor_etl.edges.db import Database
from sensor_etl.errors import DatabaseError
from sensor_etl.ops import logs
from sensor_etl.runners import monitor
from sensor_etl.runners.daemon import Daemon
from sensor_etl.sources import Sources

RESTART_DELAY = 1.0  # seconds before a dead worker is replaced: a crash loop costs one restart a second
EXIT_FATAL = 1  # a worker's Daemon.run gave up for good (database refused us): restarting cannot help


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask for a clean stop: the current file is finished or rolled back."""

    def on_signal(signum: int, _frame: object) -> None:
        logs.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def supervise(
    settings: Settings, sources: Sources, connect: Mapping[str, Any], stop: threading.Event, once: bool, memory_limit: int | None
) -> int:
    """Run ``settings.workers`` worker processes, each under ``memory_limit`` bytes of address space,
    until stopped (or, with ``once``, until all are done)."""
    context = multiprocessing.get_context("spawn")
    database = Database(connect, "sensor-etl-supervisor")

    def start(index: int) -> BaseProcess:
        process = context.Process(target=work, args=(settings, sources, connect, once, memory_limit), name=f"sensor-etl-worker-{index}")
        process.start()
        logs.info("worker_started", worker=index, pid=process.pid)
        return process

    running = {index: start(index) for index in range(settings.workers)}
    code, forwarded = 0, False
    while running:
        if stop.is_set() and not forwarded:
            for process in running.values():
                process.terminate()  # SIGTERM: each worker finishes or rolls back its file
            forwarded = True
        wait([process.sentinel for process in running.values()], timeout=0.5)
        for index, process in list(running.items()):
            if process.exitcode is None:
                continue
            del running[index]
            exit_code = process.exitcode
            # a worker still starting up has no handler yet: the forwarded SIGTERM ends it, cleanly
            clean = exit_code == 0 or (forwarded and exit_code == -signal.SIGTERM)
            if not clean and exit_code != EXIT_FATAL and process.pid is not None:
                _record_end(database, process.pid, _cause(exit_code), memory_limit)
            if once or stop.is_set():
                logs.info("worker_exited", worker=index, pid=process.pid, exit_code=exit_code)
                code = max(code, 0 if clean else 1)
            elif exit_code == EXIT_FATAL:
                logs.error("worker_failed", worker=index, pid=process.pid, exit_code=exit_code, action="stopping every worker")
                code = 1
                stop.set()
            else:
                logs.error("worker_died", worker=index, pid=process.pid, cause=_cause(exit_code), action="restarting")
                if not stop.wait(RESTART_DELAY):
                    running[index] = start(index)
    database.close()
    return code


def _record_end(database: Database, pid: int, cause: str, memory_limit: int | None) -> None:
    """Write how a dead worker ended on the claims it held, expiring them (a failed attempt on each file)."""
    ended = f"died by {cause}" + (f" under WORKER_MEMORY_LIMIT={memory.size_text(memory_limit)}" if memory_limit else "")
    try:
        names = claims.end_owner(database, claims.worker_id(pid), ended)
    except DatabaseError as exc:
        database.discard()
        logs.warning("worker_end_not_recorded", pid=pid, error=exc, action="its claims expire after LEASE_SECONDS")
        return
    if names:
        logs.warning("worker_files_released", pid=pid, files=",".join(names), ended=ended)


def _cause(exit_code: int) -> str:
    if exit_code >= 0:
        return f"exit code {exit_code}"
    try:
        return f"signal {signal.Signals(-exit_code).name}"
    except ValueError:  # a real-time signal has no name
        return f"signal {-exit_code}"


def work(settings: Settings, sources: Sources, connect: Mapping[str, Any], once: bool, memory_limit: int | None) -> None:
    """A worker process: the single-process daemon under its memory limit, which also stops when its supervisor dies."""
    memory.limit(memory_limit)
    logs.configure(settings.log_level, settings.log_format)
    monitor.record_in_worker()
    stop = threading.Event()
    stop_on_signals(stop)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_when_gone, args=(parent.sentinel, stop), name="supervisor-watch", daemon=True).start()
    code = runner(settings, Database(connect), stop, sources).run(once)
    logs.info("worker_stopped", exit_code=code, peak_rss_mb=memory.peak_rss() >> 20)
    sys.exit(code)


def runner(settings: Settings, database: Database, stop: threading.Event, sources: Sources) -> Daemon:
    """The daemon these settings ask for: with QUEUE_URL, one that takes its work from the queue
    (``runners.queue``, imported only then: it needs the s3 extra)."""
    if settings.queue_url:
        from sensor_etl.runners.queue import QueueDaemon

        return QueueDaemon(settings, database, stop, sources)
    return Daemon(settings, database, stop, sources)


def _stop_when_gone(sentinel: int, stop: threading.Event) -> None:
    wait([sentinel])
    if not stop.is_set():
        logs.warning("supervisor_gone", action="stopping: the current file is finished or rolled back")
        stop.set()
