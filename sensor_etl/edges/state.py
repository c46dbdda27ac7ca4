"""The daemon's state read from outside it: the inbox backlog, the quarantine folder, the claims and
the ledger, and whether the database and folders are usable. Read by ``status``, by the metrics
endpoint (its gauges, ``/readyz``) and by the progress line; none of it writes anything. An s3://
location is read by listing its prefix (``edges.s3``, one attempt per request: a probe does not wait).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tenacity import Retrying, stop_after_attempt

from sensor_etl.config import Location, S3Location, Settings
from sensor_etl.core.rules import Rule
from sensor_etl.edges import files, reports
from sensor_etl.edges.db import Database
from sensor_etl.errors import DatabaseError, StorageError
from sensor_etl.ops.status import Activity, Backlog, Claim, Load, Quarantined, RuleGroup, Status

if TYPE_CHECKING:
    from sensor_etl.edges.s3 import S3Object, Store

_CLAIMS = "SELECT name, owner, claimed_at, expires_at FROM file_claims WHERE expires_at > clock_timestamp() ORDER BY claimed_at"
_RECENT_LOADS = """
SELECT file_name, status, rows_loaded, rows_rejected, loaded_at
FROM ingested_files ORDER BY loaded_at DESC, file_id DESC LIMIT %s
"""
_ACTIVITY = """
SELECT count(*) FILTER (WHERE loaded_at > now() - interval '1 hour'), coalesce(sum(rows_loaded) FILTER (WHERE loaded_at > now() - interval '1 hour'), 0),
       count(*), coalesce(sum(rows_loaded), 0)
