"""Reports: what a quarantined or partly loaded file's report says, what it is called, where it is written.

Two kinds, both next to the file in QUARANTINE_FOLDER (README "The quarantine report", "Rejects"):

- ``<name>.error.json`` next to a quarantined file (``quarantine_report``, moved in by ``quarantine``);
- ``<name>.rejects.csv`` (the rejected lines, as they were) and ``<name>.rejects.json`` (every problem
  of those lines) for a file loaded in part under MAX_INVALID_ROWS (``write_rejects``).

This is the one module that builds a report document or a report's file name: the daemon, the
pipeline (``InvalidFile.details``), ``validate`` and ``requeue`` all come here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from sensor_etl.edges import files
from sensor_etl.errors import Problem

if TYPE_CHECKING:
    from sensor_etl.config import RejectLimit

ERROR_REPORT = ".error.json"
REJECTS_CSV = ".rejects.csv"
REJECTS_REPORT = ".rejects.json"


class Findings(Protocol):
    """What a pass over a file found (``pipeline.Outcome``): the counts and problems reports list."""

    @property
    def rows(self) -> int: ...

    @property
    def loaded(self) -> int: ...

    @property
    def invalid_rows(self) -> int: ...

    @property
    def date_format(self) -> str: ...

    @property
    def data_line(self) -> int: ...

    @property
    def details(self) -> list[dict[str, Any]]: ...

    def counts(self) -> dict[str, int]: ...

    def rejected_lines(self) -> set[int]: ...

    def rejected_problems(self) -> list[dict[str, Any]]: ...


# -- names --------------------------------------------------------------------------------------
def error_report_path(target: Path) -> Path:
    """``<target>.error.json``: the report of the quarantined file ``target``."""
    return Path(f"{target}{ERROR_REPORT}")


def rejects_csv_path(base: Path) -> Path:
    """``<base>.rejects.csv``: the rejected lines of the file ``base`` names (in QUARANTINE_FOLDER)."""
    return Path(f"{base}{REJECTS_CSV}")


def rejects_report_path(base: Path) -> Path:
    """``<base>.rejects.json``: the problems of those lines."""
    return Path(f"{base}{REJECTS_REPORT}")


def name_taken(target: Path) -> bool:
    """A name a move must not use: a file or link (even a dangling one) has it, or a quarantine report
    of that name is still there (the report of a file a person removed must not describe the next one)."""
    return os.path.lexists(target) or error_report_path(target).exists()


def report_of(quarantined: Path) -> Path:
    """The report that goes with a file in quarantine: its ``.error.json``, or for a rejects file
    (``x.csv.rejects.csv``) without one, ``x.csv.rejects.json``. It may not exist."""
    report = error_report_path(quarantined)
    if not report.exists() and quarantined.name.endswith(REJECTS_CSV):
        report = rejects_report_path(Path(str(quarantined).removesuffix(REJECTS_CSV)))
    return report


# -- the quarantine report ------------------------------------------------------------------------
def rows_details(findings: Findings, limit: RejectLimit) -> dict[str, Any]:
    """``InvalidFile.details`` of a file quarantined for its rows: the verdict (``reason``) and the
    part of the report that lists what was wrong."""
    return {
        "reason": _rows_reason(findings, limit),
        "rows_total": findings.rows,
        "rows_invalid": findings.invalid_rows,
        "rule_counts": findings.counts(),
        "errors": findings.details,
        "errors_shown": len(findings.details),
        "date_format": findings.date_format or None,
    }


def _rows_reason(findings: Findings, limit: RejectLimit) -> str:
    counts = ", ".join(f"{rule}: {count}" for rule, count in findings.counts().items())
    verdict = ""
    if limit.enabled:
        verdict = "; no valid row to load" if findings.invalid_rows == findings.rows else f"; more than MAX_INVALID_ROWS={limit} allows"
    return f"{findings.invalid_rows} of {findings.rows} rows invalid ({counts}){verdict}"


def listed_problems(problem: Problem, details: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The problems a report lists (the first ones) and the count of every problem by rule; a
    file-level problem (no ``details``) is the only one."""
    return details.get("errors") or [asdict(problem)], details.get("rule_counts") or {problem.rule: 1}


