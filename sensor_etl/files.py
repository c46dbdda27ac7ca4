"""Filesystem edge: scanning the inbox, knowing when a file is complete, hashing, safe moves, reports."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import FileChanged, Problem
from .sniff import TextChecker

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
_READ_BYTES = 4 << 20


@dataclass(frozen=True)
class Candidate:
    """A file in the inbox as one scan saw it."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Skipped:
    """An inbox entry that looks like input but cannot be taken, and why."""

    path: Path
    reason: str


def is_input_name(name: str) -> bool:
    """``*.csv`` (any case), not hidden, not a temporary or partial download."""
    lowered = name.lower()
    return lowered.endswith(".csv") and not name.startswith(".") and not lowered.endswith(_TEMP_SUFFIXES)


def scan(folder: Path) -> tuple[list[Candidate], list[Skipped]]:
    """Input files in ``folder`` (not recursive), oldest first; plus entries skipped with a reason."""
    found: list[Candidate] = []
    skipped: list[Skipped] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_input_name(entry.name):
                continue
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    skipped.append(Skipped(path, f"symbolic link to {os.readlink(entry.path)!r}: links are not followed"))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    skipped.append(Skipped(path, "not a regular file"))
                    continue
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished between listing and stat
            found.append(Candidate(path, info.st_size, info.st_mtime_ns))
    found.sort(key=lambda c: (c.mtime_ns, c.name))
    return found, skipped


class Settle:
    """A file is ready when its size and mtime held still since the previous scan and for
    FILE_SETTLE_SECONDS; a file still being written or copied is left for a later scan."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_ns = int(settle_seconds * 1e9)
        self._seen: dict[Path, tuple[int, int]] = {}

    def ready(self, candidates: Iterable[Candidate], now_ns: int) -> list[Candidate]:
        previous, self._seen = self._seen, {c.path: (c.size, c.mtime_ns) for c in candidates}
        result = []
        for candidate in candidates:
            state = (candidate.size, candidate.mtime_ns)
            unchanged = previous.get(candidate.path, state) == state
            quiet = now_ns - candidate.mtime_ns >= self.settle_ns
            if unchanged and quiet:
                result.append(candidate)
        return result


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    size: int
    mtime_ns: int
    problem: Problem | None  # not text in the expected encoding


def fingerprint(path: Path, encoding: str) -> Fingerprint:
    """sha256 of the content and the first encoding problem, in one streaming pass."""
    digest = hashlib.sha256()
    checker = TextChecker(encoding)
    with open(path, "rb") as handle:
        before = os.fstat(handle.fileno())
        while block := handle.read(_READ_BYTES):
            digest.update(block)
            checker.feed(block)
        checker.feed(b"", final=True)
    return Fingerprint(digest.hexdigest(), before.st_size, before.st_mtime_ns, checker.problem)


def check_unchanged(path: Path, fp: Fingerprint) -> None:
    """Raise FileChanged when the file's size or mtime moved since it was fingerprinted (a writer
    still at work): called inside the load transaction, so a half-written file is rolled back."""
    info = path.stat()
    if (info.st_size, info.st_mtime_ns) != (fp.size, fp.mtime_ns):
        raise FileChanged(f"{path.name} changed while it was being loaded ({fp.size} -> {info.st_size} bytes)")


def _archive_names(folder: Path, name: str) -> Iterator[Path]:
    """``folder/name``, then ``name__2.csv``, ``name__3.csv``...: the names a move may use, in order."""
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, dot + suffix) if dot else (name, "")
    yield folder / name
    for counter in itertools.count(2):
        yield folder / f"{stem}__{counter}{suffix}"


def _taken(target: Path) -> bool:
    return target.exists() or target.is_symlink() or Path(f"{target}.error.json").exists()


def unique_target(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name__2.csv``, ``name__3.csv``... when taken (never overwrite)."""
    return next(target for target in _archive_names(folder, name) if not _taken(target))


def linked_copy(source: Path, folder: Path) -> Path | None:
    """The name in ``folder`` that already is a hard link to ``source``: a move interrupted between
    its link and its unlink (a crash), which only needs the unlink to finish."""
    origin = source.stat()
    for target in _archive_names(folder, source.name):
        if not _taken(target):
            return None
        try:
            info = target.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # only a report holds this name
        if (info.st_dev, info.st_ino) == (origin.st_dev, origin.st_ino):
            return target
    return None


def move_unique(source: Path, folder: Path, report: dict | None = None) -> Path:
    """Move a file into ``folder`` without overwriting anything; returns where it went.

    With ``report``, ``<target>.error.json`` is written first, so a quarantined file is never
    without its reason. Same filesystem: hard link then unlink (a link never replaces an existing
    name); a link left by an interrupted move is found and only the unlink is redone. Across
    filesystems: copy to a temporary name, fsync, link into place, then unlink."""
    folder.mkdir(parents=True, exist_ok=True)
    target = linked_copy(source, folder)
    while target is None:
        candidate = unique_target(folder, source.name)
        sidecar = Path(f"{candidate}.error.json")
        if report is not None:
            write_json(sidecar, {**report, "quarantined_as": candidate.name})
        try:
            os.link(source, candidate)
            target = candidate
        except FileExistsError:  # another process took the name meanwhile: try the next one
            if report is not None:
                sidecar.unlink(missing_ok=True)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                if report is not None:
                    sidecar.unlink(missing_ok=True)
                raise
            target = _copy_across(source, folder, candidate)
    _fsync_dir(folder)
    source.unlink()
    _fsync_dir(source.parent)
    return target


def _copy_across(source: Path, folder: Path, target: Path) -> Path:
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, _READ_BYTES)
            dst.flush()
            os.fsync(dst.fileno())
        shutil.copystat(source, temp)
        while True:
            try:
                os.link(temp, target)
                return target
            except FileExistsError:
                target = unique_target(folder, source.name)
    finally:
        os.unlink(temp)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, document: dict) -> None:
    """Write atomically: a reader sees the whole report or none."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".report-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def read_lines(path: Path, wanted: set[int]) -> dict[int, bytes]:
    """The raw bytes of the given 1-based line numbers (for reject files: original lines, not re-rendered)."""
    found: dict[int, bytes] = {}
    if not wanted:
        return found
    last = max(wanted)
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number in wanted:
                found[number] = line
            if number >= last:
                break
    return found
