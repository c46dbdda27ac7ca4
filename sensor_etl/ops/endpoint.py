"""The HTTP endpoint on METRICS_ADDRESS:METRICS_PORT: ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` answers whether the process is alive and its loop is turning, ``/readyz`` whether it
can do its work (database, inbox, archive folders). Each check is a callable returning what failed
(``{}``: nothing); the answer is 200 or 503 with a JSON body naming the failures, so an orchestrator
and a person read the same thing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], dict[str, str]]


class Endpoint:
    """A threaded HTTP server in the background; ``close`` stops it."""

    def __init__(self, address: str, port: int, registry: CollectorRegistry, *, live: Check, ready: Check) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _verdict(live()),
            "/readyz": lambda: _verdict(ready()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, content_type, body = route() if route else (404, "text/plain", b"not found: try /metrics, /healthz, /readyz\n")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not events worth a log line
                pass

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-endpoint", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port listened on (the one the OS picked for METRICS_PORT=0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _verdict(failures: dict[str, str]) -> tuple[int, str, bytes]:
    body = {"status": "fail", "failed": failures} if failures else {"status": "ok"}
    return (503 if failures else 200), "application/json", (json.dumps(body) + "\n").encode()
