"""A local webhook receiver for tests: a real HTTP server on a free port, in a thread.

Its answers are scripted by request number, deterministically: `fail_every` answers
every other request 500, and every third failure instead drops the connection without
an answer. `hold` keeps the next request open (unanswered) until `release()`, so a
test can kill the delivering process mid-request. Every request is recorded, with
whether it was accepted (answered 2xx).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as it arrived."""

    number: int
    headers: dict[str, str]
    body: bytes
    accepted: bool = False


@dataclass
class Receiver:
    """The server's state: what arrived, and how to answer."""

    flaky: bool = False  # 50 % 500s, some dropped connections
    always_fail: bool = False
    holding: bool = False
    requests: list[Received] = field(default_factory=list)
    arrived_held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.accepted]

    def release(self) -> None:
        self.holding = False
        self.released.set()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length", 0))
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            received = Received(len(self.requests) + 1, headers, body)
            self.requests.append(received)
        if self.holding:
            self.arrived_held.set()
            self.released.wait(60)
            handler.close_connection = True
            return  # never answered: the connection closes
        n = received.number
        if self.always_fail or (self.flaky and n % 2 == 0):
            if self.flaky and n % 6 == 0:  # every third failure: drop the connection
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
            text = b"receiver is down " * 40
            handler.send_response(500)
            handler.send_header("content-type", "text/plain")
            handler.send_header("content-length", str(len(text)))
            handler.end_headers()
            handler.wfile.write(text)
            return
        received.accepted = True
        handler.send_response(204)
        handler.send_header("content-length", "0")
        handler.end_headers()


def start_receiver(**options) -> Receiver:
    receiver = Receiver(**options)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            receiver.answer(self)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


def stop_receiver(receiver: Receiver) -> None:
    receiver.release()
    if receiver.server is not None:
        receiver.server.shutdown()
        receiver.server.server_close()