FROM ingested_files WHERE loaded_at > now() - interval '1 day'
"""


def backlog(settings: Settings) -> Backlog:
    """Input files waiting in DATA_FOLDER and its subfolders, as the daemon's scan sees them (without
    PROCESSED_FOLDER and QUARANTINE_FOLDER when they lie inside it)."""
    candidates: list[files.Candidate] | list[S3Object]
    if isinstance(settings.data_folder, S3Location):
        from sensor_etl.edges.s3 import S3Inbox

        candidates = S3Inbox.from_settings(settings, _once).scan().ready
    else:
        candidates, _ = files.scan(
            settings.data_folder, exclude=[f for f in (settings.processed_folder, settings.quarantine_folder) if isinstance(f, Path)]
        )
    if not candidates:
        return Backlog()
    oldest = candidates[0]
    return Backlog(
        files=len(candidates),
        bytes=sum(c.size for c in candidates),
        oldest=oldest.name,
        oldest_age_seconds=max(time.time() - oldest.mtime_ns / 1e9, 0.0),
    )


@dataclass(frozen=True)
class Usage:
    """QUARANTINE_FOLDER: its input files (quarantined, and rejects files) and the bytes of everything in it."""

    files: int
    bytes: int


def usage(folder: Location) -> Usage:
    """Its subfolders included: a file of an inbox subfolder is quarantined under the same subfolder."""
    if isinstance(folder, S3Location):
        found = list(_store().listing(folder))
        return Usage(sum(files.is_input_name(PurePosixPath(obj.name).name) for obj in found), sum(obj.size for obj in found))
    count = size = 0
    for path in _files_under(folder):
        size += path.lstat().st_size
        count += files.is_input_name(path.name)
    return Usage(count, size)


def _once(what: str) -> Retrying:
    """One attempt, no wait: what a probe of an object store gets."""
    return Retrying(stop=stop_after_attempt(1), reraise=True)


def _store() -> Store:
    from sensor_etl.edges import s3

    return s3.Store(s3.client(), _once)


def _files_under(folder: Path) -> Iterator[Path]:
    """Regular files in ``folder`` and its subfolders (symbolic links not followed); ``folder`` itself
    must be readable (OSError otherwise), a subfolder that vanishes or cannot be read is passed over."""

    def unreadable(exc: OSError) -> None:
        if exc.filename == os.fspath(folder):
            raise exc

    for root, _, names in os.walk(folder, onerror=unreadable):
        for name in names:
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                yield path


def quarantined(folder: Location) -> tuple[list[Quarantined], int]:
    """The quarantined files (newest first, from their ``.error.json``; named by their path in the
    folder, as ``requeue`` takes them) and the number of rejects files."""
    found: list[Quarantined] = []
    rejects = 0
    if isinstance(folder, S3Location):
        from sensor_etl.edges.s3 import Prefix

        store = _store()
        place: reports.Folder = Prefix(store, folder)
        names = [obj.name for obj in store.listing(folder)]
    else:
        place, names = files.LocalFolder(folder), [path.relative_to(folder).as_posix() for path in _files_under(folder)]
    for name in names:
        if not files.is_input_name(PurePosixPath(name).name):
            continue
        if name.endswith(reports.REJECTS_CSV):
            rejects += 1
            continue
        try:
            report = json.loads(place.read_text(name + reports.ERROR_REPORT) or "{}")
        except ValueError:
            report = {}
        found.append(
            Quarantined(
                name,
                str(report.get("rule", "unknown")),
                str(report.get("reason", "no report")),
                report.get("quarantined_at"),
            )
        )
    found.sort(key=lambda q: (q.quarantined_at or "", q.file), reverse=True)
    return found, rejects


def by_rule(items: list[Quarantined]) -> list[RuleGroup]:
    """Quarantined files counted by rule (most first), each with the rule's fix from the rule registry."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.rule] = counts.get(item.rule, 0) + 1
    return [RuleGroup(rule, count, _hint(rule)) for rule, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _hint(rule: str) -> str:
    try:
        return Rule(rule).doc.fix
    except ValueError:  # a report from another version, or none
        return ""


def claims(db: Database) -> list[Claim]:
    return [Claim(*row) for row in db.query(_CLAIMS)]


def claims_held(db: Database) -> int:
    return int(db.query("SELECT count(*) FROM file_claims WHERE expires_at > clock_timestamp()")[0][0])


def recent_loads(db: Database, limit: int) -> list[Load]:
    return [Load(*row) for row in db.query(_RECENT_LOADS, (limit,))]


def activity(db: Database) -> tuple[Activity, Activity]:
    """Loads and rows committed in the last hour and the last day."""
    hour_loads, hour_rows, day_loads, day_rows = db.query(_ACTIVITY)[0]
    return Activity(hour_loads, int(hour_rows)), Activity(day_loads, int(day_rows))


def database_bytes(db: Database) -> int:
    return int(db.query("SELECT pg_database_size(current_database())")[0][0])


def readiness(db: Database, inbox: Location, archives: tuple[Location, ...]) -> dict[str, str]:
    """What stops the daemon from doing its work now, by check (``{}``: ready): the database
    answers, the inbox can be listed, each archive folder takes a new file (for s3:// locations:
    their buckets answer)."""
    problems: dict[str, str] = {}
    try:
        db.ping()
    except DatabaseError as exc:
        db.discard()
        problems["database"] = f"unreachable: {exc}"
    if isinstance(inbox, S3Location):
        for name, location in (("inbox", inbox), *((f"archive {a.prefix}", a) for a in archives if isinstance(a, S3Location))):
            try:
                _store().check_bucket(location.bucket)
            except (OSError, StorageError) as exc:
                problems[name] = f"{location}: cannot be reached: {exc}"
        return problems
    try:
        with os.scandir(inbox):
            pass
    except OSError as exc:
        problems["inbox"] = f"{inbox}: cannot be read: {exc.strerror or exc}"
    for folder in (a for a in archives if isinstance(a, Path)):
        try:  # an unnamed temporary file (O_TMPFILE): proves the folder is writable, leaves no trace
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            problems[f"archive {folder.name}"] = f"{folder}: cannot be written: {exc.strerror or exc}"
    return problems


def report(settings: Settings, db: Database | None, database: str, last: int) -> Status:
    """Everything ``status`` shows. ``db`` None: there is no database to ask (``database`` says why).
    ``last``: how many recent loads and quarantines to list."""
    problems: dict[str, str] = {}
    inbox, items, rejects = Backlog(), list[Quarantined](), 0
    try:
        inbox = backlog(settings)
        items, rejects = quarantined(settings.quarantine_folder)
    except (OSError, StorageError) as exc:
        problems["folders"] = f"cannot be read: {exc}"
    found = Status(
        database, reachable=False, inbox=inbox, recent_quarantines=items[:last], quarantine_by_rule=by_rule(items), rejects_files=rejects
    )
    if db is None:
        return replace(found, database_error=database, problems={"database": database, **problems})
    try:
        problems.update(readiness(db, settings.data_folder, (settings.processed_folder, settings.quarantine_folder)))
        if "database" in problems:
            return replace(found, database_error=problems["database"], problems=problems)
        found = replace(found, reachable=True, database_bytes=database_bytes(db), problems=problems)
        try:
            hour, day = activity(db)
            return replace(found, claims=claims(db), recent_loads=recent_loads(db, last), last_hour=hour, last_day=day)
        except DatabaseError as exc:  # reachable, but the daemon never created its tables there
            return replace(found, problems={**problems, "schema": f"no sensor-etl tables yet: {exc}"})
    finally:
        db.close()
