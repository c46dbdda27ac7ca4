"""Issue 11's views of the daemon meet issue 9's inbox: subfolders, archives inside the inbox, overlaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import values

from sensor_etl.config import Settings
from sensor_etl.edges import state
from sensor_etl.ops import metrics


def test_status_counts_the_backlog_in_subfolders_but_not_the_archives_inside_the_inbox(tmp_path: Path) -> None:
    inbox = tmp_path / "data"
    settings = Settings(data_folder=inbox, processed_folder=inbox / "processed", quarantine_folder=inbox / "quarantine")
    for name in ("top.csv", "station_a/one.csv", "station_a/deep/two.csv", "processed/done.csv", "quarantine/station_a/bad.csv"):
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_text("timestamp,sensor_id,temperature\n")
    (inbox / "quarantine/station_a/bad.csv.error.json").write_text(json.dumps({"rule": "out_of_range", "reason": "too hot"}))

    found = state.report(settings, None, "none here", last=10)

    assert (found.inbox.files, found.inbox.bytes) == (3, 3 * 32)
    assert [(q.file, q.rule, q.reason) for q in found.recent_quarantines] == [("station_a/bad.csv", "out_of_range", "too hot")]
    assert state.usage(settings.quarantine_folder).files == 1


def test_overlapping_readings_are_counted_from_file_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # use_folder sets it; restored afterwards
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    metrics.use_folder(str(tmp_path))
    record = metrics.Recorder(str(tmp_path), heartbeat=None)
    # the two file_loaded events of tests/test_overlaps.py: under skip, then under replace
    record("file_loaded", {"rows": 2, "rows_rejected": 0, "rows_skipped": 3, "rows_conflicting": 1, "rows_replaced": 0})
    record("file_loaded", {"rows": 5, "rows_rejected": 0, "rows_skipped": 0, "rows_conflicting": 1, "rows_replaced": 3})

    found = {
        (s.name, s.labels.get("outcome")): s.value
        for family in metrics.registry_of(str(tmp_path)).collect()
        for s in family.samples
        if s.name in ("sensor_etl_rows_overlapping_total", "sensor_etl_rows_loaded_total")
    }
    assert found == {
        ("sensor_etl_rows_overlapping_total", "skipped"): 3,
        ("sensor_etl_rows_overlapping_total", "replaced"): 3,
        ("sensor_etl_rows_overlapping_total", "conflicting"): 2,
        ("sensor_etl_rows_loaded_total", None): 7,
    }
