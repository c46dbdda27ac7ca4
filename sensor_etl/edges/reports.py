"""Reports: what a quarantined or partly loaded file's report says, what it is called, where it is written.

Two kinds, both next to the file in QUARANTINE_FOLDER (README "The quarantine report", "Rejects"):

- ``<name>.error.json`` next to a quarantined file (``quarantine_report``, moved in by ``quarantine``);
- ``<name>.rejects.csv`` (the rejected lines, as they were) and ``<name>.rejects.json`` (every problem
  of those lines) for a file loaded in part under MAX_INVALID_ROWS (``write_rejects``).

This is the one module that builds a report document or a report's file name: the daemon, the
pipeline (``InvalidFile.details``), ``validate`` and ``requeue`` all come here. Reports are written
through a ``Folder``: a local folder (``files.LocalFolder``) or a prefix in an object store
(``s3.Prefix``), so both kinds of inbox get the same reports under the same names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sensor_etl.edges import files
from sensor_etl.errors import Problem

if TYPE_CHECKING:
    from sensor_etl.config import RejectLimit

ERROR_REPORT = ".error.json"
REJECTS_CSV = ".rejects.csv"
REJECTS_REPORT = ".rejects.json"


class Folder(Protocol):
    """Where reports are written and looked up, by name."""

    def exists(self, name: str) -> bool:
        """Something has this name (a file, a link, an object)."""
        ...

    def read_text(self, name: str) -> str | None:
        """Its text, or None when there is nothing of that name (or it cannot be read)."""
        ...

    def write_text(self, name: str, parts: Iterable[str], *, encoding: str = "utf-8", newline: str | None = None) -> None:
        """Write (or replace) it whole: a reader sees all of it or none of it."""
        ...

    def remove(self, name: str) -> None:
        """Remove it, if it is there."""
        ...

    def sync(self, name: str) -> None:
        """Make the writes so far to names beside ``name`` durable."""
        ...


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
def rejects_csv_name(name: str) -> str:
    """``<name>.rejects.csv``: where the rejected lines of the file ``name`` go (in QUARANTINE_FOLDER)."""
    return name + REJECTS_CSV


def taken(folder: Folder, name: str) -> bool:
    """A name a move must not use: something has it, or a quarantine report of that name is still
    there (the report of a file a person removed must not describe the next one)."""
    return folder.exists(name) or folder.exists(name + ERROR_REPORT)


def name_taken(target: Path) -> bool:
    """``taken`` for a path in a local folder (``files.Taken``)."""
    return taken(files.LocalFolder(target.parent), target.name)


def report_of(folder: Folder, quarantined: str) -> str:
    """The name of the report that goes with a file in quarantine: its ``.error.json``, or for a
    rejects file (``x.csv.rejects.csv``) without one, ``x.csv.rejects.json``. It may not exist."""
    report = quarantined + ERROR_REPORT
    if not folder.exists(report) and quarantined.endswith(REJECTS_CSV):
        report = quarantined.removesuffix(REJECTS_CSV) + REJECTS_REPORT
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


def attempts_details(failures: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """``InvalidFile.details`` of a file whose attempts kept ending abnormally (rule worker_died):
    the verdict and each attempt (when, which worker, how it ended)."""
    endings = "; ".join(str(failure.get("ended")) for failure in failures)
    return {"reason": f"{len(failures)} attempts to load it ended abnormally (MAX_FILE_ATTEMPTS={limit}): {endings}", "attempts": failures}


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
        **({"attempts": details["attempts"]} if "attempts" in details else {}),
    }


@dataclass(frozen=True)
class ErrorReport:
    """The ``files.Sidecar`` of a quarantine move: the report is in ``folder`` before the file arrives."""

    folder: Folder
    document: Mapping[str, Any]

    def write(self, target: str) -> None:
        _write_json(self.folder, target + ERROR_REPORT, {**self.document, "quarantined_as": target})

    def remove(self, target: str) -> None:
        self.folder.remove(target + ERROR_REPORT)


# -- the rejects of a partial load ----------------------------------------------------------------
def write_rejects(source: Path, folder: Folder, *, name: str, sha256: str, file_id: int, findings: Findings, encoding: str) -> str:
    """Write ``<name>.rejects.csv`` (the lines before the data — preamble, header, units — and the
    rejected lines of ``source``, as they were) and then ``<name>.rejects.json`` (every problem of
    every rejected row) into ``folder``, each whole (a file of a subfolder of the inbox, ``name``
    ``tmy3/x.csv``, into its subfolder); returns the CSV's name. A name used by another content gets
    ``__2``...; the same content (a retry) reuses its own."""
    base = _rejects_base(folder, name, sha256)
    head = set(range(1, findings.data_line))  # preamble, header, units: the same settings read the rejects file the same way
    target = rejects_csv_name(base)
    original = files.read_lines(source, head | findings.rejected_lines(), encoding)
    folder.write_text(target, original, encoding=encoding, newline="")
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
        "rejects_file": target,
    }
    _write_json(folder, base + REJECTS_REPORT, report)
    folder.sync(target)
    return target


def _rejects_base(folder: Folder, name: str, sha256: str) -> str:
    """``name`` for ``<name>.rejects.csv`` and ``.rejects.json``; a name already used by another
    content gets ``__2``, ``__3``... A retry of the same content (same sha256) reuses its own names."""
    return next(base for base in files.numbered_names(name) if _free_or_ours(folder, base, sha256))


def _free_or_ours(folder: Folder, base: str, sha256: str) -> bool:
    if not folder.exists(base + REJECTS_REPORT) and not folder.exists(base + REJECTS_CSV):
        return True
    try:
        return json.loads(folder.read_text(base + REJECTS_REPORT) or "").get("sha256") == sha256
    except (ValueError, AttributeError):
        return False  # no readable report: not ours


def _write_json(folder: Folder, name: str, document: Mapping[str, Any]) -> None:
    """Write a report whole: a reader sees the whole report or none."""
    folder.write_text(name, [json.dumps(document, indent=2, ensure_ascii=False, default=str), "\n"])
