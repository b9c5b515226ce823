"""Posting a notification: bounded, no redirects, no private targets.

The standard library's ``http.client`` (no dependency): it follows no
redirect by itself (a 3xx is a failed delivery: a webhook that moved is
reconfigured, never chased to another host), and the connection goes to the
address that was checked, not to a second DNS answer (no rebinding between
the check and the connect). ``FLEET_ALERTS_TIMEOUT`` bounds the connect and
each read; the answer's body is read up to ``MAX_ANSWER_BYTES`` and dropped.

A target whose name resolves to any private, loopback, link-local, reserved
or multicast address is refused unless ``FLEET_ALERTS_ALLOW_PRIVATE_TARGETS``
(off by default: a webhook URL must not reach the internal network).

Errors name neither the URL nor its path (it can hold the webhook's token).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from django.conf import settings

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "Fleet-alerts/1"


class DeliveryError(Exception):
    """A delivery that failed; the message is safe to log and show."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, *, allow_private: bool) -> tuple[int, str]:
    """The (family, address) to connect to; ``DeliveryError`` when refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryError(f"the target's host does not resolve ({exc})") from None
    addresses = [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]
    if not addresses:
        raise DeliveryError("the target's host does not resolve")
    if not allow_private and not all(_is_public(address) for _, address in addresses):
        raise DeliveryError(
            "refused: the target resolves to a private, loopback or link-local address "
            "(FLEET_ALERTS_ALLOW_PRIVATE_TARGETS is off)"
        )
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # HTTPSConnection keeps its SSL context in _context, which typeshed does not declare.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``url``; the status on a 2xx, else ``DeliveryError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("the target is not an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DeliveryError("the target's port is not valid") from None
    _, address = resolve(
        parts.hostname, port, allow_private=settings.FLEET_ALERTS_ALLOW_PRIVATE_TARGETS
    )
    timeout = float(settings.FLEET_ALERTS_TIMEOUT)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
        status = response.status
    except TimeoutError:
        raise DeliveryError(f"timed out after {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"TLS error: {exc.reason or type(exc).__name__}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"connection failed: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    if 300 <= status < 400:
        raise DeliveryError(f"HTTP {status}: redirect not followed")
    if status >= 400:
        raise DeliveryError(f"HTTP {status}")
    return status
