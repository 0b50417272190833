"""Which webhook URLs Ringside will call (SSRF protection).

Operators' billing services usually live on private networks, so private addresses are
allowed unless `[webhooks] allow_private_networks = false`. Link-local and cloud-metadata
addresses are never allowed: they hand out cloud credentials to whoever asks. The check
runs when an endpoint is saved (for IP literals, and names that resolve right away) and
again before every delivery on the freshly resolved addresses, and the request then goes
to the vetted address, so a DNS answer that changes in between (rebinding) cannot
redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.webhooks.errors import InvalidWebhookUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# Never reachable, whatever the settings say.
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OCI metadata at .169.254
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
    )
)
METADATA_HOSTNAMES = frozenset(
    {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}
)
# Refused only when allow_private_networks is false (besides is_private & co.).
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


class RefusedAddress(Exception):
    """A delivery target the policy refuses; the message says why, without secrets."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL, lowercased
    port: int
    ip: IPAddress | None  # set when the URL names an IP literal


def parse_url(url: object) -> Target:
    """Syntax checks for an endpoint URL. Raises InvalidWebhookUrl (param "url")."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidWebhookUrl("url must be an http(s) URL.", param="url")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"url must be at most {MAX_URL_LENGTH} characters.", param="url")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidWebhookUrl("url must not contain spaces or control characters.", param="url")
    try:
        parts = urlsplit(url)
    except ValueError:  # "https://[" : an unclosed IPv6 bracket
        raise InvalidWebhookUrl("url is not a valid URL.", param="url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidWebhookUrl("url must start with http:// or https://.", param="url")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise InvalidWebhookUrl("url has an invalid host or port.", param="url") from None
    if not host:
        raise InvalidWebhookUrl("url must name a host.", param="url")
    if "%" in host:
        raise InvalidWebhookUrl("url must not use an IPv6 zone id.", param="url")
    try:
        ip: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    return Target(scheme, host.lower(), port or (443 if scheme == "https" else 80), ip)


def refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why this address may not be called, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    if any(ip in net for net in ALWAYS_REFUSED):
        return f"{ip} is a link-local / cloud metadata address, which is never allowed"
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is not a unicast address"
    if not allow_private and (
        ip.is_private
        or ip.is_loopback
        or ip.is_reserved
        or ip.is_link_local
        or (isinstance(ip, ipaddress.IPv4Address) and ip in SHARED_ADDRESS_SPACE)
    ):
        return f"{ip} is a private address ([webhooks] allow_private_networks = false)"
    return None


def hostname_refusal(host: str, *, allow_private: bool) -> str | None:
    name = host.rstrip(".")
    if name in METADATA_HOSTNAMES:
        return f"{host} is a cloud metadata host name, which is never allowed"
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        return f"{host} is a loopback name ([webhooks] allow_private_networks = false)"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses in the resolver's preferred order. Tests replace this."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


async def check_for_save(url: object, *, allow_private: bool, dns_timeout_s: float = 2.0) -> str:
    """Validate an endpoint URL when it is created or changed; returns it unchanged.

    A name that does not resolve yet is accepted (internal DNS may differ from ours); the
    delivery-time check is the one that counts.
    """
    target = parse_url(url)
    assert isinstance(url, str)
    reason = _static_refusal(target, allow_private=allow_private)
    if reason is None and target.ip is None:
        try:
            addresses = await asyncio.wait_for(resolve(target.host, target.port), dns_timeout_s)
        except (OSError, TimeoutError, ValueError, UnicodeError):
            addresses = []
        reason = next(
            (r for r in (refusal(a, allow_private=allow_private) for a in addresses) if r), None
        )
    if reason:
        raise InvalidWebhookUrl(f"url refused: {reason}.", param="url")
    return url


async def vetted_address(target: Target, *, allow_private: bool) -> IPAddress:
    """The address to connect to for this delivery. Raises RefusedAddress.

    Every resolved address must pass, not just the first: a name answering with one
    public and one metadata address is refused outright.
    """
    reason = _static_refusal(target, allow_private=allow_private)
    if reason:
        raise RefusedAddress(reason)
    if target.ip is not None:
        return target.ip
    try:
        addresses = await resolve(target.host, target.port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise RefusedAddress(f"cannot resolve {target.host}: {exc}") from None
    if not addresses:
        raise RefusedAddress(f"{target.host} has no addresses")
    for ip in addresses:
        reason = refusal(ip, allow_private=allow_private)
        if reason:
            raise RefusedAddress(f"{target.host} resolves to {reason}")
    return addresses[0]


def _static_refusal(target: Target, *, allow_private: bool) -> str | None:
    if target.ip is not None:
        return refusal(target.ip, allow_private=allow_private)
    return hostname_refusal(target.host, allow_private=allow_private)
