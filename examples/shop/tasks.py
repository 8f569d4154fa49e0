"""The shop's background work: the order confirmation SMS, sent from a Celery task.

Like ``main.py`` it knows nothing about otel-logkit. With a broker the shop enqueues and a worker
sends::

    SHOP_BROKER_URL=redis://127.0.0.1:6379/0 otel-logkit-instrument uvicorn examples.shop.main:app
    SHOP_BROKER_URL=redis://127.0.0.1:6379/0 otel-logkit-instrument celery -A examples.shop.tasks worker

Without ``SHOP_BROKER_URL`` (``make run``) Celery's ``task_always_eager`` runs the task in-process,
inside the request that enqueued it: the same lines, no broker and no worker needed.

The SMS gateway is ``SHOP_SMS_URL`` (unset: the message is simulated). A 5xx answer or a
connection error is retried (``SHOP_SMS_RETRY_DELAY`` seconds apart, 3 times at most); a 4xx
answer fails the task.
"""

from __future__ import annotations

import os
from typing import Any

import requests
import structlog
from celery import Celery

log = structlog.get_logger()

BROKER_URL = os.environ.get("SHOP_BROKER_URL", "")

app = Celery("shop", broker=BROKER_URL or "memory://")
app.conf.update(
    task_always_eager=not BROKER_URL,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


class SmsGatewayUnavailableError(Exception):
    """The SMS gateway answered 5xx: worth another try."""


@app.task(name="shop.send_order_confirmation", bind=True, max_retries=3)
def send_order_confirmation(self: Any, order_id: int, phone: str) -> str:
    """Text the customer that their order is confirmed."""
    url = os.environ.get("SHOP_SMS_URL")
    if not url:
        log.debug("sms gateway not configured, message simulated", order_id=order_id)
        return "simulated"
    try:
        response = requests.post(
            f"{url.rstrip('/')}/messages",
            data={"to": phone, "body": f"Your order {order_id} is confirmed"},
            timeout=5,
        )
        if response.status_code >= 500:
            raise SmsGatewayUnavailableError(f"sms gateway answered {response.status_code}")
    except (requests.ConnectionError, requests.Timeout, SmsGatewayUnavailableError) as error:
        raise self.retry(exc=error, countdown=float(os.environ.get("SHOP_SMS_RETRY_DELAY", "2"))) from error
    response.raise_for_status()
    log.info("order confirmation sent", order_id=order_id)
    return str(response.json().get("sid", ""))


def confirm_order(order_id: int, phone: str) -> None:
    """Enqueue the confirmation SMS (run at once, in-process, when no broker is configured)."""
    send_order_confirmation.delay(order_id, phone)
