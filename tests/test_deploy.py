"""deploy/emr/ is well-formed: the bootstrap action parses as bash, the definitions as JSON, and they
agree with each other and with the settings registry."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

from dotenv import dotenv_values

from sensor_etl.config import VARIABLES, settings_from
from tests.helpers.workspace import REPO

EMR = REPO / "deploy" / "emr"


def test_the_bootstrap_action_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(EMR / "bootstrap.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_step_runs_what_the_bootstrap_installs_with_the_configured_python() -> None:
    (step,) = json.loads((EMR / "step.json").read_text())
    assert step["Jar"] == "command-runner.jar" and step["ActionOnFailure"] in {"CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER"}
    args = step["Args"]
    assert args[0] == "spark-submit" and args[args.index("--master") + 1] == "yarn"
    script = next(a for a in args if a.endswith("etl_pipeline.py"))
    assert args[args.index(script) + 1 : args.index(script) + 3] == ["--env-file", "/home/hadoop/sensor-etl/sensor-etl.env"]
    assert args[args.index("spark", args.index(script)) + 1].startswith("/mnt/sensor-etl/")
    bootstrap = (EMR / "bootstrap.sh").read_text()
    (home,) = re.findall(r"^HOME_DIR=(\S+)", bootstrap, re.MULTILINE)
    (python,) = re.findall(r"^PYTHON=(\S+)", bootstrap, re.MULTILINE)
    assert script == f"{home}/etl_pipeline.py" and "etl_pipeline.py" in bootstrap and "sensor-etl.env" in bootstrap

    configurations = {c["Classification"]: c for c in json.loads((EMR / "configurations.json").read_text())}
    (exported,) = configurations["spark-env"]["Configurations"]
    assert exported["Properties"]["PYSPARK_PYTHON"] == exported["Properties"]["PYSPARK_DRIVER_PYTHON"] == python
    assert configurations["spark-defaults"]["Properties"]["spark.speculation"] == "false"
    assert "spark.speculation=false" in shlex.join(args)


def test_the_settings_file_names_only_real_settings_and_parses() -> None:
    values = {k: v for k, v in dotenv_values(EMR / "sensor-etl.env").items() if v is not None}
    assert set(values) <= set(VARIABLES) and "DATABASE_URL" in values
    settings = settings_from(values)
    assert not settings.embedded and str(settings.processed_folder).startswith("/mnt/sensor-etl/")
