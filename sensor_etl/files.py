"""Filesystem edge: scanning the inbox, knowing when a file is complete, hashing, safe moves, reports."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import Problem
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


def unique_target(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name__2.csv``, ``name__3.csv``... when taken (never overwrite)."""
    target = folder / name
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, dot + suffix) if dot else (name, "")
    counter = 2
    while target.exists() or target.is_symlink() or Path(f"{target}.error.json").exists():
        target = folder / f"{stem}__{counter}{suffix}"
        counter += 1
    return target


def move_unique(source: Path, folder: Path, report: dict | None = None) -> Path:
    """Move a file into ``folder`` without overwriting anything; returns where it went.

    With ``report``, ``<target>.error.json`` is written first, so a quarantined file is never
    without its reason. Same filesystem: hard link then unlink (a link never replaces an existing
    name). Across filesystems: copy to a temporary name, fsync, link into place, then unlink."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        target = unique_target(folder, source.name)
        sidecar = Path(f"{target}.error.json")
        if report is not None:
            write_json(sidecar, {**report, "quarantined_as": target.name})
        try:
            os.link(source, target)
        except FileExistsError:
            sidecar.unlink(missing_ok=report is None)
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                if report is not None:
                    sidecar.unlink(missing_ok=True)
                raise
            target = _copy_across(source, folder, target)
        break
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
