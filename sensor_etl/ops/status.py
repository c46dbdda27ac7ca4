"""The ``status`` view: what the daemon's database and folders say now, as text for a person or JSON.

Pure formatting: ``edges.state`` reads the database and the folders into a ``Status``; this module
only lays it out. ``Status.ready`` is the command's exit status (0 ready, 1 not), so a cron job or a
container health check can use ``status`` without HTTP.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Backlog:
    """Input files waiting in the inbox."""

    files: int = 0
    bytes: int = 0
    oldest: str | None = None
    oldest_age_seconds: float = 0.0


@dataclass(frozen=True)
class Claim:
    """A file being handled now: by which worker (``host:pid:token``), since when."""

    file: str
    worker: str
    since: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Load:
    file: str
    status: str  # loaded or partial
    rows: int
    rows_rejected: int
    loaded_at: datetime


@dataclass(frozen=True)
class Quarantined:
    file: str
    rule: str
    reason: str
    quarantined_at: str | None


@dataclass(frozen=True)
class RuleGroup:
    """Quarantined files that broke one rule, and what to do about them."""

    rule: str
    files: int
    hint: str


@dataclass(frozen=True)
class Activity:
    loads: int
    rows: int


@dataclass(frozen=True)
class Status:
    database: str  # which server: "embedded (<pgdata>)" or the URL without its password
    reachable: bool
    database_error: str | None = None
    database_bytes: int | None = None
    inbox: Backlog = field(default_factory=Backlog)
    claims: list[Claim] = field(default_factory=list)
    recent_loads: list[Load] = field(default_factory=list)
    recent_quarantines: list[Quarantined] = field(default_factory=list)
    last_hour: Activity | None = None
    last_day: Activity | None = None
    quarantine_by_rule: list[RuleGroup] = field(default_factory=list)
    rejects_files: int = 0  # x.csv.rejects.csv files of partial loads
    problems: dict[str, str] = field(default_factory=dict)  # what is not ready, by check

    @property
    def ready(self) -> bool:
        return not self.problems


def to_json(status: Status) -> str:
    return json.dumps({**asdict(status), "ready": status.ready}, default=_jsonable, indent=2)


def _jsonable(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def render(status: Status) -> str:
    """The text view, top to bottom: verdict, database, inbox, work in progress, history, quarantine."""
    lines = [f"status: {'ready' if status.ready else 'NOT READY'}"]
    lines += [f"  {check}: {reason}" for check, reason in status.problems.items()]
    if status.reachable:
        lines.append(f"database: {status.database}, reachable, {_size(status.database_bytes or 0)}")
    else:
        lines.append(f"database: {status.database}, NOT reachable: {status.database_error}")
    inbox = status.inbox
    oldest = f", oldest {inbox.oldest} ({_age(inbox.oldest_age_seconds)} old)" if inbox.oldest else ""
    lines.append(f"inbox: {inbox.files} file(s) waiting, {_size(inbox.bytes)}{oldest}")
    lines.append(f"being handled now: {len(status.claims)}")
    lines += [f"  {c.file}  by {c.worker}  since {_time(c.since)}" for c in status.claims]
    for label, activity in (("last hour", status.last_hour), ("last day", status.last_day)):
        if activity is not None:
            lines.append(f"{label}: {activity.loads} load(s), {activity.rows:,} rows")
    if status.recent_loads:
        lines.append("recent loads:")
        lines += [
            f"  {_time(load.loaded_at)}  {load.file}  {load.status}  {load.rows:,} rows"
            + (f", {load.rows_rejected:,} rejected" if load.rows_rejected else "")
            for load in status.recent_loads
        ]
    if status.recent_quarantines:
        lines.append("recent quarantines:")
        lines += [f"  {q.quarantined_at or '?'}  {q.file}  [{q.rule}] {q.reason}" for q in status.recent_quarantines]
    total = sum(group.files for group in status.quarantine_by_rule)
    lines.append(
        f"quarantine: {total} file(s)" + (f", {status.rejects_files} rejects file(s) of partial loads" if status.rejects_files else "")
    )
    for group in status.quarantine_by_rule:
        lines.append(f"  {group.rule}: {group.files} file(s)" + (f" - {group.hint}" if group.hint else ""))
    if total:
        lines.append("  after fixing a file or the rules: sensor-etl requeue NAME...")
    return "\n".join(lines)


def _size(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            break
    return f"{count:.1f} {unit}"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
