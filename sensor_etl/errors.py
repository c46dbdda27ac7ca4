"""Typed errors. Each kind maps to exactly one decision in ``daemon``: stop, retry, or quarantine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensor_etl.core.rules import Rule


class EtlError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(EtlError):
    """A setting is wrong: the daemon refuses to start (exit code 2)."""

    def __init__(self, variable: str, value: object, accepted: str) -> None:
        self.variable, self.value, self.accepted = variable, value, accepted
        super().__init__(f"{variable}={value!r} is invalid: expected {accepted}")


class SourcesError(ConfigError):
    """SOURCES_FILE holds a mistake (TOML syntax, a key, a value): refused at start-up like a bad setting (exit
    code 2), in one line naming the file, the source and the key."""

    def __init__(self, file: object, problem: str) -> None:
        self.variable, self.value, self.accepted = "SOURCES_FILE", str(file), problem
        EtlError.__init__(self, f"{file}: {problem}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, precise enough for a person to fix it.

    ``rule`` may be given as its string (a problem read back from a report or a problem table): it is
    turned into the ``Rule``, so an unknown rule name fails here rather than in a report."""

    rule: Rule
    message: str
    line: int | None = None
    column: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", Rule(self.rule))

    def describe(self, file: str) -> str:
        """``file:line, column 'T', value '99': <message> [rule]``: the one line a log or report shows."""
        parts = [file if self.line is None else f"{file}:{self.line}"]
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        if self.value is not None:
            parts.append(f"value {self.value!r}")
        return f"{', '.join(parts)}: {self.message} [{self.rule}]"


@dataclass
class InvalidFile(EtlError):
    """The file breaks a rule: it goes to quarantine with a report, and nothing of it is loaded."""

    problem: Problem
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.problem.message


class DatabaseError(EtlError):
    """A database failure, already classified by SQLSTATE (see ``db.classify``)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)


class TransientDatabaseError(DatabaseError):
    """Connection lost/refused, shutdown, deadlock, serialization failure: retry, then leave the file."""


class DataDatabaseError(DatabaseError):
    """The database rejected the data itself (SQLSTATE class 22 or 23): quarantine the file."""


class FatalDatabaseError(DatabaseError):
    """Authentication, permissions, a broken schema: retrying cannot help, the daemon stops."""


class StorageError(EtlError):
    """An object store (S3) failure, already classified (``s3.classify``)."""


class TransientStorageError(StorageError):
    """Throttling, a 5xx answer, a connection reset or timeout: retried with backoff, then the file waits."""


class FatalStorageError(StorageError):
    """Access denied, a missing bucket, no credentials: retrying cannot help, the daemon stops."""


class AlreadyLoaded(EtlError):
    """The content's sha256 is already in the ledger (maybe committed by another worker just now)."""


class Interrupted(EtlError):
    """A stop signal arrived mid-file: roll back, leave the file in the inbox."""


class ClaimLost(EtlError):
    """This worker's lease on the file expired and another worker took it over: roll back, let that one finish."""


class FileChanged(EtlError):
    """The file was modified while it was being loaded: roll back, read it again once it has settled."""


class NotTaken(EtlError):
    """Not a file the daemon takes: a name that is not input (``ignored``: not ``*.csv``, hidden or
    temporary), or a symbolic link or something other than a regular file. It stays where it is."""

    def __init__(self, reason: str, *, ignored: bool = False) -> None:
        self.ignored = ignored
        super().__init__(reason)
