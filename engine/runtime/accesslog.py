"""Opening the access log for a worker. The log itself is compiled (engine/_fast/accesslog.pyx:
formatting and buffered writes); this module maps the config's `access_log` onto it."""

from __future__ import annotations

from engine._fast.accesslog import AccessLog


def open_access_log(loop, path: str, format: str = "json") -> AccessLog | None:
    """`path` is 'stderr', 'stdout', 'off' or a file (appended to); None for 'off'."""
    if path == "off":
        return None
    return AccessLog(loop, path, format)
