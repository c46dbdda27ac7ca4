"""Properties: whatever bytes arrive, processing ends in "loaded" or "quarantined" with a documented rule;
a valid file's rows come back exactly (values, kelvin, UTC, extras, physical line numbers)."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor_etl.config import RejectLimit, Rules
from sensor_etl.edges import files
from sensor_etl.errors import InvalidFile
from sensor_etl.runners import pipeline
from tests.helpers.inprocess import Received, run_once
from tests.helpers.workspace import REPO, Db, Workspace

NOW = datetime(2026, 11, 27, tzinfo=UTC)
RULES_DOC = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")  # the rule table, one row per rule
DOCUMENTED_RULES = set(re.findall(r"^\| `(\w+)` \|", RULES_DOC, re.MULTILINE))
TOKENS = [
    b",",
    b";",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b'"',
    b'""',
    b" ",
    b"timestamp,sensor_id,temperature,humidity,pressure\n",
    b"Date Time,T (degC),rh (%)\n",
    b"2024-03-01T00:00:00Z",
    b"01.02.2024 00:10:00",
    b"20.5",
    b"-1e309",
    b"nan",
    b"1,013.25",
    b"s1",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"\x1f\x8b",
]
csv_like = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=80).map(b"".join)
limits = st.sampled_from([RejectLimit(), RejectLimit(count=2), RejectLimit(percent=50.0)])


def test_the_docs_document_the_rules() -> None:
    assert {"encoding", "header", "column_count", "line_break", "field_too_long", "out_of_range", "duplicate_key"} <= DOCUMENTED_RULES


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="sensor-etl-property-"))


SCRATCH = _scratch()


@settings(max_examples=400, deadline=None)
@given(content=csv_like, limit=limits)
def test_any_bytes_end_loaded_or_quarantined_with_a_documented_rule(content: bytes, limit: RejectLimit) -> None:
    path = SCRATCH / "input.csv"
    path.write_bytes(content)
    fingerprint = files.fingerprint(path, "utf-8")
    if fingerprint.problem is not None:
        assert fingerprint.problem.rule == "encoding"
        return
    received = Received()
    try:
        outcome = pipeline.run(path, Rules(max_invalid_rows=limit), NOW, block_bytes=1 << 16, sink=received)
    except InvalidFile as exc:
        assert exc.problem.rule in DOCUMENTED_RULES
        assert exc.problem.line is None or exc.problem.line >= 1
        return
    lines = [n for t in received.readings for n in t.column("line_no").to_pylist()]
    assert outcome.loaded == len(lines) == outcome.rows - outcome.invalid_rows > 0
    assert lines == sorted(set(lines)) and lines[0] >= 2
    assert not set(lines) & outcome.rejected_lines()
    assert limit.allows(outcome.invalid_rows, outcome.rows)


# -- valid files --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    at: datetime
    sensor: str
    temperature: str
    humidity: str
    pressure: str
    note: str | None


@dataclass(frozen=True)
class ValidFile:
    shape: str  # multi | station
    end: str
    readings: tuple[Reading, ...]
    blank_before: tuple[bool, ...]

    def header(self) -> str:
        if self.shape == "station":
            return '"Date Time","T (degC)","rh (%)","p (mbar)","note"'
        return "timestamp,sensor_id,temperature,humidity,pressure,note"

    def render(self) -> tuple[bytes, list[int]]:
        """The file's bytes and the physical line of each reading."""
        lines, numbers = [self.header()], []
        for reading, blank in zip(self.readings, self.blank_before, strict=True):
            if blank:
                lines.append("")
            numbers.append(len(lines) + 1)
            note = "" if reading.note is None else '"' + reading.note.replace('"', '""') + '"'
            if self.shape == "station":
                fields = [f"{reading.at:%d.%m.%Y %H:%M:%S}", reading.temperature, reading.humidity, reading.pressure, note]
            else:
                fields = [f"{reading.at:%Y-%m-%dT%H:%M:%SZ}", reading.sensor, reading.temperature, reading.humidity, reading.pressure, note]
            lines.append(",".join(fields))
        return (self.end.join(lines) + self.end).encode(), numbers

    def expected(self) -> list[tuple]:
        _, numbers = self.render()
        return [
            (
                line,
                r.at,
                "default" if self.shape == "station" else r.sensor.strip(),
                float(Decimal(r.temperature) + Decimal("273.15")),  # the exact sum: converted values carry no binary noise
                float(r.humidity),
                float(r.pressure),
                {"note": r.note},
            )
            for line, r in zip(numbers, self.readings, strict=True)
        ]


