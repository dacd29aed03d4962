"""A webhook receiver: a real HTTP server on a free port, in a thread, that keeps what
it is sent and verifies signatures the way the README tells receivers to."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def document(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> dict[str, Any]:
        """The registry event, in either format."""
        doc = self.document
        if "specversion" in doc:
            return doc["data"]  # type: ignore[no-any-return]
        (event,) = doc["events"]
        return event  # type: ignore[no-any-return]

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-registry-signature", ""))


@dataclass
class Receiver:
    """`answer(n)` says the status of the n-th request (from 0); 200 by default."""

    answer: Callable[[int], int] = lambda n: 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    status = receiver.answer(len(receiver.received))
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                        )
                    )
                self.send_response(status)
                reply = b"ok" if status < 300 else b"receiver is down for now"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self) -> None:  # how many it accepted, for a receiver in a process
                reply = str(len(receiver.accepted())).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self) -> list[Received]:
        """What it answered 2xx to, in arrival order."""
        with self.lock:
            return [r for r in self.received if r.status < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    # A receiver in its own process (benchmarks: not sharing the load generator's GIL);
    # prints its URL, then serves until killed.
    running = Receiver()
    print(running.url, flush=True)
    running.thread.join()
