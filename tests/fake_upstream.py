"""Small fake upstream servers (an OpenAI-style engine, an Ollama) for tests: real HTTP on
127.0.0.1, in a background thread, answering from a ``BaseHTTPRequestHandler`` subclass."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    """A handler with helpers to answer and no request log."""

    def send_body(self, raw: bytes, kind: str = "application/json", status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def send_json(self, body: Any, status: int = 200) -> None:
        self.send_body(json.dumps(body, ensure_ascii=False).encode(), status=status)

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, *args: object) -> None:
        pass


def start(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    """A server of ``handler`` on 127.0.0.1 (``port`` 0: any free one), serving in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    """Stop serving and free the port (connections to it are then refused)."""
    server.shutdown()
    server.server_close()


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """``start`` for the ``with`` block, ``stop`` after it."""
    server = start(handler)
    try:
        yield server
    finally:
        stop(server)


def url(server: ThreadingHTTPServer, path: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"
