"""The imperative shell: scan the inbox, and for each ready file decide load, skip, retry or quarantine.

The inbox is a local folder or a prefix in an object store (``edges.inbox``); the decisions are the
same. ``Daemon.handle`` is the per-file path, also taken by the queue workers (``runners.queue``), the
AWS Lambda handler (``sensor_etl.aws_lambda``) and the Spark tasks (``runners.spark``) for the objects
or files they are given.

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

When several small files are ready, the scan takes them as a batch (``handle_batch``: BATCH_FILES,
BATCH_BYTES, BATCH_SECONDS), whatever the inbox: claimed and released in one statement each, checked
together (``lean``), the valid ones loaded in one transaction (``BatchLoad``), then moved (in folders,
with one fsync per folder). Each file still gets its own decision from the list above; a decision the
batch cannot take for one file alone (``DataDatabaseError``, ``FileChanged``, ``ClaimLost`` or an
ON_OVERLAP=reject ``InvalidFile`` in the batch's transaction) rolls the batch back, releases its
claims and takes its files one at a time, so only the guilty file meets its fate. So do, once the
batch is committed, a file holding a reading (sensor, time) of an earlier file of its batch (ON_OVERLAP
then sees the two in the order a scan without batches would) and a content with failed attempts: a
worker that dies holding a batch counts an attempt on each of its files (which one killed it cannot be
told), and each is then loaded alone, so the guilty one dies alone and its batch-mates load.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from tenacity import Retrying

from sensor_etl.config import Rules, Settings
from sensor_etl.core.rules import Rule
from sensor_etl.edges import attempts, claims, files, memory, reports
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
from sensor_etl.runners import lean, retry
from sensor_etl.runners.archive import Archive
from sensor_etl.runners.check import check_file, internal_problem
from sensor_etl.runners.load import BatchLoad, FileLoad, Loading
from sensor_etl.runners.pipeline import Outcome
from sensor_etl.sources import Match, Sources

ONCE_ROUNDS = 10  # --once: scans to wait for files still being written before giving up
ONCE_BUSY_POLL = 0.1  # --once: seconds between scans while other workers finish the files they hold (a batch takes ~BATCH_SECONDS)
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


@dataclass(frozen=True)
class Seen:
    """A file of a batch once fetched, with the source it follows."""

    candidate: Candidate
    fetched: Fetched
    match: Match


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
        self._seconds_per_file = 0.0  # of the last batch: BATCH_SECONDS / this bounds the next one

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
                if left.settled:
                    self.sweep_claims([self.inbox.location])
                if once:
                    if left.settled:
                        return 0
                    rounds += left.waiting  # files other workers hold settle without us: wait for them
                    if rounds >= ONCE_ROUNDS:
                        return 1
                self.stop.wait(self.pause(left, once))
        return 0

    def sweep_claims(self, inboxes: list[str]) -> None:
        """After a pass that left nothing behind: forget the expired claims of ``inboxes`` (``claims.sweep``).
        Tidying only, so a database error waits for the next such pass."""
        try:
            claims.sweep(self.db, inboxes)
        except DatabaseError as exc:
            logs.debug("claims_not_swept", error=exc)

    def pause(self, left: Pass, once: bool) -> float:
        """Seconds until the next scan: MONITOR_INTERVAL; with --once, FILE_SETTLE_SECONDS while files are
        still being written, and a short poll while other workers finish theirs (--once ends with them)."""
        if not once:
            return self.settings.monitor_interval
        if left.waiting:
            return self.settings.file_settle_seconds
        return min(self.settings.monitor_interval, ONCE_BUSY_POLL)

    def scan_once(self) -> Pass:
        """Offer every ready file once, alone (``handle``) or in a batch (``handle_batch``); report what is left for later."""
        try:
            listing = self.inbox.scan()
        except (OSError, TransientStorageError) as exc:
            logs.error("inbox_unreadable", folder=self.inbox.location, error=exc)
            return Pass(waiting=True)
        self.report_skips((item.path.name, item.reason) for item in listing.skipped)
        ready = listing.ready
        waiting, busy = listing.settling > 0, False
        if self.settings.workers > 1 and self.settings.batch_files == 1 and ready:
            # one file at a time, workers start at different points of the list instead of racing for the
            # same files. Batches are claimed in one statement, so racing costs little there, and oldest
            # first keeps the files in time order: a load's overlap check then looks at few other files.
            start = zlib.crc32(self.claims.owner.encode()) % len(ready)
            ready = ready[start:] + ready[:start]
        pending = deque(ready)
        while pending:
            if self.stop.is_set():
                return Pass(waiting=True, busy=busy)
            batch = self._next_batch(pending)
            results = [self.handle(batch[0])] if len(batch) == 1 else self.handle_batch(batch)
            busy = busy or Result.BUSY in results
            if Result.WAITING in results:
                waiting = True
                if not self.db.alive():
                    logs.warning("scan_paused", reason="database unavailable; remaining files wait for the next scan")
                    return Pass(waiting=True, busy=busy)
        return Pass(waiting=waiting, busy=busy)

    def _next_batch(self, pending: deque[Candidate]) -> list[Candidate]:
        """The next files in scan order, up to BATCH_FILES, BATCH_BYTES and as many as the last batch's
        pace fits in BATCH_SECONDS; a file larger than BATCH_BYTES goes alone (streamed)."""
        settings = self.settings
        most = settings.batch_files
        if self._seconds_per_file:  # at least two, so a slow batch (an outage's retries) does not end batching for good
            most = min(most, max(2, int(settings.batch_seconds / self._seconds_per_file)))
        batch = [pending.popleft()]
        size = batch[0].size
        while pending and len(batch) < most and size <= settings.batch_bytes and size + pending[0].size <= settings.batch_bytes:
            size += pending[0].size
            batch.append(pending.popleft())
        return batch

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
                self.claims.release([candidate.name])
            except DatabaseError as exc:
                logs.warning("claim_not_released", file=candidate.name, error=exc, action="it expires after LEASE_SECONDS")

    def _handle_claimed(self, candidate: Candidate, taken: Taken) -> Result:
        started = utcnow()
        match = self.sources.rules_for(candidate.name)
        with ExitStack() as stack:
            fetched, result = self._fetch(stack, candidate, taken, match.rules.encoding)
            if fetched is None:
                return result
            try:
                return self._retrying_file(candidate.name)(self._process, candidate, fetched, match, started)
            except Exception as exc:
                return self._fate(candidate, fetched.fp, exc)

    def _fetch(self, stack: ExitStack, candidate: Candidate, taken: Taken, encoding: str, keep: int = 0) -> tuple[Fetched | None, Result]:
        """The claimed file's bytes and fingerprint for the rest of ``stack`` (in memory too when at most
        ``keep`` bytes), after counting the failed attempt of a previous owner that died holding it; or
        None and what to do about a file that cannot be read or is still being written."""
        name = candidate.name
        try:
            fetched = stack.enter_context(self.inbox.fetch(candidate, encoding, keep))
        except FileNotFoundError:  # another worker archived it between our scan and our claim, or a person removed it
            logs.info("file_vanished", file=name)
            return None, Result.GONE
        except FileChanged as exc:
            logs.info("file_changing", file=name, reason=str(exc))
            return None, Result.WAITING
        except NotTaken as exc:  # became a link or a directory since the scan: left where it is, like at the scan
            self._skip_once(name, str(exc))
            return None, Result.WAITING
        except TransientStorageError as exc:
            logs.error("file_deferred", file=name, reason="object store unavailable after retries", error=exc)
            return None, Result.WAITING
        except OSError as exc:
            self._skip_once(name, f"cannot read: {exc.strerror or exc}")
            return None, Result.WAITING
        logs.info("file_seen", file=name, bytes=fetched.fp.size, sha256=fetched.fp.sha256[:12])
        ended = taken.failed_attempt()
        if ended is not None:
            self._failed_attempt(name, fetched.fp, taken.previous or "", ended)
        return fetched, Result.LOADED

    def _fate(self, candidate: Candidate, fp: files.Fingerprint, error: Exception) -> Result:
        """The decision for a file whose check or load raised ``error`` (the table atop this module)."""
        name = candidate.name
        try:
            raise error
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
        self.archive.committed(candidate, load.file_id, planned, fresh=True)
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

    # -- a batch of small files ---------------------------------------------------------------
    def handle_batch(self, batch: list[Candidate]) -> list[Result]:
        """Claim the batch in one statement, decide each file's fate, release the claims in one statement;
        then take the files the batch left to themselves one at a time (``handle``: a claim of their own,
        so that a worker dying on one of them holds that file alone)."""
        names = [candidate.name for candidate in batch]
        try:
            taken = self._retrying_file(f"batch of {len(batch)}")(self.claims.claim_many, names)
        except TransientDatabaseError as exc:
            return [self._deferred(name, exc) for name in names]
        mine = [(candidate, taken[candidate.name]) for candidate in batch if candidate.name in taken]
        clock = time.perf_counter()
        try:
            results, alone = self._batch_claimed(mine)
        finally:
            self._seconds_per_file = (time.perf_counter() - clock) / max(len(mine), 1)
            try:
                self.claims.release([candidate.name for candidate, _ in mine])
            except DatabaseError as exc:
                logs.warning("claim_not_released", files=len(mine), error=exc, action="they expire after LEASE_SECONDS")
        return [Result.BUSY] * (len(batch) - len(mine)) + results + [self.handle(candidate) for candidate in alone]

    def _batch_claimed(self, claimed: list[tuple[Candidate, Taken]]) -> tuple[list[Result], list[Candidate]]:
        """Fetch each file, check them together, load the valid ones in one transaction, then archive
        each: loaded, quarantined, duplicate. Returns their results, and the files left to go alone."""
        started = utcnow()
        results: list[Result] = []
        seen: list[Seen] = []
        with ExitStack() as stack:
            for candidate, taken in claimed:
                match = self.sources.rules_for(candidate.name)
                fetched, result = self._fetch(stack, candidate, taken, match.rules.encoding, keep=self.settings.batch_bytes)
                if fetched is None:
                    results.append(result)
                else:
                    seen.append(Seen(candidate, fetched, match))
            try:
                tried = self._retrying_file(f"batch of {len(seen)}")(attempts.tried, self.db, [item.fetched.fp.sha256 for item in seen])
            except TransientDatabaseError as exc:
                return results + [self._deferred(item.candidate.name, exc) for item in seen], []
            # alone, once the batch is committed: a content with failed attempts, and a content twice in the
            # batch (a duplicate then, or like its twin quarantined)
            firsts = {item.fetched.fp.sha256: item.candidate for item in reversed(seen)}
            unique = [item for item in seen if firsts[item.fetched.fp.sha256] is item.candidate and item.fetched.fp.sha256 not in tried]
            alone = [
                item.candidate for item in seen if firsts[item.fetched.fp.sha256] is not item.candidate or item.fetched.fp.sha256 in tried
            ]
            try:
                loading, failed = self._check_batch(unique, started)
            except Interrupted:
                logs.warning("file_interrupted", files=len(seen), reason="stop requested; the batch stays in the inbox")
                return results + [Result.WAITING] * len(seen), []
            except Exception:  # a bug of the batch path must not stop the daemon: each file alone, on the path of one
                LOGGER.exception("internal_error", extra={"fields": {"files": len(seen), "action": "checking the files one at a time"}})
                return results, [item.candidate for item in seen]
            # alone too: a file sharing readings with an earlier file of the batch
            later = lean.sharing_keys([(f.checks, f.index) for f in loading if f.checks is not None])
            alone += [f.candidate for f in loading if (id(f.checks), f.index) in later]
            loading = [f for f in loading if (id(f.checks), f.index) not in later]
            load = BatchLoad(self.db, self.claims, self.inbox, started=started, worker=self.worker)
            waiting, split = self._load_batch(load, loading)
            results += waiting
            if PAUSE_AFTER_COMMIT and load.file_ids:
                self.stop.wait(PAUSE_AFTER_COMMIT)
            with self.archive.batch():
                for position, file_id in load.file_ids.items():
                    f = loading[position]
                    self.archive.committed(f.candidate, file_id, f.planned, fresh=True)
                results += [Result.LOADED] * len(load.file_ids)
                for position, f in enumerate(loading):
                    if load.committed and position not in load.file_ids:  # its content was committed by another worker meanwhile
                        results.append(self._archive_known(f.candidate, f.fetched.fp))
                results += [self._fate(item.candidate, item.fetched.fp, error) for item, error in failed]
        return results, split + alone

    def _check_batch(self, unique: list[Seen], started: datetime) -> tuple[list[Loading], list[tuple[Seen, Exception]]]:
        """The lean check of the batch, one per set of rules (sources): the files to load (with their
        planned archive paths and where their rows wait), and the others with the error that decides their fate."""
        failed: list[tuple[Seen, Exception]] = []
        by_rules: list[tuple[Rules, list[Seen]]] = []
        for item in unique:
            problem = item.fetched.fp.problem or item.match.problem  # not text, or its source cannot serve it: not parsed
            if problem is not None:
                failed.append((item, InvalidFile(problem)))
                continue
            group = next((members for rules, members in by_rules if rules == item.match.rules), None)
            if group is None:
                by_rules.append((item.match.rules, group := []))
            group.append(item)
        loading = []
        for rules, members in by_rules:
            checks = lean.check(
                [item.fetched.path for item in members],
                rules,
                started,
                block_bytes=self.settings.read_block_bytes,
                contents=[item.fetched.fp.content for item in members],
                should_stop=self.stop.is_set,
            )
            for index, (item, outcome) in enumerate(zip(members, checks.outcomes, strict=True)):
                if isinstance(outcome, Outcome):
                    loading.append(
                        Loading(item.candidate, item.fetched, item.match, outcome, self.archive.plan(item.candidate.name), checks, index)
                    )
                else:
                    failed.append((item, outcome))
        order = {item.candidate.name: number for number, item in enumerate(unique)}
        return sorted(loading, key=lambda f: order[f.candidate.name]), failed  # scan order, as files load one by one

    def _load_batch(self, load: BatchLoad, loading: list[Loading]) -> tuple[list[Result], list[Candidate]]:
        """Commit the batch's valid files (``load.file_ids`` then says which). Returns the results of
        those that were not: waiting after an outage or a stop; or, after a rollback, the files to take
        one at a time."""
        if not loading:
            return [], []
        clock = time.perf_counter()
        try:
            self._retrying_file(f"batch of {len(loading)}")(load.run, loading)
        except TransientDatabaseError as exc:
            return [self._deferred(f.candidate.name, exc) for f in loading], []
        except TransientStorageError as exc:
            logs.error("file_deferred", files=len(loading), reason="object store unavailable after retries", error=exc)
            return [Result.WAITING] * len(loading), []
        except Interrupted:
            logs.warning("file_interrupted", files=len(loading), reason="stop requested; rolled back, the files stay in the inbox")
            return [Result.WAITING] * len(loading), []
        except (FatalDatabaseError, FatalStorageError):
            raise
        except (
            DataDatabaseError,
            FileChanged,
            ClaimLost,
            InvalidFile,
        ) as exc:  # rolled back: each file alone meets the error that is its own
            logs.warning("batch_split", files=len(loading), reason=f"{exc}; rolled back, loading the files one at a time")
            return [], [f.candidate for f in loading]
        except Exception:  # a bug of the batch path must not stop the daemon
            LOGGER.exception(
                "internal_error", extra={"fields": {"files": len(loading), "action": "rolled back, loading the files one at a time"}}
            )
            return [], [f.candidate for f in loading]
        share = (time.perf_counter() - clock) / len(loading)
        for position, file_id in load.file_ids.items():
            self._log_loaded(loading[position], file_id, load, position, share)
        return [], []

    def _log_loaded(self, f: Loading, file_id: int, load: BatchLoad, position: int, seconds: float) -> None:
        """``file_loaded`` of a file of a batch: ``seconds`` is its share of the batch's load."""
        outcome, overlap = f.outcome, load.overlaps[position]
        self.rows_loaded += outcome.loaded
        logs.info(
            "file_loaded",
            file=f.candidate.name,
            file_id=file_id,
            source=f.match.source,
            rows=outcome.loaded - overlap.skipped,
            rows_rejected=outcome.invalid_rows,
            rejects=load.rejects.get(position),
            rows_skipped=overlap.skipped,
            rows_conflicting=overlap.conflicting,
            rows_replaced=overlap.replaced,
            sensors=outcome.sensors,
            layout=outcome.where or None,
            batch=len(load.file_ids),
            seconds=round(seconds, 4),
        )
