"""engine/policy/tls_server.py: the listener's SSLContexts, over real loopback TLS handshakes
(a uvloop server in a thread, Python `ssl` clients)."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import pytest
import uvloop

from engine.policy import check_data
from engine.policy.pem import PemError
from engine.policy import tls_server
from tls_certs import CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = CA(directory)
    return {
        "dir": directory, "ca": ca,
        "default": ca.issue("default", dns=["default.test"], uri="spiffe://td/ns/edge/sa/gw"),
        "api": ca.issue("api", dns=["api.example.test"]),
        "wild": ca.issue("wild", dns=["*.apps.test"]),
        "client": ca.issue("client", uri="spiffe://td/ns/shop/sa/web", client=True),
    }


def listener(pki, *names, protocols=("http1",), **tls):
    data = {
        "listeners": [{"name": "edge", "address": "127.0.0.1:8443", "routes": ["r"],
                       "protocols": list(protocols), "tls": {
            "certificates": [{"cert": str(pki[n][0]), "key": str(pki[n][1])} for n in names],
            **tls}}],
        "routes": [{"name": "r", "match": {}, "direct_response": {"status": 200}}],
    }
    result = check_data(data, "t.yaml")
    assert result.ok, [str(p) for p in result.problems]
    return result.config.listeners[0]


class Server:
    """A uvloop server in a thread that answers each connection with its peer's subject."""

    def __init__(self, ctx: ssl.SSLContext):
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def handle(reader, writer):
            peer = writer.get_extra_info("ssl_object").getpeercert() or {}
            uris = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
            while await reader.read(1):           # one answer per byte received
                writer.write((uris[0] if uris else "-").encode() + b"\n")
            writer.close()

        async def start():
            return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def serve():
    servers = []

    def start(ctx):
        servers.append(Server(ctx))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def client_ctx(pki, cert: str | None = None, **kw) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    ctx.check_hostname = False
    for name, value in kw.items():
        setattr(ctx, name, value)
    if cert is not None:
        ctx.load_cert_chain(*map(str, pki[cert]))
    return ctx


def handshake(port, ctx, server_name=None, alpn=None, session=None):
    if alpn:
        ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(sock, server_hostname=server_name, session=session)
    return tls


def subject(tls) -> str:
    return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]


def ask(tls) -> bytes:
    tls.sendall(b"?")
    return tls.recv(100)


def refused(port, ctx) -> bool:
    """Whether the server refuses the client's certificate. In TLS 1.3 the client's side of the
    handshake completes before the server has checked it: the refusal is then an alert (an
    SSLError) or a closed connection when the client first reads."""
    try:
        with handshake(port, ctx) as tls:
            return ask(tls) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_sni_picks_the_certificate_by_name_else_the_default(pki, serve):
    ctx = tls_server.context_for(listener(pki, "default", "api", "wild"))
    port = serve(ctx).port
    cases = {None: "default.test", "api.example.test": "api.example.test",
             "API.Example.Test": "api.example.test", "x.apps.test": "*.apps.test",
             "a.b.apps.test": "default.test", "apps.test": "default.test",
             "other.test": "default.test"}
    for name, expected in cases.items():
        with handshake(port, client_ctx(pki), name) as tls:
            assert subject(tls) == expected, name


