"""/healthz's verdict over the loops' heartbeats, and the metrics' listener that must never hurt the daemon."""

from __future__ import annotations

import io
import logging

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from sensor_etl.ops import logs
from sensor_etl.ops.metrics import stalled_loops


class Heartbeats:
    """What the multiprocess collector serves for the loops: one series per worker pid."""

    def __init__(self, turned: dict[str, float], busy: dict[str, float]) -> None:
        self.turned, self.busy = turned, busy

    def collect(self):
        turned = GaugeMetricFamily("sensor_etl_loop_turned_timestamp_seconds", "", labels=["pid"])
        busy = GaugeMetricFamily("sensor_etl_loop_busy", "", labels=["pid"])
        for pid, at in self.turned.items():
            turned.add_metric([pid], at)
        for pid, flag in self.busy.items():
            busy.add_metric([pid], flag)
        return [turned, busy]


def verdict(turned: dict[str, float], busy: dict[str, float], now: float = 1000.0, window: float = 60.0) -> dict[str, str]:
    registry = CollectorRegistry()
    registry.register(Heartbeats(turned, busy))
    return stalled_loops(registry, now, window)


def test_a_loop_is_stalled_only_when_it_is_quiet_for_longer_than_the_window_outside_a_file() -> None:
    assert verdict({}, {}) == {}, "before any loop turned: alive"
    assert verdict({"11": 990.0, "12": 941.0}, {"11": 0, "12": 0}) == {}
    assert verdict({"11": 990.0, "12": 900.0}, {"11": 0, "12": 0}) == {"loop 12": "no scan or file for 100s (more than 60s)"}
    assert verdict({"11": 990.0, "12": 100.0}, {"11": 0, "12": 1}) == {}, "a long load is not a stall"


def test_a_failing_listener_is_logged_and_changes_nothing_else() -> None:
    seen: list[str] = []

    def broken(name: str, fields: object) -> None:
        raise OSError("disk full")

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.TextFormatter())
    previous = logs.LOGGER.handlers[:]
    logs.LOGGER.handlers[:] = [handler]
    logs.LOGGER.setLevel("INFO")

    def working(name: str, fields: object) -> None:
        seen.append(name)

    logs.listen(broken)
    logs.listen(working)
    try:
        logs.info("file_loaded", file="a.csv", rows=3)
    finally:
        logs.unlisten(broken)
        logs.unlisten(working)
        logs.LOGGER.handlers[:] = previous
    lines = buffer.getvalue().splitlines()
    assert seen == ["file_loaded"]
    assert lines[0].endswith(" WARNING listener_failed event=file_loaded error=\"OSError('disk full')\"")
    assert lines[1].endswith(" INFO    file_loaded file=a.csv rows=3")
