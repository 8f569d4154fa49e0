"""The shop and a real Celery worker (prefork, 2 children) under otel-logkit-instrument, over a
real Redis: request id and trace carried into tasks, outcome lines, redaction, SIGTERM flush.

Needs Debian's ``redis-server`` (``.ci/run`` installs it); spans and records go to the Python
OTLP receiver of tests/support (no collector needed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes.gateways import FakeSmsGateway, Recorded, Reply
from tests.support import redis_server
from tests.support.otlp_receiver import OTLPReceiver, otlp_receiver
from tests.support.processes import BIN, ROOT, base_env, free_port, wait_http

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not redis_server.available(), reason="needs redis-server (apt-get install -y redis-server)"),
]

RETRIED_PHONE = "+15550100123"
REJECTED_PHONE = "+15550100400"
CARD = "4242424242424242"
WORKER_SERVICE = "shop-worker"


class FlakySmsGateway(FakeSmsGateway):
    """503 on the first message to each recipient, 400 for recipients ending in 0400, else 201."""

    def __init__(self) -> None:
        super().__init__(max_lifetime=180.0)
        self._seen: set[str] = set()

    def reply(self, recorded: Recorded) -> Reply:
        """Answer by recipient (see the class docstring)."""
        to = (recorded.form.get("to") or [""])[-1]
        if to.endswith("0400"):
            return 400, {"code": 21211, "message": "invalid 'To' phone number"}
        if to not in self._seen:
            self._seen.add(to)
            return 503, {"code": 20503, "message": "Service unavailable"}
        return super().reply(recorded)


@dataclass
class Process:
    """A child process whose stdout lines are collected as they come."""

    args: list[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def start(self) -> Process:
        """Start it in its own session, stdout read by a thread."""
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        """Every stdout line so far, parsed as JSON (fails on a line that is not)."""
        return [json.loads(line) for line in list(self.lines)]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0) -> None:
        """Wait until ``predicate(records)`` holds, or fail with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.records()):
                return
            assert self.process is not None
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("condition not met; output:\n" + "\n".join(self.lines[-40:]) + self.stderr_tail())

    def stderr_tail(self) -> str:
        """What the process wrote on stderr (only after it exited)."""
        if self.process is None or self.process.poll() is None or self.process.stderr is None:
            return ""
        return "\nstderr:\n" + self.process.stderr.read()[-4000:]

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the process itself (not its group, as an orchestrator does), wait for its exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        """Kill the whole group if still running (cleanup)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@dataclass
class Stack:
    """The running shop, worker, SMS gateway and OTLP receiver of one test."""

    shop_url: str
    shop: Process
    worker: Process
    receiver: OTLPReceiver
    sms: FlakySmsGateway


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Redis, the OTLP receiver, the flaky SMS gateway, the shop and a prefork worker (2 children)."""
    with redis_server.redis_server() as broker, otlp_receiver() as receiver, FlakySmsGateway() as sms:
        common = {
            "SHOP_BROKER_URL": broker,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "LOGKIT_ENV": "test",
            "LOGKIT_LOG_LEVEL": "INFO",
            "LOGKIT_SHUTDOWN_TIMEOUT": "10",
        }
        port = free_port()
        shop = Process(
            [str(BIN / "otel-logkit-instrument"), "uvicorn", "examples.shop.main:app", "--port", str(port)],
            base_env(OTEL_SERVICE_NAME="shop", **common),
        )
        worker = Process(
            [
                str(BIN / "otel-logkit-instrument"),
                *("celery", "-A", "examples.shop.tasks", "worker", "--pool", "prefork", "--concurrency", "2"),
                *("--without-mingle", "--without-gossip", "--hostname", "e2e@localhost"),
            ],
            base_env(
                OTEL_SERVICE_NAME=WORKER_SERVICE,
                SHOP_SMS_URL=sms.url,
                SHOP_SMS_RETRY_DELAY="0",
                C_FORCE_ROOT="1",
                **common,
            ),
        )
        try:
            shop.start()
            worker.start()
            wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
            worker.wait_for(lambda records: any(r["message"].endswith(" ready.") for r in records), timeout=60)
            yield Stack(f"http://127.0.0.1:{port}", shop, worker, receiver, sms)
        finally:
            worker.kill()
            shop.kill()


