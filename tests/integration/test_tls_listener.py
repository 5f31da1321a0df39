"""TLS termination on a listener, end to end: the real binary, real clients (curl, openssl
s_client, Python ssl), certificates made for each test (tests/tls_certs.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys

import httpx
import pytest
import yaml

from support import ROOT, eventually, free_port
from tls_certs import CA, not_after

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None,
                                reason="needs curl and openssl")


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "pki")
    return {
        "ca": ca,
        "server": ca.issue("server", dns=["localhost"], uri="spiffe://td/ns/edge/sa/sluice"),
        "www": ca.issue("www", dns=["www.example.test", "*.apps.example.test"]),
        "client": ca.issue("client", uri="spiffe://td/ns/shop/sa/web", client=True),
    }


def tls_config(pki, upstream, port=None, **tls) -> dict:
    certs = [{"cert": str(pki[n][0]), "key": str(pki[n][1])} for n in ("server", "www")]
    return {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "edge", "address": f"127.0.0.1:{port or free_port()}",
                       "routes": ["health", "web"],
                       "tls": {"certificates": certs, **tls}}],
        "routes": [
            {"name": "health", "match": {"path": "/healthz"},
             "direct_response": {"status": 200, "body": "ok\n"}},
            {"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]},
        ],
        "clusters": [{"name": "up", "endpoints": [{"address": upstream.address}]}],
    }


def curl(pki, url, *args, cacert=True) -> subprocess.CompletedProcess:
    command = ["curl", "-sS", "--max-time", "10", *args]
    if cacert:
        command += ["--cacert", str(pki["ca"].cert_path)]
    return subprocess.run([*command, url], capture_output=True, text=True, timeout=30)


def client_ctx(pki, cert=None, **kw) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    for name, value in kw.items():
        setattr(ctx, name, value)
    if cert is not None:
        ctx.load_cert_chain(*map(str, cert))
    return ctx


def connect(port, ctx, server_name="localhost", session=None) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(sock, server_hostname=server_name, session=session)


def get(tls: ssl.SSLSocket, path: str = "/healthz", host: str = "localhost") -> bytes:
    """One keep-alive request on `tls`; the whole response (content-length framed)."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += tls.recv(65536)
    return head + b"\r\n\r\n" + body


def common_name(tls: ssl.SSLSocket) -> str:
    return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]


def served_name(port: int, pki, server_name="localhost") -> str:
    ctx = client_ctx(pki)
    ctx.check_hostname = False
    with connect(port, ctx, server_name) as tls:
        return common_name(tls)


def names(port: int, pki) -> str:
    """The subject alternative names of the certificate served now (no SNI)."""
    with connect(port, client_ctx(pki)) as tls:
        return str(tls.getpeercert()["subjectAltName"])


def port_of(config) -> int:
    return int(config["listeners"][0]["address"].rsplit(":", 1)[1])


def metric(sluice, name: str, **labels) -> float | None:
    text = sluice.admin("/stats/prometheus").body.decode()
    for line in text.splitlines():
        m = re.match(r"([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and \
                dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")) == labels:
            return float(m.group(3))
    return None


# -- serving -----------------------------------------------------------------------------------


