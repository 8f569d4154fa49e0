"""Shared fixtures: a clean slate around every test, settings from plain dicts, captures."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import settings

from otel_logkit import _failsafe, context, setup
from otel_logkit.config import Settings
from otel_logkit.redact import detectors as _detectors
from otel_logkit.testing import Captured, capture

# CI runs the property tests derandomized: the same examples every run, so a red build always
# reproduces; locally they explore new examples (and remember failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# otel-logkit's own bugs surface in its own tests; users' test runs keep the containment.
_failsafe.raise_errors = True


@pytest.fixture(autouse=True)
def _clean_slate() -> Iterator[None]:
    """Undo otel-logkit's wiring, structlog configuration, root handlers, ContextVars, reports, detectors."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    detectors = list(_detectors._registered)
    yield
    _detectors._registered[:] = detectors
    setup.reset()
    _failsafe.reset()
    _failsafe.raise_errors = True
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    context.request_id.set(None)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def make_settings() -> Any:
    """Build ``Settings`` from a plain dict of environment variables."""

    def make(**env: str) -> Settings:
        return Settings.from_env(env)

    return make


@pytest.fixture
def captured() -> Iterator[Captured]:
    """otel-logkit configured in-process (env=test, service=test-svc) with in-memory outputs."""
    with capture(env="test", service="test-svc", log_level=logging.DEBUG) as result:
        yield result
