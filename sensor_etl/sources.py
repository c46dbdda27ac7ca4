"""Per-source settings: the ``[[source]]`` tables of SOURCES_FILE, and which one a file of the inbox follows.

A source is a ``name``, a ``match`` glob on the file's path relative to DATA_FOLDER, and any file-level
setting — every setting of the registry whose field is in ``Rules`` — under its variable's name in lower
case, parsed by that setting's own parser; plus ``sensor_id`` (a fixed id) or ``sensor_id_pattern``
(a regular expression with one group, found in the file name). So a setting added to the registry
is accepted here with no code of its own. A source starts from the global settings and overrides what
it names; the first source whose glob matches a file wins, and a file no source matches follows the
global settings (docs/sources.md).

``parse_sources`` and ``Sources.rules_for`` are pure; ``load_sources`` reads the file. A mistake in the file is a
``SourcesError``: the daemon and the commands refuse to start (exit code 2), naming the source and key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, time
from pathlib import Path, PurePosixPath
from typing import Any

from sensor_etl.config import SETTINGS, Rules, Setting, Settings, check_rules
from sensor_etl.core.rules import Rule
from sensor_etl.errors import ConfigError, Problem, SourcesError

DEFAULT_FILE = Settings().sources_file  # read when it exists; a SOURCES_FILE set to another path must exist
PATTERN_EXAMPLE = "^(?P<sensor>[^_]+)_"
_RULE_FIELDS = frozenset(f.name for f in fields(Rules))
KEYS: dict[str, Setting] = {s.variable.lower(): s for s in SETTINGS if s.field in _RULE_FIELDS}
"""The file-level settings a source may set, by key (the variable in lower case)."""
_OWN = ("name", "match", "sensor_id", "sensor_id_pattern")
_SENSOR_KEYS = ("sensor_id", "sensor_id_pattern", "default_sensor_id")
_GLOB = 'a glob on the file\'s path relative to the inbox, e.g. "tmy3/*.csv" or "*_ASOS.csv"'
_PATTERN = f"a regular expression with one group, found in the file name, e.g. {PATTERN_EXAMPLE}"


@dataclass(frozen=True)
class Source:
    """One ``[[source]]`` table: its rules are the global settings with the source's own on top."""

    name: str
    match: str
    rules: Rules
    sensor_id_pattern: re.Pattern[str] | None = None

    def matches(self, relative: str) -> bool:
        """The glob against the path relative to the inbox, from its last part backwards (``*_ASOS.csv``
        in any folder, ``tmy3/*.csv`` directly in a ``tmy3`` folder); case does not matter, as for ``*.csv``."""
        return PurePosixPath(relative.lower()).match(self.match.lower())


@dataclass(frozen=True)
class Match:
    """What a file follows: the name of the source that matched it (None: the global settings), its
    rules, and a problem when that source cannot serve it (no sensor id in its name)."""

    source: str | None
    rules: Rules
    problem: Problem | None = None


@dataclass(frozen=True)
class Sources:
    """The global rules and the sources of SOURCES_FILE (none when there is no such file)."""

    rules: Rules = field(default_factory=Rules)
    sources: tuple[Source, ...] = ()
    file: Path | None = None

    def rules_for(self, relative: str) -> Match:
        """The first source whose glob matches ``relative`` (a path relative to the inbox), else the global settings."""
        for source in self.sources:
            if source.matches(relative):
                return _served(source, PurePosixPath(relative).name)
        return Match(None, self.rules)


def _served(source: Source, file_name: str) -> Match:
    if source.sensor_id_pattern is None:
        return Match(source.name, source.rules)
    found = source.sensor_id_pattern.search(file_name)
    sensor = found.group(1) if found else None
    if not sensor:
        message = f"source {source.name!r}: its sensor_id_pattern {source.sensor_id_pattern.pattern!r} finds no sensor id in the file name"
        return Match(source.name, source.rules, Problem(Rule.SOURCE, message, value=file_name))
    return Match(source.name, replace(source.rules, default_sensor_id=sensor))


