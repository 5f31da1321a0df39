"""Socket addresses as the config writes them: `host:port`, `[v6]:port`.

`Address` keeps the host as written (a name, an IPv4 literal, or an IPv6 literal without its
brackets) so `str(address)` gives back the form the user typed, which is what error messages and
the admin API should show. Names are not resolved here: validation must not depend on DNS, and an
endpoint's name is resolved by the runtime when it connects.

`same_socket_key` normalises literals (`[0:0::1]` and `[::1]` are one socket) for the duplicate
address check. Port 0 parses (a listener on port 0 lets the OS pick, which tests rely on); the
model refuses it where it cannot work (an endpoint).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Also the JSON Schema pattern for editors (a loose shape check; the parser has the last word).
PATTERN = r"^(\[[0-9A-Fa-f:.%a-zA-Z0-9]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}$"

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\Z")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def ip(self) -> IP | None:
        """The host as an IP address, or None when it is a name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and the name `localhost`: reachable only from this machine."""
        ip = self.ip
        if ip is None:
            return self.host.lower() == "localhost"
        return ip.is_loopback

    @property
    def is_unspecified(self) -> bool:
        """True for 0.0.0.0 and ::, which bind every interface of their family."""
        ip = self.ip
        return ip is not None and ip.is_unspecified

    def same_socket_key(self) -> tuple[str, int]:
        ip = self.ip
        return (str(ip) if ip is not None else self.host.lower().rstrip("."), self.port)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_address(text: object) -> Address:
    """Parse `host:port` or `[v6]:port`; raise ValueError with a message for the user."""
    if isinstance(text, Address):
        return text
    if not isinstance(text, str):
        shown = str(text).lower() if isinstance(text, bool) else repr(text)
        raise ValueError(f"expected an address 'host:port' as a string, got {shown}")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1:].startswith(":"):
            raise ValueError(f"expected '[IPv6]:port', got '{text}'")
        host, port_text = text[1:close], text[close + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected 'host:port', got '{text}' (no port)")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets: '[{host}]:{port_text}'")
        if not host:
            raise ValueError(
                f"'{text}' has no host: write 0.0.0.0{text} for every interface "
                f"or 127.0.0.1{text} for this machine only")
        _check_host(host)
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"'{port_text}' is not a port number (0-65535)")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    return Address(host, port)


def _check_host(host: str) -> None:
    labels = host.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv4 address") from None
        return
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"'{host}' is not a valid host name or IP address")
