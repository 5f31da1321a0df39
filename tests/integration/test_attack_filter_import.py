"""Attack (security issue, item 2): a pushed snapshot must not run code.

Before the fix, `PUT /snapshot` with a filter `python: subprocess:Popen` instantiated Popen with
the filter's config (a command ran), and naming any module imported it (its top level ran). Now
filter modules come only from an allow list fixed at start (the modules the starting config names,
plus `--filter-module`); anything else is refused before import, and a class that is not an
`engine.Filter` subclass is refused before it is called. The running config stays."""

from __future__ import annotations

import signal
import textwrap
import time

import httpx
import pytest
import yaml

from support import free_port, wait_port


def _config(port: int, admin: int, body: str, filters=()) -> dict:
    return {
        "admin": {"address": f"127.0.0.1:{admin}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["r"]}],
        "routes": [{"name": "r", "match": {"path_prefix": "/"},
                    "filters": [f["name"] for f in filters],
                    "direct_response": {"status": 200, "body": body}}],
        "filters": list(filters),
    }


def _snapshot(cfg: dict) -> bytes:
    from engine.policy import load_config_text
    from engine.policy.snapshot import encode_snapshot

    return encode_snapshot(load_config_text(yaml.safe_dump(cfg), "pushed.yaml"), "pushed.yaml")


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A directory on the sluice process's sys.path with: `sideeffect_mod` (writes a marker file
    when imported), `goodfilter` (a real engine.Filter), `notafilter` (a class that writes a
    marker file when called and is no Filter)."""
    pkg = tmp_path / "mods"
    pkg.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    (pkg / "sideeffect_mod.py").write_text(textwrap.dedent(f"""
        open({str(markers / 'imported')!r}, 'w').write('imported')
        import engine
        class F(engine.Filter):
            pass
    """))
    (pkg / "goodfilter.py").write_text(textwrap.dedent("""
        import engine
        class Tag(engine.Filter):
            def __init__(self, value='tagged'):
                self.value = value
            def request(self, ctx):
                return engine.Reply(200, self.value)
    """))
    (pkg / "notafilter.py").write_text(textwrap.dedent(f"""
        class Evil:
            def __init__(self, **kw):
                open({str(markers / 'called')!r}, 'w').write('called')
    """))
    import os
    monkeypatch.setenv("PYTHONPATH", f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return markers


def _start(start_sluice, extra=()):
    port, admin = free_port(), free_port()
    s = start_sluice(_config(port, admin, "v1"), extra=list(extra))
    url = f"http://127.0.0.1:{admin}"
    deadline = time.monotonic() + 15
    while httpx.get(url + "/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return s, port, admin, url


def test_put_snapshot_naming_subprocess_popen_is_400_and_runs_nothing(modules, start_sluice,
                                                                     tmp_path):
    s, port, admin, url = _start(start_sluice)
    ran = tmp_path / "popen-ran"
    evil = _config(port, admin, "pwned", [{"name": "x", "python": "subprocess:Popen",
                                          "config": {"args": ["touch", str(ran)]}}])
    r = httpx.put(url + "/snapshot", content=_snapshot(evil), timeout=30)
    assert r.status_code == 400
    assert ("filters[0].python: module 'subprocess' is not in the filter module allow list "
            "(modules named in the config at start, or --filter-module)") in r.json()["errors"][0]
    time.sleep(0.5)
    assert not ran.exists()
    assert httpx.get(s.url + "/").text == "v1"
    dump = httpx.get(url + "/config_dump").json()
    assert "subprocess" in dump["last_rejection"]["reason"][0]


def test_a_module_with_import_side_effects_is_never_imported(modules, start_sluice):
    s, port, admin, url = _start(start_sluice)
    evil = _config(port, admin, "pwned", [{"name": "x", "python": "sideeffect_mod:F"}])
    r = httpx.put(url + "/snapshot", content=_snapshot(evil), timeout=30)
    assert r.status_code == 400
    assert "module 'sideeffect_mod' is not in the filter module allow list" in r.text
    time.sleep(0.5)
    assert not (modules / "imported").exists()
    assert httpx.get(s.url + "/").text == "v1"


def test_a_file_reload_or_sighup_naming_another_module_is_refused(modules, start_sluice):
    s, port, admin, url = _start(start_sluice)
    s.path.write_text(yaml.safe_dump(_config(port, admin, "pwned",
                                             [{"name": "x", "python": "sideeffect_mod:F"}])))
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "sideeffect_mod" not in s.stderr_path.read_text():
        assert time.monotonic() < deadline, s.stderr_path.read_text()
        time.sleep(0.05)
    assert "filters[0].python: module 'sideeffect_mod' is not in the filter module allow list" \
        in s.stderr_path.read_text()
    assert not (modules / "imported").exists()
    assert httpx.get(s.url + "/").text == "v1"


def test_filter_module_flag_allows_a_module_and_a_non_filter_class_is_never_called(
        modules, start_sluice):
    s, port, admin, url = _start(start_sluice, ["--filter-module", "goodfilter",
                                                "--filter-module", "notafilter"])
    bad = _config(port, admin, "pwned", [{"name": "x", "python": "notafilter:Evil"}])
    r = httpx.put(url + "/snapshot", content=_snapshot(bad), timeout=30)
    assert r.status_code == 400
    assert "filters[0].python: 'notafilter:Evil' is not a subclass of engine.Filter" in r.text
    assert not (modules / "called").exists()
    assert httpx.get(s.url + "/").text == "v1"
    good = _config(port, admin, "v2", [{"name": "t", "python": "goodfilter:Tag",
                                       "config": {"value": "from-filter"}}])
    r = httpx.put(url + "/snapshot", content=_snapshot(good), timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(s.url + "/").text == "from-filter"


def test_a_module_named_in_the_starting_config_stays_allowed(modules, start_sluice, tmp_path):
    port, admin = free_port(), free_port()
    first = _config(port, admin, "v1", [{"name": "t", "python": "goodfilter:Tag",
                                        "config": {"value": "one"}}])
    s = start_sluice(first)
    wait_port(port)
    url = f"http://127.0.0.1:{admin}"
    second = _config(port, admin, "v2", [{"name": "t", "python": "goodfilter:Tag",
                                         "config": {"value": "two"}}])
    r = httpx.put(url + "/snapshot", content=_snapshot(second), timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(s.url + "/").text == "two"


def test_the_filter_module_flag_needs_a_module_name(tmp_path):
    import subprocess
    import sys

    from support import ROOT

    out = subprocess.run([sys.executable, "-m", "engine", "run", "-c", "x.yaml",
                          "--filter-module", "not a module"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "is not a module name" in out.stderr
