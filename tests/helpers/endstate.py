"""The exactly-once promise as one assertion over the database and the three places files go.

The places are read through the workspace — folders (``workspace.Workspace``) or prefixes in an object
store (``workspace.ObjectWorkspace``) — so the same assertion holds both kinds of inbox to the promise."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

REPORT_SUFFIXES = (".error.json", ".rejects.csv")
PLACES = ("processed", "quarantine", "data")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def data_rows(content: bytes) -> int:
    """Rows of a well-formed sample file: its lines after the header."""
    return len(content.splitlines()) - 1


def is_input(name: str) -> bool:
    """A file a test dropped (or its moved copy), by its path in a place: not a report, nothing hidden on the way."""
    return not name.endswith(REPORT_SUFFIXES) and not any(part.startswith(".") for part in PurePosixPath(name).parts)


def inbox_files(folder: Path) -> list[Path]:
    """Input files in a folder and its subfolders: regular files, without quarantine reports or hidden names."""
    return [p for p in folder.rglob("*") if p.is_file() and is_input(p.relative_to(folder).as_posix())]


def assert_exactly_once(
    ws: object,
    db: object,
    inputs: Iterable[bytes],
    *,
    quarantined: Iterable[bytes] = (),
    waiting: Iterable[bytes] = (),
    clean_stop: bool = True,
    rows: Callable[[bytes], int] = data_rows,
) -> None:
    """``inputs``: the content of every file dropped into the inbox (repeats allowed).

    Each content neither quarantined nor waiting has exactly one ``ingested_files`` row whose
    ``rows_loaded`` equals its readings and, with the readings another file holds (``rows_skipped``),
    its data rows; nothing else is in the database, and no sensor has two readings at one time. Each
    dropped file lies in exactly one of processed, quarantine (with its report) or the inbox
    (waiting), in any subfolder. With ``clean_stop``, each ledger row's ``archive_path`` is where its
    file now is, and no claim is left behind. ``rows`` counts a content's data rows (default: its
    lines after the header)."""
    inputs = list(inputs)
    quarantined_shas = {sha(c) for c in quarantined}
    waiting_shas = {sha(c) for c in waiting}
    loaded = {sha(c): rows(c) for c in inputs if sha(c) not in quarantined_shas | waiting_shas}

    ledger = db.rows(
        "SELECT sha256, rows_loaded, rows_skipped, (SELECT count(*) FROM sensor_readings r WHERE r.file_id = f.file_id), archive_path"
        " FROM ingested_files f"
    )
    assert {key: rows_loaded + skipped for key, rows_loaded, skipped, _, _ in ledger} == loaded
    assert [(key, rows_loaded) for key, rows_loaded, _, readings, _ in ledger if readings != rows_loaded] == []
    assert len(ledger) == len(loaded)
    assert db.value("SELECT count(*) FROM sensor_readings") == sum(row[1] for row in ledger)
    assert db.rows("SELECT sensor_id, observed_at FROM sensor_readings GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 5") == []

    contents = {place: ws.contents(place) for place in PLACES}
    placed = {place: Counter(sha(content) for content in found.values()) for place, found in contents.items()}
    assert sum(placed.values(), Counter()) == Counter(sha(c) for c in inputs), "every dropped file is in exactly one place"
    assert set(placed["processed"]) == set(loaded)
    assert set(placed["quarantine"]) == quarantined_shas
    assert set(placed["data"]) == waiting_shas
    for name in contents["quarantine"]:
        assert ws.exists("quarantine", f"{name}.error.json"), f"{name} is quarantined without a report"
    if clean_stop:
        for key, _, _, _, archive_path in ledger:
            assert sha(ws.archived(archive_path)) == key, f"{archive_path} is not {key}"
        assert db.rows("SELECT name, owner FROM file_claims") == []
