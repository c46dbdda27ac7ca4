"""The imperative shell: scan the inbox, and for each ready file decide load, skip, retry or quarantine.

The inbox is a local folder or a prefix in an object store (``edges.inbox``); the decisions are the
same. ``Daemon.handle`` is the per-file path, also taken by the queue workers (``runners.queue``) and
the AWS Lambda handler (``sensor_etl.aws_lambda``) for the objects their events name.

This is the one place where typed errors become decisions:
- ``InvalidFile`` / ``DataDatabaseError`` → quarantine with a report;
- ``NotTaken`` → left where it is, logged once (a link or a directory; the scan already leaves those);
- ``TransientDatabaseError`` → retried with backoff, then the file waits in the inbox;
- ``FatalDatabaseError`` → the daemon stops (exit 1): retrying cannot help;
- ``OSError`` on the input → the file waits in the inbox (disk full, permissions, vanished);
- ``TransientStorageError`` → retried with backoff (each object-store request), then the file waits;
- ``FatalStorageError`` → the daemon stops (exit 1): access denied, a missing bucket, no credentials;
- ``FileChanged`` → rolled back, the file waits until it has settled again;
- ``ClaimLost`` → rolled back, the worker that took the file over finishes it;
- ``Interrupted`` → rolled back, the file waits, the daemon exits;
- ``MemoryError`` (the file needs more than WORKER_MEMORY_LIMIT) → rolled back, a failed attempt is
  counted on the content (``attempts``), the file waits; a claim taken over from a worker that died
  holding the file counts one too. After MAX_FILE_ATTEMPTS the load itself refuses the content with
  ``InvalidFile`` (rule ``worker_died``): quarantined instead of killing the next worker.

Every file is handled under a claim (``claims``), so any number of workers may share the inbox. A
file goes by its path relative to the inbox (``tmy3/x.csv``) and follows the rules of the source it
matches (``sources``).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from tenacity import Retrying

from sensor_etl.config import Settings
from sensor_etl.core.rules import Rule
from sensor_etl.edges import attempts, files, memory, reports
from sensor_etl.edges.claims import Claims, Taken, worker_id
from sensor_etl.edges.db import Database
from sensor_etl.edges.inbox import Candidate, Fetched, Inbox, base_name, open_inbox
from sensor_etl.errors import (
    AlreadyLoaded,
    ClaimLost,
    DatabaseError,
    DataDatabaseError,
    FatalDatabaseError,
    FatalStorageError,
    FileChanged,
    Interrupted,
    InvalidFile,
    NotTaken,
    Problem,
    TransientDatabaseError,
    TransientStorageError,
)
from sensor_etl.ops import logs
from sensor_etl.ops.logs import LOGGER
from sensor_etl.runners import retry
from sensor_etl.runners.archive import Archive
from sensor_etl.runners.check import check_file, internal_problem
from sensor_etl.runners.load import FileLoad
from sensor_etl.sources import Match, Sources

ONCE_ROUNDS = 10  # --once: scans to wait for files still being written before giving up
# Test-only hook (docs/operations.md "How it is tested"): seconds to pause between a load's COMMIT and the move to
# processed/, so fault-injection tests can kill the daemon or block processed/ in exactly that gap.
PAUSE_AFTER_COMMIT = float(os.environ.get("SENSOR_ETL_TEST_PAUSE_AFTER_COMMIT") or 0)


class Result(Enum):
    LOADED = "loaded"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    WAITING = "waiting"  # left in the inbox, to be retried by a later scan
    BUSY = "busy"  # claimed by another worker, which decides its fate
    GONE = "gone"  # no longer in the inbox (another worker or a person moved it)


@dataclass(frozen=True)
class Pass:
    """What one scan left behind: files for a later scan of this worker, and files other workers hold."""

    waiting: bool = False
    busy: bool = False

    @property
    def settled(self) -> bool:
        """Nothing is left in the inbox for this worker or any other."""
        return not self.waiting and not self.busy


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        stop: threading.Event | None = None,
        sources: Sources | None = None,
        inbox: Inbox[Any] | None = None,
    ) -> None:
        self.settings = settings
        self.sources = sources or Sources(settings.rules)
        self.db = database
        self.stop = stop or threading.Event()
        self.worker = worker_id()
        self.inbox = inbox if inbox is not None else open_inbox(settings, retry.storage_retrier(settings, self.stop))
        # The token tells apart two lives of one pid (a restart), so a dead life's claims just expire.
        self.claims = Claims(database, f"{self.worker}:{secrets.token_hex(3)}", settings.lease_seconds, self.inbox.location)
        self.archive = Archive(self.inbox, database)
        self._reported_skips: set[tuple[str, str]] = set()
        self.rows_loaded = 0  # rows this worker committed (the Spark runner's summary adds them up)

    # -- the loop -----------------------------------------------------------------------------
    def connect(self, attempts: int | None) -> None:
        """Reach the database and apply the schema; retried with backoff (forever when attempts is None)."""
        for attempt in self._retrying("connect", attempts):
            with attempt:
                self.db.apply_schema()
        logs.info("database_ready", worker=self.claims.owner)

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
        with self.claims.heartbeat(self.db.another("sensor-etl-heartbeat")):
            while not self.stop.is_set():
                try:
                    left = self.scan_once()
                except FatalDatabaseError as exc:
                    logs.error("database_refused", error=exc, sqlstate=exc.sqlstate)
                    return 1
                except FatalStorageError as exc:
                    logs.error("storage_refused", inbox=self.inbox.location, error=exc)
                    return 1
                logs.debug("scan_finished", waiting=left.waiting, busy=left.busy)  # the loop's heartbeat (ops.metrics)
                if once:
                    if left.settled:
                        return 0
                    rounds += left.waiting  # files other workers hold settle without us: wait for them
                    if rounds >= ONCE_ROUNDS:
                        return 1
                self.stop.wait(self.pause(left, once))
        return 0

    def pause(self, left: Pass, once: bool) -> float:
        """Seconds to wait before the next scan."""
        return self.settings.file_settle_seconds if once and left.waiting else self.settings.monitor_interval

    def scan_once(self) -> Pass:
        """Offer every ready file to ``handle`` once; report what is left for later."""
        try:
            listing = self.inbox.scan()
        except (OSError, TransientStorageError) as exc:
            logs.error("inbox_unreadable", folder=self.inbox.location, error=exc)
            return Pass(waiting=True)
        self.report_skips((item.path.name, item.reason) for item in listing.skipped)
        ready = listing.ready
        waiting, busy = listing.settling > 0, False
        if self.settings.workers > 1 and ready:  # workers start at different points of the list instead of racing for the same files
            start = zlib.crc32(self.claims.owner.encode()) % len(ready)
            ready = ready[start:] + ready[:start]
        for candidate in ready:
            if self.stop.is_set():
                return Pass(waiting=True, busy=busy)
            result = self.handle(candidate)
            busy = busy or result is Result.BUSY
            if result is Result.WAITING:
                waiting = True
                if not self.db.alive():
                    logs.warning("scan_paused", reason="database unavailable; remaining files wait for the next scan")
                    return Pass(waiting=True, busy=busy)
        return Pass(waiting=waiting, busy=busy)

    def report_skips(self, skipped: Iterable[tuple[str, str]]) -> None:
        """Log each (name, reason) once per daemon run."""
        for key in skipped:
            if key not in self._reported_skips:
                self._reported_skips.add(key)
                logs.warning("file_skipped", file=key[0], reason=key[1])

    # -- one file -----------------------------------------------------------------------------
    def handle(self, candidate: Candidate) -> Result:
        """Claim the file, decide its fate, and release the claim once it has left the inbox (or failed)."""
        if not self.inbox.present(candidate):  # gone since our scan (with several workers, routinely): not worth a log line
            return Result.GONE
        try:
            taken = self._retrying_file(candidate.name)(self.claims.claim, candidate.name)
        except TransientDatabaseError as exc:
            return self._deferred(candidate.name, exc)
        if taken is None:
            return Result.BUSY
        try:
            return self._handle_claimed(candidate, taken)
        finally:
            try:
                self.claims.release(candidate.name)
            except DatabaseError as exc:
                logs.warning("claim_not_released", file=candidate.name, error=exc, action="it expires after LEASE_SECONDS")

    def _handle_claimed(self, candidate: Candidate, taken: Taken) -> Result:
        name = candidate.name
        started = utcnow()
        match = self.sources.rules_for(name)
        try:
            with self.inbox.fetch(candidate, match.rules.encoding) as fetched:
                logs.info("file_seen", file=name, bytes=fetched.fp.size, sha256=fetched.fp.sha256[:12])
                ended = taken.failed_attempt()
                if ended is not None:
                    self._failed_attempt(name, fetched.fp, taken.previous or "", ended)
                return self._decide(candidate, fetched, match, started)
        except FileNotFoundError:  # another worker archived it between our scan and our claim, or a person removed it
            logs.info("file_vanished", file=name)
            return Result.GONE
        except FileChanged as exc:
            logs.info("file_changing", file=name, reason=str(exc))
            return Result.WAITING
        except TransientStorageError as exc:
            logs.error("file_deferred", file=name, reason="object store unavailable after retries", error=exc)
            return Result.WAITING
        except OSError as exc:
            self._skip_once(name, f"cannot read: {exc.strerror or exc}")
            return Result.WAITING

    def _decide(self, candidate: Candidate, fetched: Fetched, match: Match, started: datetime) -> Result:
        name, fp = candidate.name, fetched.fp
        try:
            return self._retrying_file(name)(self._process, candidate, fetched, match, started)
        except NotTaken as exc:  # became a link or a directory since the scan: left where it is, like at the scan
            self._skip_once(name, str(exc))
            return Result.WAITING
        except InvalidFile as exc:
            return self._quarantine(candidate, fp, exc.problem, exc.details)
        except DataDatabaseError as exc:
            problem = Problem(Rule.DUPLICATE_KEY if exc.sqlstate == "23505" else Rule.DATABASE, f"the database rejected the data: {exc}")
            return self._quarantine(candidate, fp, problem, {})
        except TransientDatabaseError as exc:
            return self._deferred(name, exc)
        except Interrupted:
            logs.warning("file_interrupted", file=name, reason="stop requested; rolled back, file stays in the inbox")
            return Result.WAITING
        except FileChanged as exc:
            logs.warning("file_changing", file=name, reason=f"{exc}; rolled back, read again once it settles")
            return Result.WAITING
        except ClaimLost as exc:
            logs.warning("claim_lost", file=name, reason=f"{exc}; rolled back")
            return Result.BUSY
        except FileNotFoundError:
            logs.info("file_vanished", file=name)
            return Result.GONE
        except TransientStorageError as exc:
            logs.error("file_deferred", file=name, reason="object store unavailable after retries", error=exc)
            return Result.WAITING
        except OSError as exc:
            logs.error("file_deferred", file=name, reason=f"I/O error: {exc}")
            return Result.WAITING
        except MemoryError:
            limit = memory.current_limit()
            within = f"WORKER_MEMORY_LIMIT={memory.size_text(limit)}" if limit else "the memory available"
            self._failed_attempt(name, fp, self.claims.owner, f"ran out of memory (MemoryError: the file needs more than {within})")
            return Result.WAITING
        except (FatalDatabaseError, FatalStorageError):
            raise  # retrying cannot help: the daemon stops
        except Exception as exc:  # a bug must not stop the daemon or loop on the same file forever
            LOGGER.exception("internal_error", extra={"fields": {"file": name}})
            return self._quarantine(candidate, fp, internal_problem(exc), {})

    def _process(self, candidate: Candidate, fetched: Fetched, match: Match, started: datetime) -> Result:
        name = candidate.name
        planned = self.archive.plan(name)
        load = FileLoad(
            self.db, self.claims, self.settings, self.inbox, candidate, fetched, match, planned=planned, started=started, worker=self.worker
        )
        clock = time.perf_counter()
        try:
            outcome = check_file(fetched.path, self.settings, started, match=match, fp=fetched.fp, sink=load, should_stop=self.stop.is_set)
        except AlreadyLoaded:
            return self._archive_known(candidate, fetched.fp)
        seconds = time.perf_counter() - clock
        self.rows_loaded += outcome.loaded
        logs.info(
            "file_loaded",
            file=name,
            file_id=load.file_id,
            source=match.source,
            rows=outcome.loaded - load.overlap.skipped,
            rows_rejected=outcome.invalid_rows,
            rejects=load.rejects,
            rows_skipped=load.overlap.skipped,
            rows_conflicting=load.overlap.conflicting,
            rows_replaced=load.overlap.replaced,
            sensors=outcome.sensors,
            layout=outcome.where or None,
            seconds=round(seconds, 3),
            rows_per_s=int(outcome.loaded / seconds) if seconds > 0 else 0,
        )
        if PAUSE_AFTER_COMMIT:
            self.stop.wait(PAUSE_AFTER_COMMIT)
        self.archive.committed(candidate, load.file_id, planned)
        return Result.LOADED

    def _archive_known(self, candidate: Candidate, fp: files.Fingerprint) -> Result:
        """Content already in the ledger: finish a move that a crash interrupted, or set a duplicate aside."""
        entry = self.db.lookup(fp.sha256)
        if entry is None:  # the other loader rolled back after all: try again next scan
            return Result.WAITING
        same_file = entry.file_name == candidate.name and entry.inbox in (None, self.inbox.location)
        if same_file and entry.archive_path and self.inbox.holds_copy(candidate, entry.archive_path):
            logs.info("file_recovered", file=candidate.name, file_id=entry.file_id, reason="committed before; finishing the move")
            self.archive.committed(candidate, entry.file_id, entry.archive_path)
            return Result.LOADED
        target = self.archive.duplicate(candidate)
        if target is None:
            return Result.WAITING
        logs.warning("file_duplicate", file=candidate.name, loaded_as=entry.file_name, file_id=entry.file_id, moved_to=base_name(target))
        return Result.DUPLICATE

    def _quarantine(self, candidate: Candidate, fp: files.Fingerprint, problem: Problem, details: Mapping[str, Any]) -> Result:
        report = reports.quarantine_report(candidate.name, problem, details, sha256=fp.sha256, size=fp.size, at=utcnow())
        target = self.archive.quarantine(candidate, report)
        if target is None:
            return Result.WAITING
        logs.warning("file_quarantined", file=candidate.name, rule=problem.rule, reason=report["reason"], moved_to=base_name(target))
        try:  # its failed attempts are in the report; a requeued copy starts afresh
            attempts.forget(self.db, fp.sha256)
        except DatabaseError as exc:
            logs.warning("attempts_not_forgotten", file=candidate.name, error=exc)
        return Result.QUARANTINED

    def _failed_attempt(self, name: str, fp: files.Fingerprint, worker: str, ended: str) -> None:
        """Count an attempt on the content that ended abnormally; the load refuses it after MAX_FILE_ATTEMPTS."""
        try:
            count = self._retrying_file(name)(attempts.record, self.db, fp.sha256, name, worker, ended)
        except DatabaseError as exc:  # the database went away meanwhile: this attempt is not counted
            logs.error("attempt_not_recorded", file=name, worker=worker, ended=ended, error=exc)
            return
        if count:
            logs.warning("attempt_failed", file=name, worker=worker, ended=ended, attempts=count, max=self.settings.max_file_attempts)

    def _skip_once(self, name: str, reason: str) -> None:
        self.report_skips([(name, reason)])

    def _deferred(self, name: str, exc: TransientDatabaseError) -> Result:
        logs.error("file_deferred", file=name, reason="database unavailable after retries", error=exc)
        return Result.WAITING

    def _retrying_file(self, name: str) -> Retrying:
        """RETRY_ATTEMPTS for one file's database work (its claim, its load), cut short by a stop."""
        return self._retrying(name, self.settings.retry_attempts)

    def _retrying(self, what: str, attempts: int | None) -> Retrying:
        return retry.retrying(what, attempts=attempts, max_wait=self.settings.retry_max_wait, stop=self.stop, before_retry=self.db.discard)
