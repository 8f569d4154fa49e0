"""After ``fork()``: restart what a child needs without keeping anything alive.

One ``os.register_at_fork`` hook for the whole package runs the callbacks registered here. Each
is held by a weak reference, so a queue or exporter that is gone is simply skipped (gunicorn
``--preload``, ``multiprocessing`` with fork, apps that fork themselves).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

_callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []
_lock = threading.Lock()


def after_fork_in_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in every child process forked from now on, while its object lives."""
    with _lock:
        _callbacks[:] = [ref for ref in _callbacks if ref() is not None]
        _callbacks.append(weakref.WeakMethod(method))


def _run() -> None:
    global _lock  # noqa: PLW0603 - a lock held at fork time by another thread stays held in the child
    _lock = threading.Lock()
    for ref in list(_callbacks):
        method = ref()
        if method is not None:
            with contextlib.suppress(Exception):
                method()


def renew_http_session(exporter: Any) -> None:
    """Give an SDK OTLP/HTTP exporter its own connection pool (after fork: never share sockets)."""
    transport = getattr(getattr(exporter, "_client", None), "_transport", None)
    old = getattr(transport, "_session", None)
    if old is None:
        return
    import requests

    new = requests.Session()
    new.headers = old.headers.copy()
    new.verify = old.verify
    new.cert = old.cert
    new.auth = old.auth
    new.proxies = dict(old.proxies)
    transport._session = new  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        old.close()


os.register_at_fork(after_in_child=_run)
