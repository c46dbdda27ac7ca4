"""The benchmark's smoke run end to end: it must run, load everything and write a complete report.

No timing is asserted: CI machines are shared and their speed says nothing about a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.workspace import REPO

pytestmark = pytest.mark.slow  # fault injection and end-to-end runs: left out of `make test-fast`


def test_smoke_benchmark_writes_a_complete_report(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(output.read_text())
    assert set(report["shapes"]) == {"a", "b", "c", "c1", "d", "e"}
    for entry in report["shapes"].values():
        assert entry["reference"] is not None
        assert entry["ours"] is not None, entry["ours_status"]
    assert report["latency"]["median_seconds"] is not None, report["latency"]["status"]
    assert report["machine"]["cores"] >= 1
