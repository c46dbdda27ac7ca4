"""The package installs as a package: the schema ships inside it, and the console script works anywhere."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sensor_etl.edges.db import schema_sql
from tests.helpers.workspace import REPO


def test_the_schema_shipped_in_the_package_is_script_sql() -> None:
    """script.sql is the file a person runs by hand; the daemon applies the packaged copy: one text."""
    assert schema_sql() == (REPO / "script.sql").read_text(encoding="utf-8")


def test_the_console_script_answers_from_another_folder(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "sensor-etl"
    result = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout and "requeue" in result.stdout


@pytest.mark.slow
def test_the_wheel_holds_the_code_the_schema_and_the_entry_point(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sensor_etl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sensor_etl/edges/schema.sql" in names and "sensor_etl/runners/daemon.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "data/", "scripts/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sensor-etl = sensor_etl.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
