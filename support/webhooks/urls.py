"""Where a webhook may be sent: http(s) only, and (outside development) never into the service's network.

A webhook URL is chosen by whoever administers the endpoints, and the service POSTs to it from inside its
own network: pointed at ``127.0.0.1:6379``, ``10.0.0.5`` or a cloud metadata address (169.254.169.254), it
would make Switchboard a proxy into places the internet cannot reach (server-side request forgery). So the
host's addresses are resolved and every one must be public. The check runs when an endpoint is created and
again before every attempt, because a name's addresses can change after creation (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from support.errors import ValidationFailed

MAX_URL_CHARS = 2048  # the column's width
RESOLVE_TIMEOUT_S = 5.0  # a resolver that does not answer in this time fails the check (never hangs it)


class UnsafeWebhookUrl(ValidationFailed):
    """The webhook URL is not allowed (scheme, credentials, or an address inside the service's network)."""

    code = "url_refused"


def parse_webhook_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL without credentials; :class:`UnsafeWebhookUrl` otherwise."""
    if not url or len(url) > MAX_URL_CHARS:
        raise UnsafeWebhookUrl(f"`url` must be 1 to {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeWebhookUrl("`url` must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(f"`url` is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookUrl("`url` must be an http or https URL")
    if not parts.hostname:
        raise UnsafeWebhookUrl("`url` must name a host")
    if parts.username is not None or parts.password is not None:
        # Credentials would be listed by GET /api/v1/admin/webhooks; the signature authenticates deliveries.
        raise UnsafeWebhookUrl("`url` must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refused_address(address: str) -> bool:
    """Whether a resolved address is not a public unicast one (loopback, private, link-local, shared,
    reserved, multicast, unspecified; an IPv4-mapped IPv6 address is judged as its IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Refuse ``url`` (:class:`UnsafeWebhookUrl`) unless it is http(s) and, when ``allow_private`` is
    False, every address its host resolves to is public."""
    host, port = parse_webhook_url(url)
    if allow_private:
        return
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise UnsafeWebhookUrl(f"the host of `url` cannot be resolved: {host}") from exc
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or any(refused_address(a) for a in addresses):
        raise UnsafeWebhookUrl(
            "`url` resolves to a loopback, private or otherwise non-public address; webhooks are sent "
            "only to public addresses (SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE_URLS)"
        )
