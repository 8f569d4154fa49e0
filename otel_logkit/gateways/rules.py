"""Parsing and matching of ``LOGKIT_GATEWAYS`` rules (pure logic)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from otel_logkit.environment_variables import LOGKIT_GATEWAYS
from otel_logkit.exceptions import ConfigError

_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_ACCEPTED = "kind=host[,host...][;kind=host...] with kind like 'payment' and hosts like api.stripe.com or *.adyen.com"


@dataclass(frozen=True, slots=True)
class GatewayRule:
    """One gateway kind and the host patterns whose calls belong to it.

    Args:
        kind: the gateway kind, e.g. ``payment`` or ``sms``.
        hosts: exact host names, or ``*.domain`` for any subdomain of ``domain``.
    """

    kind: str
    hosts: tuple[str, ...]

    def matches(self, host: str) -> bool:
        """Tell whether ``host`` (case-insensitive, without port) belongs to this gateway."""
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


def parse_gateways(value: str, variable: str = LOGKIT_GATEWAYS) -> tuple[GatewayRule, ...]:
    """Parse ``payment=api.stripe.com,*.adyen.com;sms=api.twilio.com`` into rules.

    Raises:
        ConfigError: naming ``variable`` when any part is malformed.
    """
    rules: list[GatewayRule] = []
    seen: set[str] = set()
    for raw_part in value.split(";"):
        part = raw_part.strip()
        if not part:
            continue
        kind, sep, hosts_text = part.partition("=")
        kind = kind.strip().lower()
        hosts = tuple(h.strip().lower().rstrip(".") for h in hosts_text.split(",") if h.strip())
        if not sep or not _KIND.fullmatch(kind) or not hosts or kind in seen:
            raise ConfigError(variable, value, _ACCEPTED)
        if not all(_HOST.fullmatch(host) for host in hosts):
            raise ConfigError(variable, value, _ACCEPTED)
        seen.add(kind)
        rules.append(GatewayRule(kind=kind, hosts=hosts))
    return tuple(rules)


def match_gateway(rules: tuple[GatewayRule, ...], host: str | None) -> GatewayRule | None:
    """Return the first rule whose hosts match ``host``, or ``None``."""
    if not host:
        return None
    for rule in rules:
        if rule.matches(host):
            return rule
    return None
