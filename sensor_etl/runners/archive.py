"""Where a file goes once its fate is decided: PROCESSED_FOLDER after its commit (or as a duplicate),
QUARANTINE_FOLDER with its report.

Moves never overwrite, and a name that a report still holds counts as taken (``reports.name_taken``).
A move that fails (processed/ missing, unwritable or full) is logged as ``move_failed`` and the file
stays in the inbox: a later scan finds it in the ledger and finishes the move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sensor_etl.edges import files, reports
from sensor_etl.edges.db import Database
from sensor_etl.errors import DatabaseError
from sensor_etl.ops import logs


class Archive:
    def __init__(self, processed: Path, quarantine: Path, database: Database) -> None:
        self.processed = processed
        self.quarantine_folder = quarantine
        self.db = database

    def plan(self, name: str) -> Path:
        """Where a file about to be loaded will go; the load records it in its own transaction."""
        return files.unique_target(self.processed, name, reports.name_taken).resolve()

    def committed(self, path: Path, file_id: int, planned: Path) -> None:
        """Move a committed file to where the ledger says it went (or, if that name got taken, next to it)."""
        target = self._move(
            path, self.processed, lambda: files.move_unique(path, self.processed, taken=reports.name_taken, preferred=planned)
        )
        if target is None or target.resolve() == planned:
            return
        try:
            self.db.set_archive_path(file_id, str(target.resolve()))
        except DatabaseError as exc:  # the rows are committed and the file is moved; this is bookkeeping
            logs.warning("archive_not_recorded", file=path.name, file_id=file_id, error=exc)

    def duplicate(self, path: Path) -> Path | None:
        """Set a content that is already loaded aside, into PROCESSED_FOLDER; None if it could not move."""
        return self._move(path, self.processed, lambda: files.move_unique(path, self.processed, taken=reports.name_taken))

    def quarantine(self, path: Path, report: Mapping[str, Any]) -> Path | None:
        """Move a file into QUARANTINE_FOLDER with its report; None if it could not move."""
        return self._move(path, self.quarantine_folder, lambda: reports.quarantine(path, self.quarantine_folder, report))

    @staticmethod
    def _move(path: Path, folder: Path, move: Callable[[], Path]) -> Path | None:
        try:
            return move()
        except OSError as exc:
            logs.error(
                "move_failed", file=path.name, folder=folder, error=exc.strerror or exc, action="file stays in the inbox; retried next scan"
            )
            return None
