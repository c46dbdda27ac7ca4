"""Prometheus metrics, counted from the daemon's events and kept by every process in one folder.

prometheus-client's multiprocess mode: each process (the daemon, or the supervisor and each of its
workers) writes its values to memory-mapped files in one private folder, and whoever serves or sums
them reads the whole folder, so ``WORKERS=N`` has one endpoint and one run summary. The counters are
fed by ``Recorder``, a listener of the log events (``logs.listen``): a metric counts exactly what
the log says. What is a state rather than an event (the backlog, the claims, the quarantine folder)
is measured when scraped, by ``StateCollector``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

PREFIX = "sensor_etl"
OUTCOMES = ("loaded", "partial", "duplicate", "recovered", "quarantined", "deferred")
# Load durations span a 1-row file (milliseconds) to a 10 GB one (tens of minutes).
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
OVERLAP_OUTCOMES = ("skipped", "replaced", "conflicting")  # the file_loaded fields rows_<outcome>
TRANSIENT_CLASSES = ("08", "40", "53", "57", "none")  # what the daemon retries (docs/operations.md "How a file travels")
_SIMPLE_OUTCOMES = {"file_duplicate": "duplicate", "file_recovered": "recovered", "file_deferred": "deferred"}
_DECIDED = {"file_loaded", "file_quarantined", *_SIMPLE_OUTCOMES}
_WORKER_GONE = ("worker_exited", "worker_died", "worker_failed")


def use_folder(folder: str) -> None:
    """Keep the values of this process, and of the processes it starts, in ``folder``.

    prometheus-client chooses where values live when it is first imported (from
    PROMETHEUS_MULTIPROC_DIR); setting its value class here makes that independent of who imported
    it first, and the variable passes the folder on to the worker processes."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values.ValueClass = values.MultiProcessValue()


class Metrics:
    """The daemon's metrics. Created after ``use_folder``, in every process that records."""

    def __init__(self) -> None:
        def name(text: str) -> str:
            return f"{PREFIX}_{text}"

        self.files = Counter(
            name("files"),
            "Files handled, by outcome: loaded, partial (loaded, some rows rejected), duplicate (content loaded before), "
            "recovered (a move finished after a crash), quarantined, deferred (left in the inbox after retries).",
            ["outcome"],
            registry=None,
        )
        self.quarantined = Counter(name("quarantined_files"), "Files quarantined, by the rule they broke.", ["rule"], registry=None)
        self.rows_loaded = Counter(name("rows_loaded"), "Rows committed to sensor_readings.", registry=None)
        self.rows_rejected = Counter(name("rows_rejected"), "Invalid rows of partly loaded files (MAX_INVALID_ROWS).", registry=None)
        self.rows_overlapping = Counter(
            name("rows_overlapping"),
            "Readings of loaded files that another file holds too (ON_OVERLAP), by what became of them: skipped "
            "(not stored), replaced (the other file's reading deleted for this one's); conflicting: of those, "
            "the ones whose values differ.",
            ["outcome"],
            registry=None,
        )
        self.bytes_read = Counter(name("bytes_read"), "Bytes of the input files whose fate was decided.", registry=None)
        self.load_seconds = Histogram(
            name("load_duration_seconds"), "Seconds from a file's first byte to its commit.", buckets=LOAD_BUCKETS, registry=None
        )
        self.db_retries = Counter(
            name("db_retries"),
            "Retries after a transient database error, by SQLSTATE class (none: connection lost).",
            ["sqlstate_class"],
            registry=None,
        )
        self.last_load = Gauge(
            name("last_load_timestamp_seconds"), "Unix time of the last commit of a file.", multiprocess_mode="max", registry=None
        )
        for outcome in OUTCOMES:  # every series exists from the start, so rate() and the summary see zeros
            self.files.labels(outcome)
        for outcome in OVERLAP_OUTCOMES:
            self.rows_overlapping.labels(outcome)
        for sqlstate in TRANSIENT_CLASSES:
            self.db_retries.labels(sqlstate)


class Heartbeat:
    """A daemon loop's signs of life, one series per process (/healthz reads them); not in the supervisor."""

    def __init__(self) -> None:
        self.turned = Gauge(
            f"{PREFIX}_loop_turned_timestamp_seconds",
            "Unix time of the last event of each daemon loop (a scan, a file, a retry): /healthz's clock.",
            multiprocess_mode="liveall",
            registry=None,
        )
        self.busy = Gauge(
            f"{PREFIX}_loop_busy",
            "1 while a daemon loop is inside a file (a long load is not a stall).",
            multiprocess_mode="liveall",
            registry=None,
        )

    def beat(self, name: str) -> None:
        self.turned.set(time.time())
        self.busy.set(1 if name == "file_seen" else 0)


def sqlstate_class(error: object) -> str:
    """The class (first two characters) of an error's SQLSTATE; ``none`` for a lost connection, which has none."""
    code = getattr(error, "sqlstate", None)
    return str(code)[:2] if code else "none"