def test_curl_with_cacert_gets_a_200_through_to_the_upstream(pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    s = start_sluice(config)
    port = port_of(config)
    done = curl(pki, f"https://localhost:{port}/echo", "-o", "-", "-w", "\n%{http_code}")
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200"
    echoed = json.loads(body)
    assert echoed["path"] == "/echo"
    # without the CA, curl refuses the certificate: it really is TLS with our certificate
    assert curl(pki, f"https://localhost:{port}/healthz", cacert=False).returncode == 60
    assert s.proc.poll() is None


def test_the_upstream_sees_x_forwarded_proto_https(pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    start_sluice(config)
    done = curl(pki, f"https://localhost:{port_of(config)}/echo")
    headers = dict((k.lower(), v) for k, v in json.loads(done.stdout)["headers"])
    assert headers["x-forwarded-proto"] == "https"


def test_sni_picks_the_second_certificate_and_others_get_the_default(pki, upstream,
                                                                     start_sluice):
    config = tls_config(pki, upstream)
    start_sluice(config)
    port = port_of(config)
    assert served_name(port, pki, "www.example.test") == "www.example.test"
    assert served_name(port, pki, "a.apps.example.test") == "www.example.test"
    assert served_name(port, pki, "localhost") == "localhost"
    assert served_name(port, pki, "unknown.test") == "localhost"
    # and openssl's own client agrees
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", "www.example.test"], input="", capture_output=True,
                         text=True, timeout=30)
    assert "subject=CN = www.example.test" in out.stdout, out.stdout


def test_tls11_is_refused_and_tls12_with_alpn_http11_is_served(pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    start_sluice(config)
    port = port_of(config)
    old = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1",
                          "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"],
                         input="", capture_output=True, text=True, timeout=30)
    # refused at the ClientHello: no certificate was sent (uvloop closes the connection
    # without sending the protocol_version alert, so openssl sees an EOF)
    assert old.returncode != 0
    assert "BEGIN CERTIFICATE" not in old.stdout and "no peer certificate" in old.stdout
    new = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                          "-alpn", "h2,http/1.1", "-servername", "localhost"],
                         input="", capture_output=True, text=True, timeout=30)
    assert "Protocol  : TLSv1.2" in new.stdout, new.stdout
    assert "ALPN protocol: http/1.1" in new.stdout, new.stdout
    verbose = curl(pki, f"https://localhost:{port}/healthz", "-v")
    assert "ALPN: server accepted http/1.1" in verbose.stderr, verbose.stderr
    assert verbose.stdout == "ok\n"


def alpn(port: int, pki, offer: list[str]) -> str | None:
    """The protocol a real handshake with the running sluice selects for a client offering
    `offer` (only the negotiation: nothing is sent on the connection)."""
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(offer)
    with connect(port, ctx) as tls:
        return tls.selected_alpn_protocol()


def test_a_listener_with_http2_first_negotiates_h2_and_http11_clients_still_get_http11(
        pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    config["listeners"][0]["protocols"] = ["http2", "http1"]
    start_sluice(config)
    port = port_of(config)
    assert alpn(port, pki, ["h2", "http/1.1"]) == "h2"
    assert alpn(port, pki, ["http/1.1", "h2"]) == "h2"        # the listener's order decides
    assert alpn(port, pki, ["http/1.1"]) == "http/1.1"
    s_client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                               "-alpn", "h2,http/1.1", "-servername", "localhost"],
                              input="", capture_output=True, text=True, errors="replace",
                              timeout=30)     # (the HTTP/2 server's SETTINGS are binary)
    assert "ALPN protocol: h2" in s_client.stdout, s_client.stdout
    # an HTTP/1.1 client that negotiated http/1.1 is served as before
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["http/1.1"])
    with connect(port, ctx) as tls:
        assert get(tls).endswith(b"ok\n")


