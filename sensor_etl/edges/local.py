"""The local inbox: DATA_FOLDER, PROCESSED_FOLDER and QUARANTINE_FOLDER on disk, as ``inbox.Inbox``.

Everything it does is in ``files`` (scan, settle, hash, moves by hard link) and ``reports``; this
module only puts it behind the inbox protocol, so the daemon handles folders and object stores alike.
A file of a subfolder of the inbox (its name ``tmy3/x.csv``) keeps that subfolder in processed/ and
quarantine/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from sensor_etl.config import Settings
from sensor_etl.edges import files, reports
from sensor_etl.edges.inbox import Fetched, Listing
from sensor_etl.errors import ConfigError, FileChanged


class FolderInbox:
    """A folder inbox; moves never overwrite, and a name a report still holds counts as taken."""

    def __init__(self, data: Path, processed: Path, quarantine: Path, settle_seconds: float) -> None:
        self.data, self.processed, self.quarantine_path = data, processed, quarantine
        self.location = str(data.resolve())
        self.quarantine_folder = files.LocalFolder(quarantine)
        self._settle = files.Settle(settle_seconds)
        self._archived = processed.resolve()  # once: the archive paths the ledger records are absolute, with no resolve per file
        self._moves: files.Moves | None = None  # inside ``batch``

    @classmethod
    def from_settings(cls, settings: Settings) -> FolderInbox:
        folders = (settings.data_folder, settings.processed_folder, settings.quarantine_folder)
        data, processed, quarantine = (folder for folder in folders if isinstance(folder, Path))  # config checked they are all local
        return cls(data, processed, quarantine, settings.file_settle_seconds)

    def __str__(self) -> str:
        return str(self.data)

    def prepare(self) -> None:
        for variable, folder in (
            ("DATA_FOLDER", self.data),
            ("PROCESSED_FOLDER", self.processed),
            ("QUARANTINE_FOLDER", self.quarantine_path),
        ):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(variable, str(folder), f"a folder that exists or can be created ({exc.strerror})") from exc
            if not folder.is_dir():
                raise ConfigError(variable, str(folder), "a folder, not a file")

    def scan(self) -> Listing[files.Candidate]:
        candidates, skipped = files.scan(self.data, exclude=(self.processed, self.quarantine_path))
        ready = self._settle.ready(candidates, time.time_ns())
        return Listing(ready, skipped, settling=len(candidates) - len(ready))

    def present(self, candidate: files.Candidate) -> bool:
        return candidate.path.exists()

    @contextmanager
    def fetch(self, candidate: files.Candidate, encoding: str, keep: int = 0) -> Iterator[Fetched]:
        fp = files.fingerprint(candidate.path, encoding, keep)
        if (fp.size, fp.mtime_ns) != (candidate.size, candidate.mtime_ns):
            raise FileChanged(f"{candidate.name} changed since the scan")
        yield Fetched(candidate.path, fp)

    def check_unchanged(self, candidate: files.Candidate, fp: files.Fingerprint) -> None:
        files.check_unchanged(candidate.path, fp)

    def plan(self, name: str) -> str:
        relative = PurePosixPath(name)
        return str(files.unique_target(self._archived / relative.parent, relative.name, reports.name_taken))

    def holds_copy(self, candidate: files.Candidate, archived: str) -> bool:
        planned = Path(archived)
        return not planned.exists() or files.same_file(candidate.path, planned)

    def archive(self, candidate: files.Candidate, *, preferred: str | None = None, fresh: bool = False) -> str:
        folder = Path(preferred).parent if preferred else self._archived / PurePosixPath(candidate.name).parent
        target = self._move(candidate.path, folder, preferred=Path(preferred) if preferred else None, fresh=fresh)
        return str(target if target.is_absolute() else target.resolve())

    def quarantine(self, candidate: files.Candidate, report: Mapping[str, Any]) -> str:
        folder = self.quarantine_path / PurePosixPath(candidate.name).parent
        return str(self._move(candidate.path, folder, sidecar=reports.ErrorReport(files.LocalFolder(folder), report)))

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._moves = moves = files.Moves()
        try:
            yield
        finally:
            self._moves = None
            moves.finish()

    def _move(
        self, source: Path, folder: Path, *, preferred: Path | None = None, sidecar: files.Sidecar | None = None, fresh: bool = False
    ) -> Path:
        """A move now (``files.move_unique``), or inside ``batch`` its link now and its fsync and unlink at the end."""
        if self._moves is not None:
            return self._moves.move(source, folder, taken=reports.name_taken, preferred=preferred, sidecar=sidecar, fresh=fresh)
        return files.move_unique(source, folder, taken=reports.name_taken, preferred=preferred, sidecar=sidecar, fresh=fresh)

    def requeue(self, name: str) -> str | None:
        relative = PurePosixPath(name)
        source = self.quarantine_path / relative
        if not files.is_input_name(relative.name) or not source.is_file() or source.is_symlink():
            return None
        target = files.move_unique(source, self.data / relative.parent, taken=reports.name_taken)
        self.quarantine_folder.remove(reports.report_of(self.quarantine_folder, name))
        return str(target)

    def restore(self, archived: str | None, name: str) -> str | None:
        source = Path(archived) if archived else None
        if source is None or not source.is_file() or source.is_symlink():
            return None
        folder = self.data / PurePosixPath(name).parent
        return str(files.move_unique(source, folder, taken=reports.name_taken, preferred=folder / PurePosixPath(name).name))
