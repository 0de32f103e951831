"""A user's own service, as far as event webhooks go: a local HTTP server that records what it receives.

Each request is handled on a thread of its own, so a receiver told to hang holds only that request. Answers
are scripted (`answer_next`): a status, after an optional delay; 200 when nothing is scripted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded

    def signed_with(self, secret: str, *, tolerance_seconds: float = 300) -> bool:
        """What a receiver checks: `Wallet-Signature` is the HMAC of `"<t>.<raw body>"`, and `t` is recent."""
        fields = dict(part.split("=", 1) for part in self.headers["wallet-signature"].split(","))
        timestamp = int(fields["t"])
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - timestamp) <= tolerance_seconds


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.monotonic(),
                        )
                    )
                    status, delay = receiver._answers.pop(0) if receiver._answers else (200, 0.0)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def url(self, path: str = "/hooks") -> str:
        return self.base_url + path

    def answer_next(self, *statuses: int, delay: float = 0.0) -> None:
        with self._lock:
            self._answers.extend((status, delay) for status in statuses)

    def events(self, path: str | None = None, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if (path is None or r.path == path) and (event_type is None or r.event["type"] == event_type)
            ]
