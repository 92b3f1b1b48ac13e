"""The SSRF guard: where a tool may connect.

``EgressGuard.check(url)`` resolves the host (every address it has) and checks each: an
address that is not public unicast (private, loopback, link-local, CGNAT, multicast,
unspecified, reserved, IPv4 hidden in IPv6, cloud metadata) is refused unless it lies in a
network the operator allowed. The call is refused when no address passes; otherwise it
returns a ``Target`` pinned to the first address that passed, and the caller connects to
``Target.ip`` (keeping Host/SNI), so neither a refused address of the same answer nor a
second DNS answer (DNS rebinding) is ever connected to. Only the server configuration (``orloj up
--tool-allowed-networks``, ``ORLOJ_TOOL_ALLOWED_NETWORKS``) can widen it; nothing in a
manifest is read here. Cloud metadata addresses stay refused unless allowed as an exact
host (``169.254.169.254/32``), never through a wider network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit, urlunsplit

from orloj_ray.addresses import METADATA
from orloj_ray.tools.base import ToolError

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CGNAT = ipaddress.ip_network("100.64.0.0/10")
FIX = "an operator can allow it with `orloj up --tool-allowed-networks <CIDR>` (env ORLOJ_TOOL_ALLOWED_NETWORKS)"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    nets = []
    for raw in values:
        raw = raw.strip()
        if not raw:
            continue
        try:
            nets.append(ipaddress.ip_network(raw, strict=False))
        except ValueError:
            raise ValueError(f'invalid tool allowed network "{raw}": expected a CIDR such as 127.0.0.0/8 '
                             "(--tool-allowed-networks, or ORLOJ_TOOL_ALLOWED_NETWORKS)") from None
    return tuple(nets)


def classify(ip: IP) -> str:
    """Why ``ip`` is not a public unicast address, or ``""`` when it is."""
    if ip in METADATA:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded, label in ((ip.ipv4_mapped, "IPv4-mapped"), (ip.sixtofour, "6to4"),
                                (ip.teredo[1] if ip.teredo else None, "Teredo")):
            if embedded is not None:
                inner = classify(embedded)
                return f"{label} {inner}" if inner else ""
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            inner = classify(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"NAT64 {inner}" if inner else ""
    for test, label in ((ip.is_unspecified, "unspecified address"), (ip.is_loopback, "loopback address"),
                        (ip.is_link_local, "link-local address"), (ip.is_multicast, "multicast address"),
                        (ip in CGNAT, "carrier-grade NAT address"), (ip.is_private, "private address"),
                        (ip.is_reserved, "reserved address"), (not ip.is_global, "non-public address")):
        if test:
            return label
    return ""


@dataclass(frozen=True)
class Target:
    url: str
    """The URL with the host replaced by the checked address."""
    host: str
    ip: str
    host_header: str
    scheme: str


class EgressGuard:
    def __init__(self, allowed_networks: Iterable[str] = ()):
        self.allowed = parse_networks(allowed_networks)

    def refusal(self, ip: IP) -> str:
        """Why ``ip`` may not be reached, or ``""``."""
        reason = classify(ip)
        if not reason:
            return ""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net in self.allowed:
            if ip.version == net.version and ip in net:
                if ip in METADATA and net.num_addresses != 1:
                    continue
                return ""
        return reason

    async def check(self, url: str, *, tool: str = "?") -> Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ToolError(f'tool "{tool}": endpoint scheme "{parts.scheme}" is not allowed (use http or https)',
                            code="runtime_policy_invalid")
        host = parts.hostname or ""
        if not host:
            raise ToolError(f'tool "{tool}": endpoint "{url}" has no host', code="runtime_policy_invalid")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise ToolError(f'tool "{tool}": endpoint "{url}" has an invalid port', code="runtime_policy_invalid") from None
        addresses = await _resolve(host, port, tool)
        refused = [(ip, self.refusal(ip)) for ip in addresses]
        usable = [ip for ip, reason in refused if not reason]
        if not usable:
            ip, reason = refused[0]
            shown = host if str(ip) == host else f"{host} ({', '.join(str(a) for a in addresses)})"
            raise ToolError(f'tool "{tool}": egress to {shown} refused: {reason}; {FIX}', code="tool_egress_denied")
        ip = usable[0]
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return Target(url=urlunsplit(parts._replace(netloc=netloc)), host=host, ip=str(ip),
                      host_header=host_header, scheme=scheme)


async def _resolve(host: str, port: int, tool: str) -> list[IP]:
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), 10)
    except (OSError, asyncio.TimeoutError) as exc:
        raise ToolError(f'tool "{tool}": cannot resolve host "{host}": {exc}', retryable=True) from None
    seen: list[IP] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    if not seen:
        raise ToolError(f'tool "{tool}": host "{host}" has no address', retryable=True)
    return seen
