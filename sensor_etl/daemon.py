"""The imperative shell: scan the inbox, and for each ready file decide load, skip, retry or quarantine.

This is the one place where typed errors become decisions:
- ``InvalidFile`` / ``DataDatabaseError`` → quarantine with a report;
- ``TransientDatabaseError`` → retried with backoff, then the file waits in the inbox;
- ``FatalDatabaseError`` → the daemon stops (exit 1): retrying cannot help;
- ``OSError`` on the input → the file waits in the inbox (disk full, permissions, vanished);
- ``Interrupted`` → rolled back, the file waits, the daemon exits.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_random_exponential

from . import files, logs, pipeline
from .config import Settings
from .db import Database, FileMeta
from .errors import (
    AlreadyLoaded,
    DatabaseError,
    DataDatabaseError,
    FatalDatabaseError,
    Interrupted,
    InvalidFile,
    Problem,
    TransientDatabaseError,
)
from .logs import LOGGER

ONCE_ROUNDS = 10  # --once: scans to wait for files still being written before giving up


class Result(Enum):
    LOADED = "loaded"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    WAITING = "waiting"  # left in the inbox, to be retried by a later scan


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    def __init__(self, settings: Settings, database: Database, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.db = database
        self.stop = stop or threading.Event()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.settle = files.Settle(settings.file_settle_seconds)
        self._reported_skips: set[tuple[Path, str]] = set()

    # -- the loop -----------------------------------------------------------------------------
    def connect(self, attempts: int | None) -> None:
        """Reach the database and apply the schema; retried with backoff (forever when attempts is None)."""
        stop = stop_when_event_set(self.stop)
        if attempts is not None:
            stop = stop | stop_after_attempt(attempts)
        for attempt in self._retrying(stop, "connect"):
            with attempt:
                self.db.apply_schema()
        logs.info("database_ready", worker=self.worker)

    def run(self, once: bool) -> int:
        """Scan until stopped (or once). Exit code: 0 all settled, 1 something could not be processed."""
        try:
            self.connect(self.settings.retry_attempts if once else None)
        except TransientDatabaseError as exc:
            logs.error("database_unreachable", error=exc, attempts=self.settings.retry_attempts)
            return 1
        except FatalDatabaseError as exc:
            logs.error("database_refused", error=exc, sqlstate=exc.sqlstate)
            return 1
        rounds = 0
        while not self.stop.is_set():
            try:
                settled = self.scan_once()
            except FatalDatabaseError as exc:
                logs.error("database_refused", error=exc, sqlstate=exc.sqlstate)
                return 1
            rounds += 1
            if once and (settled or rounds >= ONCE_ROUNDS):
                return 0 if settled else 1
            self.stop.wait(self.settings.file_settle_seconds if once else self.settings.monitor_interval)
        return 0

    def scan_once(self) -> bool:
        """Process every ready file once; False when a file is left for later (not ready, or failed)."""
        try:
            candidates, skipped = files.scan(self.settings.data_folder)
        except OSError as exc:
            logs.error("inbox_unreadable", folder=self.settings.data_folder, error=exc)
            return False
        self._report_skips(skipped)
        ready = self.settle.ready(candidates, time.time_ns())
        settled = len(ready) == len(candidates)
        for candidate in ready:
            if self.stop.is_set():
                return False
            if self.handle(candidate) is Result.WAITING:
                settled = False
                if not self._database_alive():
                    logs.warning("scan_paused", reason="database unavailable; remaining files wait for the next scan")
                    return False
        return settled

    def _report_skips(self, skipped: list[files.Skipped]) -> None:
        for item in skipped:
            key = (item.path, item.reason)
            if key not in self._reported_skips:
                self._reported_skips.add(key)
                logs.warning("file_skipped", file=item.path.name, reason=item.reason)

    def _database_alive(self) -> bool:
        try:
            self.db.ping()
            return True
        except DatabaseError:
            return False

    # -- one file -----------------------------------------------------------------------------
    def handle(self, candidate: files.Candidate) -> Result:
        name = candidate.name
        started = utcnow()
        try:
            fp = files.fingerprint(candidate.path, self.settings.rules.encoding)
        except FileNotFoundError:
            logs.warning("file_vanished", file=name)
            return Result.WAITING
        except OSError as exc:
            self._skip_once(candidate.path, f"cannot read: {exc.strerror or exc}")
            return Result.WAITING
        if (fp.size, fp.mtime_ns) != (candidate.size, candidate.mtime_ns):
            logs.info("file_changing", file=name)
            return Result.WAITING
        logs.info("file_seen", file=name, bytes=fp.size, sha256=fp.sha256[:12])
        try:
            retrying = self._retrying(stop_after_attempt(self.settings.retry_attempts) | stop_when_event_set(self.stop), name)
            return retrying(self._process, candidate, fp, started)
        except InvalidFile as exc:
            return self._quarantine(candidate, fp, exc.problem, exc.details)
        except DataDatabaseError as exc:
            problem = Problem("duplicate_key" if exc.sqlstate == "23505" else "database", f"the database rejected the data: {exc}")
            return self._quarantine(candidate, fp, problem, {})
        except TransientDatabaseError as exc:
            logs.error("file_deferred", file=name, reason="database unavailable after retries", error=exc)
            return Result.WAITING
        except Interrupted:
            logs.warning("file_interrupted", file=name, reason="stop requested; rolled back, file stays in the inbox")
            return Result.WAITING
        except FileNotFoundError:
            logs.warning("file_vanished", file=name)
            return Result.WAITING
        except OSError as exc:
            logs.error("file_deferred", file=name, reason=f"I/O error: {exc}")
            return Result.WAITING
        except Exception as exc:  # a bug must not stop the daemon or loop on the same file forever
            LOGGER.exception("internal_error", extra={"fields": {"file": name}})
            return self._quarantine(candidate, fp, Problem("internal_error", f"unexpected {type(exc).__name__}: {exc}"), {})

    def _process(self, candidate: files.Candidate, fp: files.Fingerprint, started: datetime) -> Result:
        name = candidate.name
        if fp.problem is not None:
            raise InvalidFile(fp.problem)
        meta = FileMeta(name, fp.sha256, fp.size, datetime.fromtimestamp(fp.mtime_ns / 1e9, UTC), started, self.worker)
        planned = files.unique_target(self.settings.processed_folder, name).resolve()
        clock = time.perf_counter()
        try:
            with self.db.load(meta) as load:
                outcome = pipeline.run(
                    candidate.path,
                    self.settings.rules,
                    started,
                    block_bytes=self.settings.read_block_bytes,
                    file_id=load.file_id,
                    sink=load.copy_readings,
                    should_stop=self.stop.is_set,
                )
                load.write_metrics(outcome.summary())
                load.finish(
                    rows_loaded=outcome.loaded,
                    rows_rejected=outcome.invalid_rows,
                    sensors=len(outcome.sensors),
                    date_format=outcome.date_format,
                    archive_path=str(planned),
                )
                # after every statement succeeded, just before the commit: only the commit itself can still fail
                rejects = self._write_rejects(candidate, fp, load.file_id, outcome) if outcome.invalid_rows else None
                file_id = load.file_id
        except AlreadyLoaded:
            return self._archive_known(candidate, fp)
        seconds = time.perf_counter() - clock
        logs.info(
            "file_loaded",
            file=name,
            file_id=file_id,
            rows=outcome.loaded,
            rows_rejected=outcome.invalid_rows,
            rejects=rejects.name if rejects else None,
            sensors=len(outcome.sensors),
            seconds=round(seconds, 3),
            rows_per_s=int(outcome.loaded / seconds) if seconds > 0 else 0,
        )
        self._archive(candidate.path, file_id, planned)
        return Result.LOADED

    def _write_rejects(self, candidate: files.Candidate, fp: files.Fingerprint, file_id: int, outcome: pipeline.Outcome) -> Path:
        """A partial load's rejected lines and their report, written before the commit: if the commit
        fails, the file is retried and the same content rewrites the same reject files."""
        base = files.rejects_base(self.settings.quarantine_folder, candidate.name, fp.sha256)
        report = {"file": candidate.name, "sha256": fp.sha256, "file_id": file_id, **pipeline.rejects_report(outcome)}
        return files.write_rejects(candidate.path, base, outcome.rejected_lines(), self.settings.rules.encoding, report)

    def _archive_known(self, candidate: files.Candidate, fp: files.Fingerprint) -> Result:
        """Content already in the ledger: finish a move that a crash interrupted, or set a duplicate aside."""
        entry = self.db.lookup(fp.sha256)
        if entry is None:  # the other loader rolled back after all: try again next scan
            return Result.WAITING
        if entry.file_name == candidate.name and entry.archive_path:
            planned = Path(entry.archive_path)
            if not planned.exists() or files.same_file(candidate.path, planned):
                logs.info("file_recovered", file=candidate.name, file_id=entry.file_id, reason="committed before; finishing the move")
                self._archive(candidate.path, entry.file_id, planned)
                return Result.LOADED
        target = self._move(candidate.path, self.settings.processed_folder)
        if target is None:
            return Result.WAITING
        logs.warning("file_duplicate", file=candidate.name, loaded_as=entry.file_name, file_id=entry.file_id, moved_to=target.name)
        return Result.DUPLICATE

    def _archive(self, path: Path, file_id: int, planned: Path) -> None:
        """Move a committed file to where the ledger says it went (or, if that name got taken, next to it)."""
        target = self._move(path, self.settings.processed_folder, preferred=planned)
        if target is None or target.resolve() == planned:
            return
        try:
            self.db.set_archive_path(file_id, str(target.resolve()))
        except DatabaseError as exc:  # the rows are committed and the file is moved; this is bookkeeping
            logs.warning("archive_not_recorded", file=path.name, file_id=file_id, error=exc)

    def _move(self, path: Path, folder: Path, report: dict | None = None, preferred: Path | None = None) -> Path | None:
        try:
            return files.move_unique(path, folder, report, preferred)
        except OSError as exc:
            logs.error(
                "move_failed", file=path.name, folder=folder, error=exc.strerror or exc, action="file stays in the inbox; retried next scan"
            )
            return None

    def _quarantine(self, candidate: files.Candidate, fp: files.Fingerprint, problem: Problem, details: dict) -> Result:
        reason = problem.describe(candidate.name)
        if details.get("reason"):
            reason = f"{details['reason']}; first: {reason}"
        report = {
            "file": candidate.name,
            "reason": reason,
            "rule": problem.rule,
            "sha256": fp.sha256,
            "size_bytes": fp.size,
            "quarantined_at": utcnow().isoformat(timespec="seconds"),
            "rows_total": details.get("rows_total"),
            "rows_invalid": details.get("rows_invalid"),
            "rule_counts": details.get("rule_counts", {problem.rule: 1}),
            "errors": details.get("errors", [asdict(problem)]),
        }
        target = self._move(candidate.path, self.settings.quarantine_folder, report)
        if target is None:
            return Result.WAITING
        logs.warning("file_quarantined", file=candidate.name, rule=problem.rule, reason=reason, moved_to=target.name)
        return Result.QUARANTINED

    def _skip_once(self, path: Path, reason: str) -> None:
        self._report_skips([files.Skipped(path, reason)])

    def _retrying(self, stop: object, what: str) -> Retrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.db.discard()
            logs.warning("db_retry", what=what, attempt=state.attempt_number, wait_s=round(state.upcoming_sleep, 2), error=exc)

        return Retrying(
            retry=retry_if_exception_type(TransientDatabaseError),
            stop=stop,
            wait=wait_random_exponential(multiplier=0.5, max=self.settings.retry_max_wait),
            sleep=self.stop.wait,
            before_sleep=before_sleep,
            reraise=True,
        )
