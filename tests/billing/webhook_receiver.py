"""A real HTTP receiver for webhook tests: a threaded http.server on a free port that records every
POST, verifies its signature, and fails the first `failures` requests of each event id (status 500)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from billing.webhook_signing import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class Received:
    event_id: str
    status: int
    signature_ok: bool
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    failures: int = 0
    secret: str = ""
    # When set, every request waits for it before answering (a receiver that hangs).
    gate: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    waiting: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.gate is not None:
                    with receiver._lock:
                        receiver.waiting += 1
                    receiver.gate.wait(60)
                event_id = self.headers.get(EVENT_ID_HEADER, "")
                with receiver._lock:
                    seen = sum(1 for r in receiver.received if r.event_id == event_id)
                    status = 500 if seen < receiver.failures else 200
                    ok = bool(receiver.secret) and verify(
                        receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body, time.time()
                    )
                    receiver.received.append(
                        Received(event_id, status, ok, json.loads(body), dict(self.headers.items()))
                    )
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try again " + b"x" * 4096)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks?tenant=t1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def successes(self) -> Counter[str]:
        return Counter(r.event_id for r in self.snapshot() if r.status == 200)

    def timestamps_match(self) -> bool:
        return all(
            r.headers.get(SIGNATURE_HEADER, "").startswith(f"t={r.headers.get(TIMESTAMP_HEADER)},")
            for r in self.snapshot()
        )
