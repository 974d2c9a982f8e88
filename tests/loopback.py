"""Loopback HTTP endpoints that tests stand up themselves (an Alertmanager webhook, a Grafana API stand-in)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 on a free port in a daemon thread until ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class AlertWebhook(LoopbackServer):
    """Records (path, alert labels, status) of every notification Alertmanager posts."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                received.extend((self.path, a["labels"], a["status"]) for a in body.get("alerts", []))
                self.send_response(200)
                self.end_headers()

        super().__init__(Handler)
