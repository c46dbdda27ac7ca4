"""Where a file goes once its fate is decided: PROCESSED_FOLDER after its commit (or as a duplicate),
QUARANTINE_FOLDER with its report; a file of a subfolder of the inbox keeps its relative path there
(``data/tmy3/x.csv`` goes to ``processed/tmy3/x.csv``).

Moves never overwrite, and a name that a report still holds counts as taken (``reports.name_taken``).
A move that fails (processed/ missing, unwritable or full) is logged as ``move_failed`` and the file
stays in the inbox: a later scan finds it in the ledger and finishes the move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
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
        """Where a file about to be loaded (``name``: its path relative to the inbox) will go; the load
        records it in its own transaction."""
        relative = PurePosixPath(name)
        return files.unique_target(self.processed / relative.parent, relative.name, reports.name_taken).resolve()

    def committed(self, path: Path, name: str, file_id: int, planned: Path) -> None:
        """Move a committed file to where the ledger says it went (or, if that name got taken, next to it)."""
        folder = planned.parent
        target = self._move(name, folder, lambda: files.move_unique(path, folder, taken=reports.name_taken, preferred=planned))
        if target is None or target.resolve() == planned:
            return
        try:
            self.db.set_archive_path(file_id, str(target.resolve()))
        except DatabaseError as exc:  # the rows are committed and the file is moved; this is bookkeeping
            logs.warning("archive_not_recorded", file=name, file_id=file_id, error=exc)

    def duplicate(self, path: Path, name: str) -> Path | None:
        """Set a content that is already loaded aside, into PROCESSED_FOLDER; None if it could not move."""
        folder = self.processed / PurePosixPath(name).parent
        return self._move(name, folder, lambda: files.move_unique(path, folder, taken=reports.name_taken))

    def quarantine(self, path: Path, name: str, report: Mapping[str, Any]) -> Path | None:
        """Move a file into QUARANTINE_FOLDER with its report; None if it could not move."""
        folder = self.quarantine_folder / PurePosixPath(name).parent
        return self._move(name, folder, lambda: reports.quarantine(path, folder, report))

    @staticmethod
    def _move(name: str, folder: Path, move: Callable[[], Path]) -> Path | None:
        try:
            return move()
        except OSError as exc:
            logs.error(
                "move_failed", file=name, folder=folder, error=exc.strerror or exc, action="file stays in the inbox; retried next scan"
            )
            return None
