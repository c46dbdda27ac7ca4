"""Where files arrive and where they go once their fate is decided: what the daemon needs of an inbox.

Two kinds, picked from DATA_FOLDER by ``open_inbox``: local folders (``local.FolderInbox``, moves by
hard link) and prefixes in an object store (``s3.S3Inbox``, ``s3://bucket/prefix/``, moves by copy
then delete). The decisions (``runners/daemon.py``) are the same for both: claim a candidate, fetch
it (a local file the reader reads, with its fingerprint), load it in one transaction, and only after
the COMMIT move it to the processed location, or to quarantine with its report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar

from tenacity import Retrying

from sensor_etl.config import S3Location, Settings
from sensor_etl.edges import files, reports
from sensor_etl.errors import ConfigError


class Candidate(Protocol):
    """A file or object in the inbox as a scan (or an event) saw it."""

    @property
    def name(self) -> str:
        """Its path relative to the inbox (``tmy3/x.csv``): the name its claim, ledger row, logs and
        archived copy go by."""
        ...

    @property
    def size(self) -> int: ...


C = TypeVar("C", bound=Candidate)

Retrier = Callable[[str], Retrying]
"""How a call to an object store is retried (``runners.retry.retrying`` on ``TransientStorageError``), given what it does."""


@dataclass(frozen=True)
class Fetched:
    """A candidate's bytes as a local file the reader takes unchanged — the file itself, or a private
    temporary copy of an object, named like it — and the fingerprint taken while reading it."""

    path: Path
    fp: files.Fingerprint


@dataclass(frozen=True)
class Listing(Generic[C]):
    """One scan: candidates ready to be taken (oldest first), entries skipped with a reason, and how
    many candidates are still settling (being written) and were left for a later scan."""

    ready: list[C]
    skipped: list[files.Skipped] = field(default_factory=list)
    settling: int = 0


class Inbox(Protocol[C]):
    """An inbox with its processed and quarantine locations."""

    @property
    def location(self) -> str:
        """The inbox's identity in claims and in the ledger: the folder's absolute path, or its s3:// URL."""
        ...

    @property
    def quarantine_folder(self) -> reports.Folder:
        """Where reports are written: next to the quarantined files."""
        ...

    def prepare(self) -> None:
        """At start-up: create missing folders (``ConfigError`` if that fails), or check that the
        buckets answer (``FatalStorageError``)."""
        ...

    def scan(self) -> Listing[C]: ...

    def present(self, candidate: C) -> bool:
        """Still in the inbox, as far as can be known without reading it."""
        ...

    def fetch(self, candidate: C, encoding: str, keep: int = 0) -> AbstractContextManager[Fetched]:
        """The candidate's bytes and fingerprint, for the time of the block; the bytes themselves too
        (``Fingerprint.content``) when at most ``keep`` (a batch's small files). Raises FileNotFoundError
        (gone), ``FileChanged`` (not what the scan saw), ``NotTaken`` (no longer a regular file), OSError
        or ``StorageError``."""
        ...

    def check_unchanged(self, candidate: C, fp: files.Fingerprint) -> None:
        """Inside the load transaction: raise ``FileChanged`` if the candidate is no longer what was read."""
        ...

    def plan(self, name: str) -> str:
        """Where a file about to be loaded will go (recorded in its ledger row)."""
        ...

    def holds_copy(self, candidate: C, archived: str) -> bool:
        """Whether ``archived`` (a ledger row's archive path) is free, or already this very
        candidate's copy: a move that a crash interrupted, to be finished rather than done twice."""
        ...

    def archive(self, candidate: C, *, preferred: str | None = None, fresh: bool = False) -> str:
        """Move to the processed location, never overwriting (``preferred`` first); returns where it went.
        ``fresh``: committed just now, so no earlier move of it can have begun (nothing to finish)."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Moves made inside share their durability step (a batch's files): in folders, each file is
        linked into place at once and at the end one fsync per folder makes them durable before the
        files leave the inbox; OSError then. An object store moves each object at once (copy, then
        delete), which has nothing to share."""
        ...

    def quarantine(self, candidate: C, report: Mapping[str, Any]) -> str:
        """Move to quarantine with ``report`` (written first); returns where it went."""
        ...

    def requeue(self, name: str) -> str | None:
        """Move the quarantined ``name`` (its path in quarantine) back into the inbox, into the
        subfolder it came from, and drop its report; None if there is no such quarantined input file."""
        ...

    def restore(self, archived: str | None, name: str) -> str | None:
        """Move an archived copy (a ledger row's archive path) back into the inbox as ``name`` (its path
        in the inbox; ``__2``... if taken); None if the copy is not there."""
        ...


def base_name(location: str) -> str:
    """The file name at the end of a path or an s3:// URL (for log lines)."""
    return PurePosixPath(location).name


def open_inbox(settings: Settings, retrying: Retrier) -> Inbox[Any]:
    """The inbox DATA_FOLDER names (the modules are imported here: they import this one)."""
    if isinstance(settings.data_folder, S3Location):
        return _s3("DATA_FOLDER", str(settings.data_folder)).S3Inbox.from_settings(settings, retrying)
    from sensor_etl.edges.local import FolderInbox

    return FolderInbox.from_settings(settings)


def objects_at(url: str, retrying: Retrier) -> Iterator[tuple[str, Callable[[str], AbstractContextManager[Fetched]]]]:
    """For ``validate``: the objects an s3:// URL names (``s3.objects_at``), each with how to fetch it."""
    return _s3("FILE", url).objects_at(url, retrying)


def _s3(variable: str, value: str) -> ModuleType:
    """``edges.s3``, which needs the ``s3`` extra (boto3): imported only for an s3:// location, so a
    local installation never needs it."""
    try:
        from sensor_etl.edges import s3
    except ImportError as exc:
        raise ConfigError(variable, value, "a local path, unless the s3 extra is installed: pip install 'sensor-etl[s3]'") from exc
    return s3
