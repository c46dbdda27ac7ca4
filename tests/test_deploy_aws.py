"""deploy/aws/: the SAM template passes cfn-lint, and what it wires matches the code it deploys."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cfnlint.decode import decode

from sensor_etl import aws_lambda
from sensor_etl.config import S3Location, settings_from
from tests.helpers.workspace import REPO

TEMPLATE = REPO / "deploy" / "aws" / "template.yaml"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=300)


def test_the_template_passes_cfn_lint():
    result = lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_does_find_mistakes(tmp_path):
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("VisibilityTimeout: !Ref QueueVisibilityTimeout", "VisibilityTimout: 30"))
    result = lint(broken)
    assert result.returncode != 0 and "VisibilityTimout" in result.stdout


def test_the_template_wires_what_the_handler_needs():
    template, errors = decode(str(TEMPLATE))
    assert not errors
    resources = template["Resources"]
    function = resources["Loader"]["Properties"]
    variables = {
        name: value["Fn::Sub"].replace("${BucketName}", "my-bucket") if isinstance(value, dict) and "Fn::Sub" in value else value
        for name, value in function["Environment"]["Variables"].items()
    }
    variables["DATABASE_URL_SECRET"] = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"
    settings = settings_from(variables)  # the function's settings are valid settings
    assert settings.data_folder == S3Location("my-bucket", "incoming/")
    notification = resources["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"][0]
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": settings.data_folder.prefix}]
    assert notification["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    trigger = function["Events"]["Objects"]["Properties"]
    assert trigger["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert trigger["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # the handler answers batchItemFailures
    redrive = resources["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    dockerfile = (TEMPLATE.parent / resources["Loader"]["Metadata"]["Dockerfile"].removeprefix("deploy/aws/")).read_text()
    (handler,) = re.findall(r'CMD \["([\w.]+)"\]', dockerfile)
    module, _, name = handler.rpartition(".")
    assert module == aws_lambda.__name__ and callable(getattr(aws_lambda, name))
