"""The registries: every setting and every rule declared once, and everything else generated from or
checked against them (dataclass fields and defaults, error messages, .env.example, docs/)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from sensor_etl import docgen
from sensor_etl.config import SETTINGS, VARIABLES, Group, Rules, Setting, Settings, settings_from
from sensor_etl.core.rules import RULES, Rule
from sensor_etl.errors import ConfigError, Problem
from tests.helpers.workspace import REPO

PACKAGE = REPO / "sensor_etl"
RULE_FIELDS = {f.name: f for f in dataclasses.fields(Rules)}
SETTING_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "rules"}


def _field(setting: Setting) -> dataclasses.Field:
    return RULE_FIELDS.get(setting.field) or SETTING_FIELDS[setting.field]


def _field_default(setting: Setting) -> object:
    found = _field(setting)
    if found.default_factory is not dataclasses.MISSING:
        return found.default_factory()
    return found.default


# -- settings ----------------------------------------------------------------------------------
def test_each_variable_and_field_is_declared_once() -> None:
    assert len(set(VARIABLES)) == len(VARIABLES) == len(SETTINGS)
    fields = [s.field for s in SETTINGS]
    assert len(set(fields)) == len(fields)
    assert not RULE_FIELDS.keys() & SETTING_FIELDS.keys()
    assert set(fields) == RULE_FIELDS.keys() | SETTING_FIELDS.keys(), "every Rules/Settings field needs one entry in SETTINGS"
    for setting in SETTINGS:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", setting.variable), setting.variable


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
def test_registry_default_is_the_field_default(setting: Setting) -> None:
    if setting.default == "":  # unset: the field's default applies, and it must be an empty one
        assert not _field_default(setting), f"{setting.variable}: the registry says unset, the field says {_field_default(setting)!r}"
    else:
        assert setting.parser.parse(setting.default) == _field_default(setting)
    assert settings_from({setting.variable: setting.default}) == Settings()


def test_the_example_file_as_env_file_gives_the_defaults() -> None:
    values = {k: v for k, v in dotenv_values(REPO / ".env.example").items() if v is not None}
    assert sorted(values) == sorted(VARIABLES)
    assert settings_from(values) == settings_from({}) == Settings()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
def test_every_setting_is_documented(setting: Setting) -> None:
    assert isinstance(setting.group, Group)
    assert setting.help.strip().endswith("."), f"{setting.variable}: help must be a sentence (it is followed by 'Accepted: ...')"
    assert setting.parser.accepted.strip()


def test_secrets_are_never_shown() -> None:
    secrets = [s for s in SETTINGS if s.secret]
    assert [s.variable for s in secrets] == ["DB_PASSWORD"]
    for setting in secrets:
        assert not _field(setting).repr, f"{setting.field} must be declared with repr=False"
        assert setting.default == ""
        assert f"\n{setting.variable}=\n" in docgen.env_example()
    assert "s3cret" not in repr(settings_from({"DB_PASSWORD": "s3cret", "DB_HOST": "h"}))


BAD = "\x00not: valid\x00"


def _rejects(setting: Setting, raw: str) -> bool:
    try:
        setting.parser.parse(raw)
    except (ValueError, LookupError, TypeError):
        return True
    return False


@pytest.mark.parametrize("setting", [s for s in SETTINGS if _rejects(s, BAD)], ids=lambda s: s.variable)
def test_a_bad_value_is_reported_with_the_registry_text(setting: Setting) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({setting.variable: BAD})
    assert str(caught.value) == f"{setting.variable}={BAD!r} is invalid: expected {setting.parser.accepted}"


def test_blank_means_unset_except_where_a_blank_is_a_value() -> None:
    for setting in SETTINGS:
        assert settings_from({setting.variable: "  "}) == Settings() or setting.parser.keeps_blank, setting.variable
    assert settings_from({"DB_PASSWORD": " "}).db_password == " "


# -- rules -------------------------------------------------------------------------------------
def test_every_rule_has_a_description() -> None:
    assert list(RULES) == list(Rule), "RULES must describe every Rule, in the order of the enum"
    for rule, doc in RULES.items():
        assert rule.value == rule.name.lower()
        assert doc.checks.strip(), f"{rule}: what does it check?"
        assert doc.fix.strip(), f"{rule}: what should a person do?"
        assert set(doc.settings) <= set(VARIABLES), f"{rule}: unknown settings {set(doc.settings) - set(VARIABLES)}"
        assert rule.doc is doc


def _sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py") if path.name != "rules.py"}


def test_every_rule_is_used_and_no_rule_is_spelled_as_a_string() -> None:
    sources = _sources()
    code = "\n".join(sources.values())
    for rule in Rule:
        assert f"Rule.{rule.name}" in code, f"{rule} is in the registry but nothing reports it"
    for path, text in sources.items():
        spelled = re.findall(r"Problem\(\s*['\"]|flag\([^)\n]*, ['\"](?:" + "|".join(Rule) + r")['\"]", text)
        assert not spelled, f"{path.relative_to(REPO)}: use Rule.X, not a string ({spelled})"


def test_a_problem_holds_a_rule_even_when_read_back_from_a_report() -> None:
    problem = Problem("out_of_range", "outside -90..60 °C", line=3)  # type: ignore[arg-type]
    assert problem.rule is Rule.OUT_OF_RANGE
    assert problem.rule == "out_of_range" and f"{problem.rule}" == "out_of_range"
    assert problem.describe("f.csv") == "f.csv:3: outside -90..60 °C [out_of_range]"
    with pytest.raises(ValueError):
        Problem("no_such_rule", "x")  # type: ignore[arg-type]


# -- generated files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(docgen.OUTPUTS))
def test_generated_file_is_up_to_date(name: str) -> None:
    path = REPO / name
    assert path.is_file(), f"{name} is missing: run `make docs` (python -m sensor_etl.docgen)"
    assert path.read_text(encoding="utf-8") == docgen.OUTPUTS[name](), (
        f"{name} differs from what the registries in sensor_etl/config.py and sensor_etl/core/rules.py produce: "
        "run `make docs` (python -m sensor_etl.docgen) and commit the result"
    )


def test_the_docs_list_every_setting_and_rule_in_order() -> None:
    configuration = docgen.configuration_md()
    assert re.findall(r"^\| `(\w+)` \|", configuration, re.MULTILINE) == [s.variable for s in docgen_order()]
    assert re.findall(r"^\| `(\w+)` \|", docgen.rules_md(), re.MULTILINE) == [r.value for r in Rule]
    assert re.findall(r"^(\w+)=", docgen.env_example(), re.MULTILINE) == [s.variable for s in docgen_order()]


def docgen_order() -> list[Setting]:
    return [s for group in Group for s in SETTINGS if s.group is group]


def test_docgen_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main(["--root", str(tmp_path), "--check"]) == 1
    assert "run `make docs`" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()
    assert docgen.main(["--root", str(tmp_path)]) == 0
    assert docgen.main(["--root", str(tmp_path), "--check"]) == 0
    assert docgen.main(["--root", str(REPO), "--check"]) == 0
