"""Memory is bounded by the settings, not by the file (docs/operations.md, "Memory"): a 200 MB line
and a 100 MB file with CR-only line ends, each loaded by ``etl_pipeline.py --once`` in a child
process whose peak is the kernel's own figure (``ru_maxrss`` of the finished child). The files are
written piece by piece: the test never holds them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.workspace import REPO, Db, Workspace

MIB = 1 << 20
NOTE_HEADER = b"timestamp,sensor_id,temperature,humidity,pressure,note"
# The documented bound (docs/operations.md "Memory"): peak RSS of one worker is about
# BASE + BLOCK_FACTOR x READ_BLOCK_BYTES + LINE_FACTOR x MAX_LINE_BYTES.
BASE, BLOCK_FACTOR, LINE_FACTOR = 150 * MIB, 25, 12
# Small settings, so that the files are huge next to them: 1 MiB blocks, rows of at most 4 MiB.
SETTINGS = {"READ_BLOCK_BYTES": str(MIB), "MAX_LINE_BYTES": str(4 * MIB)}
BOUND = BASE + BLOCK_FACTOR * MIB + LINE_FACTOR * 4 * MIB

_PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"  # KiB, of the largest finished child
    "sys.exit(done.returncode)\n"
)


def rows(first: int, count: int, end: bytes = b"\n") -> bytes:
    """``count`` multi-sensor rows, one second apart from 2024-03-01, each sensor a day."""
    return b"".join(
        b"2024-03-%02dT%02d:%02d:%02dZ,s%d,20.5,50,1000,n%d%s" % (1 + i // 86400, i // 3600 % 24, i // 60 % 60, i % 60, i // 86400, i, end)
        for i in range(first, first + count)
    )


def write(path: Path, parts: Iterator[bytes]) -> str:
    """Write ``parts`` one after the other; the sha256 of what was written."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for part in parts:
            digest.update(part)
            handle.write(part)
    return digest.hexdigest()


def peak_of_once(workspace: Workspace, **env: str) -> int:
    """Run ``etl_pipeline.py --once`` as the only child of a fresh interpreter; its peak RSS in bytes."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, str(REPO / "etl_pipeline.py"), "--once"],
        cwd=workspace.root,
        env={**workspace.env, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1]) * 1024


def loaded_once(db: Db, workspace: Workspace, name: str, sha256: str, rows_loaded: int, rows_rejected: int) -> None:
    """The file is in processed/, its ledger row and readings agree, nothing is left behind."""
    assert workspace.names(workspace.data) == [] and workspace.names(workspace.processed) == [name]
    assert db.rows("SELECT sha256, rows_loaded, rows_rejected, (SELECT count(*) FROM sensor_readings) FROM ingested_files") == [
        (sha256, rows_loaded, rows_rejected, rows_loaded)
    ]
    assert db.rows("SELECT name FROM file_claims") == []


@pytest.mark.slow
def test_a_200_mb_line_is_reported_with_its_length_and_the_other_rows_load(workspace: Workspace, db: Db) -> None:
    def parts() -> Iterator[bytes]:
        yield NOTE_HEADER + b"\n" + rows(0, 1000)
        for _ in range(200):
            yield b"x" * MIB
        yield b"\n" + rows(1000, 1000)

    sha256 = write(workspace.data / "long.csv", parts())
    peak = peak_of_once(workspace, MAX_INVALID_ROWS="1", **SETTINGS)
    print(f"200 MB line: peak RSS {peak / MIB:.0f} MiB, bound {BOUND / MIB:.0f} MiB")
    assert peak <= BOUND

    loaded_once(db, workspace, "long.csv", sha256, 2000, 1)
    report = json.loads((workspace.quarantine / "long.csv.rejects.json").read_text())
    (problem,) = report["errors"]
    assert (problem["line"], problem["rule"], problem["value"]) == (1002, "line_too_long", "x" * 200)
    assert problem["message"] == f"a line of {200 * MIB + 1:,} bytes: longer than MAX_LINE_BYTES ({4 * MIB:,}); skipped unread"
    assert db.value("SELECT max(line_no) FROM sensor_readings") == 2002
    assert (workspace.quarantine / "long.csv.rejects.csv").stat().st_size == len(NOTE_HEADER) + 1 + 200 * MIB + 1


@pytest.mark.slow
def test_a_100_mb_file_with_cr_line_ends_is_read_in_blocks(workspace: Workspace, db: Db) -> None:
    count = 100 * MIB // len(rows(10**6, 1, b"\r"))  # rows of the middle of the file: about 100 MiB in all

    def parts() -> Iterator[bytes]:
        yield NOTE_HEADER + b"\r"
        for first in range(0, count, 50_000):
            yield rows(first, min(50_000, count - first), b"\r")

    sha256 = write(workspace.data / "classic_mac.csv", parts())
    peak = peak_of_once(workspace, **SETTINGS)
    size = (workspace.processed / "classic_mac.csv").stat().st_size
    print(f"{size / MIB:.0f} MiB with CR line ends: peak RSS {peak / MIB:.0f} MiB, bound {BOUND / MIB:.0f} MiB")
    assert peak <= BOUND
    loaded_once(db, workspace, "classic_mac.csv", sha256, count, 0)
    assert db.rows("SELECT min(line_no), max(line_no) FROM sensor_readings") == [(2, count + 1)]
