"""Redaction cost per log line and per 1 KB JSON body, relative to the chain without redaction.

Run: ``.venv/bin/python bench/bench_redaction.py [--repeats 15] [--number 20000]``

Each case runs a structlog chain (contextvars, level, ISO timestamp, event renamed to
``message``, JSON rendering) with and without :class:`RedactingProcessor` before the renderer.
Variants are interleaved within every repeat (so drift hits them alike) and the median of the
repeats is reported, per line in microseconds and as the added share of the unredacted cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from otel_logkit.redact import RedactingProcessor, Redactor

LINE_FIELDS: dict[str, Any] = {
    "order_id": "ord_8f14e45fceea167a",
    "customer_id": "cus_Q2x81nVb",
    "amount": 1999,
    "currency": "EUR",
    "items": 3,
    "route": "/v1/orders",
    "status_code": 201,
    "duration_ms": 12.4,
    "note": "gift wrap, deliver after 5pm",
}
"""A typical ~10-field line (with ``message``, ``level`` and ``timestamp`` added by the chain)."""


def _body_1kb() -> str:
    lines = [
        {"sku": f"SKU-{i:04d}", "qty": i % 3 + 1, "price": 1299 + i, "name": f"Item number {i}"} for i in range(12)
    ]
    body = {"order": {"id": "ord_8f14e45f", "currency": "EUR", "lines": lines, "shipping": {"city": "Berlin"}}}
    text = json.dumps(body)
    return text[: text.rfind("}", 0, 1024) + 1] if len(text) > 1024 else text


BODY = _body_1kb()


def _chain(render: Callable[..., Any], redactor: Redactor | None) -> list[Any]:
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.EventRenamer("message"),
    ]
    if redactor is not None:
        chain.append(RedactingProcessor(redactor))
    chain.append(render)
    return chain


def _logger(chain: list[Any]) -> Any:
    return structlog.wrap_logger(structlog.ReturnLogger(), processors=chain, cache_logger_on_first_use=True)


def _per_call_us(func: Callable[[], Any], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - started) / number * 1e6


def run(repeats: int, number: int) -> dict[str, float]:
    """Measure every variant ``repeats`` times, interleaved; return the median µs per call."""
    redactor = Redactor()
    renderers = {
        "json": structlog.processors.JSONRenderer(),
        "orjson": structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj).decode()),
    }
    cases: dict[str, Callable[[], Any]] = {}
    for name, render in renderers.items():
        plain, redacted = _logger(_chain(render, None)), _logger(_chain(render, redactor))
        cases[f"line/{name}/plain"] = lambda log=plain: log.info("order created", **LINE_FIELDS)
        cases[f"line/{name}/redacted"] = lambda log=redacted: log.info("order created", **LINE_FIELDS)
        cases[f"body/{name}/plain"] = lambda log=plain: log.info("request body", request_body=BODY)
        cases[f"body/{name}/redacted"] = lambda log=redacted: log.info("request body", request_body=BODY)
    cases["summarize_body/1kb"] = lambda: redactor.summarize_body(BODY, "application/json")
    cases["redact_event/line"] = lambda: redactor.redact_event({"message": "order created", **LINE_FIELDS})
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for func in cases.values():  # warm-up: caches, first-use logger binding
        _per_call_us(func, max(number // 10, 100))
    for _ in range(repeats):
        for name, func in cases.items():
            samples[name].append(_per_call_us(func, number))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    """Print median costs and the redaction overhead ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    medians = run(args.repeats, args.number)
    print(f"body size: {len(BODY)} bytes; repeats={args.repeats} number={args.number}")
    for name, value in medians.items():
        print(f"{name:<24} {value:8.2f} µs")
    for case in ("line", "body"):
        for renderer in ("json", "orjson"):
            plain, redacted = medians[f"{case}/{renderer}/plain"], medians[f"{case}/{renderer}/redacted"]
            print(
                f"{case} ({renderer}): {plain:.2f} -> {redacted:.2f} µs, redaction adds "
                f"{(redacted - plain) / plain:+.1%} (ratio {redacted / plain:.3f})"
            )


if __name__ == "__main__":
    main()
