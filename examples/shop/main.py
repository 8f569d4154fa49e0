"""A small FastAPI shop. It knows nothing about otel-logkit: it logs the ordinary structlog and
stdlib way, and ``otel-logkit-instrument uvicorn examples.shop.main:app`` does the rest.

Endpoints:
    GET  /health                      liveness probe
    GET  /products                    the catalogue
    GET  /products/{product_id}       one product (404 when unknown)
    POST /login                       {"username", "password"} -> "user logged in"
    POST /orders                      {"product_id", "quantity", "card": {"number", "cvv"}, "phone"}
                                      -> charges the payment gateway (SHOP_PAYMENT_URL), texts the
                                      customer through the SMS gateway (SHOP_SMS_URL), "order created"
    GET  /orders/{order_id}           one order
    GET  /boom                        an unhandled error (for trying the error line)

Set SHOP_PAYMENT_URL / SHOP_SMS_URL to real or fake gateways; unset, the calls are simulated.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
from typing import Any

import httpx
import requests
import structlog
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from examples.shop import tasks  # order confirmation SMS (Celery; in-process without a broker)

log = structlog.get_logger()
audit = logging.getLogger("shop.audit")

app = FastAPI(title="shop")

PRODUCTS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "name": "coffee beans", "price_cents": 1290, "currency": "EUR"},
    2: {"id": 2, "name": "grinder", "price_cents": 8900, "currency": "EUR"},
    3: {"id": 3, "name": "kettle", "price_cents": 4500, "currency": "EUR"},
}
ORDERS: dict[int, dict[str, Any]] = {}
# A demo account: any username, this password (override with SHOP_DEMO_PASSWORD).
DEMO_PASSWORD = os.environ.get("SHOP_DEMO_PASSWORD", "correct horse")
_order_ids = itertools.count(1001)


class Login(BaseModel):
    username: str
    password: str


class Card(BaseModel):
    number: str
    cvv: str


class OrderIn(BaseModel):
    product_id: int
    quantity: int = Field(default=1, ge=1, le=100)
    card: Card
    phone: str | None = None


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/products")
async def list_products() -> list[dict[str, Any]]:
    log.debug("products listed", count=len(PRODUCTS))
    return list(PRODUCTS.values())


@app.get("/products/{product_id}")
async def get_product(product_id: int) -> dict[str, Any]:
    product = PRODUCTS.get(product_id)
    if product is None:
        log.info("product not found", product_id=product_id)
        raise HTTPException(status_code=404, detail="no such product")
    return product


@app.post("/login")
async def login(body: Login) -> dict[str, str]:
    if not hmac.compare_digest(body.password.encode(), DEMO_PASSWORD.encode()):
        log.warning("login failed", username=body.username, error_code="bad_credentials")
        raise HTTPException(status_code=401, detail="bad credentials")
    log.info("user logged in", username=body.username)
    audit.info("login of %s", body.username)
    return {"status": "welcome"}


def _charge(amount_cents: int, card: Card) -> str:
    url = os.environ.get("SHOP_PAYMENT_URL")
    if not url:
        log.debug("payment gateway not configured, charge simulated", amount_cents=amount_cents)
        return "ch_simulated"
    response = requests.post(
        f"{url.rstrip('/')}/v1/charges",
        json={"amount": amount_cents, "currency": "eur", "card": {"number": card.number, "cvc": card.cvv}},
        timeout=5,
    )
    response.raise_for_status()
    return str(response.json().get("id", "ch_unknown"))


async def _text(phone: str, message: str) -> None:
    url = os.environ.get("SHOP_SMS_URL")
    if not url:
        log.debug("sms gateway not configured, message simulated")
        return
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(f"{url.rstrip('/')}/messages", data={"to": phone, "body": message})
        response.raise_for_status()


@app.post("/orders", status_code=201)
def create_order(body: OrderIn) -> dict[str, Any]:
    product = PRODUCTS.get(body.product_id)
    if product is None:
        log.warning("order rejected", product_id=body.product_id, error_code="unknown_product")
        raise HTTPException(status_code=422, detail="unknown product")
    amount = product["price_cents"] * body.quantity
    try:
        charge_id = _charge(amount, body.card)
    except requests.RequestException as error:
        log.error("payment failed", error_code="payment_failed", reason=type(error).__name__)
        raise HTTPException(status_code=502, detail="payment failed") from error
    order_id = next(_order_ids)
    ORDERS[order_id] = {"id": order_id, "product_id": product["id"], "quantity": body.quantity, "charge": charge_id}
    log.info("order created", order_id=order_id, amount_cents=amount, currency=product["currency"])
    if body.phone:
        tasks.confirm_order(order_id, body.phone)
    return ORDERS[order_id]


@app.post("/orders/{order_id}/notify")
async def notify(order_id: int, phone: str) -> dict[str, str]:
    if order_id not in ORDERS:
        raise HTTPException(status_code=404, detail="no such order")
    await _text(phone, f"Your order {order_id} is on its way")
    log.info("customer notified", order_id=order_id)
    return {"status": "sent"}


@app.get("/orders/{order_id}")
async def get_order(order_id: int) -> dict[str, Any]:
    order = ORDERS.get(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail="no such order")
    return order


@app.get("/boom")
async def boom() -> None:
    log.info("about to fail")
    raise RuntimeError("inventory service returned garbage")
