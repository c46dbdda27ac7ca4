"""Where a file goes once its fate is decided: the processed location after its commit (or as a
duplicate), quarantine with its report; a file of a subfolder of the inbox keeps its relative path
there (``data/tmy3/x.csv`` goes to ``processed/tmy3/x.csv``).

The moves themselves are the inbox's (``inbox.Inbox``: hard links in folders, copy then delete in an
object store); they never overwrite, and a name that a report still holds counts as taken. A move
that fails (processed/ missing, unwritable or full; the object store unavailable after its retries)
is logged as ``move_failed`` and the file stays in the inbox: a later scan finds it in the ledger and
finishes the move. The moves of a batch (``batch``) share their durability step: in folders, one
fsync per folder, then the unlinks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sensor_etl.edges.db import Database
from sensor_etl.edges.inbox import Candidate, Inbox
from sensor_etl.errors import DatabaseError, FileChanged, TransientStorageError
from sensor_etl.ops import logs


class Archive:
    def __init__(self, inbox: Inbox[Any], database: Database) -> None:
        self.inbox = inbox
        self.db = database

    def plan(self, name: str) -> str:
        """Where a file about to be loaded will go; the load records it in its own transaction."""
        return self.inbox.plan(name)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The moves made inside share their durability step (``Inbox.batch``); should it fail, the
        files stay in the inbox too, and a later scan finishes their moves."""
        moved = False
        try:
            with self.inbox.batch():
                yield
                moved = True
        except OSError as exc:
            if not moved:
                raise
            logs.error("move_failed", error=exc.strerror or exc, action="files stay in the inbox; retried next scan")

    def committed(self, candidate: Candidate, file_id: int, planned: str, *, fresh: bool = False) -> None:
        """Move a committed file to where the ledger says it went (or, if that name got taken, next to it).
        ``fresh``: committed just now, so no earlier move of it can have begun."""
        target = self._move(candidate, "PROCESSED_FOLDER", lambda: self.inbox.archive(candidate, preferred=planned, fresh=fresh))
        if target is None or target == planned:
            return
        try:
            self.db.set_archive_path(file_id, target)
        except DatabaseError as exc:  # the rows are committed and the file is moved; this is bookkeeping
            logs.warning("archive_not_recorded", file=candidate.name, file_id=file_id, error=exc)

    def duplicate(self, candidate: Candidate) -> str | None:
        """Set a content that is already loaded aside, into the processed location; None if it could not move."""
        return self._move(candidate, "PROCESSED_FOLDER", lambda: self.inbox.archive(candidate))

    def quarantine(self, candidate: Candidate, report: Mapping[str, Any]) -> str | None:
        """Move a file into quarantine with its report; None if it could not move."""
        return self._move(candidate, "QUARANTINE_FOLDER", lambda: self.inbox.quarantine(candidate, report))

    @staticmethod
    def _move(candidate: Candidate, folder: str, move: Callable[[], str]) -> str | None:
        try:
            return move()
        except (
            OSError,
            TransientStorageError,
            FileChanged,
        ) as exc:  # FileChanged: an object replaced since it was read stays, as new input
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            logs.error("move_failed", file=candidate.name, folder=folder, error=reason, action="file stays in the inbox; retried next scan")
            return None
