"""Outbound gateway calls (payment, SMS, ...): rules, hooks and sanitized summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_logkit.gateways.rules import GatewayRule, match_gateway, parse_gateways

if TYPE_CHECKING:
    from otel_logkit.gateways.hooks import instrument_kwargs
    from otel_logkit.gateways.wrapper import GatewayCall, gateway

__all__ = ["GatewayCall", "GatewayRule", "gateway", "instrument_kwargs", "match_gateway", "parse_gateways"]


def __getattr__(name: str) -> object:
    # config.py imports rules.py through this package: the hooks and the wrapper (which import
    # structlog, OpenTelemetry and the redactor) load on first use, not at settings time.
    if name in ("gateway", "GatewayCall"):
        from otel_logkit.gateways import wrapper

        return getattr(wrapper, name)
    if name == "instrument_kwargs":
        from otel_logkit.gateways import hooks

        return hooks.instrument_kwargs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
