"""The shop's storage: products and orders through SQLAlchemy 2.0.

SQLite in memory by default (``make run`` needs no server); PostgreSQL (or any SQLAlchemy URL)
when ``SHOP_DATABASE_URL`` says so, e.g.
``postgresql+psycopg://shop@127.0.0.1:5432/shop`` (``pip install 'otel-logkit[postgres]'``).
The tables are created and the catalogue seeded on first use; order ids start at 1001.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ForeignKey, Identity, String, create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

FIRST_ORDER_ID = 1001
CATALOGUE = (
    {"id": 1, "name": "coffee beans", "price_cents": 1290, "currency": "EUR"},
    {"id": 2, "name": "grinder", "price_cents": 8900, "currency": "EUR"},
    {"id": 3, "name": "kettle", "price_cents": 4500, "currency": "EUR"},
)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "price_cents": self.price_cents, "currency": self.currency}


class Order(Base):
    __tablename__ = "orders"
    # SQLite: AUTOINCREMENT keeps a counter in sqlite_sequence, set to start at FIRST_ORDER_ID.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - SQLAlchemy's declarative API

    id: Mapped[int] = mapped_column(Identity(start=FIRST_ORDER_ID), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int]
    charge: Mapped[str] = mapped_column(String(64))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "product_id": self.product_id, "quantity": self.quantity, "charge": self.charge}


def make_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default ``SHOP_DATABASE_URL``, else SQLite in memory)."""
    url = url or os.environ.get("SHOP_DATABASE_URL") or "sqlite://"
    if url in ("sqlite://", "sqlite:///:memory:"):
        # One in-memory database shared by every thread of this process.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_foreign_keys)
    return engine


def _sqlite_foreign_keys(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def create_schema(engine: Engine) -> None:
    """Create the tables and seed the catalogue once (safe to call from several processes)."""
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        if session.scalar(select(func.count()).select_from(Product)) == 0:
            session.add_all(Product(**item) for item in CATALOGUE)
        if engine.dialect.name == "sqlite" and session.scalar(select(func.count()).select_from(Order)) == 0:
            session.execute(text("DELETE FROM sqlite_sequence WHERE name = 'orders'"))
            session.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES ('orders', :seq)"),
                {"seq": FIRST_ORDER_ID - 1},
            )


class Store:
    """Sessions on one engine, created lazily so that importing the app opens no connection."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        # SQLite in memory is one connection shared by every thread: one session at a time.
        self._serial: threading.Lock | None = None

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = make_engine(self._url)
                create_schema(engine)
                if engine.url.database in (None, "", ":memory:"):
                    self._serial = threading.Lock()
                self._engine = engine
            return self._engine

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One session and transaction: committed on success, rolled back on error."""
        engine = self.engine
        with (
            self._serial or contextlib.nullcontext(),
            Session(engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
