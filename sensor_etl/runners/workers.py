"""Processes: the stop signals, and WORKERS=N — one supervisor and N worker processes on one inbox.

The supervisor owns the embedded PostgreSQL (``cli.run`` starts it once and hands the DSN down),
starts each worker with multiprocessing's spawn context, restarts one that dies, forwards SIGTERM
and SIGINT, and with --once waits for all of them and combines their exit codes. Workers share
nothing but the database: they coordinate through ``claims`` exactly like daemons started by hand
on several hosts, so a supervisor needs no bookkeeping of which file is where.
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
from sensor_etl.edges.db import Database
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


def supervise(settings: Settings, sources: Sources, connect: Mapping[str, Any], stop: threading.Event, once: bool) -> int:
    """Run ``settings.workers`` worker processes until stopped (or, with ``once``, until all are done)."""
    context = multiprocessing.get_context("spawn")

    def start(index: int) -> BaseProcess:
        process = context.Process(target=work, args=(settings, sources, connect, once), name=f"sensor-etl-worker-{index}")
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
            if once or stop.is_set():
                logs.info("worker_exited", worker=index, pid=process.pid, exit_code=exit_code)
                # a worker still starting up has no handler yet: the forwarded SIGTERM ends it, cleanly
                clean = exit_code == 0 or (forwarded and exit_code == -signal.SIGTERM)
                code = max(code, 0 if clean else 1)
            elif exit_code == EXIT_FATAL:
                logs.error("worker_failed", worker=index, pid=process.pid, exit_code=exit_code, action="stopping every worker")
                code = 1
                stop.set()
            else:
                logs.error("worker_died", worker=index, pid=process.pid, cause=_cause(exit_code), action="restarting")
                if not stop.wait(RESTART_DELAY):
                    running[index] = start(index)
    return code


def _cause(exit_code: int) -> str:
    if exit_code >= 0:
        return f"exit code {exit_code}"
    try:
        return f"signal {signal.Signals(-exit_code).name}"
    except ValueError:  # a real-time signal has no name
        return f"signal {-exit_code}"


def work(settings: Settings, sources: Sources, connect: Mapping[str, Any], once: bool) -> None:
    """A worker process: the single-process daemon, which also stops when its supervisor dies."""
    logs.configure(settings.log_level, settings.log_format)
    monitor.record_in_worker()
    stop = threading.Event()
    stop_on_signals(stop)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_when_gone, args=(parent.sentinel, stop), name="supervisor-watch", daemon=True).start()
    sys.exit(Daemon(settings, Database(connect), stop, sources).run(once))


def _stop_when_gone(sentinel: int, stop: threading.Event) -> None:
    wait([sentinel])
    if not stop.is_set():
        logs.warning("supervisor_gone", action="stopping: the current file is finished or rolled back")
        stop.set()
