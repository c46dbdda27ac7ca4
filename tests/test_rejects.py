"""MAX_INVALID_ROWS: valid rows load, rejected lines go to quarantine/<name>.rejects.csv as they were."""

from __future__ import annotations

import hashlib
import json

from tests.helpers.corpus import csv_text, row
from tests.helpers.inprocess import run_once
from tests.helpers.workspace import REPO, Db, Workspace

NOTE_HEADER = "timestamp,sensor_id,temperature,humidity,pressure,note"


def test_a_partial_load_keeps_valid_rows_and_sets_the_original_lines_aside(workspace: Workspace, db: Db) -> None:
    rows = [row(i, "s1") for i in range(10)]
    rows[3] = row(3, "s1", 99)  # line 5: out of range
    rows[6] = row(6, "s1", 20.5, 50, '"1 000\n"')  # lines 8-9: a value over two lines, not a number
    rows[8] = "2024-03-01T00:08:00Z,s1,20.5,50"  # line 11: a field short
    content = csv_text(*rows, end="\r\n").encode()
    workspace.write("partial.csv", content)

    log = run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="3")

    assert workspace.names(workspace.data) == []
    assert workspace.names(workspace.processed) == ["partial.csv"]
    assert workspace.names(workspace.quarantine) == ["partial.csv.rejects.csv", "partial.csv.rejects.json"]
    expected_lines = "timestamp,sensor_id,temperature,humidity,pressure\r\n" + "\r\n".join([rows[3], rows[6], rows[8]]) + "\r\n"
    assert (workspace.quarantine / "partial.csv.rejects.csv").read_bytes() == expected_lines.encode()
    report = json.loads((workspace.quarantine / "partial.csv.rejects.json").read_text())
    assert [(e["line"], e["column"], e["value"], e["rule"]) for e in report["errors"]] == [
        (5, "temperature", "99", "out_of_range"),
        (8, "pressure", "1 000\n", "not_a_number"),
        (11, "", rows[8], "column_count"),
    ]
    assert [e["message"] for e in report["errors"]][0::2] == ["outside -90..60 °C", "4 fields where the header has 5"]
    (file_id, sha256) = db.rows("SELECT file_id, sha256 FROM ingested_files")[0]
    assert {k: report[k] for k in ("file", "sha256", "file_id", "rows_total", "rows_loaded", "rows_rejected", "rejects_file")} == {
        "file": "partial.csv",
        "sha256": sha256,
        "file_id": file_id,
        "rows_total": 10,
        "rows_loaded": 7,
        "rows_rejected": 3,
        "rejects_file": "partial.csv.rejects.csv",
    }
    assert report["rule_counts"] == {"out_of_range": 1, "not_a_number": 1, "column_count": 1}

    assert db.rows("SELECT file_name, status, rows_loaded, rows_rejected, archive_path FROM ingested_files") == [
        ("partial.csv", "partial", 7, 3, str((workspace.processed / "partial.csv").resolve()))
    ]
    assert db.rows("SELECT line_no FROM sensor_readings ORDER BY line_no") == [(n,) for n in (2, 3, 4, 6, 7, 10, 12)]
    assert db.value("SELECT n FROM sensor_metrics WHERE metric = 'temperature_k'") == 7
    assert "file_loaded file=partial.csv" in log and "rows_rejected=3 rejects=partial.csv.rejects.csv" in log


def test_more_invalid_rows_than_allowed_quarantine_the_whole_file(workspace: Workspace, db: Db) -> None:
    workspace.write("over.csv", csv_text(*(row(i, "s1", 99 if i % 2 else 20) for i in range(8))))
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="3")
    assert workspace.names(workspace.quarantine) == ["over.csv", "over.csv.error.json"]
    report = json.loads((workspace.quarantine / "over.csv.error.json").read_text())
    assert report["reason"].startswith("4 of 8 rows invalid (out_of_range: 4); more than MAX_INVALID_ROWS=3 allows; first: over.csv:3")
    assert [e["line"] for e in report["errors"]] == [3, 5, 7, 9]
    assert db.value("SELECT count(*) FROM sensor_readings") == 0
    assert db.value("SELECT count(*) FROM ingested_files") == 0