def test_alpn_offers_http1_only_and_tls12_is_the_minimum(pki, serve):
    port = serve(tls_server.context_for(listener(pki, "default"))).port
    with handshake(port, client_ctx(pki), alpn=["h2", "http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
    with handshake(port, client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0].startswith("ECDHE-")


def alpn(port, pki, offer, server_name=None) -> str | None:
    with handshake(port, client_ctx(pki), server_name, alpn=offer) as tls:
        return tls.selected_alpn_protocol()


@pytest.mark.parametrize("protocols, offer, chosen", [
    (["http2", "http1"], ["h2", "http/1.1"], "h2"),
    (["http2", "http1"], ["http/1.1", "h2"], "h2"),          # the listener's order decides
    (["http1", "http2"], ["h2", "http/1.1"], "http/1.1"),
    (["http2", "http1"], ["http/1.1"], "http/1.1"),
    (["http2"], ["h2"], "h2"),
    (["http1"], ["h2"], None),          # no overlap: the handshake completes, nothing chosen
    (["http2"], ["http/1.1"], None),
])
def test_alpn_offers_protocols_in_the_listeners_order(pki, serve, protocols, offer, chosen):
    port = serve(tls_server.context_for(listener(pki, "default", "api",
                                                 protocols=protocols))).port
    assert alpn(port, pki, offer) == chosen
    assert alpn(port, pki, offer, "api.example.test") == chosen     # every SNI certificate


def test_a_reload_that_changes_protocols_changes_the_offer_on_the_same_front(pki, serve):
    """ALPN lives in the inner contexts a link rebuilds: the front (and so the listening
    server) stays, and the next handshakes get the new offer."""
    front = tls_server.context_for(listener(pki, "default"))
    port = serve(front).port
    assert alpn(port, pki, ["h2", "http/1.1"]) == "http/1.1"
    open_conn = handshake(port, client_ctx(pki), alpn=["h2", "http/1.1"])
    try:
        assert tls_server.context_for(listener(pki, "default", protocols=["http2", "http1"]),
                                      front) is front
        assert alpn(port, pki, ["h2", "http/1.1"]) == "h2"
        assert open_conn.selected_alpn_protocol() == "http/1.1"   # an open one keeps its own
        assert ask(open_conn) == b"-\n"
        assert tls_server.context_for(listener(pki, "default"), front) is front
        assert alpn(port, pki, ["h2", "http/1.1"]) == "http/1.1"
        # the certificate-reload path reads protocols too
        tls_server.reload_all(type("C", (), {"listeners": [
            listener(pki, "default", protocols=["http2"])]}), {"edge": front})
        assert alpn(port, pki, ["h2", "http/1.1"]) == "h2"
    finally:
        open_conn.close()


def test_min_version_13_refuses_a_tls12_client(pki, serve):
    port = serve(tls_server.context_for(listener(pki, "default", min_version="1.3"))).port
    with pytest.raises(ssl.SSLError):
        handshake(port, client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    with handshake(port, client_ctx(pki)) as tls:
        assert tls.version() == "TLSv1.3"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_a_session_resumes(pki, serve, version):
    port = serve(tls_server.context_for(listener(pki, "default"))).port
    ctx = client_ctx(pki, maximum_version=version)
    with handshake(port, ctx) as first:
        ask(first)                  # TLS 1.3 tickets arrive after the handshake
        session = first.session
    with handshake(port, ctx, session=session) as second:
        assert second.session_reused
        assert ask(second) == b"-\n"


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(pki, serve, tmp_path):
    port = serve(tls_server.context_for(
        listener(pki, "default", client_ca=str(pki["ca"].cert_path)))).port
    with handshake(port, client_ctx(pki, "client")) as tls:
        assert ask(tls) == b"spiffe://td/ns/shop/sa/web\n"
    assert refused(port, client_ctx(pki))            # no certificate
    stranger = CA(tmp_path / "other", "stranger-ca")
    cert, key = stranger.issue("stranger", uri="spiffe://td/ns/evil/sa/x", client=True)
    ctx = client_ctx(pki)
    ctx.load_cert_chain(str(cert), str(key))
    assert refused(port, ctx)                        # signed by another CA
    assert not refused(port, client_ctx(pki, "client"))


def test_a_reload_applies_to_new_handshakes_and_leaves_open_connections_alone(pki, serve):
    config_listener = listener(pki, "default")
    front = tls_server.context_for(config_listener)
    port = serve(front).port
    old = handshake(port, client_ctx(pki))
    assert subject(old) == "default.test"
    # the same files now hold another certificate
    pki["ca"].issue("default", dns=["rotated.test"])
    try:
        assert tls_server.reload_all(type("C", (), {"listeners": [config_listener]}),
                                     {"edge": front}) == 1
        with handshake(port, client_ctx(pki)) as new:
            assert subject(new) == "rotated.test"
        assert ask(old) == b"-\n"          # the open connection goes on
    finally:
        old.close()
        pki["ca"].issue("default", dns=["default.test"], uri="spiffe://td/ns/edge/sa/gw")


def test_a_reload_with_a_bad_file_installs_nothing(pki, serve, tmp_path):
    good = listener(pki, "default", "api")
    front = tls_server.context_for(good)
    before = front.selection
    broken = good.model_copy(update={"tls": good.tls.model_copy(update={
        "certificates": (good.tls.certificates[0], good.tls.certificates[1].model_copy(
            update={"key": str(pki["wild"][1])}))})})
    with pytest.raises(PemError, match="key does not match certificate"):
        tls_server.reload_all(type("C", (), {"listeners": [broken]}), {"edge": front})
    assert front.selection is before


def test_the_front_is_kept_while_its_shape_fits(pki):
    first = tls_server.context_for(listener(pki, "default"))
    assert tls_server.context_for(listener(pki, "default", "api"), first) is first
    stricter = tls_server.context_for(listener(pki, "default", min_version="1.3"), first)
    assert stricter is not first
    mtls = tls_server.context_for(
        listener(pki, "default", client_ca=str(pki["ca"].cert_path)), first)
    assert mtls is not first and mtls.verify_mode == ssl.CERT_REQUIRED


def test_own_uri_is_the_default_certificates_spiffe_id(pki):
    assert tls_server.context_for(listener(pki, "default", "api")).selection.own_uri == \
        b"spiffe://td/ns/edge/sa/gw"
    assert tls_server.context_for(listener(pki, "api")).selection.own_uri == b""


def test_files_problems_and_expiry_of_a_config(pki, tmp_path):
    import shutil

    cert = tmp_path / "c.crt"
    key = tmp_path / "c.key"
    shutil.copy(pki["api"][0], cert)
    shutil.copy(pki["api"][1], key)
    pki_copy = dict(pki, mine=(cert, key))
    lst = listener(pki_copy, "mine", client_ca=str(pki["ca"].cert_path))
    config = type("C", (), {"listeners": [lst]})
    assert [p for _, p in tls_server.files_of(config)] == [str(cert), str(key),
                                                          str(pki["ca"].cert_path)]
    assert tls_server.problems(config) == []
    assert set(tls_server.expiry(config)) == {("edge", str(cert)),
                                              ("edge", str(pki["ca"].cert_path))}
    shutil.copy(pki["wild"][1], key)
    assert tls_server.problems(config) == [
        (("listeners", 0, "tls", "certificates", 0, "key"),
         f"{key}: key does not match certificate {cert}")]


def test_a_failed_handshake_is_reported_with_its_listener_and_reason(pki, serve, monkeypatch):
    seen = []
    monkeypatch.setattr(tls_server, "handshake_failed",
                        lambda listener, error: seen.append((listener, error.reason)))
    port = serve(tls_server.context_for(
        listener(pki, "default", client_ca=str(pki["ca"].cert_path), min_version="1.3"))).port
    with handshake(port, client_ctx(pki, "client")) as tls:
        assert ask(tls) == b"spiffe://td/ns/shop/sa/web\n"
    assert seen == []                                  # a good handshake is not reported
    assert refused(port, client_ctx(pki))              # no client certificate
    with pytest.raises(ssl.SSLError):                  # TLS 1.2 against min_version 1.3
        handshake(port, client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:   # plaintext
        raw.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert raw.recv(100) == b""

    def reasons():
        return [reason for name, reason in seen if name == "edge"]
    import time
    deadline = time.monotonic() + 10
    while len(reasons()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reasons() == ["PEER_DID_NOT_RETURN_A_CERTIFICATE", "UNSUPPORTED_PROTOCOL",
                         "HTTP_REQUEST"], seen
