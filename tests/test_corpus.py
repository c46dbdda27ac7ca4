"""The hostile-input corpus (``tests/helpers/corpus.py``): one daemon pass over every case in one inbox, then
each case's outcome, the schema, and what reached the database, checked exactly; the cases that need
settings of their own each get an inbox and a pass of their own."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensor_etl.edges import files
from sensor_etl.runners.daemon import Result
from tests.helpers.corpus import CASES, HOSTILE_HEADERS, ODD_NAME, SETTINGS_CASES, SQL_NOTE, SQL_SENSOR, Case, csv_text, row
from tests.helpers.inprocess import run_once, start_daemon
from tests.helpers.workspace import Db, Server, Workspace

# Month partitions of sensor_readings come and go with the data: the schema is everything else.
SCHEMA_QUERY = """
WITH parts AS (SELECT inhrelid::regclass::text AS name FROM pg_inherits)
SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, coalesce(c.column_default, '')
FROM information_schema.columns AS c WHERE c.table_schema = 'public' AND c.table_name NOT IN (SELECT name FROM parts)
UNION ALL SELECT 'index', indexname, indexdef, '', '' FROM pg_indexes
WHERE schemaname = 'public' AND tablename NOT IN (SELECT name FROM parts) AND indexname NOT IN (SELECT name FROM parts)
ORDER BY 1, 2"""


@dataclass
class Results:
    """What a daemon pass left: the folders, the ledger, the readings by file, the reports, the log."""

    root: Path
    ledger: dict[str, tuple]
    readings: dict[str, list[tuple]]
    reports: dict[str, dict]
    report_texts: dict[str, str]
    log: str
    preambles: dict[str, str | None]

    def folder(self, name: str) -> list[str]:
        return sorted(p.name for p in (self.root / name).iterdir())


def gather(root: Path, db: Db, log: str) -> dict:
    """The fields of ``Results`` after a pass over ``root``."""
    readings: dict[str, list[tuple]] = {}
    for name, *values in db.rows(
        "SELECT f.file_name, r.line_no, r.observed_at, r.sensor_id, r.temperature_k, r.humidity_pct, r.pressure_hpa, r.extra"
        " FROM sensor_readings r JOIN ingested_files f USING (file_id) ORDER BY f.file_name, r.line_no"
    ):
        readings.setdefault(name, []).append(tuple(values))
    texts = {p.name: p.read_text(encoding="utf-8") for p in (root / "quarantine").glob("*.error.json")}
    return {
        "root": root,
        "ledger": {
            name: tuple(rest) for name, *rest in db.rows("SELECT file_name, status, rows_loaded, rows_rejected FROM ingested_files")
        },
        "readings": readings,
        "reports": {json.loads(text)["file"]: json.loads(text) for text in texts.values()},
        "report_texts": {json.loads(text)["file"]: text for text in texts.values()},
        "log": log,
        "preambles": dict(db.rows("SELECT file_name, preamble FROM ingested_files")),
    }


@dataclass
class CorpusRun(Results):
    outside: Path
    vanished: Result
    settled: bool
    settled_again: bool
    seconds: float
    schema_before: list[tuple]
    schema_after: list[tuple]
    partitions: list[str]


@pytest.fixture(scope="module")
def corpus(server: Server, tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    if server.embedded is not None and not server.embedded.is_running():
        server.start()
    db = Db(server.dsn)
    db.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    root = tmp_path_factory.mktemp("corpus")
    outside = root / "outside"
    for name in ("data", "processed", "quarantine", "outside"):
        (root / name).mkdir()
    base = time.time_ns() - 10**12
    for index, case in enumerate(CASES):
        path = root / "data" / case.name
        if case.outcome == "skipped":
            (outside / case.name).write_bytes(case.content)
            path.symlink_to(outside / case.name)
            continue
        path.write_bytes(case.content)
        os.utime(path, ns=(base + index * 10**9, base + index * 10**9))

    # pinned: with a block smaller than half the 10 MB field, that case would be a `structure` error instead
    daemon, log = start_daemon(root, server.dsn, READ_BLOCK_BYTES=str(16 << 20))
    schema_before = db.rows(SCHEMA_QUERY)
    started = time.perf_counter()
    (gone,) = [c for c in files.scan(root / "data")[0] if c.name == "vanished.csv"]
    gone.path.unlink()  # scanned, then deleted before it is read
    vanished = daemon.handle(gone)
    settled = daemon.scan_once().settled
    seconds = time.perf_counter() - started
    settled_again = daemon.scan_once().settled
    daemon.db.close()

    return CorpusRun(
        **gather(root, db, log.getvalue()),
        outside=outside,
        vanished=vanished,
        settled=settled,
        settled_again=settled_again,
        seconds=seconds,
        schema_before=schema_before,
        schema_after=db.rows(SCHEMA_QUERY),
        partitions=[name for (name,) in db.rows("SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r' ORDER BY 1")],
    )


@pytest.mark.parametrize("case", SETTINGS_CASES, ids=[c.name for c in SETTINGS_CASES])
def test_case_under_its_own_settings(workspace: Workspace, db: Db, case: Case) -> None:
    workspace.write(case.name, case.content)
    if case.outcome == "refused":
        done = workspace.cli("--once", **case.env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"sensor-etl: configuration error: {case.setting}="), done.stderr
        assert len(done.stderr.splitlines()) == 1 and workspace.names(workspace.data) == [case.name]
        return
    log = run_once(workspace.root, db.dsn, **case.env)
    check(Results(**gather(workspace.root, db, log)), case)
    assert "internal_error" not in log and "Traceback" not in log


def test_the_corpus_covers_enough_distinct_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES + SETTINGS_CASES}) == len(CASES) + len(SETTINGS_CASES)
    assert all(not c.env for c in CASES) and all(c.env for c in SETTINGS_CASES)
    contents = [c.content for c in CASES if c.outcome != "duplicate"]
    assert len(set(contents)) == len(contents), "a case would be a ledger duplicate of another"
    assert all(c.why or c.outcome == "quarantined" for c in CASES)


def check(corpus: Results, case: Case) -> None:
    """``case`` ended as it must: loaded with its rows, or quarantined with its first problem."""
    name = case.name
    in_data, in_processed, in_quarantine = (name in corpus.folder(f) for f in ("data", "processed", "quarantine"))
    if case.outcome == "loaded":
        assert (in_data, in_processed, in_quarantine) == (False, True, False)
        assert corpus.ledger[name] == ("loaded", case.rows, 0)
        assert len(corpus.readings[name]) == case.rows
        assert f"{name}.error.json" not in corpus.folder("quarantine")
    elif case.outcome == "quarantined":
        assert (in_data, in_processed, in_quarantine) == (False, False, True)
        assert name not in corpus.ledger and name not in corpus.readings
        report = corpus.reports[name]
        first = report["errors"][0]
        assert (report["rule"], first["rule"]) == (case.rule, case.rule), report["reason"]
        for key in ("line", "column", "value"):
            if getattr(case, key) is not None:
                assert first[key] == getattr(case, key), (key, report["reason"])
        if case.message is not None:
            assert case.message in first["message"] or case.message in report["reason"], report["reason"]
        if case.problems is not None:
            assert [(e["line"], e["rule"]) for e in report["errors"]] == list(case.problems)
        assert report["file"] == name and report["quarantined_as"] == name
        assert report["reason"].endswith(f"[{case.rule}]")
        assert "Traceback" not in corpus.report_texts[name]
    else:
        raise AssertionError(f"{case.outcome} is not checked here")


@pytest.mark.parametrize("case", CASES, ids=[c.name.replace("\n", "\\n") for c in CASES])
def test_case(corpus: CorpusRun, case: Case) -> None:
    name = case.name
    in_data, in_processed, in_quarantine = (name in corpus.folder(f) for f in ("data", "processed", "quarantine"))
    if case.outcome in ("loaded", "quarantined"):
        check(corpus, case)
    elif case.outcome == "duplicate":
        assert (in_data, in_processed, in_quarantine) == (False, True, False)
        assert name not in corpus.ledger
        assert f"file_duplicate file={name} loaded_as=duplicate_content_first.csv" in corpus.log
    elif case.outcome == "skipped":
        link = corpus.root / "data" / name
        assert link.is_symlink() and not in_processed and not in_quarantine
        assert (corpus.outside / name).read_bytes() == case.content
        assert name not in corpus.ledger
        assert corpus.log.count(f"file_skipped file={name} reason=") == 1
        assert "links are not followed" in corpus.log
    else:
        assert case.outcome == "vanished"
        assert not (in_data or in_processed or in_quarantine) and name not in corpus.ledger
        assert corpus.vanished is Result.GONE
        assert f"file={name}" not in corpus.log  # gone before it was claimed: nothing to do, nothing to say


def test_the_daemon_kept_running_and_the_inbox_settled(corpus: CorpusRun) -> None:
    assert corpus.settled and corpus.settled_again
    assert corpus.folder("data") == ["symlink_outside.csv"]
    assert "internal_error" not in corpus.log and "Traceback" not in corpus.log
    print(f"corpus of {len(CASES)} cases processed in {corpus.seconds:.1f} s")


def test_the_schema_is_unchanged_by_hostile_names_and_values(corpus: CorpusRun) -> None:
    assert corpus.schema_after == corpus.schema_before
    tables = {t for t, *_ in corpus.schema_after}
    assert {"ingested_files", "sensor_readings", "sensor_metrics"} <= tables
    months = {f"sensor_readings_{at:%Y_%m}" for rows in corpus.readings.values() for _, at, *_ in rows}
    assert set(corpus.partitions) == months  # one partition per month that received rows, none for the rest


def test_sql_looking_text_is_stored_and_reported_verbatim(corpus: CorpusRun) -> None:
    ((_, _, _, temperature, humidity, pressure, extra),) = corpus.readings["header_hostile_names.csv"]
    assert extra == dict(zip(HOSTILE_HEADERS, range(1, 7), strict=True))
    assert (temperature, humidity, pressure) == (293.65, None, None)
    ((_, _, sensor, *_, extra),) = corpus.readings["values_sql.csv"]
    assert (sensor, extra) == (SQL_SENSOR, {"note": SQL_NOTE})
    assert corpus.reports["sql_in_measure.csv"]["errors"][0]["value"] == "1; DROP TABLE sensor_readings"
    ((*_, extra),) = corpus.readings["formula_values.csv"]
    assert extra == {"note": "=cmd|' /C calc'!A0"}


def test_line_ends_and_bom_do_not_leak_into_values(corpus: CorpusRun) -> None:
    for name, sensor in (("crlf.csv", "crlf"), ("cr_only.csv", "cr"), ("utf8_bom.csv", "bom")):
        rows = corpus.readings[name]
        assert [r[0] for r in rows] == list(range(2, 2 + len(rows))), name
        assert {r[2] for r in rows} == {sensor}
        assert [r[1] for r in rows] == [datetime(2024, 3, 1, 0, i, tzinfo=UTC) for i in range(len(rows))]


def test_values_that_load_are_the_values_in_the_file(corpus: CorpusRun) -> None:
    edge = corpus.readings["bounds_exact_other_units.csv"]
    assert [(r[3], r[4], r[5]) for r in edge] == [(183.15, 0.0, 300.0), (333.15, 100.0, 1100.0)]
    fahrenheit = corpus.readings["bounds_exact_fahrenheit.csv"]
    assert [round(r[3], 9) for r in fahrenheit] == [183.15, 333.15]
    ((line, at, sensor, temperature, *_),) = corpus.readings["whitespace_around_values.csv"]
    assert (line, at, sensor, temperature) == (2, datetime(2024, 3, 1, tzinfo=UTC), "ws", 293.65)
    assert [r[1].date().isoformat() for r in corpus.readings["date_day_first.csv"]] == ["2024-02-01", "2024-02-13"]
    assert corpus.readings["date_at_1900.csv"][0][1] == datetime(1900, 1, 1, tzinfo=UTC)
    wide = corpus.readings["columns_2000.csv"]
    assert len(wide[2][-1]) == 1995 and wide[2][-1]["x1994"] == "v2-1994"
    assert corpus.ledger[ODD_NAME] == ("loaded", 2, 0) and ODD_NAME in corpus.folder("processed")


def test_preambles_and_values_over_lines_are_stored_as_in_the_file(corpus: CorpusRun) -> None:
    assert corpus.preambles["preamble_two_lines.csv"] == "Station: roof, Lat 52.5\nExported 2024-03-02"
    assert [(r[0], r[2]) for r in corpus.readings["preamble_two_lines.csv"]] == [(4, "pre"), (5, "pre")]
    assert corpus.preambles["toa5_minimal.csv"] == '"TOA5","CR1000","CR1000","7","CR1000.Std.32","CPU:x.CR1","1","Table1"'
    assert corpus.readings["toa5_minimal.csv"] == [(5, datetime(2024, 3, 1, tzinfo=UTC), "default", 293.65, 50.0, 1000.0, {"RECORD": 0})]
    assert corpus.preambles["crlf.csv"] is None
    lines = [(r[0], r[-1]["note"]) for r in corpus.readings["quoted_line_break.csv"]]
    assert lines == [(2, "two\nlines"), (4, "ok"), (5, "ok")]
    assert corpus.readings["line_100k.csv"][1][-1] == {"note": "y" * 100_000}
    stray = [(r[0], r[-1]["note"]) for r in corpus.readings["stray_quotes_and_a_value_over_lines.csv"]]
    assert stray == [(2, 'a 5" pipe'), (3, "x\ny"), (5, 'c 7" pipe')]


def test_a_10_mb_value_is_cut_in_the_report(corpus: CorpusRun) -> None:
    assert len(corpus.report_texts["field_10mb.csv"]) < 5000


# -- the same files under other settings ---------------------------------------------------------
def test_latin1_and_utf16_files_load_when_encoding_says_so(workspace: Workspace) -> None:
    cases = {c.name: c for c in CASES}
    for encoding, name, sensors in (("latin-1", "latin1.csv", {"ok", "Zürich"}), ("utf-16", "utf16_bom.csv", {"u16"})):
        workspace.write(name, cases[name].content)
        run_once(workspace.root, workspace.env["DATABASE_URL"], ENCODING=encoding)
        assert workspace.names(workspace.processed) == [name]
        rows = Db(workspace.env["DATABASE_URL"]).rows(
            "SELECT sensor_id, line_no FROM sensor_readings JOIN ingested_files USING (file_id) WHERE file_name = %s", (name,)
        )
        assert {s for s, _ in rows} == sensors and sorted(n for _, n in rows) == [2, 3]
        (workspace.processed / name).unlink()


def test_a_row_longer_than_the_read_block_is_read_whole_and_judged(workspace: Workspace) -> None:
    """Blocks grow to hold a long line, so such a row gets its real rule and line, not a parse error."""
    rows = [row(i, "blk", 20.5, 50, 1000, "n") for i in range(50)] + [row(50, "blk", 20.5, 50, 1000, "z" * 300_000)]
    workspace.write("long_row.csv", csv_text(*rows, header="timestamp,sensor_id,temperature,humidity,pressure,note"))
    run_once(workspace.root, workspace.env["DATABASE_URL"], READ_BLOCK_BYTES="65536", MAX_FIELD_BYTES="100000")
    report = json.loads((workspace.quarantine / "long_row.csv.error.json").read_text())
    assert report["rule"] == "field_too_long"
    assert report["errors"][0]["line"] == 52
    assert report["rows_total"] == 51 and report["rows_invalid"] == 1


def test_line_numbers_stay_exact_across_read_blocks(workspace: Workspace) -> None:
    """Rows spanning lines and skipped blank lines in many 64 KiB blocks: every line number is the file's."""
    lines, expected = ["timestamp,sensor_id,temperature,humidity,pressure,note"], []
    for i in range(6000):
        if i % 97 == 0:
            lines.append("")  # a blank line: skipped, but it is a line
        expected.append(len(lines) + 1)
        lines.append(row(i % 60, f"s{i // 60}", 20.5, 50, 1000, f"n{i}"))
    workspace.write("blocks.csv", "\n".join(lines) + "\n")
    run_once(workspace.root, workspace.env["DATABASE_URL"], READ_BLOCK_BYTES="65536")
    got = Db(workspace.env["DATABASE_URL"]).rows("SELECT line_no, extra->>'note' FROM sensor_readings ORDER BY line_no")
    assert got == [(line, f"n{i}") for i, line in enumerate(expected)]
