"""Settings: defaults, .env handling, and one clear line (exit 2) for every bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sensor_etl.config import RejectLimit, Rules, load_settings, redact, settings_from
from sensor_etl.errors import ConfigError
from sensor_etl.sources import parse_sources


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
        ("READ_BLOCK_BYTES", "lots", "a size from 64KiB to 1GiB: bytes, or with a unit such as 2MiB"),
        ("READ_BLOCK_BYTES", "32KiB", "a size from 64KiB to 1GiB"),
        ("READ_BLOCK_BYTES", "2GiB", "a size from 64KiB to 1GiB"),
        ("READ_BLOCK_BYTES", "2.5", "a size from 64KiB to 1GiB"),
        ("READ_BLOCK_BYTES", "-2MiB", "a size from 64KiB to 1GiB"),
        ("MAX_LINE_BYTES", "16 megs", "a size from 64KiB to 2GiB"),
        ("MAX_LINE_BYTES", "3GiB", "a size from 64KiB to 2GiB"),
        ("MAX_FIELD_BYTES", "0", "a size from 1 to 1GiB"),
        ("MAX_FIELD_BYTES", "1MiBs", "a size from 1 to 1GiB"),
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


@pytest.mark.parametrize(
    ("variable", "text", "size"),
    [
        ("READ_BLOCK_BYTES", "2MiB", 2 << 20),
        ("READ_BLOCK_BYTES", "16mib", 16 << 20),
        ("READ_BLOCK_BYTES", "1GiB", 1 << 30),
        ("READ_BLOCK_BYTES", "4194304", 4 << 20),
        ("READ_BLOCK_BYTES", "1.5MiB", 3 << 19),
        ("READ_BLOCK_BYTES", "2M", 2 << 20),
        ("READ_BLOCK_BYTES", "2MB", 2_000_000),
        ("READ_BLOCK_BYTES", " 64 KiB ", 1 << 16),
        ("MAX_LINE_BYTES", "16MiB", 16 << 20),
        ("MAX_LINE_BYTES", "2GiB", 2 << 30),
        ("MAX_FIELD_BYTES", "1", 1),
        ("MAX_FIELD_BYTES", "512B", 512),
        ("MAX_FIELD_BYTES", "750KiB", 750 << 10),
    ],
)
def test_byte_settings_read_sizes_like_worker_memory_limit(variable: str, text: str, size: int) -> None:
    settings = settings_from({variable: text})
    assert {
        "READ_BLOCK_BYTES": settings.read_block_bytes,
        "MAX_LINE_BYTES": settings.rules.max_line_bytes,
        "MAX_FIELD_BYTES": settings.rules.max_field_bytes,
    }[variable] == size


def test_a_source_reads_sizes_as_text_or_toml_integers() -> None:
    text = '[[source]]\nname = "a"\nmatch = "a/*.csv"\nmax_line_bytes = "4MiB"\nmax_field_bytes = 65536\n'
    (source,) = parse_sources(text, Path("sources.toml"), Rules()).sources
    assert (source.rules.max_line_bytes, source.rules.max_field_bytes) == (4 << 20, 1 << 16)


def test_byte_settings_default_to_sizes() -> None:
    settings = settings_from({})
    assert (settings.read_block_bytes, settings.rules.max_line_bytes, settings.rules.max_field_bytes) == (2 << 20, 16 << 20, 1 << 20)


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


def test_a_bad_size_exits_2_with_one_line_naming_the_setting(workspace) -> None:
    result = workspace.cli("--once", READ_BLOCK_BYTES="2 megs")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sensor-etl: configuration error: READ_BLOCK_BYTES='2 megs' is invalid: expected a size from 64KiB to 1GiB: bytes, "
        "or with a unit such as 2MiB (K, M, G, T: binary; KB, MB, GB, TB: decimal)"
    ]


def test_cli_bad_config_exits_2_with_one_line(workspace) -> None:
    result = workspace.cli("--once", MONITOR_INTERVAL="soon")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sensor-etl: configuration error: MONITOR_INTERVAL='soon' is invalid: expected a number from 0.05 to 86400"
    ]
