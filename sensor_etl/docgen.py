"""Write the files generated from the registries: ``.env.example``, docs/configuration.md, docs/rules.md.

``python -m sensor_etl.docgen`` (``make docs``) rewrites them from ``config.SETTINGS`` and
``core.rules.RULES``; ``--check`` only reports which ones are stale (exit 1). tests/test_registry.py
fails when a committed file differs from what this produces.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from sensor_etl.config import SETTINGS, Group, Setting, settings_from
from sensor_etl.core.rules import RULES
from sensor_etl.errors import ConfigError
from sensor_etl.sources import KEYS

REGENERATE = "make docs"
COMMAND = "python -m sensor_etl.docgen"
ENV_WIDTH = 100  # .env.example comment lines are wrapped at this width
RULE_WIDTH = 94  # "# --- Group ----...": the section lines of .env.example


def _grouped() -> list[tuple[Group, list[Setting]]]:
    """The settings by group, groups in ``Group`` order, settings in registry order."""
    return [(group, [s for s in SETTINGS if s.group is group]) for group in Group if any(s.group is group for s in SETTINGS)]


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, ENV_WIDTH - 2, break_long_words=False, break_on_hyphens=False)]


def env_example() -> str:
    """``.env.example``: every variable with its help as comments and its default, grouped."""
    lines = [
        "# sensor-etl settings. Copy to .env and edit; real environment variables win over this file.",
        "# Every line shows the default; an unset or empty variable keeps it. An invalid value stops the",
        "# daemon at start-up with exit code 2.",
        f"# Generated from SETTINGS in sensor_etl/config.py by `{REGENERATE}` ({COMMAND}): edit there.",
    ]
    for group, settings in _grouped():
        lines += ["", f"# --- {group} ".ljust(RULE_WIDTH, "-")]
        for setting in settings:
            lines += _comment(f"{setting.help} Accepted: {setting.parser.accepted}.")
            lines.append(f"{setting.variable}={'' if setting.secret else setting.default}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Plain text made safe for a markdown table cell."""
    return _pipes(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*"))


def _pipes(markdown: str) -> str:
    """Markdown made safe for a table cell: a pipe would end the cell."""
    return markdown.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else "—"


def _config_error_example() -> str:
    try:
        settings_from({"MONITOR_INTERVAL": "soon"})
    except ConfigError as exc:
        return f"sensor-etl: configuration error: {exc}"
    raise AssertionError("MONITOR_INTERVAL=soon was accepted")


def configuration_md() -> str:
    """docs/configuration.md: a short introduction and one table per group."""
    lines = [
        "# Configuration",
        "",
        f"<!-- Generated from sensor_etl/config.py (SETTINGS) by `{REGENERATE}` ({COMMAND}): edit the registry there, not this file. -->",
        "",
        "All settings are environment variables, also read from `.env` in the working directory, or from the file given",
        "with `--env-file PATH` (the environment wins). [`.env.example`](../.env.example) lists every one with its default",
        "and what it does. An unset or empty variable keeps its default.",
        "",
        "An invalid value stops the daemon at start-up with exit code 2 and one line on stderr naming the variable, the",
        "value and what is accepted:",
        "",
        "```",
        _config_error_example(),
        "```",
        "",
        "Each `*_MIN` must also be below its `*_MAX`. The password never appears in a log line (`DATABASE_URL` is",
        "logged with `***`). What each rule checks: [rules.md](rules.md); how `MAX_INVALID_ROWS` sets invalid rows",
        "aside: [Rejects](input.md#rejects-max_invalid_rows).",
    ]
    for group, settings in _grouped():
        lines += ["", f"## {group}", "", "| variable | default | accepted values | meaning |", "|---|---|---|---|"]
        for s in settings:
            default = "—" if s.secret else _code(s.default)
            lines.append(f"| `{s.variable}` | {default} | {_cell(s.parser.accepted)} | {_cell(s.help)} |")
    lines += [
        "",
        "## Keys of `SOURCES_FILE`",
        "",
        "A `[[source]]` table of [`SOURCES_FILE`](sources.md) takes `name`, `match`, `sensor_id` or `sensor_id_pattern`, and",
        "these file-level settings, each under its variable's name in lower case and accepting what the variable accepts:",
        "",
        *(f"- `{key}` (`{setting.variable}`)" for key, setting in KEYS.items()),
    ]
    return "\n".join(lines) + "\n"


def rules_md() -> str:
    """docs/rules.md: a short introduction and the rule table, in the order the checks run."""
    lines = [
        "# Validation rules",
        "",
        f"<!-- Generated from sensor_etl/core/rules.py (RULES) by `{REGENERATE}` ({COMMAND}): edit the registry there, not this file. -->",
        "",
        "Every problem names the file, line, column, raw value and rule. File-level rules quarantine at once; row rules",
        "are all collected (counts for every rule, details of the first 100) before deciding. What happens to a file",
        "that breaks them (quarantine, or rejects mode with `MAX_INVALID_ROWS`) is in [input.md](input.md#validation);",
        "the settings are in [configuration.md](configuration.md). The rules in the order they are checked:",
        "",
        "| rule | what it checks | what to do | setting |",
        "|---|---|---|---|",
    ]
    for rule, doc in RULES.items():
        settings = ", ".join(f"`{name}`" for name in doc.settings) or "—"
        lines.append(f"| `{rule}` | {_pipes(doc.checks)} | {_pipes(doc.fix)} | {settings} |")
    return "\n".join(lines) + "\n"


OUTPUTS: dict[str, Callable[[], str]] = {
    ".env.example": env_example,
    "docs/configuration.md": configuration_md,
    "docs/rules.md": rules_md,
}


def stale(root: Path) -> list[str]:
    """The generated files under ``root`` whose content differs from what the registries produce."""
    return [
        name for name, render in OUTPUTS.items() if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != render()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: the current directory)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    outdated = stale(args.root)
    if args.check:
        for name in outdated:
            print(f"{name} is out of date: run `{REGENERATE}` ({COMMAND})", file=sys.stderr)
        return 1 if outdated else 0
    for name in outdated:
        path = args.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OUTPUTS[name](), encoding="utf-8")
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
