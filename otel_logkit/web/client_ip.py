"""``client_ip``: the socket peer, or behind a trusted proxy the right-most untrusted forwarded hop."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from otel_logkit.config import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51000"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_ip(peer: str | None, forwarded_for: Iterable[str], proxies: tuple[Network, ...]) -> str | None:
    """Derive the client address of one request.

    ``X-Forwarded-For`` is read only when the socket peer is a trusted proxy; then the hops are
    walked from the right (the hop the proxy itself appended) and the first untrusted address is
    the client. A hop that is not an IP address stops the walk: what lies left of it cannot be
    believed, so the last trusted hop is returned. Nothing from the header reaches the log
    unless it parsed as an IP address.

    Args:
        peer: the socket peer address (``None`` for a unix socket or an unknown peer).
        forwarded_for: every ``X-Forwarded-For`` header value, in order.
        proxies: the trusted proxy networks (``LOGKIT_TRUSTED_PROXIES``).
    """
    if peer is None or not proxies:
        return peer
    peer_address = _parse(peer)
    if peer_address is None or not _trusted(peer_address, proxies):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    last_trusted = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            return last_trusted
        if not _trusted(address, proxies):
            return str(address)
        last_trusted = str(address)
    return last_trusted
