"""The load generators: wrk and h2load (`--h1`, or HTTP/2 with several streams per connection),
run for a duration, their output parsed into one shape: requests, req/s, p50/p99 latency (ms),
non-2xx responses and errors."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _num(pattern: str, text: str, default: float = 0.0) -> float:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else default


def wrk(url: str, duration: float, conns: int, *, post_body: Path | None = None,
        close: bool = False, threads: int = 1) -> dict:
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
            "--timeout", "10s"]
    if post_body is not None:
        argv += ["-s", str(HERE / "post.lua")]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout + out.stderr
    lat = {}
    for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE):
        lat[m.group(1)] = float(m.group(2)) * _UNIT[m.group(3)]
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)",
                                           _line("Socket errors", text)))
    res = {
        "requests": int(_num(r"^\s*(\d+) requests in", text)),
        "rps": _num(r"^Requests/sec:\s+([\d.]+)", text),
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
        "non2xx": int(_num(r"Non-2xx or 3xx responses:\s+(\d+)", text)),
        "errors": errors,
    }
    if out.returncode != 0 or not res["requests"]:
        res["failed"] = text.strip()[-400:] or f"wrk exited with {out.returncode}"
    return res


def _line(prefix: str, text: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line
    return ""


def h2load_argv(url: str, duration: float, conns: int, log: str, *,
                post_body: Path | None = None, h2: bool = False, streams: int = 1,
                headers: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """HTTP/1.1 (`--h1`, one request at a time per connection) or HTTP/2 (h2c by prior
    knowledge for http://, ALPN h2 for https://) with `streams` concurrent streams per
    connection."""
    argv = ["h2load", "-t1", f"-c{conns}", f"-m{streams if h2 else 1}",
            f"-D{max(1, round(duration))}", f"--log-file={log}", "-T10"]
    if not h2:
        argv.insert(1, "--h1")
    if post_body is not None:
        argv += ["-d", str(post_body)]
        if not any(k == "content-type" for k, _ in headers):
            argv += ["-H", "content-type: application/octet-stream"]
    for k, v in headers:
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    return argv


def h2load(url: str, duration: float, conns: int, *, post_body: Path | None = None,
           h2: bool = False, streams: int = 1,
           headers: tuple[tuple[str, str], ...] = ()) -> dict:
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        argv = h2load_argv(url, duration, conns, log.name, post_body=post_body, h2=h2,
                           streams=streams, headers=headers)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        with open(log.name) as f:
            durations = h2load_durations(f)
    return parse_h2load(out.stdout + out.stderr, durations, out.returncode,
                        want_protocol="h2" if h2 and url.startswith("https:") else
                        "h2c" if h2 else None)


def h2load_durations(lines) -> list[int]:
    """Per-request times (us) from h2load's --log-file: start (us since epoch), status, time."""
    out = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) >= 3:
            out.append(int(parts[2]))
    return out


def parse_h2load(text: str, durations: list[int], returncode: int = 0,
                 want_protocol: str | None = None) -> dict:
    """h2load's summary as the shape every tool returns. With `want_protocol`, a run that
    negotiated anything else (h2 over TLS falling back to http/1.1) is a failed run."""
    durations = sorted(durations)
    ok = int(_num(r"^requests: .*?(\d+) succeeded", text))
    m = re.search(r"^Application protocol: (\S+)", text, re.MULTILINE)
    res = {
        "requests": ok,
        "rps": _num(r"^finished in [\d.]+\w*, ([\d.]+) req/s", text),
        "p50_ms": _pct(durations, 0.50),
        "p99_ms": _pct(durations, 0.99),
        "non2xx": sum(int(x) for x in re.findall(r"(\d+) [345]xx", _line("status codes", text))),
        "errors": int(_num(r"(\d+) errored", text)) + int(_num(r"(\d+) timeout", text)),
        "protocol": m.group(1) if m else None,
    }
    if returncode != 0 or not ok:      # the exit status first: a signal shows as negative
        res["failed"] = f"h2load exited with {returncode}: " + text.strip()[-400:]
    elif want_protocol and res["protocol"] != want_protocol:
        res["failed"] = f"negotiated {res['protocol']}, not {want_protocol}"
    return res


def _pct(sorted_us: list[int], q: float) -> float | None:
    if not sorted_us:
        return None
    return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))] / 1000.0


TOOLS = {"wrk": wrk, "h2load": h2load}
