"""Listening sockets. Each worker binds its own SO_REUSEPORT socket, so the kernel spreads new
connections across workers with no shared accept queue and no thundering herd."""

from __future__ import annotations

import socket


def listen_socket(host: str, port: int, backlog: int = 4096) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
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
    """Raise OSError now, in the supervisor, if no worker could listen on host:port."""
    listen_socket(host, port, 1).close()
