"""The load generators: wrk and `h2load --h1`, run for a duration, their output parsed into one
shape: requests, req/s, p50/p99 latency (ms), non-2xx responses and errors."""

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


def h2load(url: str, duration: float, conns: int, *, post_body: Path | None = None) -> dict:
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        argv = ["h2load", "--h1", "-t1", f"-c{conns}", "-m1", f"-D{max(1, round(duration))}",
                f"--log-file={log.name}", "-T10"]
        if post_body is not None:
            argv += ["-d", str(post_body), "-H", "content-type: application/octet-stream"]
        argv.append(url)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        durations = []
        with open(log.name) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    durations.append(int(parts[2]))
    text = out.stdout + out.stderr
    durations.sort()
    ok = int(_num(r"^requests: .*?(\d+) succeeded", text))
    res = {
        "requests": ok,
        "rps": _num(r"^finished in [\d.]+\w*, ([\d.]+) req/s", text),
        "p50_ms": _pct(durations, 0.50),
        "p99_ms": _pct(durations, 0.99),
        "non2xx": sum(int(x) for x in re.findall(r"(\d+) [345]xx", _line("status codes", text))),
        "errors": int(_num(r"(\d+) errored", text)) + int(_num(r"(\d+) timeout", text)),
    }
    if out.returncode != 0 or not ok:
        res["failed"] = text.strip()[-400:] or f"h2load exited with {out.returncode}"
    return res


def _pct(sorted_us: list[int], q: float) -> float | None:
    if not sorted_us:
        return None
    return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))] / 1000.0


TOOLS = {"wrk": wrk, "h2load": h2load}