def load_sources(settings: Settings) -> Sources:
    """The sources of SOURCES_FILE over the global rules; none when the default file does not exist."""
    path = settings.sources_file
    if path == DEFAULT_FILE and not path.exists():
        return Sources(settings.rules)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourcesError(path, f"cannot be read: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SourcesError(path, f"cannot be read: {exc.strerror or exc}") from exc
    return parse_sources(text, path, settings.rules)


def parse_sources(text: str, file: Path, base: Rules) -> Sources:
    """The sources of a SOURCES_FILE's text; ``base`` (the global rules) is what each source starts from."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(file, f"not valid TOML: {exc}") from exc
    for key in document:
        if key != "source":
            raise SourcesError(file, f"unknown key {key!r} at the top: the file holds [[source]] tables only")
    tables = document.get("source", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise SourcesError(file, "'source' must be a list of tables, each written as [[source]]")
    sources: list[Source] = []
    for number, table in enumerate(tables, start=1):
        sources.append(_source(table, number, file, base, sources))
    return Sources(base, tuple(sources), file)


def _source(table: Mapping[str, Any], number: int, file: Path, base: Rules, earlier: list[Source]) -> Source:
    name = table["name"].strip() if isinstance(table.get("name"), str) else ""
    where = f"[[source]] {number}" + (f" {name!r}" if name else "")

    def fail(problem: str) -> SourcesError:
        return SourcesError(file, f"{where}: {problem}")

    if not name:
        raise fail("'name' is missing: every source needs a name (the ledger records it with each file)")
    if any(source.name == name for source in earlier):
        raise fail("this name is already used by an earlier source")
    glob = table.get("match")
    if not isinstance(glob, str) or not glob.strip():
        raise fail(f"'match' is missing: {_GLOB}")
    try:
        PurePosixPath("x.csv").match(glob)
    except ValueError as exc:
        raise fail(f"match={glob!r} is invalid: expected {_GLOB}") from exc
    sensor_keys = [key for key in _SENSOR_KEYS if key in table]
    if len(sensor_keys) > 1:
        raise fail(f"{' and '.join(sensor_keys)} each set the sensor id: keep one")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("name", "match", "sensor_id_pattern"):
            continue
        setting = KEYS.get("default_sensor_id" if key == "sensor_id" else key)
        if setting is None:
            raise fail(_unknown(key))
        if isinstance(value, str) and not value.strip() and not setting.parser.keeps_blank:
            continue  # blank is unset, as in the environment: the global value stays
        try:
            values[setting.field] = _parsed(setting, value)
        except _CommaInItem as exc:
            raise fail(f"{key}={value!r} is invalid: an item holds a comma, which this setting's list cannot take") from exc
        except (ValueError, LookupError, TypeError) as exc:
            raise fail(f"{key}={value!r} is invalid: expected {setting.parser.accepted}") from exc
    rules = replace(base, **values)
    try:
        check_rules(rules)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    pattern = _pattern(table["sensor_id_pattern"], fail) if "sensor_id_pattern" in table else None
    return Source(name, glob.strip(), rules, pattern)


def _unknown(key: str) -> str:
    if key.upper() in {s.variable for s in SETTINGS}:
        return f"{key!r} is not a file-level setting: set {key.upper()} in the environment or .env"
    close = difflib.get_close_matches(key.lower(), [*_OWN, *KEYS], n=1)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}: expected {', '.join(_OWN)} or a setting of the validation rules group in lower case"


def _parsed(setting: Setting, value: object) -> Any:
    """A TOML value through the setting's parser: scalars as the text the environment would hold, arrays
    joined with commas, unless the parser takes a list or table as it is (``Parser.structured``)."""
    if isinstance(value, list | dict) and setting.parser.structured is not None:
        return setting.parser.structured(value)
    return setting.parser.parse(_text(value))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and not any(isinstance(item, list | dict) for item in value):
        items = [_text(item) for item in value]
        if any("," in item for item in items):
            raise _CommaInItem
        return ",".join(items)
    raise TypeError(f"{type(value).__name__} is not accepted here")


class _CommaInItem(ValueError):
    """An array item holding a comma, for a setting whose parser only splits text at commas."""


def _pattern(value: object, fail: Callable[[str], SourcesError]) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise fail(f"sensor_id_pattern={value!r} is invalid: expected {_PATTERN}")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise fail(f"sensor_id_pattern={value!r} is invalid ({exc}): expected {_PATTERN}") from exc
    if pattern.groups != 1:
        raise fail(f"sensor_id_pattern={value!r} is invalid: it has {pattern.groups} groups; expected {_PATTERN}")
    return pattern