def test_a_percentage_limit_is_judged_on_the_whole_file(workspace: Workspace, db: Db) -> None:
    workspace.write("quarter.csv", csv_text(*(row(i, "q", 99 if i == 0 else 20) for i in range(4))))  # 25 %
    workspace.write("more.csv", csv_text(*(row(i, "m", 99 if i < 3 else 20) for i in range(8))))  # 37.5 %
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="25%")
    assert workspace.names(workspace.processed) == ["quarter.csv"]
    assert workspace.names(workspace.quarantine) == [
        "more.csv",
        "more.csv.error.json",
        "quarter.csv.rejects.csv",
        "quarter.csv.rejects.json",
    ]
    assert db.rows("SELECT file_name, status, rows_loaded, rows_rejected FROM ingested_files") == [("quarter.csv", "partial", 3, 1)]
    reason = json.loads((workspace.quarantine / "more.csv.error.json").read_text())["reason"]
    assert "more than MAX_INVALID_ROWS=25% allows" in reason


def test_a_file_without_one_valid_row_is_quarantined_whatever_the_limit(workspace: Workspace, db: Db) -> None:
    workspace.write("none.csv", csv_text(row(0, "n", 99), row(1, "n", 98)))
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="100%")
    assert workspace.names(workspace.quarantine) == ["none.csv", "none.csv.error.json"]
    assert (
        "2 of 2 rows invalid (out_of_range: 2); no valid row to load"
        in json.loads((workspace.quarantine / "none.csv.error.json").read_text())["reason"]
    )
    assert db.value("SELECT count(*) FROM ingested_files") == 0


def test_rejects_across_read_blocks_keep_their_lines(workspace: Workspace, db: Db) -> None:
    rows = [row(i % 60, f"s{i // 60}", 20.5, 50, 1000, "n" * 20) for i in range(4000)]
    bad = [1, 999, 2500, 3999]
    for i in bad:
        rows[i] = rows[i].replace(",20.5,", ",hot,")
    workspace.write("blocks.csv", csv_text(*rows, header=NOTE_HEADER))
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="10", READ_BLOCK_BYTES="65536")
    lines = (workspace.quarantine / "blocks.csv.rejects.csv").read_text().splitlines()
    assert lines == [NOTE_HEADER, *(rows[i] for i in bad)]
    report = json.loads((workspace.quarantine / "blocks.csv.rejects.json").read_text())
    assert [(e["line"], e["value"], e["rule"]) for e in report["errors"]] == [(i + 2, "hot", "not_a_number") for i in bad]
    assert db.value("SELECT count(*) FROM sensor_readings") == 3996
    assert db.value("SELECT count(*) FROM sensor_readings WHERE line_no IN %s", (tuple(i + 2 for i in bad),)) == 0


def test_a_retry_rewrites_its_own_reject_files_and_never_another_files(workspace: Workspace, db: Db) -> None:
    content = csv_text(row(0, "r"), row(1, "r", 99)).encode()
    workspace.write("again.csv", content)
    # what an earlier attempt of the same content left before its commit failed
    (workspace.quarantine / "again.csv.rejects.csv").write_text("stale")
    sha = hashlib.sha256(content).hexdigest()
    (workspace.quarantine / "again.csv.rejects.json").write_text(json.dumps({"sha256": sha, "file_id": 999}))
    # another file of the same name, partially loaded before
    (workspace.quarantine / "other.csv.rejects.json").write_text(json.dumps({"sha256": "0" * 64}))
    (workspace.quarantine / "other.csv.rejects.csv").write_text("someone else's rejects\n")
    workspace.write("other.csv", csv_text(row(0, "o"), row(1, "o", 99)))

    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="1")

    assert workspace.names(workspace.quarantine) == [
        "again.csv.rejects.csv",
        "again.csv.rejects.json",
        "other.csv.rejects.csv",
        "other.csv.rejects.json",
        "other__2.csv.rejects.csv",
        "other__2.csv.rejects.json",
    ]
    assert (workspace.quarantine / "again.csv.rejects.csv").read_text() == csv_text(row(1, "r", 99))
    file_id = db.value("SELECT file_id FROM ingested_files WHERE file_name = 'again.csv'")
    assert json.loads((workspace.quarantine / "again.csv.rejects.json").read_text())["file_id"] == file_id
    assert (workspace.quarantine / "other.csv.rejects.csv").read_text() == "someone else's rejects\n"
    assert (workspace.quarantine / "other__2.csv.rejects.csv").read_text() == csv_text(row(1, "o", 99))


