"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread) that
verifies every delivery with the Standard Webhooks reference library, as an integrator's would."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request as it arrived, whether its signature verified, and what the receiver answered."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int


class Receiver:
    """Answers each POST with the next status of ``answers`` (200 once they run out)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.secret: str | None = None  # set once the endpoint exists (its secret is shown at creation)
        self.answers = list(answers or [])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.record(headers, body)
                with receiver._lock:
                    status = receiver.received[-1].answered
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where deliveries are sent."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        """What an integrator does with each request: check it with the endpoint's secret."""
        if self.secret is None:
            return False
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    def record(self, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            answered = self.answers.pop(0) if self.answers else 200
            self.received.append(Received(headers, body, self.verify(headers, body), answered))

    def snapshot(self) -> list[Received]:
        """What arrived so far."""
        with self._lock:
            return list(self.received)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
