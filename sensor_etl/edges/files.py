"""Filesystem edge: scanning the inbox, knowing when a file is complete, hashing, safe moves, atomic writes.

What reports contain and what they are called is ``reports``' business; moves here only ask it
whether a name is taken and let it write a report next to a quarantined file (``Sidecar``)."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sensor_etl.edges.sniff import TextChecker
from sensor_etl.errors import FileChanged, NotTaken, Problem

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
_READ_BYTES = 4 << 20  # hashing and copying whole files, before and after the reader runs: not READ_BLOCK_BYTES
_READ_CHARS = 1 << 20  # pieces of a line copied into a rejects file


@dataclass(frozen=True)
class Candidate:
    """A file in the inbox as one scan saw it; ``name`` is its path relative to the inbox (``tmy3/x.csv``),
    the name its claim, ledger row, logs and archived copy go by."""

    path: Path
    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    """An inbox entry that looks like input but cannot be taken, and why (``name`` as in ``Candidate``)."""

    path: Path
    name: str
    reason: str


def is_input_name(name: str) -> bool:
    """``*.csv`` (any case), not hidden, not a temporary or partial download."""
    lowered = name.lower()
    return lowered.endswith(".csv") and is_scanned_folder(name)


def is_scanned_folder(name: str) -> bool:
    """A subfolder of the inbox that is scanned: not hidden (``.git``), not temporary (``x.tmp``, ``x~``)."""
    return not name.startswith(".") and not name.lower().endswith(_TEMP_SUFFIXES)


def scan(folder: Path, exclude: Iterable[Path] = ()) -> tuple[list[Candidate], list[Skipped]]:
    """Input files in ``folder`` and its subfolders, oldest first; plus entries skipped with a reason.

    Hidden and temporary folders are not entered, a symbolic link to a folder is not followed (it is
    skipped with a reason), and the folders in ``exclude`` (processed/ or quarantine/ kept inside the
    inbox) are left out."""
    excluded = {_identity(path) for path in exclude if path.is_dir()}
    found: list[Candidate] = []
    skipped: list[Skipped] = []
    pending = [(folder, "")]
    while pending:
        current, prefix = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            if current == folder:
                raise
            if not isinstance(exc, FileNotFoundError):  # else removed since it was listed: nothing to say
                skipped.append(Skipped(current, prefix.rstrip("/"), f"cannot read the folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            path, name = Path(entry.path), prefix + entry.name
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    if is_scanned_folder(entry.name) and (info.st_dev, info.st_ino) not in excluded:
                        pending.append((path, name + "/"))
                    continue
                if stat.S_ISLNK(info.st_mode) and is_scanned_folder(entry.name) and path.is_dir():
                    skipped.append(Skipped(path, name, f"symbolic link to {os.readlink(path)!r}: linked folders are not followed"))
                    continue
                if not is_input_name(entry.name):
                    continue
                reason = skip_reason(path, info)
            except FileNotFoundError:
                continue  # vanished between listing and stat
            if reason is not None:
                skipped.append(Skipped(path, name, reason))
                continue
            found.append(Candidate(path, name, info.st_size, info.st_mtime_ns))
    found.sort(key=lambda c: (c.mtime_ns, c.name))
    return found, skipped


def _identity(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


def skip_reason(path: Path, info: os.stat_result) -> str | None:
    """Why an entry with an input name is not taken: a link could lead anywhere, so it is not followed."""
    if stat.S_ISLNK(info.st_mode):
        return f"symbolic link to {os.readlink(path)!r}: links are not followed"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return None


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
    content: bytes | None = field(default=None, repr=False)  # the bytes hashed, when asked to keep them (a batch's small files)


class Hashing:
    """The sha256 of a content and its first encoding problem, fed block by block as the content is
    read (a file here, an object as it downloads: ``s3``), so it is read once; the content itself too
    when it is at most ``keep`` bytes (so a small file of a batch is parsed from the bytes hashed)."""

    def __init__(self, encoding: str, keep: int = 0) -> None:
        self._digest = hashlib.sha256()
        self._checker = TextChecker(encoding)
        self._keep = keep
        self._kept: bytes | None = b"" if keep else None

    def feed(self, block: bytes) -> None:
        self._digest.update(block)
        self._checker.feed(block)
        if self._kept is not None:
            self._kept = self._kept + block if len(self._kept) + len(block) <= self._keep else None

    def result(self, size: int, mtime_ns: int) -> Fingerprint:
        self._checker.feed(b"", final=True)
        return Fingerprint(self._digest.hexdigest(), size, mtime_ns, self._checker.problem, self._kept)


def fingerprint(path: Path, encoding: str, keep: int = 0) -> Fingerprint:
    """sha256 of the content and the first encoding problem, in one streaming pass (``Hashing``, which
    keeps the content too when it is at most ``keep`` bytes).

    Opened without following a link, and refused (``NotTaken``) unless it is a regular file: an entry
    replaced by a link or a directory since the scan is found by this open, with no stat of its own."""
    hashing = Hashing(encoding, keep)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not hang the daemon
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise NotTaken(skip_reason(path, os.lstat(path)) or str(exc)) from exc
    with open(fd, "rb") as handle:
        before = os.fstat(handle.fileno())
        reason = skip_reason(path, before)
        if reason is not None:
            raise NotTaken(reason)
        while block := handle.read(_READ_BYTES):
            hashing.feed(block)
    return hashing.result(before.st_size, before.st_mtime_ns)


def check_unchanged(path: Path, fp: Fingerprint) -> None:
    """Raise FileChanged when the file's size or mtime moved since it was fingerprinted (a writer
    still at work): called inside the load transaction, so a half-written file is rolled back."""
    info = path.stat()
    if (info.st_size, info.st_mtime_ns) != (fp.size, fp.mtime_ns):
        raise FileChanged(f"{path.name} changed while it was being loaded ({fp.size} -> {info.st_size} bytes)")


def numbered_names(name: str) -> Iterator[str]:
    """``name``, then ``name__2.csv``, ``name__3.csv``...: the names to try, in order, in a folder or a
    prefix; in a subfolder's name (``tmy3/x.csv``) the file's own name is numbered (``tmy3/x__2.csv``)."""
    yield name
    folder, slash, base = name.rpartition("/")
    stem, dot, suffix = base.rpartition(".")
    stem, suffix = (stem, dot + suffix) if dot else (base, "")
    for counter in itertools.count(2):
        yield f"{folder}{slash}{stem}__{counter}{suffix}"


def numbered(folder: Path, name: str) -> Iterator[Path]:
    """``folder/name``, then ``folder/name__2.csv``...: ``numbered_names`` in a folder."""
    return (folder / numbered_name for numbered_name in numbered_names(name))


Taken = Callable[[Path], bool]
"""Whether a name in a destination folder is in use (``reports.name_taken``: a file, a link, or a report of that name)."""


def unique_target(folder: Path, name: str, taken: Taken) -> Path:
    """``folder/name``, or ``name__2.csv``, ``name__3.csv``... when taken (never overwrite)."""
    return next(t for t in numbered(folder, name) if not taken(t))


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def linked_copy(source: Path, folder: Path, taken: Taken, preferred: Path | None = None) -> Path | None:
    """The name that already is a hard link to ``source`` — ``preferred``, or one of the numbered
    names in ``folder`` — left by a move that a crash interrupted between its link and its unlink."""
    origin = source.stat()

    def is_origin(target: Path) -> bool:
        try:
            info = target.stat(follow_symlinks=False)  # a symbolic link to the source is not a copy of it
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == (origin.st_dev, origin.st_ino)

    if preferred is not None and is_origin(preferred):
        return preferred
    for target in numbered(folder, source.name):
        if not taken(target):
            return None
        if is_origin(target):
            return target
    return None


class Sidecar(Protocol):
    """A file written next to a target name before the moved file arrives there (a quarantine
    report), so the file is never without it; removed again when that name cannot be used. It is
    given the target's name: its folder (or prefix) is the sidecar's own."""

    def write(self, target: str) -> None: ...

    def remove(self, target: str) -> None: ...


def move_unique(
    source: Path, folder: Path, *, taken: Taken, preferred: Path | None = None, sidecar: Sidecar | None = None, fresh: bool = False
) -> Path:
    """Move a file into ``folder`` without overwriting anything; returns where it went.

    With ``sidecar``, it is written next to the target first. Same filesystem: hard link then unlink
    (a link never replaces an existing name). Across filesystems: copy to a temporary name, fsync,
    link into place, then unlink. ``preferred`` is tried first. A link left by an interrupted move
    (``linked_copy``) only needs the unlink; ``fresh`` as for ``link_unique``."""
    make_folder(folder)
    target = link_unique(source, folder, taken=taken, preferred=preferred, sidecar=sidecar, fresh=fresh)
    fsync_dir(folder)  # the new name is durable before the old one goes
    source.unlink()  # if a crash undoes this, the file reappears in the inbox and the ledger finishes the move
    return target


class Moves:
    """The moves of a batch: each file is linked into place at once (``link_unique``); ``finish``
    makes the new names durable with one fsync per folder, then removes the old names. A crash in
    between leaves a file under both names, which the next move of it completes by the unlink alone."""

    def __init__(self) -> None:
        self._sources: list[Path] = []
        self._folders: set[Path] = set()

    def move(
        self,
        source: Path,
        folder: Path,
        *,
        taken: Taken,
        preferred: Path | None = None,
        sidecar: Sidecar | None = None,
        fresh: bool = False,
    ) -> Path:
        """``move_unique``, but for the fsync and the unlink, which ``finish`` does for the whole batch."""
        if folder not in self._folders:
            make_folder(folder)
        target = link_unique(source, folder, taken=taken, preferred=preferred, sidecar=sidecar, fresh=fresh)
        self._sources.append(source)
        self._folders.add(folder)
        return target

    def finish(self) -> None:
        for folder in self._folders:
            fsync_dir(folder)
        for source in self._sources:
            source.unlink(missing_ok=True)


def link_unique(
    source: Path, folder: Path, *, taken: Taken, preferred: Path | None = None, sidecar: Sidecar | None = None, fresh: bool = False
) -> Path:
    """The first half of a move (``move_unique``): ``source`` linked (or copied) into the existing
    ``folder`` under a name nothing else has. ``fresh``: no earlier move of ``source`` can have begun
    (it was committed just now), so ``preferred`` is linked at once, without looking for a link an
    interrupted move left."""
    target = None if fresh else linked_copy(source, folder, taken, preferred)
    while target is None:
        candidate, preferred = (preferred, None) if preferred is not None else (unique_target(folder, source.name, taken), None)
        if sidecar is not None:
            sidecar.write(candidate.name)
        try:
            os.link(source, candidate)
            target = candidate
        except FileExistsError:  # the name is taken (by another file, or another process meanwhile): try the next
            if sidecar is not None:
                sidecar.remove(candidate.name)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                if sidecar is not None:
                    sidecar.remove(candidate.name)
                raise
            target = _copy_across(source, folder, candidate, taken)
    return target


def _copy_across(source: Path, folder: Path, target: Path, taken: Taken) -> Path:
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
                target = unique_target(folder, source.name, taken)
    finally:
        os.unlink(temp)


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each new name made durable (a file moved into a folder
    that a crash then loses would be lost with it)."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for path in reversed(missing):
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, parts: Iterable[str], *, prefix: str, encoding: str = "utf-8", newline: str | None = None) -> None:
    """Write ``parts`` to ``path`` through a temporary file in the same folder, fsynced, then renamed
    over ``path``: a reader sees the whole file or none (and never a half-written one)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline=newline) as handle:
            handle.writelines(parts)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class LocalFolder:
    """A local folder as a ``reports.Folder``: reports are written atomically, then made durable by ``sync``."""

    path: Path

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.path / name)  # a link too, even a dangling one: one lstat

    def read_text(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None

    def write_text(self, name: str, parts: Iterable[str], *, encoding: str = "utf-8", newline: str | None = None) -> None:
        target = self.path / name  # a name of a subfolder's file (tmy3/x.csv.error.json) goes into that subfolder
        make_folder(target.parent)
        write_atomic(target, parts, prefix=".report-", encoding=encoding, newline=newline)

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def sync(self, name: str) -> None:
        fsync_dir((self.path / name).parent)


def read_lines(path: Path, wanted: set[int], encoding: str) -> Iterator[str]:
    """The given 1-based lines, in order, as they are in the file (line ends included, CR, LF or CRLF as
    the CSV reader counts them): reject files hold the original lines, not re-rendered rows. Each line
    comes in pieces of at most _READ_CHARS characters, so a line of any length is copied, never held."""
    last = max(wanted, default=0)
    number, after_cr = 1, False
    with open(path, encoding=encoding, newline="") as handle:
        while piece := handle.readline(_READ_CHARS):
            if after_cr and piece.startswith("\n"):  # the LF of a CRLF that the piece size cut after its CR
                if number - 1 in wanted:
                    yield "\n"
                piece = piece[1:]
            if number > last:
                return
            if number in wanted and piece:
                yield piece
            after_cr = piece.endswith("\r")
            if piece.endswith(("\n", "\r")):
                number += 1
