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
Products and orders are stored through SQLAlchemy (examples/shop/db.py): SQLite in memory by
default, PostgreSQL with SHOP_DATABASE_URL=postgresql+psycopg://user@host:port/db.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

import httpx
import requests
import structlog
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from examples.shop import tasks  # order confirmation SMS (Celery; in-process without a broker)
from examples.shop.db import Order, Product, Store

log = structlog.get_logger()
audit = logging.getLogger("shop.audit")

app = FastAPI(title="shop")

store = Store()
# A demo account: any username, this password (override with SHOP_DEMO_PASSWORD).
DEMO_PASSWORD = os.environ.get("SHOP_DEMO_PASSWORD", "correct horse")


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
def list_products() -> list[dict[str, Any]]:
    with store.session() as session:
        products = [p.as_dict() for p in session.scalars(select(Product).order_by(Product.id))]
    log.debug("products listed", count=len(products))
    return products


@app.get("/products/{product_id}")
def get_product(product_id: int) -> dict[str, Any]:
    with store.session() as session:
        product = session.get(Product, product_id)
        if product is None:
            log.info("product not found", product_id=product_id)
            raise HTTPException(status_code=404, detail="no such product")
        return product.as_dict()


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
    with store.session() as session:
        product = session.get(Product, body.product_id)
        if product is None:
            log.warning("order rejected", product_id=body.product_id, error_code="unknown_product")
            raise HTTPException(status_code=422, detail="unknown product")
        amount, currency = product.price_cents * body.quantity, product.currency
    try:
        charge_id = _charge(amount, body.card)
    except requests.RequestException as error:
        log.error("payment failed", error_code="payment_failed", reason=type(error).__name__)
        raise HTTPException(status_code=502, detail="payment failed") from error
    with store.session() as session:
        order = Order(product_id=body.product_id, quantity=body.quantity, charge=charge_id)
        session.add(order)
        session.flush()
        created = order.as_dict()
    log.info("order created", order_id=created["id"], amount_cents=amount, currency=currency)
    if body.phone:
        tasks.confirm_order(created["id"], body.phone)
    return created


@app.post("/orders/{order_id}/notify")
async def notify(order_id: int, phone: str) -> dict[str, str]:
    with store.session() as session:  # a primary-key lookup: brief enough for the event loop
        if session.get(Order, order_id) is None:
            raise HTTPException(status_code=404, detail="no such order")
    await _text(phone, f"Your order {order_id} is on its way")
    log.info("customer notified", order_id=order_id)
    return {"status": "sent"}


@app.get("/orders/{order_id}")
def get_order(order_id: int) -> dict[str, Any]:
    with store.session() as session:
        order = session.get(Order, order_id)
        if order is None:
            raise HTTPException(status_code=404, detail="no such order")
        return order.as_dict()


@app.get("/boom")
async def boom() -> None:
    log.info("about to fail")
    raise RuntimeError("inventory service returned garbage")