class Recorder:
    """A ``logs`` listener that turns the daemon's events into metric values.

    ``heartbeat``: this process runs a daemon loop (it is not the supervisor), so its events are its
    signs of life. ``folder``: where the values live; a worker that exited has its heartbeat removed."""

    def __init__(self, folder: str, *, heartbeat: Heartbeat | None) -> None:
        self.metrics = Metrics()
        self.folder = folder
        self.heartbeat = heartbeat
        self._pending_bytes: dict[str, int] = {}  # of the files being handled, by name: one, or the files of a batch

    def __call__(self, name: str, fields: Mapping[str, object]) -> None:
        m = self.metrics
        if name == "file_seen":
            self._pending_bytes[str(fields.get("file"))] = int(_number(fields.get("bytes")))
        elif name == "file_loaded":
            rejected = _number(fields.get("rows_rejected"))
            m.files.labels("partial" if rejected else "loaded").inc()
            m.rows_loaded.inc(_number(fields.get("rows")))
            m.rows_rejected.inc(rejected)
            for outcome in OVERLAP_OUTCOMES:
                m.rows_overlapping.labels(outcome).inc(_number(fields.get(f"rows_{outcome}")))
            m.load_seconds.observe(_number(fields.get("seconds")))
            m.last_load.set(time.time())
        elif name == "file_quarantined":
            m.files.labels("quarantined").inc()
            m.quarantined.labels(str(fields.get("rule"))).inc()
        elif name in _SIMPLE_OUTCOMES:
            m.files.labels(_SIMPLE_OUTCOMES[name]).inc()
        elif name == "db_retry":
            m.db_retries.labels(sqlstate_class(fields.get("error"))).inc()
        elif name in _WORKER_GONE and "pid" in fields:
            mark_process_dead(int(_number(fields["pid"])), self.folder)
        if name in _DECIDED:
            m.bytes_read.inc(self._pending_bytes.pop(str(fields.get("file")), 0))
        if self.heartbeat is not None:
            self.heartbeat.beat(name)


def _number(value: object) -> float:
    """A numeric event field (rows, bytes, seconds, pid); 0 when absent."""
    return float(value) if isinstance(value, int | float) else 0.0


def registry_of(folder: str, *extra: Collector) -> CollectorRegistry:
    """What the endpoint serves: the values of every process in ``folder``, and ``extra`` collectors."""
    registry = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(registry, path=folder)
    for collector in extra:
        registry.register(collector)
    return registry


@dataclass(frozen=True)
class Totals:
    """The counters summed over every process: what a run did so far."""

    files: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    rows_loaded: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0

    @property
    def handled(self) -> int:
        """Files whose fate was decided (deferred ones wait: they are not done)."""
        return sum(count for outcome, count in self.files.items() if outcome != "deferred")


def totals(registry: CollectorRegistry) -> Totals:
    files: dict[str, int] = {}
    quarantined: dict[str, int] = {}
    plain: dict[str, int] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == f"{PREFIX}_files_total":
                files[sample.labels["outcome"]] = int(sample.value)
            elif sample.name == f"{PREFIX}_quarantined_files_total":
                quarantined[sample.labels["rule"]] = int(sample.value)
            elif sample.name.endswith("_total"):
                plain[sample.name.removeprefix(f"{PREFIX}_").removesuffix("_total")] = int(sample.value)
    return Totals(
        files=files,
        quarantined=quarantined,
        rows_loaded=plain.get("rows_loaded", 0),
        rows_rejected=plain.get("rows_rejected", 0),
        bytes_read=plain.get("bytes_read", 0),
    )


def stalled_loops(registry: CollectorRegistry, now: float, window: float) -> dict[str, str]:
    """Loops (by pid) that are not inside a file and showed no life for ``window`` seconds: /healthz's verdict."""
    turned: dict[str, float] = {}
    busy: dict[str, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == f"{PREFIX}_loop_turned_timestamp_seconds":
                turned[sample.labels.get("pid", "")] = sample.value
            elif sample.name == f"{PREFIX}_loop_busy":
                busy[sample.labels.get("pid", "")] = sample.value
    return {
        f"loop {pid}": f"no scan or file for {now - at:.0f}s (more than {window:.0f}s)"
        for pid, at in turned.items()
        if not busy.get(pid) and now - at > window
    }


@dataclass(frozen=True)
class State:
    """What is measured when scraped: the inbox, the claims, the quarantine folder."""

    inbox_files: int | None  # None: could not be measured (a folder unreadable, the database down)
    inbox_bytes: int | None
    inbox_oldest_age_seconds: float | None
    quarantine_files: int | None
    quarantine_bytes: int | None
    claims_held: int | None


class StateCollector(Collector):
    """Gauges read at each scrape from ``measure``, and the build info."""

    def __init__(self, measure: Callable[[], State], build: Mapping[str, str]) -> None:
        self.measure = measure
        self.build = build

    def collect(self) -> Iterator[Metric]:
        state = self.measure()
        gauges = (
            ("inbox_files", "Input files waiting in DATA_FOLDER (the backlog).", state.inbox_files),
            ("inbox_bytes", "Bytes of the input files waiting in DATA_FOLDER.", state.inbox_bytes),
            (
                "inbox_oldest_age_seconds",
                "Age (since its last change) of the oldest file waiting; 0 when none waits.",
                state.inbox_oldest_age_seconds,
            ),
            ("quarantine_files", "Quarantined files (and rejects files) in QUARANTINE_FOLDER.", state.quarantine_files),
            ("quarantine_bytes", "Bytes in QUARANTINE_FOLDER, reports included.", state.quarantine_bytes),
            ("claims_held", "Leases on inbox files held now by any worker on this database.", state.claims_held),
        )
        for name, help_text, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info", "Version of sensor-etl and of Python, as labels; always 1.", labels=list(self.build)
        )
        info.add_metric(list(self.build.values()), 1)
        yield info
