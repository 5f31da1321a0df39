"""Listening sockets. Each worker binds its own SO_REUSEPORT socket, so the kernel spreads new
connections across workers with no shared accept queue and no thundering herd.

SO_REUSEPORT also lets any other process of the same user join the group: a second `sluice run`
on the same address would silently take part of the traffic. So the supervisor first probes each
address WITHOUT SO_REUSEPORT (`check_bindable`): that bind fails while anyone listens there, our
own earlier workers included, so it is done only for addresses none of our workers hold yet (at
start, and for a listener a reload adds). Worker restarts and reloads of existing addresses bind
with SO_REUSEPORT beside their siblings and are not probed.

The backlog: uvloop's `create_server(sock=...)` calls listen() again with its own `backlog`
argument (default 100), so whoever serves a socket from here must pass BACKLOG there too.
"""

from __future__ import annotations

import errno
import socket

BACKLOG = 4096     # the accept queue per worker and listener (the kernel caps it at somaxconn)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_socket(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def check_bindable(host: str, port: int) -> None:
    """Raise OSError now, in the supervisor, if host:port is taken (by anyone, another sluice
    included) or cannot be bound. SO_REUSEADDR only, so a port in TIME_WAIT is fine."""
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    finally:
        sock.close()


def why_not(exc: OSError) -> str:
    """A bind failure in words."""
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another process listens there, perhaps another sluice)"
    return exc.strerror or str(exc)
