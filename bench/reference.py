"""The reference: ``psql \\copy`` of the same files into plain tables, on the same server.

Fairness: each reference table has exactly the file's columns (timestamp as timestamptz, numbers
as float8, sensor_id as text) and, like ``sensor_readings``, one primary key and one unique btree:

* seed format: PRIMARY KEY (date) and UNIQUE (date, p). The daemon's two indexes, (file_id,
  line_no) and (sensor_id, observed_at, file_id), both grow at their right edge for a one-sensor
  file in time order; these two do as well.
* multi-sensor format: PRIMARY KEY (timestamp, sensor_id), right-edge like (file_id, line_no),
  and UNIQUE (sensor_id, timestamp), which like (sensor_id, observed_at, file_id) is written at
  20 places, one per sensor.

Every file is one ``\\copy``, which psql runs as one transaction (autocommit).
"""

from __future__ import annotations

from pathlib import Path

from bench.db import execute, psql_path
from bench.measure import Measurement, run_measured

SEED_COLUMNS = [
    "date",
    "p",
    "T",
    "Tpot",
    "Tdew",
    "rh",
    "VPmax",
    "VPact",
    "VPdef",
    "sh",
    "H2OC",
    "rho",
    "wv",
    "max. wv",
    "wd",
    "rain",
    "raining",
    "SWDR",
    "PAR",
    "max. PAR",
    "Tlog",
]

_SEED_FLOATS = ", ".join(f'"{name}" float8' for name in SEED_COLUMNS[1:])
TABLES = {
    "seed": (
        f"CREATE TABLE IF NOT EXISTS ref_seed (date timestamptz PRIMARY KEY, {_SEED_FLOATS});"
        " CREATE UNIQUE INDEX IF NOT EXISTS ref_seed_date_p ON ref_seed (date, p);"
    ),
    "multi": (
        "CREATE TABLE IF NOT EXISTS ref_multi (timestamp timestamptz, sensor_id text, temperature float8,"
        " humidity float8, pressure float8, PRIMARY KEY (timestamp, sensor_id));"
        " CREATE UNIQUE INDEX IF NOT EXISTS ref_multi_sensor_time ON ref_multi (sensor_id, timestamp);"
    ),
}


def table_name(file_format: str) -> str:
    """The reference table of a file format ("seed" or "multi")."""
    return f"ref_{file_format}"


def prepare(dsn: str, file_format: str) -> None:
    """Create the reference table if needed and empty it, so every run starts alike."""
    execute(dsn, TABLES[file_format])
    execute(dsn, f"TRUNCATE {table_name(file_format)}")


def copy_command(table: str, path: Path) -> str:
    """One psql ``\\copy`` meta-command loading ``path`` with its header line skipped."""
    quoted = str(path).replace("'", "''")
    return f"\\copy {table} FROM '{quoted}' WITH (FORMAT csv, HEADER true)"


def copy_files(dsn: str, file_format: str, files: list[Path], script: Path) -> Measurement:
    """Load ``files`` through one psql connection, one ``\\copy`` (one transaction) per file."""
    table = table_name(file_format)
    script.write_text("".join(copy_command(table, path) + "\n" for path in files))
    command = [
        str(psql_path()),
        dsn,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        str(script),
    ]
    return run_measured(command)


def loaded_rows(dsn: str, file_format: str) -> int:
    """Rows in the reference table, to check that the load was complete."""
    return execute(dsn, f"SELECT count(*) FROM {table_name(file_format)}")[0][0]