@dataclass
class Order:
    """One order placed through the shop: its request id, trace id and the worker's lines for it."""

    request_id: str
    trace_id: str
    lines: list[dict[str, Any]]


def place_order(stack: Stack, request_id: str, phone: str, done: str) -> Order:
    """POST an order with ``phone`` and wait until the worker logged ``done`` (its last line) for its task."""
    body = json.dumps({"product_id": 1, "quantity": 1, "card": {"number": CARD, "cvv": "737"}, "phone": phone})
    request = urllib.request.Request(
        f"{stack.shop_url}/orders",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert 201 == response.status

    def mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r.get("request_id") == request_id]

    stack.worker.wait_for(lambda records: any(r["message"] == done for r in mine(records)), timeout=60)
    stack.shop.wait_for(lambda records: any(r.get("request_id") == request_id and "route" in r for r in records))
    access = next(r for r in stack.shop.records() if r.get("request_id") == request_id and "route" in r)
    return Order(request_id, access["trace_id"], mine(stack.worker.records()))


@pytest.fixture(scope="module")
def retried(stack: Stack) -> Order:
    """An order whose confirmation SMS is retried once (503), then sent."""
    return place_order(stack, "e2e-order-retried-0001", RETRIED_PHONE, "task finished")


@pytest.fixture(scope="module")
def rejected(stack: Stack) -> Order:
    """An order whose confirmation SMS is rejected (400): the task fails."""
    return place_order(stack, "e2e-order-rejected-0002", REJECTED_PHONE, "task failed")


def test_task_lines_carry_the_request_id_and_trace(retried: Order) -> None:
    """Every line of the order's task runs carries its request id and the request's trace id."""
    assert {"task started", "task retry", "order confirmation sent", "task finished"} <= {
        r["message"] for r in retried.lines
    }
    assert {retried.trace_id} == {r["trace_id"] for r in retried.lines}
    assert {"shop.send_order_confirmation"} == {r["task_name"] for r in retried.lines}


def test_retry_is_logged_at_warning(retried: Order) -> None:
    """The 503 gives one WARNING `task retry` with the count and reason; the retried run has task_retries 1."""
    (retry,) = [r for r in retried.lines if r["message"] == "task retry"]
    assert ("WARNING", 1) == (retry["level"], retry["retries"])
    assert "503" in retry["reason"]
    (finished,) = [r for r in retried.lines if r["message"] == "task finished"]
    assert 1 == finished["task_retries"]


def test_task_spans_continue_the_request_trace(stack: Stack, retried: Order) -> None:
    """The exported task spans (both runs) belong to the request's trace."""
    assert stack.receiver.wait_for(
        lambda r: len([s for s in r.spans if s.name == "run/shop.send_order_confirmation"]) >= 2, timeout=30
    )
    runs = [s for s in stack.receiver.spans if s.name == "run/shop.send_order_confirmation"]
    assert {retried.trace_id} <= {s.trace_id for s in runs}
    assert {WORKER_SERVICE} == {s.resource["service.name"] for s in runs}


def test_failing_task_is_one_error_line_without_the_phone(stack: Stack, rejected: Order) -> None:
    """The rejected SMS is exactly one ERROR line, with traceback and arguments, and no phone number."""
    errors = [r for r in stack.worker.records() if r["level"] == "ERROR"]
    (error,) = errors
    assert (rejected.request_id, "HTTPError") == (error["request_id"], error["error_type"])
    assert "Traceback" in error["exception"]
    assert "task_args" in error
    assert not any(REJECTED_PHONE[2:] in line for line in stack.worker.lines)


def test_sigterm_flushes_every_record(stack: Stack, retried: Order, rejected: Order) -> None:
    """After a warm shutdown (SIGTERM), every worker line is also an exported record; all lines are JSON."""
    assert 0 == stack.worker.terminate()
    printed = [r for r in stack.worker.records() if not r["logger"].startswith("opentelemetry")]
    assert len(printed) == len({json.dumps(r, sort_keys=True) for r in printed}), "no line written twice"

    def exported(receiver: OTLPReceiver) -> list[Any]:
        return [x for x in receiver.logs if x.resource.get("service.name") == WORKER_SERVICE]

    stack.receiver.wait_for(lambda r: len(exported(r)) >= len(printed), timeout=15)
    assert sorted(r["message"] for r in printed) == sorted(x.body for x in exported(stack.receiver))
    assert any("Warm shutdown" in r["message"] for r in printed)
