"""Auto-instrumentation start-up for processes run by ``otel-logkit-instrument``.

It does what the official sitecustomize's ``initialize()`` does once otel-logkit's distro and
configurator are selected, at less cost: no import of the runner's package (its argument parser,
its loaders) or of the SDK's configurator module (which imports the metrics SDK), and no
dependency check for the instrumentations :func:`otel_logkit.setup.configure` already applied.
Any other selection, and the gevent patch, go through the official ``initialize()``. The
distro and configurator entry points (:mod:`otel_logkit.distro`) use the same functions, so plain
``opentelemetry-instrument`` behaves the same.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from otel_logkit.exceptions import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
"""The directory holding the sitecustomize that ``otel-logkit-instrument`` puts on ``PYTHONPATH``."""

SELECTED = "otel_logkit"
"""otel-logkit's name for ``OTEL_PYTHON_DISTRO`` and ``OTEL_PYTHON_CONFIGURATOR``."""

PRE_INSTRUMENT = "opentelemetry_pre_instrument"
INSTRUMENTOR = "opentelemetry_instrumentor"
POST_INSTRUMENT = "opentelemetry_post_instrument"
_GROUPS = (PRE_INSTRUMENT, INSTRUMENTOR, POST_INSTRUMENT)
_GEVENT_PATCH = "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH"

# The official runner's loggers, so that its messages read the same under either runner.
_logger = logging.getLogger("opentelemetry.instrumentation.auto_instrumentation")
_load_logger = logging.getLogger("opentelemetry.instrumentation.auto_instrumentation._load")


def initialize() -> None:
    """Set up auto-instrumentation in this process (called by otel-logkit's sitecustomize).

    As the official ``initialize()``: the sitecustomize directory leaves ``PYTHONPATH`` while the
    process configures itself (subprocesses started meanwhile are not instrumented), then returns.
    """
    python_path = os.environ.get("PYTHONPATH")
    present = python_path is not None and BOOTSTRAP_DIR in python_path.split(os.pathsep)
    if python_path is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in python_path.split(os.pathsep) if p != BOOTSTRAP_DIR)
    try:
        selected = os.environ.get("OTEL_PYTHON_DISTRO") == SELECTED == os.environ.get("OTEL_PYTHON_CONFIGURATOR")
        if selected and _GEVENT_PATCH not in os.environ:
            _initialize()
        else:
            from opentelemetry.instrumentation.auto_instrumentation import initialize as official

            official()
    finally:
        if present:
            current = os.environ.get("PYTHONPATH", "")
            if BOOTSTRAP_DIR not in current.split(os.pathsep):
                os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (BOOTSTRAP_DIR, current)))


def _initialize() -> None:
    try:
        set_defaults()
        configure_or_exit()
        load_instrumentors(entry_point_groups())
    except Exception:  # the official runner's rule: log it, start the app uninstrumented
        _logger.exception("Failed to auto initialize OpenTelemetry")


def set_defaults() -> None:
    """OpenTelemetry defaults for otel-logkit, with ``setdefault`` so that user settings win."""
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
    os.environ.setdefault("OTEL_LOGS_EXPORTER", "otlp")
    os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
    os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")


def configure_or_exit() -> None:
    """Run :func:`otel_logkit.setup.configure`; an invalid variable stops the process (exit 2)."""
    from otel_logkit.setup import configure

    try:
        configure()
    except ConfigError as error:
        fail_config(error)


def fail_config(error: ConfigError) -> None:
    """Write ``otel-logkit: <error>`` on stderr and exit with code 2 at once."""
    try:
        sys.stderr.write(f"otel-logkit: {error}\n")
        sys.stderr.flush()
    finally:
        os._exit(2)


def entry_point_groups() -> dict[str, list[EntryPoint]]:
    """The pre-instrument, instrumentor and post-instrument entry points, in path order.

    One pass over the installed distributions, as ``importlib.metadata.entry_points()`` makes
    (the first of two same-named distributions wins); only the distributions whose
    ``entry_points.txt`` names an ``opentelemetry_`` group are parsed.
    """
    from importlib.metadata import distributions

    groups: dict[str, list[EntryPoint]] = {group: [] for group in _GROUPS}
    seen: set[str] = set()
    for dist in distributions():
        name = getattr(dist, "_normalized_name", None) or str(dist.metadata["Name"])
        if name in seen:
            continue
        seen.add(name)
        text = dist.read_text("entry_points.txt")
        if not text or "[opentelemetry_" not in text:
            continue
        for entry_point in dist.entry_points:
            if entry_point.group in groups:
                groups[entry_point.group].append(entry_point)
    return groups


def load_instrumentors(groups: dict[str, list[EntryPoint]]) -> None:
    """The official runner's instrumentor loop, minus the libraries ``configure()`` instrumented.

    Honours ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``; other instrumentations get the runner's
    dependency check first, so that one whose library is not installed is never imported.
    """
    excluded = [name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")]
    from otel_logkit.setup import HANDLED_INSTRUMENTATIONS, is_configured

    for entry_point in groups[PRE_INSTRUMENT]:
        entry_point.load()()
    for entry_point in groups[INSTRUMENTOR]:
        if "*" in excluded:
            break
        if entry_point.name in excluded:
            _load_logger.debug("Instrumentation skipped for library %s", entry_point.name)
            continue
        if entry_point.name in HANDLED_INSTRUMENTATIONS and is_configured():
            continue  # applied by configure(), with otel-logkit's options and its own checks
        _load_checked(entry_point)
    for entry_point in groups[POST_INSTRUMENT]:
        entry_point.load()()


def _load_checked(entry_point: EntryPoint) -> None:
    """One instrumentation, exactly as the official ``_load_instrumentors`` loads it."""
    from opentelemetry.instrumentation.dependencies import (
        DependencyConflictError,
        get_dist_dependency_conflicts,
    )

    try:
        conflict = get_dist_dependency_conflicts(entry_point.dist)  # type: ignore[arg-type]
        if conflict:
            conflict._log(_load_logger, entry_point.name)  # the runner's own message
            return
        load_instrumentor(entry_point, skip_dep_check=True)
        _load_logger.debug("Instrumented %s", entry_point.name)
    except DependencyConflictError as exc:
        exc.conflict._log(_load_logger, entry_point.name)
    except ModuleNotFoundError as exc:
        _load_logger.debug("Skipping instrumentation %s: %s", entry_point.name, exc.msg)
    except ImportError:
        _load_logger.exception("Importing of %s failed, skipping it", entry_point.name)
    except Exception:
        _load_logger.exception("Instrumenting of %s failed", entry_point.name)
        raise


def load_instrumentor(entry_point: EntryPoint, **kwargs: Any) -> None:
    """Instrument one library, unless otel-logkit already did (no "already instrumented" noise)."""
    from otel_logkit.setup import HANDLED_INSTRUMENTATIONS, is_configured

    if entry_point.name in HANDLED_INSTRUMENTATIONS and is_configured():
        return
    instrumentor = entry_point.load()()
    if instrumentor.is_instrumented_by_opentelemetry:
        return
    instrumentor.instrument(**kwargs)