def test_a_listener_with_http1_only_never_selects_h2(pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    config["listeners"][0]["protocols"] = ["http1"]
    start_sluice(config)
    port = port_of(config)
    assert alpn(port, pki, ["h2", "http/1.1"]) == "http/1.1"
    assert alpn(port, pki, ["h2"]) is None        # no overlap: no protocol, no h2


def test_a_reload_that_adds_http2_offers_h2_to_new_handshakes(pki, upstream, start_sluice):
    """The front context (and the listening socket) stays across the reload; the ALPN offer
    lives in the inner contexts the relink rebuilds (engine/policy/tls_server.py)."""
    config = tls_config(pki, upstream)
    s = start_sluice(config, workers=2)
    port = port_of(config)
    assert alpn(port, pki, ["h2", "http/1.1"]) == "http/1.1"
    config["listeners"][0]["protocols"] = ["http2", "http1"]
    s.path.write_text(yaml.safe_dump(config))
    # every worker: a few handshakes in a row all select h2
    eventually(lambda: all(alpn(port, pki, ["h2", "http/1.1"]) == "h2" for _ in range(8)),
               timeout=20)
    config["listeners"][0]["protocols"] = ["http1"]
    s.path.write_text(yaml.safe_dump(config))
    eventually(lambda: all(alpn(port, pki, ["h2", "http/1.1"]) == "http/1.1"
                           for _ in range(8)), timeout=20)


def test_min_version_13_refuses_tls12(pki, upstream, start_sluice):
    config = tls_config(pki, upstream, min_version="1.3")
    start_sluice(config)
    port = port_of(config)
    assert curl(pki, f"https://localhost:{port}/healthz", "--tls-max", "1.2").returncode != 0
    assert curl(pki, f"https://localhost:{port}/healthz").stdout == "ok\n"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_sessions_resume_on_any_worker(pki, upstream, start_sluice, version):
    """The ticket keys are made before the workers fork: a session issued by one worker resumes
    on the other (the kernel spreads the connections over both)."""
    config = tls_config(pki, upstream)
    start_sluice(config, workers=2)
    port = port_of(config)
    ctx = client_ctx(pki, maximum_version=version)
    with connect(port, ctx) as first:
        assert get(first).startswith(b"HTTP/1.1 200")     # 1.3 tickets come after the handshake
        session = first.session
    for _ in range(12):
        with connect(port, ctx, session=session) as again:
            assert again.session_reused
            assert get(again).endswith(b"ok\n")


@pytest.mark.parametrize("junk", [b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
                                  b"\x16\x03\x01\x00\x05garbage" * 20, b"\x00" * 4096],
                         ids=["plaintext", "broken-hello", "zeros"])
def test_bytes_that_are_not_tls_close_that_connection_only(pki, upstream, start_sluice, junk):
    config = tls_config(pki, upstream)
    s = start_sluice(config)
    port = port_of(config)
    keep = connect(port, client_ctx(pki))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(junk)
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in answer and b"ok" not in answer
    assert get(keep).endswith(b"ok\n")             # the others go on
    assert curl(pki, f"https://localhost:{port}/healthz").stdout == "ok\n"
    keep.close()
    assert s.proc.poll() is None
    # counted and logged, with OpenSSL's reason
    assert metric(s, "sluice_tls_handshake_failures_total") == 1
    eventually(lambda: "listener edge: TLS handshake failed: " in s.stderr_path.read_text())


def test_a_client_that_never_finishes_its_handshake_is_dropped_at_the_header_timeout(
        pki, upstream, start_sluice):
    """Without it, uvloop's default (60 s) would let a slowloris hold TLS connections open
    that long before any HTTP timeout starts."""
    config = tls_config(pki, upstream)
    config["listeners"][0]["timeouts"] = {"header": "1s"}
    start_sluice(config)
    with socket.create_connection(("127.0.0.1", port_of(config)), timeout=30) as silent:
        silent.sendall(b"\x16\x03\x01")          # the first bytes of a ClientHello, then nothing
        try:
            assert silent.recv(100) == b""
        except ConnectionResetError:
            pass


def test_an_expired_certificate_loads_with_a_warning_and_clients_refuse_it(pki, upstream,
                                                                        start_sluice):
    from tls_certs import DAY, NOW

    cert, key = pki["ca"].issue("expired", dns=["localhost"], not_after=NOW - DAY)
    config = tls_config(pki, upstream)
    config["listeners"][0]["tls"]["certificates"] = [{"cert": str(cert), "key": str(key)}]
    s = start_sluice(config)
    done = curl(pki, f"https://localhost:{port_of(config)}/healthz")
    assert done.returncode == 60 and "expired" in done.stderr, done.stderr
    assert f"listeners[0].tls.certificates[0].cert: warning: {cert}: expired on " in \
        s.stderr_path.read_text()


# -- mutual TLS --------------------------------------------------------------------------------


def test_mutual_tls_needs_a_client_certificate_from_the_ca(pki, upstream, start_sluice,
                                                           tmp_path):
    config = tls_config(pki, upstream, client_ca=str(pki["ca"].cert_path))
    s = start_sluice(config)
    url = f"https://localhost:{port_of(config)}/echo"
    good = curl(pki, url, "--cert", str(pki["client"][0]), "--key", str(pki["client"][1]),
                "-o", "/dev/null", "-w", "%{http_code}")
    assert good.stdout == "200", good.stderr
    missing = curl(pki, url, "-o", "/dev/null", "-w", "%{http_code}")
    assert missing.returncode != 0 and missing.stdout != "200"
    stranger = CA(tmp_path / "stranger", "stranger-ca")
    cert, key = stranger.issue("intruder", uri="spiffe://td/ns/shop/sa/web", client=True)
    forged = curl(pki, url, "--cert", str(cert), "--key", str(key), "-o", "/dev/null",
                  "-w", "%{http_code}")
    assert forged.returncode != 0 and forged.stdout != "200"
    assert curl(pki, url, "--cert", str(pki["client"][0]), "--key", str(pki["client"][1]),
                "-o", "/dev/null", "-w", "%{http_code}").stdout == "200"
    failures = metric(s, "sluice_tls_handshake_failures_total")
    assert failures == 2, failures
    log = s.stderr_path.read_text()
    assert "listener edge: TLS handshake failed: PEER_DID_NOT_RETURN_A_CERTIFICATE" in log, log
    assert "handshake failed: CERTIFICATE_VERIFY_FAILED" not in log      # once per 10 s


# -- certificate reload ------------------------------------------------------------------------


def replace_files(pairs: dict) -> None:
    """Rename new files over the old ones (what a certificate manager does)."""
    for source, target in pairs.items():
        tmp = f"{target}.tmp"
        shutil.copy(source, tmp)
        os.replace(tmp, target)


def test_a_rotated_certificate_serves_new_handshakes_and_open_connections_go_on(
        pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    s = start_sluice(config, workers=2)
    port = port_of(config)
    ctx = client_ctx(pki)
    open_conn = connect(port, ctx)
    assert common_name(open_conn) == "localhost"
    assert get(open_conn).endswith(b"ok\n")
    first_expiry = metric(s, "sluice_tls_cert_expiry_timestamp_seconds", listener="edge",
                          cert=str(pki["server"][0]))
    assert first_expiry == not_after(pki["server"][0])

    new_cert, new_key = pki["ca"].issue("rotated", dns=["localhost", "rotated.test"])
    replace_files({new_key: pki["server"][1], new_cert: pki["server"][0]})

    def rotated():
        # every worker: a few handshakes in a row all see the new certificate
        return all("rotated.test" in names(port, pki) for _ in range(8))
    eventually(rotated, timeout=20)
    assert get(open_conn).endswith(b"ok\n")          # the connection made before goes on
    open_conn.close()
    assert metric(s, "sluice_tls_cert_expiry_timestamp_seconds", listener="edge",
                  cert=str(pki["server"][0])) == not_after(new_cert)
    assert metric(s, "sluice_tls_reloads_total", result="applied") >= 1
    assert s.proc.poll() is None


def test_rotation_under_load_fails_no_request(pki, upstream, start_sluice):
    """Clients open new TLS connections (and resume sessions) in a loop while the certificate
    is rotated three times: every request gets its 200."""
    import threading

    config = tls_config(pki, upstream)
    start_sluice(config, workers=2)
    port = port_of(config)
    stop = threading.Event()
    results = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def client():
        ctx = client_ctx(pki)
        session = None
        while not stop.is_set():
            try:
                with connect(port, ctx, session=session) as tls:
                    good = get(tls).endswith(b"ok\n")
                    session = tls.session if session is None else session
            except (OSError, ssl.SSLError) as exc:
                good = exc
            with lock:
                if good is True:
                    results["ok"] += 1
                else:
                    results["failed"].append(good)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for round in range(3):
            cert, key = pki["ca"].issue(f"round{round}", dns=["localhost", f"r{round}.test"])
            replace_files({key: pki["server"][1], cert: pki["server"][0]})
            eventually(lambda: f"r{round}.test" in names(port, pki), timeout=20)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results["failed"] == [] and results["ok"] > 20, results


def test_a_bad_certificate_file_is_refused_with_its_path_and_the_old_one_serves_on(
        pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    s = start_sluice(config, workers=2)
    port = port_of(config)
    key_path = pki["server"][1]
    _, other_key = pki["ca"].issue("stranger", dns=["localhost"])
    replace_files({other_key: key_path})             # a key that is not the certificate's

    def refused():
        dump = json.loads(s.admin("/config_dump").body)
        rejection = dump["last_rejection"] or {}
        return any("key does not match certificate" in r for r in rejection.get("reason", ()))
    eventually(refused, timeout=20)
    stderr = s.stderr_path.read_text()
    assert (f"listeners[0].tls.certificates[0].key: {key_path}: key does not match "
            f"certificate {pki['server'][0]}") in stderr
    assert metric(s, "sluice_tls_reloads_total", result="rejected") >= 1
    for _ in range(6):                                # every worker still serves the old pair
        assert served_name(port, pki) == "localhost"
        assert curl(pki, f"https://localhost:{port}/healthz").stdout == "ok\n"
    # a worker started now (one died) still has the last good certificate
    victim = s.worker_pids()[0]
    os.kill(victim, 9)
    eventually(lambda: victim not in s.worker_pids() and len(s.worker_pids()) == 2, timeout=20)
    eventually(lambda: s.admin("/ready").status == 200, timeout=20)
    for _ in range(6):
        assert curl(pki, f"https://localhost:{port}/healthz").stdout == "ok\n"
    # a good key again: applied
    replace_files({pki["www"][1]: key_path, pki["www"][0]: pki["server"][0]})
    eventually(lambda: served_name(port, pki) == "www.example.test", timeout=20)


def test_a_reload_can_turn_tls_on_and_off_for_a_listener(pki, upstream, start_sluice):
    config = tls_config(pki, upstream)
    plain = {**config, "listeners": [{k: v for k, v in config["listeners"][0].items()
                                      if k != "tls"}]}
    s = start_sluice(plain)
    port = port_of(config)

    def plaintext_ok() -> bool:
        try:                       # until the reload applies, the old TLS server answers
            return httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok\n"
        except httpx.HTTPError:
            return False

    assert plaintext_ok()
    s.path.write_text(yaml.safe_dump(config))
    eventually(lambda: curl(pki, f"https://localhost:{port}/healthz").stdout == "ok\n",
               timeout=20)
    s.path.write_text(yaml.safe_dump(plain))
    eventually(plaintext_ok, timeout=20)


def test_validate_names_the_missing_file_and_its_field(pki, upstream, tmp_path):
    config = tls_config(pki, upstream)
    config["listeners"][0]["tls"]["certificates"][1]["key"] = "tls/missing.key"
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"{path}: listeners[0].tls.certificates[1].key: {tmp_path}/tls/missing.key: cannot read "
        "the file: No such file or directory")


def test_http2_over_tls_serves_requests_chosen_by_alpn(pki, upstream, start_sluice):
    """ALPN h2: the HTTP/2 codec serves the connection (curl --http2 and httpx), with the
    listener's TLS facts: x-forwarded-proto https."""
    config = tls_config(pki, upstream)
    config["listeners"][0]["protocols"] = ["http2", "http1"]
    start_sluice(config)
    port = port_of(config)
    out = curl(pki, f"https://localhost:{port}/echo/tls", "--http2", "-w", "\n%{http_version}",
               "--resolve", f"localhost:{port}:127.0.0.1")
    body, _, version = out.stdout.rpartition("\n")
    assert out.returncode == 0 and version == "2", out.stderr
    headers = dict(json.loads(body)["headers"])
    assert headers["x-forwarded-proto"] == "https"
    with httpx.Client(http2=True, verify=str(pki["ca"].cert_path)) as c:
        r = c.get(f"https://localhost:{port}/healthz")
        assert r.http_version == "HTTP/2" and r.text == "ok\n"


def test_mutual_tls_identity_reaches_the_upstream_over_http2(pki, upstream, start_sluice):
    config = tls_config(pki, upstream, client_ca=str(pki["ca"].cert_path),
                        forward_client_cert="sanitize_set")
    config["listeners"][0]["protocols"] = ["http2", "http1"]
    start_sluice(config)
    port = port_of(config)
    out = curl(pki, f"https://localhost:{port}/echo/mtls", "--http2", "--resolve",
               f"localhost:{port}:127.0.0.1", "--cert", str(pki["client"][0]),
               "--key", str(pki["client"][1]))
    assert out.returncode == 0, out.stderr
    xfcc = dict(json.loads(out.stdout)["headers"])["x-forwarded-client-cert"]
    assert "URI=spiffe://td/ns/shop/sa/web" in xfcc and "By=spiffe://td/ns/edge/sa/sluice" in xfcc
