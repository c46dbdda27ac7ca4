"""DATABASE_URL_SECRET: the server to load into, kept in AWS Secrets Manager and read at start-up,
so the URL and its password are never in the function's or the service's configuration."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import quote

from sensor_etl.config import Settings
from sensor_etl.edges import aws
from sensor_etl.edges.inbox import Retrier
from sensor_etl.errors import ConfigError


def with_database_secret(settings: Settings, retrying: Retrier) -> Settings:
    """``settings`` with DATABASE_URL read from DATABASE_URL_SECRET (when that is set)."""
    if not settings.database_url_secret:
        return settings
    secret = settings.database_url_secret
    answer = aws.call(retrying, f"read secret {secret}", lambda: aws.client("secretsmanager").get_secret_value(SecretId=secret))
    return replace(settings, database_url=database_url(secret, answer.get("SecretString") or ""))


def database_url(secret: str, value: str) -> str:
    """A libpq URI from a secret's text: the URI itself, or the JSON Amazon RDS keeps for a database
    (``host``, ``port``, ``username``, ``password``, ``dbname``)."""
    text = value.strip()
    if not text.startswith("{"):
        if not text.startswith(("postgresql://", "postgres://")):
            raise ConfigError("DATABASE_URL_SECRET", secret, "a secret whose value is a postgresql:// URI or an RDS secret's JSON")
        return text
    try:
        fields = json.loads(text)
        user, password, host = quote(fields["username"], safe=""), quote(fields["password"], safe=""), fields["host"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("DATABASE_URL_SECRET", secret, "an RDS secret's JSON with host, username and password") from exc
    return f"postgresql://{user}:{password}@{host}:{fields.get('port', 5432)}/{quote(str(fields.get('dbname', 'postgres')), safe='')}"