def _decimal(low: int, high: int, places: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda v: f"{v / 10**places:.{places}f}")


@st.composite
def valid_files(draw: st.DrawFn, max_rows: int = 300) -> ValidFile:
    shape = draw(st.sampled_from(["multi", "station"]))
    minutes = draw(st.lists(st.integers(0, 5_000_000), min_size=1, max_size=max_rows, unique=True))
    start = datetime(2015, 1, 1, tzinfo=UTC)
    note = st.one_of(st.none(), st.text(alphabet="abcxyz ,;'\"é", min_size=1, max_size=12).filter(str.strip))
    readings = tuple(
        Reading(
            at=start + timedelta(minutes=m),
            sensor=draw(st.sampled_from(["a", "b", " s-1 ", "Zürich", "x y"])),
            temperature=draw(_decimal(-9000, 6000, 2)),
            humidity=draw(_decimal(0, 1000, 1)),
            pressure=draw(_decimal(3000, 11000, 1)),
            note=draw(note),
        )
        for m in minutes
    )
    blank = tuple(draw(st.lists(st.booleans(), min_size=len(readings), max_size=len(readings))))
    return ValidFile(shape, draw(st.sampled_from(["\n", "\r\n"])), readings, blank)


def _as_rows(tables: list[pa.Table]) -> list[tuple]:
    rows = []
    for table in tables:
        for r in table.to_pylist():
            extra = json.loads(r["extra"])
            rows.append((r["line_no"], r["observed_at"], r["sensor_id"], r["temperature_k"], r["humidity_pct"], r["pressure_hpa"], extra))
    return rows


@settings(max_examples=60, deadline=None)
@given(valid=valid_files())
def test_a_valid_file_round_trips_through_the_pipeline(valid: ValidFile) -> None:
    content, _ = valid.render()
    path = SCRATCH / "valid.csv"
    path.write_bytes(content)
    received = Received()
    outcome = pipeline.run(path, Rules(), NOW, block_bytes=1 << 16, sink=received)
    assert (outcome.invalid_rows, outcome.loaded) == (0, len(valid.readings))
    assert _as_rows(received.readings) == valid.expected()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid=valid_files(max_rows=80), garbage=st.lists(csv_like, min_size=1, max_size=6))
def test_end_to_end_valid_rows_land_exactly_and_garbage_is_quarantined(
    workspace: Workspace, db: Db, valid: ValidFile, garbage: list[bytes]
) -> None:
    db.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    root = Path(tempfile.mkdtemp(dir=workspace.root))
    for name in ("data", "processed", "quarantine"):
        (root / name).mkdir()
    (root / "data" / "valid.csv").write_bytes(valid.render()[0])
    names = [f"random-{i}.csv" for i in range(len(garbage))]
    for name, content in zip(names, garbage, strict=True):
        (root / "data" / name).write_bytes(content)

    log = run_once(root, db.dsn)

    assert sorted(p.name for p in (root / "data").iterdir()) == []
    rows = db.rows(
        "SELECT line_no, observed_at, sensor_id, temperature_k, humidity_pct, pressure_hpa, extra FROM sensor_readings"
        " JOIN ingested_files USING (file_id) WHERE file_name = 'valid.csv' ORDER BY line_no"
    )
    assert rows == valid.expected()
    loaded = {name for (name,) in db.rows("SELECT file_name FROM ingested_files")}
    quarantined = {p.name for p in (root / "quarantine").iterdir()}
    processed = {p.name for p in (root / "processed").iterdir()}
    for name in names:
        if name in quarantined:
            assert f"{name}.error.json" in quarantined and name not in loaded
            assert json.loads((root / "quarantine" / f"{name}.error.json").read_text())["rule"] in DOCUMENTED_RULES
        else:
            assert name in processed, log  # loaded, or a duplicate of content loaded just before
    assert "internal_error" not in log
