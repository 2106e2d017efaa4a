"""Which network targets a PipelineRun may reach: public addresses, and private ones
only when the operator's admin allowed them.

A run names hosts in `spec.source.uri` (http, https), `spec.*.s3.endpoint` and a
`clickhouse://` sink. None of them may lead a stage to a loopback, private, link-local
(cloud metadata), shared (CGNAT), reserved or multicast address unless it is listed in
`LINEAGEHUB_ALLOWED_PRIVATE_TARGETS` (CIDRs or host names, comma-separated), which the
operator reads from its environment and hands to every stage Job.

The operator checks the spec (resolving each host) before it creates a Job; the runner
checks every hop of an HTTP download again, and the address it actually connects to, so
neither a redirect nor a DNS answer that changed since (rebinding) reaches a refused
address.

Standard library only: the runner and the operator both import it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Environment variable holding the allowed private targets (CIDRs or host names).
ALLOWED_PRIVATE_TARGETS_ENV = "LINEAGEHUB_ALLOWED_PRIVATE_TARGETS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: host -> the addresses it resolves to (raises OSError when it does not resolve).
Resolver = Callable[[str], Sequence[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class TargetRefused(Exception):
    """A host or address the policy does not allow a stage to reach."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


def system_resolver(host: str) -> list[str]:
    """Every address `host` resolves to (A and AAAA), in the resolver's order."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 scope id
        if address not in seen:
            seen.append(address)
    return seen


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4), else `ip`."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def address_kind(address: str | IPAddress) -> str | None:
    """What makes `address` a non-public target (`loopback`, `link-local`, ...), or None
    for a public unicast address."""
    ip = _embedded(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetPolicy:
    """Private targets the admin allowed; everything public is allowed anyway."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TargetPolicy:
        """From entries such as `10.0.0.0/8`, `127.0.0.1`, `minio.data.svc`."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    @classmethod
    def from_text(cls, text: str | None) -> TargetPolicy:
        return cls.parse((text or "").split(","))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TargetPolicy:
        return cls.from_text(environ.get(ALLOWED_PRIVATE_TARGETS_ENV))

    def to_text(self) -> str:
        return ",".join([*(str(n) for n in self.networks), *sorted(self.hosts)])

    def host_allowed(self, host: str) -> bool:
        """A host name the admin listed: whatever it resolves to is allowed."""
        return host.lower().rstrip(".") in self.hosts

    def refusal(self, address: str) -> str | None:
        """Why a stage may not connect to `address`, or None when it may."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        kind = address_kind(ip)
        if kind is None:
            return None
        if any(ip in net or _embedded(ip) in net for net in self.networks):
            return None
        return f"{address} is a {kind} address"

    def check_host(self, host: str, resolve: Resolver = system_resolver) -> list[str]:
        """The addresses a stage may connect to for `host`; raises `TargetRefused` when
        any address it resolves to is refused (one bad answer is enough: the client may
        pick any of them). A name that does not resolve raises OSError."""
        if not host:
            raise TargetRefused(host, "no host given")
        literal = _literal(host)
        if literal is None and self.host_allowed(host):
            return list(resolve(host))
        addresses = [str(literal)] if literal is not None else list(resolve(host))
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                if literal is None:
                    reason = f"resolves to {reason.replace(' is a ', ', a ', 1)}"
                raise TargetRefused(host, reason)
        return addresses


__all__ = [
    "ALLOWED_PRIVATE_TARGETS_ENV",
    "Resolver",
    "TargetPolicy",
    "TargetRefused",
    "address_kind",
    "system_resolver",
]
