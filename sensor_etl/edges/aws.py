"""AWS clients (boto3, the ``s3`` extra) and what their errors mean here, for S3, SQS and Secrets Manager.

Clients are configured the standard AWS way: environment, shared config and credentials files,
instance and task roles, and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``, ``_SQS``...) for a
compatible service. boto3's own retries are off: every request goes through the runner's retry
policy (``inbox.Retrier``), so each retry is ours, with the database's backoff, and logged.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

from sensor_etl.edges.inbox import Retrier
from sensor_etl.errors import FatalStorageError, TransientStorageError

T = TypeVar("T")

_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestTimeout",
    "InternalError",
    "InternalFailure",
    "InternalServiceError",
    "ServiceUnavailable",
    "OperationAborted",
}
_FATAL = {
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "NoSuchBucket",
    "InvalidBucketName",
    "AccountProblem",
    "ExpiredToken",
    "InvalidToken",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
}
_MISSING = {"NoSuchKey", "NotFound", "404"}
_UNSET = (NoCredentialsError, PartialCredentialsError, NoRegionError)
_NETWORK = (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


class Precondition(OSError):
    """A conditional request's condition did not hold (HTTP 412): the target exists, or the source changed."""


class NotSupported(OSError):
    """The service does not implement a request or one of its headers (HTTP 501)."""


def classify(exc: Exception, what: str) -> Exception:
    """The error a failed request means here: retry (throttled, 5xx, network), stop (refused, missing
    bucket or queue, no credentials), gone (a missing object), or this request only."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, status = error.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = f"{what}: {code or status} {error.get('Message') or ''}".rstrip()
        if code in _FATAL or status in (401, 403):
            return FatalStorageError(message)
        if code in _MISSING or status == 404:
            return FileNotFoundError(errno.ENOENT, message)
        if code == "PreconditionFailed" or status == 412:
            return Precondition(errno.EEXIST, message)
        if code == "NotImplemented" or status == 501:
            return NotSupported(errno.ENOTSUP, message)
        if code in _TRANSIENT or status >= 500 or status == 429:
            return TransientStorageError(message)
        return OSError(errno.EIO, message)  # refused for this object only (an archived object, a bad range...): the file waits
    if isinstance(exc, _UNSET):
        return FatalStorageError(f"{what}: {exc}")
    return TransientStorageError(f"{what}: {type(exc).__name__}: {exc}")


def call(retrying: Retrier, what: str, request: Callable[[], T]) -> T:
    """``request()``, retried on transient errors; every failure raised classified."""
    return retrying(what)(_classified, what, request)


def _classified(what: str, request: Callable[[], T]) -> T:
    try:
        return request()
    except (ClientError, *_UNSET, *_NETWORK) as exc:
        raise classify(exc, what) from exc


def client(service: str, **options: Any) -> Any:
    """A boto3 client for ``service``, retries left to us; ``options`` as boto3 takes them (region_name...)."""
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60, max_pool_connections=4)
    return boto3.session.Session().client(service, config=config, **options)  # type: ignore[call-overload]
