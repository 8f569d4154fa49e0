"""Fake payment and SMS gateways: small HTTP servers on 127.0.0.1, bounded in lifetime.

Each server records every request it receives (method, path, query, headers, body) and
answers by path, so tests and the example shop can drive success and failure paths:

- payment: ``POST /v1/charges`` -> 200 (or 402 when the card ends in ``0002``),
  ``POST /v1/refunds`` -> 200, ``GET /v1/charges/<id>`` -> 200, ``/v1/fail`` -> 500,
  ``/v1/slow`` -> answers after ``slow_seconds``.
- SMS: ``POST /2010-04-01/Accounts/<sid>/Messages.json`` or ``POST /messages`` -> 201 (400
  when ``To``/``to`` is missing), ``/fail`` -> 503, ``/slow`` -> answers after ``slow_seconds``.

Run both for the example shop (prints the ``SHOP_*_URL`` variables, stops after ``--lifetime``)::

    .venv/bin/python -m tests.fakes.gateways --lifetime 3600

Example::

    with FakePaymentGateway() as payment:
        requests.post(payment.url + "/v1/charges", json={"amount": 100})
        assert payment.requests[-1].path == "/v1/charges"
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    form: dict[str, list[str]] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


Reply = tuple[int, dict[str, Any]]


class FakeGateway:
    """An HTTP server on ``127.0.0.1:<free port>`` in a daemon thread.

    Args:
        slow_seconds: how long ``/slow`` paths wait before answering (for client timeouts).
        max_lifetime: seconds after which the server shuts itself down, whatever the test does.
    """

    name: ClassVar[str] = "fake"

    def __init__(self, *, slow_seconds: float = 2.0, max_lifetime: float = 120.0) -> None:
        self.slow_seconds = slow_seconds
        self.max_lifetime = max_lifetime
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.name}-gateway", daemon=True)
        self._watchdog = threading.Timer(max_lifetime, self.stop)
        self._watchdog.daemon = True

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGateway:
        """Start serving (and the lifetime watchdog)."""
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def reply(self, recorded: Recorded) -> Reply:
        """The status and JSON body for one request; subclasses route by path."""
        return 404, {"error": {"code": "not_found"}}

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                form: dict[str, list[str]] = {}
                if "form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
                recorded = Recorded(
                    method=self.command,
                    path=split.path,
                    query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    form=form,
                )
                gateway._record(recorded)
                if split.path.endswith("/slow"):
                    gateway._stopped.wait(gateway.slow_seconds)
                status, payload = gateway.reply(recorded)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test): nothing to answer

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class FakePaymentGateway(FakeGateway):
    """A Stripe-like payment API: charges, refunds, a failing and a slow endpoint."""

    name = "payment"

    def reply(self, recorded: Recorded) -> Reply:  # noqa: PLR0911 - one return per route
        """Charge, decline (card ending 0002), refund, fail or answer late."""
        path = recorded.path
        if path.endswith("/fail"):
            return 500, {"error": {"code": "internal_error"}}
        if path.endswith("/slow"):
            return 200, {"ok": True}
        if recorded.method == "POST" and path == "/v1/charges":
            params = _params(recorded)
            card = str(params.get("card[number]") or params.get("card", {}).get("number", "")) if params else ""
            if card.endswith("0002"):
                return 402, {"error": {"code": "card_declined", "decline_code": "generic_decline"}}
            return 200, {"id": "ch_123", "status": "succeeded", "amount": params.get("amount")}
        if recorded.method == "POST" and path == "/v1/refunds":
            return 200, {"id": "re_123", "status": "succeeded"}
        if recorded.method == "GET" and path.startswith("/v1/charges/"):
            return 200, {"id": path.rsplit("/", 1)[1], "status": "succeeded"}
        return super().reply(recorded)


class FakeSmsGateway(FakeGateway):
    """A Twilio-like SMS API: form-encoded messages (``To``/``to``), a failing and a slow endpoint."""

    name = "sms"

    def reply(self, recorded: Recorded) -> Reply:
        """Queue a message (400 without ``To``), fail with 503, or answer late."""
        path = recorded.path
        if path.endswith("/fail"):
            return 503, {"code": 20503, "message": "Service unavailable"}
        if path.endswith("/slow"):
            return 201, {"status": "queued"}
        if recorded.method == "POST" and path.lower().endswith(("/messages", "/messages.json")):
            params = {key.lower(): value for key, value in _params(recorded).items()}
            if not params.get("to"):
                return 400, {"code": 21604, "message": "A 'To' phone number is required."}
            return 201, {"sid": "SM123", "status": "queued"}
        return super().reply(recorded)


def _params(recorded: Recorded) -> dict[str, Any]:
    if recorded.form:
        return {key: values[-1] for key, values in recorded.form.items()}
    if recorded.body:
        try:
            parsed = recorded.json()
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def main(argv: list[str] | None = None) -> None:
    """Serve a fake payment and a fake SMS gateway until Ctrl-C or ``--lifetime`` seconds."""
    import argparse

    parser = argparse.ArgumentParser(description="Fake payment and SMS gateways on 127.0.0.1.")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds before both stop")
    args = parser.parse_args(argv)
    with (
        FakePaymentGateway(max_lifetime=args.lifetime) as payment,
        FakeSmsGateway(max_lifetime=args.lifetime) as sms,
    ):
        print(f"SHOP_PAYMENT_URL={payment.url}", flush=True)
        print(f"SHOP_SMS_URL={sms.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            payment._stopped.wait(args.lifetime)


if __name__ == "__main__":
    main()
