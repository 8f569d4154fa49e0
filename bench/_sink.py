"""A minimal OTLP/HTTP sink for benchmarks: accepts any POST with 200, counts bytes; run as a process."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.timeout = 1
    lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else 600
    import time

    end = time.monotonic() + lifetime
    while time.monotonic() < end:
        server.handle_request()
