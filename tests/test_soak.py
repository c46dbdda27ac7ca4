"""The soak script, briefly (opt-in: ``python -m pytest -m soak``; CI skips it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.workspace import REPO


@pytest.mark.soak
def test_a_short_soak_reconciles(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.soak", "--minutes", "0.5", "--workdir", str(tmp_path / "soak"), "--seed", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.endswith(" OK"), summary + "\n" + result.stderr[-3000:]
    assert result.returncode == 0
