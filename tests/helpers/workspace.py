"""What the tests handle: the test server, a query helper, a throwaway inbox and a daemon in the background."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from sensor_etl.edges.embedded import EmbeddedPostgres
from tests.helpers import endstate, s3servers

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    dsn: str
    embedded: EmbeddedPostgres | None

    def stop(self, mode: str = "fast") -> None:
        assert self.embedded is not None, "needs the embedded server (unset TEST_DATABASE_URL)"
        self.embedded.stop(mode)

    def start(self) -> None:
        assert self.embedded is not None, "needs the embedded server (unset TEST_DATABASE_URL)"
        self.embedded.start()


class Db:
    """Small query helper bound to the test database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            result = cur.fetchall() if cur.description else []
        conn.close()
        return result

    def value(self, sql: str, params: tuple = ()) -> object:
        return self.rows(sql, params)[0][0]

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.rows(sql, params)


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def write(self, name: str, content: str | bytes) -> Path:
        """``data/name``; a name with folders (``station_a/x.csv``) gets them."""
        path = self.data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def cli(self, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
        """Run ``etl_pipeline.py`` as a user would, in this workspace."""
        return subprocess.run(
            [sys.executable, str(REPO / "etl_pipeline.py"), *args],
            cwd=self.root,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, honour_file_modes: bool = False, **extra_env: str) -> DaemonProcess:
        """Start ``etl_pipeline.py`` in the background (its own process group), collecting its log.
        Killed at the end of the test if still running.

        ``honour_file_modes``: root reads any file, so as root the daemon runs without the capabilities
        that bypass file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; util-linux ``setpriv``). It
        stays root otherwise, so nothing depends on who may traverse root's home or the venv."""
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if honour_file_modes and os.geteuid() == 0 else []
        daemon = DaemonProcess([*prefix, sys.executable, str(REPO / "etl_pipeline.py"), *args], self.root, {**self.env, **extra_env})
        self.daemons.append(daemon)
        return daemon

    def names(self, folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir())

    # -- the places files go, as endstate.assert_exactly_once reads them ---------------------------
    def contents(self, place: str) -> dict[str, bytes]:
        """Input files in ``place`` (data, processed or quarantine) and its subfolders, by their path
        there: no reports, nothing hidden."""
        folder = getattr(self, place)
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in endstate.inbox_files(folder)}

    def exists(self, place: str, name: str) -> bool:
        return (getattr(self, place) / name).is_file()

    def archived(self, archive_path: str) -> bytes:
        """The content at a ledger row's archive path, which must be in processed/ (or a subfolder)."""
        path = Path(archive_path)
        assert self.processed.resolve() in path.parents, f"{archive_path} is not in {self.processed}"
        return path.read_bytes()

    def wait_until_empty(self, daemon: DaemonProcess, timeout: float = 60) -> None:
        """Block until no input file is left in data/ (directories there are not input)."""
        deadline = time.monotonic() + timeout
        while any(p.is_file() for p in self.data.iterdir()):
            assert daemon.alive(), f"the daemon exited ({daemon.process.returncode}); log:\n{daemon.log}"
            assert time.monotonic() < deadline, f"data/ still holds {self.names(self.data)}; log:\n" + "\n".join(daemon.lines[-60:])
            time.sleep(0.1)


@dataclass
class ObjectWorkspace(Workspace):
    """A throwaway inbox in an object store: ``s3://<bucket>/incoming/``, with ``processed/`` and
    ``quarantine/`` beside it in the same (new) bucket. The test talks to the server at ``endpoint``;
    the daemon (standard AWS variables) through ``proxy`` when there is one, to meet injected faults."""

    endpoint: str = ""
    bucket: str = ""
    prefixes: dict[str, str] = field(default_factory=lambda: {"data": "incoming/", "processed": "processed/", "quarantine": "quarantine/"})
    proxy: s3servers.FaultProxy | None = None  # in front of the server, when the test injects faults

    def __post_init__(self) -> None:
        self.s3 = s3servers.client("s3", self.endpoint)
        self.env.update(
            s3servers.aws_env(self.proxy.endpoint if self.proxy else self.endpoint),
            DATA_FOLDER=self.url("data"),
            PROCESSED_FOLDER=self.url("processed"),
            QUARANTINE_FOLDER=self.url("quarantine"),
        )

    def url(self, place: str, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefixes[place]}{name}"

    def key(self, place: str, name: str) -> str:
        return self.prefixes[place] + name

    def write(self, name: str, content: str | bytes) -> str:  # type: ignore[override]
        """Upload into the inbox prefix; returns the key."""
        key = self.key("data", name)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=content.encode() if isinstance(content, str) else content)
        return key

    def read(self, place: str, name: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=self.key(place, name))["Body"].read()

    def listed(self, place: str) -> list[str]:
        """Every name under the place's prefix, as a path relative to it (reports included), sorted."""
        names, token = [], None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefixes[place], **extra)
            names += [item["Key"].removeprefix(self.prefixes[place]) for item in page.get("Contents", []) if not item["Key"].endswith("/")]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated"):
                return sorted(names)

    def contents(self, place: str) -> dict[str, bytes]:
        return {name: self.read(place, name) for name in self.listed(place) if endstate.is_input(name)}

    def exists(self, place: str, name: str) -> bool:
        return name in self.listed(place)

    def archived(self, archive_path: str) -> bytes:
        assert archive_path.startswith(self.url("processed")), f"{archive_path} is not in {self.url('processed')}"
        return self.read("processed", archive_path.removeprefix(self.url("processed")))

    def wait_until_empty(self, daemon: DaemonProcess, timeout: float = 60) -> None:
        """Block until no input object is left in the inbox prefix."""
        deadline = time.monotonic() + timeout
        while any(endstate.is_input(name) for name in self.listed("data")):
            assert daemon.alive(), f"the daemon exited ({daemon.process.returncode}); log:\n{daemon.log}"
            assert time.monotonic() < deadline, f"the inbox still holds {self.listed('data')}; log:\n" + "\n".join(daemon.lines[-60:])
            time.sleep(0.2)


class DaemonProcess:
    """A running daemon whose stderr log lines are gathered as they arrive, so a test can act on an event."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], **popen: object) -> None:
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True, **popen
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def events(self, name: str) -> list[str]:
        """Log lines of one event (``file_loaded``, ``db_retry``...)."""
        with self._changed:
            return [line for line in self.lines if f" {name} " in f"{line} "]

    def wait_for(self, name: str, count: int = 1, timeout: float = 60) -> list[str]:
        """Block until the log holds ``count`` lines of event ``name``; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := [line for line in self.lines if f" {name} " in f"{line} "]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {count} x {name} within {timeout}s; log:\n" + "\n".join(self.lines[-60:]))
                self._changed.wait(min(left, 0.5))
        return found

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the daemon (its supervisor, which forwards it) and return its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: the daemon and any worker processes, with no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.wait(30)

    def wait(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code
