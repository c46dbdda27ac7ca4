"""Settings: defaults, .env handling, and one clear line (exit 2) for every bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sensor_etl.config import RejectLimit, load_settings, redact, settings_from
from sensor_etl.errors import ConfigError


def test_defaults_need_no_configuration() -> None:
    settings = settings_from({})
    assert settings.embedded
    assert settings.data_folder == Path("data")
    assert settings.processed_folder == Path("processed")
    assert settings.quarantine_folder == Path("quarantine")
    assert settings.monitor_interval == 5.0
    assert settings.file_settle_seconds == 2.0
    assert (settings.rules.temperature_min, settings.rules.temperature_max) == (-90.0, 60.0)
    assert (settings.rules.pressure_min, settings.rules.pressure_max) == (300.0, 1100.0)
    assert settings.rules.max_invalid_rows == RejectLimit()


def test_db_variables_select_a_server() -> None:
    settings = settings_from({"DB_HOST": "db.example", "DB_PORT": "6543", "DB_NAME": "x", "DB_USER": "u", "DB_PASSWORD": "p"})
    assert not settings.embedded
    assert settings.connection_kwargs() == {"dbname": "x", "user": "u", "password": "p", "host": "db.example", "port": 6543}
    assert settings_from({"DATABASE_URL": "postgresql://a@b/c"}).connection_kwargs() == {"dsn": "postgresql://a@b/c"}


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("DB_PORT", "abc", "an integer from 1 to 65535"),
        ("DB_PORT", "70000", "an integer from 1 to 65535"),
        ("MONITOR_INTERVAL", "soon", "a number from 0.05 to 86400"),
        ("MONITOR_INTERVAL", "-1", "a number from 0.05 to 86400"),
        ("WORKERS", "0", "an integer from 1 to 64"),
        ("TEMPERATURE_UNIT", "R", "one of C, F, K"),
        ("SOURCE_TIMEZONE", "Mars/Olympus", "an IANA time zone"),
        ("LOG_FORMAT", "xml", "one of text, json"),
        ("COLUMN_MAP", "Temp:colour", "Header:role pairs"),
        ("MAX_INVALID_ROWS", "lots", "a row count"),
        ("DATE_FORMAT", "dd.mm.yyyy", "strftime codes"),
        ("CSV_DELIMITER", ";;", "one character"),
        ("ENCODING", "klingon", "a Python codec name"),
        ("WORKER_MEMORY_LIMIT", "lots", "auto, off, or a size of at least 512MiB"),
        ("WORKER_MEMORY_LIMIT", "100MiB", "auto, off, or a size of at least 512MiB"),
        ("MAX_FILE_ATTEMPTS", "0", "an integer from 1 to 100"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}={value!r} is invalid: expected ")
    assert accepted in str(caught.value)


def test_min_must_be_below_max() -> None:
    with pytest.raises(ConfigError, match=r"TEMPERATURE_MIN=70\.0 is invalid"):
        settings_from({"TEMPERATURE_MIN": "70"})


def test_rules_settings_are_parsed() -> None:
    rules = settings_from(
        {"COLUMN_MAP": "Aussen Temp:temperature, Station:sensor_id", "MAX_INVALID_ROWS": "1.5%", "CSV_DELIMITER": "semicolon"}
    ).rules
    assert rules.column_map == {"Aussen Temp": "temperature", "Station": "sensor_id"}
    assert rules.max_invalid_rows == RejectLimit(percent=1.5)
    assert rules.delimiter == ";"
    assert RejectLimit(percent=1.5).allows(1, 100) and not RejectLimit(percent=1.5).allows(2, 100)
    assert RejectLimit(count=3).allows(3, 10) and not RejectLimit(count=3).allows(4, 10)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("auto", None),
        ("off", 0),
        ("2GiB", 2 << 30),
        ("1536MiB", 1536 << 20),
        ("2G", 2 << 30),
        ("2GB", 2_000_000_000),
        ("3000000000", 3_000_000_000),
    ],
)
def test_worker_memory_limit_reads_sizes(text: str, limit: int | None) -> None:
    assert settings_from({"WORKER_MEMORY_LIMIT": text}).worker_memory_limit == limit


def test_env_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("MONITOR_INTERVAL=7\nDATA_FOLDER=/srv/inbox\n")
    monkeypatch.setenv("MONITOR_INTERVAL", "3")
    settings = load_settings(env_file)
    assert settings.monitor_interval == 3.0
    assert settings.data_folder == Path("/srv/inbox")


def test_missing_env_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--env-file"):
        load_settings(tmp_path / "nope.env")


def test_password_is_redacted() -> None:
    assert redact("postgresql://etl:s3cret@db:5432/x") == "postgresql://etl:***@db:5432/x"
    assert redact("host=db password=s3cret dbname=x") == "host=db password=*** dbname=x"
    assert "s3cret" not in repr(settings_from({"DB_PASSWORD": "s3cret", "DB_HOST": "h"}))


def test_a_memory_limit_below_a_workers_start_up_address_space_exits_2_naming_the_least(workspace) -> None:
    result = workspace.cli("--once", WORKER_MEMORY_LIMIT="1GiB")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(
        r"sensor-etl: configuration error: WORKER_MEMORY_LIMIT='1\.0 GiB' is invalid: expected at least \d\.\d GiB:"
        r" a worker's address space is \d\.\d GiB at start-up",
        line,
    ), line


def test_cli_bad_config_exits_2_with_one_line(workspace) -> None:
    result = workspace.cli("--once", MONITOR_INTERVAL="soon")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sensor-etl: configuration error: MONITOR_INTERVAL='soon' is invalid: expected a number from 0.05 to 86400"
    ]
