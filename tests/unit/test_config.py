"""Settings.from_env: every variable with good and bad values."""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from otel_logkit import environment_variables as ev
from otel_logkit.config import Settings
from otel_logkit.exceptions import ConfigError
from otel_logkit.gateways.rules import GatewayRule

GOOD: list[tuple[dict[str, str], str, Any]] = [
    ({}, "env", "dev"),
    ({}, "log_level", logging.DEBUG),
    ({"LOGKIT_ENV": "test"}, "log_level", logging.INFO),
    ({"LOGKIT_ENV": "prod"}, "log_level", logging.WARNING),
    ({"LOGKIT_ENV": "PROD"}, "env", "prod"),
    ({"LOGKIT_ENV": "prod", "LOGKIT_LOG_LEVEL": "debug"}, "log_level", logging.DEBUG),
    ({"LOGKIT_LOG_LEVEL": "ERROR"}, "log_level", logging.ERROR),
    ({"LOGKIT_LOG_LEVEL": "CRITICAL"}, "log_level", logging.CRITICAL),
    ({}, "log_format", "json"),
    ({"LOGKIT_LOG_FORMAT": "console"}, "log_format", "console"),
    ({}, "request_id_header", "X-Request-ID"),
    ({"LOGKIT_REQUEST_ID_HEADER": "X-Correlation-Id"}, "request_id_header", "X-Correlation-Id"),
    ({}, "gateways", ()),
    (
        {"LOGKIT_GATEWAYS": "payment=api.stripe.com,*.adyen.com;sms=api.twilio.com"},
        "gateways",
        (GatewayRule("payment", ("api.stripe.com", "*.adyen.com")), GatewayRule("sms", ("api.twilio.com",))),
    ),
    ({"LOGKIT_REDACT_KEYS": "IBAN, tax_id"}, "redact_keys", frozenset({"iban", "tax_id"})),
    ({}, "body_summary_max", 512),
    ({"LOGKIT_BODY_SUMMARY_MAX": "2048"}, "body_summary_max", 2048),
    (
        {"LOGKIT_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"},
        "trusted_proxies",
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")),
    ),
    ({"LOGKIT_EXCLUDED_URLS": "/health,/metrics"}, "excluded_urls", ("/health", "/metrics")),
    ({"OTEL_PYTHON_EXCLUDED_URLS": "/ping"}, "excluded_urls", ("/ping",)),
    ({"LOGKIT_EXPORT_QUEUE_SIZE": "500"}, "export_queue_size", 500),
    ({"LOGKIT_SHUTDOWN_TIMEOUT": "2.5"}, "shutdown_timeout", 2.5),
    ({"OTEL_SERVICE_NAME": "shop"}, "service", "shop"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=cart,team=x"}, "service", "cart"),
    ({"OTEL_SERVICE_NAME": "shop", "OTEL_RESOURCE_ATTRIBUTES": "service.name=cart"}, "service", "shop"),
    ({"OTEL_SDK_DISABLED": "true"}, "sdk_disabled", True),
    ({"OTEL_TRACES_EXPORTER": "none"}, "traces_exporter", "none"),
    ({"OTEL_LOGS_EXPORTER": "console"}, "logs_exporter", "console"),
    ({}, "otlp_logs_endpoint", "http://localhost:4318/v1/logs"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "otlp_traces_endpoint", "http://c:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://l:9/x"}, "otlp_logs_endpoint", "http://l:9/x"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp_logs_endpoint", "http://localhost:4317"),
    ({"LOGKIT_REQUEST_BUFFER": "debug"}, "request_buffer", logging.DEBUG),
    ({"LOGKIT_REQUEST_BUFFER": "off"}, "request_buffer", None),
    ({}, "request_buffer", None),
    ({"LOGKIT_REQUEST_BUFFER_MAX": "50"}, "request_buffer_max", 50),
    ({"LOGKIT_SLOW_REQUEST_MS": "250"}, "slow_request_ms", 250.0),
    ({"LOGKIT_DEDUP_WINDOW": "60"}, "dedup_window", 60.0),
    ({}, "dedup_window", None),
    ({"LOGKIT_DEDUP_BURST": "3"}, "dedup_burst", 3),
]


@pytest.mark.parametrize(("env", "field", "expected"), GOOD, ids=[f"{f}:{e}" for e, f, _ in GOOD])
def test_accepted_value_is_parsed(env: dict[str, str], field: str, expected: Any) -> None:
    """A valid value becomes the typed field."""
    assert expected == getattr(Settings.from_env(env), field)


BAD: list[tuple[str, str]] = [
    (ev.LOGKIT_ENV, "staging"),
    (ev.LOGKIT_LOG_LEVEL, "verbose"),
    (ev.LOGKIT_LOG_FORMAT, "xml"),
    (ev.LOGKIT_REQUEST_ID_HEADER, "X Request Id"),
    (ev.LOGKIT_REQUEST_ID_HEADER, "X-Id\r\nSet-Cookie: a"),
    (ev.LOGKIT_GATEWAYS, "payment"),
    (ev.LOGKIT_GATEWAYS, "payment=api.stripe.com;payment=other.com"),
    (ev.LOGKIT_GATEWAYS, "pay ment=api.stripe.com"),
    (ev.LOGKIT_GATEWAYS, "payment=https://api.stripe.com"),
    (ev.LOGKIT_GATEWAYS, "payment=api.*.com"),
    (ev.LOGKIT_REDACT_KEYS, "iban,tax id"),
    (ev.LOGKIT_BODY_SUMMARY_MAX, "lots"),
    (ev.LOGKIT_BODY_SUMMARY_MAX, "0"),
    (ev.LOGKIT_TRUSTED_PROXIES, "10.0.0.0/33"),
    (ev.LOGKIT_TRUSTED_PROXIES, "proxy.local"),
    (ev.LOGKIT_EXCLUDED_URLS, "/health,(unclosed"),
    (ev.LOGKIT_EXPORT_QUEUE_SIZE, "-1"),
    (ev.LOGKIT_SHUTDOWN_TIMEOUT, "forever"),
    (ev.LOGKIT_SHUTDOWN_TIMEOUT, "0"),
    ("OTEL_SDK_DISABLED", "yes"),
    ("OTEL_TRACES_EXPORTER", "zipkin"),
    ("OTEL_LOGS_EXPORTER", "otlp,console"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector"),
    ("OTEL_TRACES_SAMPLER", "sometimes"),
    (ev.LOGKIT_REQUEST_BUFFER, "loud"),
    (ev.LOGKIT_REQUEST_BUFFER_MAX, "0"),
    (ev.LOGKIT_REQUEST_BUFFER_MAX, "many"),
    (ev.LOGKIT_SLOW_REQUEST_MS, "-5"),
    (ev.LOGKIT_DEDUP_WINDOW, "0"),
    (ev.LOGKIT_DEDUP_WINDOW, "soon"),
    (ev.LOGKIT_DEDUP_BURST, "0"),
]


@pytest.mark.parametrize(("variable", "value"), BAD, ids=[f"{v}={x!r}" for v, x in BAD])
def test_rejected_value_names_variable_value_and_accepted(variable: str, value: str) -> None:
    """A bad value raises ConfigError naming the variable, the value and what is accepted."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    error = raised.value
    assert (variable, value) == (error.variable, error.value)
    assert str(error).startswith(f"{variable}={value!r} is invalid: expected ")
    assert error.accepted
    assert "\n" not in str(error)


def test_error_message_lists_choices() -> None:
    """The message for a choice lists the accepted values."""
    with pytest.raises(ConfigError, match=r"^LOGKIT_LOG_FORMAT='xml' is invalid: expected one of json, console$"):
        Settings.from_env({"LOGKIT_LOG_FORMAT": "xml"})


def test_explicit_overrides_win_over_environment() -> None:
    """configure(...) arguments take precedence over the environment."""
    assert Settings.from_env({"LOGKIT_ENV": "dev"}, env="prod").env == "prod"


def test_blank_values_mean_default() -> None:
    """An empty variable (common in manifests) behaves as unset."""
    assert Settings() == Settings.from_env({"LOGKIT_ENV": " ", "LOGKIT_LOG_FORMAT": ""})


def test_config_error_is_a_value_error() -> None:
    """ConfigError can be caught as ValueError."""
    assert issubclass(ConfigError, ValueError)


def test_readme_table_lists_every_variable() -> None:
    """README's variable table and environment_variables.py stay in sync."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(LOGKIT_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert set(ev.ALL) <= documented


def test_env_override_derives_the_level() -> None:
    """configure(env="prod") also gives prod's default level unless a level is set."""
    assert logging.WARNING == Settings.from_env({}, env="prod").log_level
    assert logging.ERROR == Settings.from_env({"LOGKIT_LOG_LEVEL": "ERROR"}, env="prod").log_level
    assert logging.INFO == Settings.from_env({}, env="prod", log_level="info").log_level


def test_bad_override_names_the_argument() -> None:
    """A bad configure() argument names the argument."""
    with pytest.raises(ConfigError, match=r"^configure\(env=\.\.\.\)='staging' is invalid"):
        Settings.from_env({}, env="staging")
