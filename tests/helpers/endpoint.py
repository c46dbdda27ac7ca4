"""The daemon's metrics endpoint over real HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from tests.helpers.workspace import DaemonProcess


def get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of GET http://127.0.0.1:port/path; a 503 is an answer, not an error."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def port_of(daemon: DaemonProcess) -> int:
    line = daemon.wait_for("metrics_listening")[0]
    return int(re.search(r" port=(\d+)", line).group(1))