def quarantine_report(name: str, problem: Problem, details: Mapping[str, Any], *, sha256: str, size: int, at: datetime) -> dict[str, Any]:
    """The content of ``<name>.error.json`` (``quarantined_as`` is added when the name is known)."""
    reason = problem.describe(name)
    if details.get("reason"):
        reason = f"{details['reason']}; first: {reason}"
    errors, rule_counts = listed_problems(problem, details)
    return {
        "file": name,
        "reason": reason,
        "rule": problem.rule,
        "sha256": sha256,
        "size_bytes": size,
        "quarantined_at": at.isoformat(timespec="seconds"),
        "rows_total": details.get("rows_total"),
        "rows_invalid": details.get("rows_invalid"),
        "rule_counts": rule_counts,
        "errors": errors,
    }


@dataclass(frozen=True)
class _ErrorReport:
    """The ``files.Sidecar`` of a quarantine move: the report is in place before the file arrives."""

    document: Mapping[str, Any]

    def write(self, target: Path) -> None:
        _write_json(error_report_path(target), {**self.document, "quarantined_as": target.name})

    def remove(self, target: Path) -> None:
        error_report_path(target).unlink(missing_ok=True)


def error_report(report: Mapping[str, Any]) -> files.Sidecar:
    """``report`` as the ``.error.json`` of a quarantine move (``files.move_unique(sidecar=...)``):
    written before the file arrives, so a quarantined file is never without its reason."""
    return _ErrorReport(report)


# -- the rejects of a partial load ----------------------------------------------------------------
def write_rejects(source: Path, folder: Path, *, name: str, sha256: str, file_id: int, findings: Findings, encoding: str) -> Path:
    """Write ``<name>.rejects.csv`` (the lines before the data — preamble, header, units — and the
    rejected lines, as they were) and then ``<name>.rejects.json`` (every problem of every rejected
    row), each atomically, into ``folder`` (a file of a subfolder of the inbox, ``name`` ``tmy3/x.csv``,
    into its subfolder); returns the CSV's path. A name used by another content gets ``__2``...; the
    same content (a retry) reuses its own."""
    relative = PurePosixPath(name)
    base = _rejects_base(folder / relative.parent, relative.name, sha256)
    files.make_folder(base.parent)
    head = set(range(1, findings.data_line))  # preamble, header, units: the same settings read the rejects file the same way
    target = rejects_csv_path(base)
    original = files.read_lines(source, head | findings.rejected_lines(), encoding)
    files.write_atomic(target, original, prefix=".rejects-", encoding=encoding, newline="")
    report = {
        "file": name,
        "sha256": sha256,
        "file_id": file_id,
        "rows_total": findings.rows,
        "rows_loaded": findings.loaded,
        "rows_rejected": findings.invalid_rows,
        "rule_counts": findings.counts(),
        "date_format": findings.date_format or None,
        "errors": findings.rejected_problems(),
        "rejects_file": target.name,
    }
    _write_json(rejects_report_path(base), report)
    files.fsync_dir(base.parent)
    return target


def _rejects_base(folder: Path, name: str, sha256: str) -> Path:
    """``folder/name`` for ``<name>.rejects.csv`` and ``.rejects.json``; a name already used by another
    content gets ``__2``, ``__3``... A retry of the same content (same sha256) reuses its own names."""
    return next(base for base in files.numbered(folder, name) if _free_or_ours(base, sha256))


def _free_or_ours(base: Path, sha256: str) -> bool:
    report = rejects_report_path(base)
    if not report.exists() and not rejects_csv_path(base).exists():
        return True
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("sha256") == sha256
    except (OSError, ValueError, AttributeError):
        return False  # no readable report: not ours


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a report atomically: a reader sees the whole report or none."""
    files.write_atomic(path, [json.dumps(document, indent=2, ensure_ascii=False, default=str), "\n"], prefix=".report-")
