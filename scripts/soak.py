#!/usr/bin/env python3
"""Soak test: drop files for a while, kill and restart the daemon and the database at random, then
reconcile every input against the database and the folders.

    python -m scripts.soak --minutes 10   (from the repository root)

Runs its own embedded PostgreSQL and its own folders (under --workdir, a temporary folder by
default). Progress goes to stderr; stdout gets one summary line ending in ``OK`` or in the
discrepancies, and the exit code is 0 only for ``OK``. The promise checked, for every input file:
its content is in ``ingested_files`` once with the right row count and readings, or it is in
quarantine/ with a report, or it still waits in data/; nothing lost, nothing doubled. Good files
overlap in time (ON_OVERLAP=skip): a file's rows are its readings plus those another file holds
(``rows_skipped``), and no sensor has two readings at one time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2

from sensor_etl.edges.embedded import EmbeddedPostgres
from tests.helpers.samples import multi_csv

REPO = Path(__file__).resolve().parent.parent

REPORT_SUFFIXES = (".error.json", ".rejects.csv")


@dataclass
class Counts:
    files: Counter = field(default_factory=Counter)  # good, bad, duplicate, reused_name
    chaos: Counter = field(default_factory=Counter)  # daemon_kills, worker_kills, graceful_restarts, db_restarts


def say(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} {message}", file=sys.stderr, flush=True)


class Producer:
    """Drops good and bad files, duplicates and reused names; remembers every content it dropped."""

    def __init__(self, data: Path, rng: random.Random, counts: Counts) -> None:
        self.data, self.rng, self.counts = data, rng, counts
        self.dropped: list[tuple[str, bytes, bool]] = []  # name, content, good
        self.serial = 0

    def drop(self) -> None:
        self.serial += 1
        roll = self.rng.random()
        good_ones = [content for _, content, good in self.dropped if good]
        used_names = {name for name, _, _ in self.dropped[-200:] if not (self.data / name).exists()}
        if roll < 0.08 and good_ones:
            name, content, good, kind = f"dup{self.serial:05d}.csv", self.rng.choice(good_ones), True, "duplicate"
        elif roll < 0.13 and used_names:
            name, content, good, kind = self.rng.choice(sorted(used_names)), self._good(), True, "reused_name"
        elif roll < 0.25:
            name, content, good, kind = f"bad{self.serial:05d}.csv", self._bad(), False, "bad"
        else:
            name, content, good, kind = f"in{self.serial:05d}.csv", self._good(), True, "good"
        self._write(name, content)
        self.dropped.append((name, content, good))
        self.counts.files[kind] += 1

    def _good(self) -> bytes:
        per_sensor = self.rng.choice([3] * 12 + [500] * 4 + [5_000])
        start = datetime(2015, 1, 1) + timedelta(hours=self.serial * 7)
        return multi_csv(self.rng.randint(1, 4), per_sensor, start=start, seed=self.serial).encode()

    def _bad(self) -> bytes:
        return self.rng.choice(
            [
                f"timestamp,sensor_id,temperature\n2024-01-01T00:00:00Z,s{self.serial},999\n".encode(),
                b"timestamp,sensor_id,temperature\n",
                b"\x1f\x8b\x08\x00" + os.urandom(64),
                f"timestamp,sensor_id,temperature\nnot a time,s{self.serial},1\n".encode(),
            ]
        )

    def _write(self, name: str, content: bytes) -> None:
        how = self.rng.random()
        if how < 0.5:  # write-then-rename, the recommended way
            temp = self.data / f".{name}.tmp"
            temp.write_bytes(content)
            temp.rename(self.data / name)
        elif how < 0.8:
            (self.data / name).write_bytes(content)
        else:  # slowly, in pieces: must never be loaded half-written
            with open(self.data / name, "wb") as handle:
                step = max(1, len(content) // 4)
                for start in range(0, len(content), step):
                    handle.write(content[start : start + step])
                    handle.flush()
                    time.sleep(0.1)


class Daemon:
    """The daemon under test, restarted at will, its log appended to one file."""

    def __init__(self, root: Path, env: dict[str, str], rng: random.Random) -> None:
        self.root, self.env, self.rng = root, env, rng
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        workers = str(self.rng.choice([1, 1, 2, 3]))
        with open(self.root / "daemon.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "etl_pipeline.py")],
                cwd=self.root,
                env={**self.env, "WORKERS": workers},
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        say(f"daemon started pid={self.process.pid} workers={workers}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def workers(self) -> list[int]:
        """Pids of the supervisor's worker processes (not multiprocessing's resource tracker)."""
        if not self.process:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                command = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid and b"spawn_main" in command:
                children.append(int(stat.parent.name))
        return children


def chaos(daemon: Daemon, server: EmbeddedPostgres, rng: random.Random, counts: Counts) -> None:
    """One random fault."""
    roll = rng.random()
    if roll < 0.4:
        daemon.kill()
        counts.chaos["daemon_kills"] += 1
        say("chaos: SIGKILL daemon (all its processes)")
        daemon.start()
    elif roll < 0.55 and (workers := daemon.workers()):
        os.kill(rng.choice(workers), signal.SIGKILL)
        counts.chaos["worker_kills"] += 1
        say("chaos: SIGKILL one worker")
    elif roll < 0.7:
        daemon.terminate()
        counts.chaos["graceful_restarts"] += 1
        say("chaos: SIGTERM daemon, restart")
        daemon.start()
    else:
        mode = rng.choice(["fast", "immediate"])
        server.stop(mode)
        down = rng.uniform(1, 6)
        say(f"chaos: database stopped ({mode}) for {down:.1f}s")
        time.sleep(down)
        server.start()
        counts.chaos["db_restarts"] += 1


def reconcile(root: Path, dsn: str, dropped: list[tuple[str, bytes, bool]]) -> list[str]:
    """Every discrepancy between what was dropped and where it ended up."""
    digest = {content: hashlib.sha256(content).hexdigest() for _, content, _ in dropped}
    expected_rows = {digest[c]: len(c.splitlines()) - 1 for _, c, good in dropped if good}
    bad = {digest[c] for _, c, good in dropped if not good}
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT sha256, rows_loaded, rows_skipped, (SELECT count(*) FROM sensor_readings r WHERE r.file_id = f.file_id)"
            " FROM ingested_files f"
        )
        ledger = {sha: (rows, skipped, readings) for sha, rows, skipped, readings in cur.fetchall()}
        cur.execute("SELECT count(*) FROM sensor_readings WHERE file_id NOT IN (SELECT file_id FROM ingested_files)")
        orphans = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM (SELECT FROM sensor_readings GROUP BY sensor_id, observed_at HAVING count(*) > 1) AS twice")
        doubled = cur.fetchone()[0]
    conn.close()
    folders = {
        name: Counter(
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (root / name).iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(REPORT_SUFFIXES)
        )
        for name in ("processed", "quarantine", "data")
    }
    problems = []
    if orphans:
        problems.append(f"{orphans} readings without a ledger row")
    if doubled:
        problems.append(f"{doubled} (sensor, time) keys have more than one reading (overlapping files)")
    for sha, (rows, skipped, readings) in ledger.items():
        if sha in bad:
            problems.append(f"bad content {sha[:12]} was loaded")
        elif sha not in expected_rows:
            problems.append(f"unknown content {sha[:12]} in the ledger")
        elif rows + skipped != expected_rows[sha] or readings != rows:
            problems.append(f"{sha[:12]}: {rows} rows_loaded + {skipped} skipped, {readings} readings, expected {expected_rows[sha]}")
    placed = sum(folders.values(), Counter())
    wanted = Counter(digest[c] for _, c, _ in dropped)
    for sha in wanted | placed:
        if placed[sha] != wanted[sha]:
            problems.append(f"{sha[:12]} dropped {wanted[sha]}x, found {placed[sha]}x in the folders")
    for sha in expected_rows:
        if sha not in ledger and not folders["data"][sha]:
            problems.append(f"good content {sha[:12]} neither loaded nor waiting (quarantined {folders['quarantine'][sha]}x)")
    for sha in folders["processed"]:
        if sha not in ledger:
            problems.append(f"{sha[:12]} is in processed/ but not in the ledger")
    for sha in bad:
        if not folders["quarantine"][sha] and not folders["data"][sha]:
            problems.append(f"bad content {sha[:12]} neither quarantined nor waiting")
    for path in (root / "quarantine").iterdir():
        if path.is_file() and not path.name.endswith(REPORT_SUFFIXES) and not Path(f"{path}.error.json").is_file():
            problems.append(f"quarantine/{path.name} has no report")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workdir", type=Path, help="folders and database here (default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="sensor-etl-soak-"))).resolve()
    for name in ("data", "processed", "quarantine"):
        (root / name).mkdir(parents=True, exist_ok=True)
    rng, counts = random.Random(args.seed), Counts()
    say(f"soak in {root}, seed {args.seed}, {args.minutes} minutes")
    server = EmbeddedPostgres(root / "pgdata", "sensor_etl_soak")
    dsn = server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=dsn,
        DATA_FOLDER=str(root / "data"),
        PROCESSED_FOLDER=str(root / "processed"),
        QUARANTINE_FOLDER=str(root / "quarantine"),
        FILE_SETTLE_SECONDS="0.5",
        MONITOR_INTERVAL="0.5",
        LEASE_SECONDS="5",
        # the soak's random kills are not the files' fault: a file met by three of them in a row would be
        # quarantined as a poison file (rule worker_died, docs/operations.md#poison-files-max_file_attempts)
        MAX_FILE_ATTEMPTS="100",
        RETRY_ATTEMPTS="3",
        RETRY_MAX_WAIT="1",
        PYTHONPATH=str(REPO),
    )
    producer, daemon = Producer(root / "data", rng, counts), Daemon(root, env, rng)
    deadline = time.monotonic() + args.minutes * 60
    done = threading.Event()

    def produce() -> None:
        while not done.wait(rng.uniform(0.05, 0.6)):
            producer.drop()

    daemon.start()
    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        while time.monotonic() < deadline:
            time.sleep(min(rng.uniform(3, 10), max(0.0, deadline - time.monotonic())))
            if time.monotonic() < deadline:
                chaos(daemon, server, rng, counts)
        done.set()
        writer.join()
        say("chaos over: finishing with --once")
        daemon.kill()
        if not server.is_running():
            server.start()
        with open(root / "daemon.log", "ab") as log:
            final = subprocess.run(
                [sys.executable, str(REPO / "etl_pipeline.py"), "--once"],
                cwd=root,
                env={**env, "WORKERS": "2"},
                stdout=subprocess.DEVNULL,
                stderr=log,
                timeout=1800,
            )
        problems = reconcile(root, dsn, producer.dropped)
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*), coalesce(sum(rows_loaded), 0) FROM ingested_files")
            loaded, rows = cur.fetchone()
        conn.close()
    finally:
        done.set()
        daemon.kill()
        server.stop()
    inbox = [p for p in (root / "data").iterdir() if p.is_file() and not p.name.startswith(".")]
    quarantined = [p for p in (root / "quarantine").iterdir() if p.is_file() and not p.name.endswith(REPORT_SUFFIXES)]
    log = (root / "daemon.log").read_text(errors="replace")
    summary = (
        f"soak minutes={args.minutes:g} seed={args.seed} files={sum(counts.files.values())} "
        + " ".join(f"{k}={counts.files[k]}" for k in ("good", "bad", "duplicate", "reused_name"))
        + " "
        + " ".join(f"{k}={counts.chaos[k]}" for k in ("daemon_kills", "worker_kills", "graceful_restarts", "db_restarts"))
        + f" worker_restarts={log.count(' worker_died ')} claims_taken_over={log.count(' claim_taken_over ')}"
        f" recovered_moves={log.count(' file_recovered ')} final_exit={final.returncode}"
        f" loaded={loaded} rows={rows} duplicates_archived={log.count(' file_duplicate ')} quarantined={len(quarantined)}"
        f" waiting={len(inbox)} discrepancies={len(problems)} "
    )
    print(summary + ("OK" if not problems else "; ".join(problems)), flush=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
