"""Where a file goes once its fate is decided: PROCESSED_FOLDER after its commit (or as a duplicate),
QUARANTINE_FOLDER with its report; a file of a subfolder of the inbox keeps its relative path there
(``data/tmy3/x.csv`` goes to ``processed/tmy3/x.csv``).

Moves never overwrite, and a name that a report still holds counts as taken (``reports.name_taken``).
A move that fails (processed/ missing, unwritable or full) is logged as ``move_failed`` and the file
stays in the inbox: a later scan finds it in the ledger and finishes the move. The moves of a batch
(``batch``) share their durability step: one fsync per folder, then the unlinks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from sensor_etl.edges import files, reports
from sensor_etl.edges.db import Database
from sensor_etl.errors import DatabaseError
from sensor_etl.ops import logs


class Archive:
    def __init__(self, processed: Path, quarantine: Path, database: Database) -> None:
        self.processed = processed.resolve()  # once: the planned paths the ledger records are absolute
        self.quarantine_folder = quarantine
        self.db = database
        self._moves: files.Moves | None = None

    def plan(self, name: str) -> Path:
        """Where a file about to be loaded (``name``: its path relative to the inbox) will go; the load
        records it in its own transaction."""
        relative = PurePosixPath(name)
        return files.unique_target(self.processed / relative.parent, relative.name, reports.name_taken)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Moves made inside are linked into place at once; at the end one fsync per folder makes
        them durable, then the files leave the inbox (``files.Moves``)."""
        self._moves = moves = files.Moves()
        try:
            yield
        finally:
            self._moves = None
            try:
                moves.finish()
            except OSError as exc:  # the files stay in the inbox too: a later scan finishes their moves
                logs.error("move_failed", error=exc.strerror or exc, action="files stay in the inbox; retried next scan")

    def committed(self, path: Path, name: str, file_id: int, planned: Path, *, fresh: bool = False) -> None:
        """Move a committed file to where the ledger says it went (or, if that name got taken, next to it).
        ``fresh``: committed just now, so no earlier move of it can have begun."""
        folder = planned.parent
        target = self._move(name, folder, lambda: self._relocate(path, folder, preferred=planned, fresh=fresh))
        if target is None or target == planned or target.resolve() == planned:
            return
        try:
            self.db.set_archive_path(file_id, str(target.resolve()))
        except DatabaseError as exc:  # the rows are committed and the file is moved; this is bookkeeping
            logs.warning("archive_not_recorded", file=name, file_id=file_id, error=exc)

    def duplicate(self, path: Path, name: str) -> Path | None:
        """Set a content that is already loaded aside, into PROCESSED_FOLDER; None if it could not move."""
        folder = self.processed / PurePosixPath(name).parent
        return self._move(name, folder, lambda: self._relocate(path, folder))

    def quarantine(self, path: Path, name: str, report: Mapping[str, Any]) -> Path | None:
        """Move a file into QUARANTINE_FOLDER with its report; None if it could not move."""
        folder = self.quarantine_folder / PurePosixPath(name).parent
        return self._move(name, folder, lambda: self._relocate(path, folder, sidecar=reports.error_report(report)))

    def _relocate(
        self, path: Path, folder: Path, *, preferred: Path | None = None, sidecar: files.Sidecar | None = None, fresh: bool = False
    ) -> Path:
        if self._moves is not None:
            return self._moves.move(path, folder, taken=reports.name_taken, preferred=preferred, sidecar=sidecar, fresh=fresh)
        return files.move_unique(path, folder, taken=reports.name_taken, preferred=preferred, sidecar=sidecar, fresh=fresh)

    @staticmethod
    def _move(name: str, folder: Path, move: Callable[[], Path]) -> Path | None:
        try:
            return move()
        except OSError as exc:
            logs.error(
                "move_failed", file=name, folder=folder, error=exc.strerror or exc, action="file stays in the inbox; retried next scan"
            )
            return None
