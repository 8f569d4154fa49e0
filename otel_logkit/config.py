"""Settings: every environment variable otel-logkit reads, parsed and validated once."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from otel_logkit import environment_variables as ev
from otel_logkit.exceptions import ConfigError
from otel_logkit.gateways.rules import GatewayRule, parse_gateways

Env = Literal["dev", "test", "prod"]
LogFormat = Literal["json", "console"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ENVS: tuple[Env, ...] = ("dev", "test", "prod")
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "console")
LEVELS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
DEFAULT_LEVEL_BY_ENV: dict[Env, int] = {"dev": logging.DEBUG, "test": logging.INFO, "prod": logging.WARNING}
EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "jaeger_remote",
    "parentbased_jaeger_remote",
    "xray",
)
"""The specification's sampler names; samplers registered as entry points are accepted too."""
DEFAULT_SERVICE_NAME = "unknown_service"
# RFC 9110 token: what an HTTP header name may be made of.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_REDACT_KEY = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective configuration, built once by :meth:`from_env` and never mutated."""

    service: str = DEFAULT_SERVICE_NAME
    env: Env = "dev"
    log_level: int = logging.DEBUG
    log_format: LogFormat = "json"
    request_id_header: str = "X-Request-ID"
    gateways: tuple[GatewayRule, ...] = ()
    redact_keys: frozenset[str] = frozenset()
    body_summary_max: int = 512
    trusted_proxies: tuple[Network, ...] = ()
    excluded_urls: tuple[str, ...] = ()
    fastapi_span_excluded_urls: str = ""
    flask_span_excluded_urls: str = ""
    disabled_instrumentations: frozenset[str] = frozenset()
    export_queue_size: int = 20_000
    shutdown_timeout: float = 5.0
    export_process: bool = True
    gc_freeze: bool = False
    sql_commenter: bool = False
    request_buffer: int | None = None
    request_buffer_max: int = 200
    slow_request_ms: float = 1000.0
    dedup_window: float | None = None
    dedup_burst: int = 5
    sdk_disabled: bool = False
    traces_exporter: str = "otlp"
    logs_exporter: str = "otlp"
    otlp_protocol: str = "http/protobuf"
    otlp_endpoint: str = "http://localhost:4318"
    otlp_logs_endpoint: str = "http://localhost:4318/v1/logs"
    otlp_traces_endpoint: str = "http://localhost:4318/v1/traces"
    resource_attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def fields(self) -> dict[str, Any]:
        """Every field's value, by name (to build changed settings, or to send them on)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def log_level_name(self) -> str:
        """The level as its upper-case name, e.g. ``INFO``."""
        return logging.getLevelName(self.log_level)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read and validate the environment (``os.environ`` by default).

        Args:
            environ: the variables to read; tests pass plain dicts.
            overrides: explicit values (from ``configure(...)``) that win over the environment.

        Raises:
            ConfigError: naming the first variable whose value is not accepted.
        """
        environ = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = environ.get(name)
            return None if value is None or value.strip() == "" else value.strip()

        env = _choice(ev.LOGKIT_ENV, get(ev.LOGKIT_ENV) or "dev", ENVS, lower=True)
        level_text = get(ev.LOGKIT_LOG_LEVEL)
        if level_text is None:
            log_level = DEFAULT_LEVEL_BY_ENV[env]
        else:
            log_level = LEVELS[_choice(ev.LOGKIT_LOG_LEVEL, level_text, tuple(LEVELS), upper=True)]
        resource_attributes = _parse_resource_attributes(get("OTEL_RESOURCE_ATTRIBUTES"))
        service = get("OTEL_SERVICE_NAME") or resource_attributes.get("service.name") or DEFAULT_SERVICE_NAME
        protocol = _choice(
            "OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf", PROTOCOLS
        )
        default_port = "4317" if protocol == "grpc" else "4318"
        endpoint = _url("OTEL_EXPORTER_OTLP_ENDPOINT", get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        endpoint = endpoint or f"http://localhost:{default_port}"

        def signal_endpoint(signal: str) -> str:
            variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
            explicit = _url(variable, get(variable))
            if explicit:
                return explicit
            if protocol == "grpc":
                return endpoint
            return endpoint.rstrip("/") + f"/v1/{signal}"

        sampler = get("OTEL_TRACES_SAMPLER")
        if sampler is not None and sampler.lower() not in SAMPLERS and sampler not in _registered_samplers():
            _choice("OTEL_TRACES_SAMPLER", sampler, SAMPLERS + _registered_samplers(), lower=True)

        settings = cls(
            service=service,
            env=env,
            log_level=log_level,
            log_format=_choice(ev.LOGKIT_LOG_FORMAT, get(ev.LOGKIT_LOG_FORMAT) or "json", LOG_FORMATS, lower=True),
            request_id_header=_header(ev.LOGKIT_REQUEST_ID_HEADER, get(ev.LOGKIT_REQUEST_ID_HEADER)),
            gateways=parse_gateways(get(ev.LOGKIT_GATEWAYS) or "", ev.LOGKIT_GATEWAYS),
            redact_keys=_redact_keys(get(ev.LOGKIT_REDACT_KEYS)),
            body_summary_max=_int(ev.LOGKIT_BODY_SUMMARY_MAX, get(ev.LOGKIT_BODY_SUMMARY_MAX), 512, 16, 1 << 20),
            trusted_proxies=_networks(ev.LOGKIT_TRUSTED_PROXIES, get(ev.LOGKIT_TRUSTED_PROXIES)),
            excluded_urls=_excluded_urls(environ),
            # The contrib instrumentation's precedence: the FastAPI-specific variable, else the generic one.
            fastapi_span_excluded_urls=(
                environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", environ.get("OTEL_PYTHON_EXCLUDED_URLS", "")) or ""
            ).strip(),
            flask_span_excluded_urls=(
                environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS", environ.get("OTEL_PYTHON_EXCLUDED_URLS", "")) or ""
            ).strip(),
            disabled_instrumentations=frozenset(
                part.strip() for part in (get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS") or "").split(",") if part.strip()
            ),
            export_queue_size=_int(
                ev.LOGKIT_EXPORT_QUEUE_SIZE, get(ev.LOGKIT_EXPORT_QUEUE_SIZE), 20_000, 100, 10_000_000
            ),
            shutdown_timeout=_seconds(ev.LOGKIT_SHUTDOWN_TIMEOUT, get(ev.LOGKIT_SHUTDOWN_TIMEOUT), 5.0),
            export_process=_bool(ev.LOGKIT_EXPORT_PROCESS, get(ev.LOGKIT_EXPORT_PROCESS), default=True),
            gc_freeze=_bool(ev.LOGKIT_GC_FREEZE, get(ev.LOGKIT_GC_FREEZE)),
            sql_commenter=_bool(ev.LOGKIT_SQL_COMMENTER, get(ev.LOGKIT_SQL_COMMENTER)),
            request_buffer=_buffer_level(get(ev.LOGKIT_REQUEST_BUFFER)),
            request_buffer_max=_int(ev.LOGKIT_REQUEST_BUFFER_MAX, get(ev.LOGKIT_REQUEST_BUFFER_MAX), 200, 1, 100_000),
            slow_request_ms=_positive(ev.LOGKIT_SLOW_REQUEST_MS, get(ev.LOGKIT_SLOW_REQUEST_MS), 1000.0, 3_600_000),
            dedup_window=(
                _positive(ev.LOGKIT_DEDUP_WINDOW, get(ev.LOGKIT_DEDUP_WINDOW), 0.0, 86_400)
                if get(ev.LOGKIT_DEDUP_WINDOW) is not None
                else None
            ),
            dedup_burst=_int(ev.LOGKIT_DEDUP_BURST, get(ev.LOGKIT_DEDUP_BURST), 5, 1, 1_000_000),
            sdk_disabled=_bool("OTEL_SDK_DISABLED", get("OTEL_SDK_DISABLED")),
            traces_exporter=_exporter("OTEL_TRACES_EXPORTER", get("OTEL_TRACES_EXPORTER")),
            logs_exporter=_exporter("OTEL_LOGS_EXPORTER", get("OTEL_LOGS_EXPORTER")),
            otlp_protocol=protocol,
            otlp_endpoint=endpoint,
            otlp_logs_endpoint=signal_endpoint("logs"),
            otlp_traces_endpoint=signal_endpoint("traces"),
            resource_attributes=MappingProxyType(resource_attributes),
        )
        if not overrides:
            return settings
        if "env" in overrides:
            overrides["env"] = _choice("configure(env=...)", str(overrides["env"]), ENVS, lower=True)
            if "log_level" not in overrides and level_text is None:
                overrides["log_level"] = DEFAULT_LEVEL_BY_ENV[overrides["env"]]
        if isinstance(overrides.get("log_level"), str):
            level = _choice("configure(log_level=...)", overrides["log_level"], tuple(LEVELS), upper=True)
            overrides["log_level"] = LEVELS[level]
        if "log_format" in overrides:
            overrides["log_format"] = _choice("configure(log_format=...)", overrides["log_format"], LOG_FORMATS)
        return replace(settings, **overrides)


def _choice(variable: str, value: str, accepted: tuple[str, ...], *, lower: bool = False, upper: bool = False) -> Any:
    normalized = value.lower() if lower else value.upper() if upper else value
    if normalized not in accepted:
        raise ConfigError(variable, value, accepted)
    return normalized


def _int(variable: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ConfigError(variable, value, f"an integer from {low} to {high}")
    return number


def _buffer_level(value: str | None) -> int | None:
    """``LOGKIT_REQUEST_BUFFER``: a level name, or ``off`` (the default)."""
    if value is None or value.lower() == "off":
        return None
    return LEVELS[_choice(ev.LOGKIT_REQUEST_BUFFER, value, (*LEVELS, "OFF"), upper=True)]


def _positive(variable: str, value: str | None, default: float, high: float, unit: str = "a number") -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number <= high:
        raise ConfigError(variable, value, f"{unit} greater than 0 and at most {high:.0f}")
    return number


def _seconds(variable: str, value: str | None, default: float) -> float:
    return _positive(variable, value, default, 300, "a number of seconds")


def _registered_samplers() -> tuple[str, ...]:
    """Samplers installed packages register (``opentelemetry_traces_sampler`` entry points)."""
    from importlib.metadata import entry_points

    return tuple(sorted(ep.name for ep in entry_points(group="opentelemetry_traces_sampler")))


def _bool(variable: str, value: str | None, *, default: bool = False) -> bool:
    if value is None:
        return default
    return _choice(variable, value, ("true", "false"), lower=True) == "true"  # type: ignore[no-any-return]


def _exporter(variable: str, value: str | None) -> str:
    if value is None:
        return "otlp"
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    if len(names) != 1 or names[0] not in EXPORTERS:
        raise ConfigError(variable, value, EXPORTERS)
    return names[0]


def _url(variable: str, value: str | None) -> str | None:
    if value is None:
        return None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(variable, value, "an http:// or https:// URL such as http://localhost:4318")
    return value


def _header(variable: str, value: str | None) -> str:
    if value is None:
        return "X-Request-ID"
    if not _HEADER_TOKEN.fullmatch(value):
        raise ConfigError(variable, value, "an HTTP header name such as X-Request-ID")
    return value


def _redact_keys(value: str | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not all(_REDACT_KEY.fullmatch(key) for key in keys):
        raise ConfigError(ev.LOGKIT_REDACT_KEYS, value, "comma-separated key names such as iban,tax_id")
    return frozenset(key.lower() for key in keys)


def _networks(variable: str, value: str | None) -> tuple[Network, ...]:
    if value is None:
        return ()
    networks: list[Network] = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(variable, value, "comma-separated CIDRs such as 10.0.0.0/8,127.0.0.1") from None
    return tuple(networks)


def _excluded_urls(environ: Mapping[str, str]) -> tuple[str, ...]:
    for variable in (
        ev.LOGKIT_EXCLUDED_URLS,
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
        "OTEL_PYTHON_EXCLUDED_URLS",
    ):
        value = (environ.get(variable) or "").strip()
        if not value:
            continue
        patterns = tuple(part.strip() for part in value.split(",") if part.strip())
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error:
                raise ConfigError(variable, value, "comma-separated regular expressions such as /health") from None
        return patterns
    return ()


def _parse_resource_attributes(value: str | None) -> dict[str, str]:
    """Parse ``OTEL_RESOURCE_ATTRIBUTES`` as the SDK does (``key=value`` pairs, URL-decoded)."""
    attributes: dict[str, str] = {}
    if not value:
        return attributes
    for pair in value.split(","):
        key, sep, raw = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = urllib.parse.unquote(raw.strip())
    return attributes