def test_a_duplicate_key_across_read_blocks_is_caught_by_the_database(workspace: Workspace, db: Db) -> None:
    """Known limit: duplicates are found per read block; across blocks the unique index refuses the COPY,
    and the whole file is quarantined with the database's message (rejects mode or not)."""
    rows = [row(i % 60, f"s{i // 60}", 20.5, 50, 1000, "n" * 20) for i in range(4000)]
    rows[3999] = rows[0]
    workspace.write("dup.csv", csv_text(*rows, header=NOTE_HEADER))
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="10", READ_BLOCK_BYTES="65536")
    assert workspace.names(workspace.quarantine) == ["dup.csv", "dup.csv.error.json"]
    report = json.loads((workspace.quarantine / "dup.csv.error.json").read_text())
    # the unique index of the month's partition (sensor_readings_sensor_time on sensor_readings)
    assert report["rule"] == "duplicate_key" and "sensor_readings_2024_03_sensor_id_observed_at_file_id_idx" in report["reason"]
    assert db.value("SELECT count(*) FROM ingested_files") == 0


ROOF = (
    "timestamp,sensor_id,temperature,humidity,pressure\n"
    "2024-03-01T00:00:00Z,roof-1,21.4,48.5,1012.3\n"
    "2024-03-01T00:10:00Z,roof-1,71.4,48.1,1012.1\n"
    '2024-03-01T00:20:00Z,roof-1,21.2,"48,0",1012.0\n'
    "2024-03-01T00:30:00Z,roof-1,21.1,47.9\n"
    "2024-03-01T00:40:00Z,roof-1,21.0,47.7,1011.8\n"
)


def _documented_block(after: str, language: str) -> str:
    text = (REPO / "docs" / "input.md").read_text(encoding="utf-8").split(after, 1)[1]
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_examples_are_what_the_daemon_writes(workspace: Workspace, db: Db) -> None:
    workspace.write("roof-1_2024-03-01.csv", ROOF)
    run_once(workspace.root, db.dsn)
    written = json.loads((workspace.quarantine / "roof-1_2024-03-01.csv.error.json").read_text())
    documented = json.loads(_documented_block("## The quarantine report", "json"))
    assert {**written, "quarantined_at": None} == {**documented, "quarantined_at": None}

    (workspace.quarantine / "roof-1_2024-03-01.csv").rename(workspace.data / "roof-1_2024-03-01.csv")
    (workspace.quarantine / "roof-1_2024-03-01.csv.error.json").unlink()
    run_once(workspace.root, db.dsn, MAX_INVALID_ROWS="3")
    rejects = json.loads((workspace.quarantine / "roof-1_2024-03-01.csv.rejects.json").read_text())
    documented = json.loads(_documented_block("## Rejects", "json"))
    assert {**rejects, "file_id": None} == {**documented, "file_id": None}
    assert (workspace.quarantine / "roof-1_2024-03-01.csv.rejects.csv").read_text() == _documented_block(
        "and `roof-1_2024-03-01.csv.rejects.csv`", ""
    )
