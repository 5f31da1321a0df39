"""TLS termination on listeners: the SSLContext a listening socket is served with, made so that
its certificates can change under it.

Theory of operation
-------------------
uvloop keeps the SSLContext given to `create_server` for the life of the listening socket. So
that a certificate reload applies to new handshakes without a new socket (and without touching a
connection), that context, the *front* (`ServerContext`), holds no certificate. Its
`sni_callback`, which OpenSSL calls for every ClientHello (with the server name, or None when the
client sent no SNI), switches the connection to one *inner* context of the current `Selection`:
the certificate whose DNS names match the server name (exact first, then a wildcard one label
deep, `*.example.com` for `a.example.com`), else the default, the first of `tls.certificates`.
A reload builds a whole new Selection (every file read and checked first) and installs it with
one assignment: handshakes past their callback keep what they got, the next ones get the new
certificates; a Selection that fails to build changes nothing.

Which context decides what (OpenSSL copies some settings into the connection when it is made,
from the front, and reads others from whatever context the connection has when it needs them):
- the front: protocol versions (chosen before the callback), the verify mode (CERT_REQUIRED with
  `client_ca`) and the session ticket keys (tickets are encrypted with the session context, which
  stays the front: a ticket issued before a certificate reload still resumes after it). These
  make the `shape`; a config whose shape differs needs a new front, hence a new listening server
  (engine/runtime/worker.py does that), while a change of files or certificates does not.
- the inner contexts: the certificate chain and key, the cipher list, ALPN, and the CA store
  client certificates are verified against.
Both get the same versions and ciphers, so nothing depends on which one OpenSSL reads.

The settings: TLS 1.2 minimum by default ("1.3" for `min_version: "1.3"`); for TLS 1.2 the
ECDHE suites of Mozilla's "intermediate" profile (its DHE suites need DH parameters sluice does
not configure, so they are left out; TLS 1.3 suites are OpenSSL's defaults, all AEAD); client
renegotiation off (a CPU sink for attackers, and no HTTP/1.1 client needs it; RFC 9113 section
9.2.1 forbids it under HTTP/2); ALPN from `protocols`, in their order (`http2` is `h2`, `http1`
is `http/1.1`: the server picks the first of its own list that the client offers, so the order
is the listener's preference); session resumption by tickets (OpenSSL's default, on) and by
session id within a worker, with Python's session id context.

ALPN lives in the inner contexts, which a link rebuilds from the listener's current `protocols`
(`context_for`, `reload_all`): a reload that changes `protocols` changes the offer for the next
handshakes on the same front and listening socket, like a certificate change. A client that
offers no protocol of the list (or no ALPN at all) still completes the handshake, with no
protocol selected (OpenSSL's "no overlap" answer, which Python's callback gives); what is then
spoken on the connection is the data plane's decision.

Ticket keys are random per SSL_CTX. Workers are forked: fronts made in the supervisor before the
first fork (`prepare`) are inherited by every worker, keys included, so a client resumes on
whichever worker the kernel hands its next connection to. A listener that a later reload adds (or
whose shape changes) gets a front per worker: resumption then works only on the same worker until
the workers restart.

Who calls it: `engine/policy/link.py` (`context_for`, per TLS listener at every link),
`engine/runtime/worker.py` (`reload_all` on a certificate reload), the supervisor (`prepare`
before forking, `files_of` to watch, `problems` to check before a reload, `expiry` for the
metrics). Pure Python (stdlib `ssl`, `cryptography` through `pem`): no compiled module.
"""
from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import pem
from .errors import Loc

# Mozilla intermediate (v5.7) for TLS 1.2, ECDHE only (see the module docstring).
CIPHERS_TLS12 = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
ALPN = {"http1": "http/1.1", "http2": "h2"}

log = logging.getLogger("sluice.tls")

Shape = tuple[str, bool]      # (min_version, mutual TLS): what only a new front can change


def shape_of(tls) -> Shape:
    return (tls.min_version, tls.client_ca is not None)


def _configure(ctx: ssl.SSLContext, min_version: str, mtls: bool) -> None:
    ctx.minimum_version = VERSIONS[min_version]
    ctx.set_ciphers(CIPHERS_TLS12)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.verify_mode = ssl.CERT_REQUIRED if mtls else ssl.CERT_NONE


# -- what the front switches to ----------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The inner contexts of one listener, as built from its files at one moment."""

    default: ssl.SSLContext
    exact: Mapping[str, ssl.SSLContext]       # "api.example.com" -> context
    wildcard: Mapping[str, ssl.SSLContext]    # "example.com" (from "*.example.com") -> context
    certificates: tuple[pem.CertificateFile, ...] = field(repr=False)

    def pick(self, server_name: str | None) -> ssl.SSLContext:
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        ctx = self.exact.get(name)
        if ctx is None:
            ctx = self.wildcard.get(name.partition(".")[2], self.default)
        return ctx

    @property
    def own_uri(self) -> bytes:
        """The default certificate's first URI SAN (our SPIFFE ID: the By= of
        x-forwarded-client-cert), or b""."""
        uris = self.certificates[0].uris()
        return uris[0].encode() if uris else b""


def load(tls, protocols: Iterable[str] = ("http1",)) -> Selection:
    """Build a listener's inner contexts from its files (`tls` is a model.ListenerTLS). Raises
    pem.PemError naming the file at fault; builds nothing partially."""
    min_version, mtls = shape_of(tls)
    alpn = [ALPN[p] for p in protocols]      # the listener's order is the server's preference
    ca_text = None
    if tls.client_ca is not None:
        pem.certificates(tls.client_ca, "CA certificate")
        ca_text = pem.read(tls.client_ca).decode("ascii", "replace")
    contexts, loaded = [], []
    for item in tls.certificates:
        cert = pem.check_pair(item.cert, item.key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _configure(ctx, min_version, mtls)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        try:
            ctx.load_cert_chain(item.cert, item.key)
            if ca_text is not None:
                ctx.load_verify_locations(cadata=ca_text)
        except ssl.SSLError as error:      # the files changed since check_pair read them
            raise pem.PemError(item.cert, f"OpenSSL cannot load it with {item.key}: "
                                          f"{error.reason or error}") from None
        contexts.append(ctx)
        loaded.append(cert)
    exact: dict[str, ssl.SSLContext] = {}
    wildcard: dict[str, ssl.SSLContext] = {}
    for ctx, cert in zip(contexts, loaded):
        for name in cert.dns_names():
            if name.startswith("*."):
                wildcard.setdefault(name[2:], ctx)     # the first certificate listed wins
            else:
                exact.setdefault(name, ctx)
    return Selection(contexts[0], exact, wildcard, tuple(loaded))


class _Selector:
    """The front's sni_callback. Holds the current Selection, and not the front itself (a cycle
    through the front would outlive a reload in a worker that freezes its heap)."""

    __slots__ = ("selection",)

    def __init__(self) -> None:
        self.selection: Selection | None = None

    def __call__(self, ssl_object, server_name, _front) -> None:
        selection = self.selection
        if selection is not None:            # never: a front is served only once installed
            ssl_object.context = selection.pick(server_name)


# Called with (listener name, ssl.SSLError) when a client's handshake fails: the runtime counts
# and logs it (engine/runtime/worker.py). One per process; None: nobody is told.
handshake_failed: Callable[[str, ssl.SSLError], None] | None = None


class _WatchedSSLObject(ssl.SSLObject):
    """The SSL object of each connection of a front (its `sslobject_class`): a handshake that
    fails (a client without a certificate, from another CA, with TLS 1.1, plaintext on the TLS
    port...) is reported to `handshake_failed` before uvloop closes that connection, which it
    does silently. One Python call per handshake step; nothing once the handshake is done."""

    listener = ""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as error:
            hook = handshake_failed
            if hook is not None:
                hook(self.listener, error)
            raise


class ServerContext(ssl.SSLContext):
    """The front: the SSLContext a TLS listener's server is created with, stable across
    certificate reloads (see the module docstring)."""

    def __new__(cls, shape: Shape, listener: str = ""):
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, shape: Shape, listener: str = ""):
        self.shape = shape
        self.own_uri = b""        # the installed certificate's URI SAN (XFCC's By=)
        self.selector = _Selector()
        _configure(self, *shape)
        self.sni_callback = self.selector
        self.sslobject_class = type("WatchedSSLObject", (_WatchedSSLObject,),
                                    {"listener": listener})

    @property
    def selection(self) -> Selection | None:
        return self.selector.selection

    def install(self, selection: Selection) -> None:
        """New handshakes use `selection` from now on; running connections are not touched."""
        self.selector.selection = selection
        # read by the data plane once per mutual-TLS connection, so a rotated certificate's
        # SPIFFE ID is what x-forwarded-client-cert says from its first handshake on
        self.own_uri = selection.own_uri


# -- the front of each listener ----------------------------------------------------------------

# Fronts made before the workers were forked, by (listener name, shape): see `prepare`.
_prepared: dict[tuple[str, Shape], ServerContext] = {}


def prepare(config) -> None:
    """Make the front of each TLS listener of `config` now, in the supervisor before it forks,
    so that every worker inherits the same session ticket keys; and load the certificates into
    it, so that a worker forked later (a restart) still has the last good ones if the files have
    gone bad since (a refused certificate reload). A file that cannot be used keeps what the
    front had: the supervisor has already refused it."""
    for listener in config.listeners:
        if listener.tls is None:
            continue
        key = (listener.name, shape_of(listener.tls))
        front = _prepared.get(key)
        if front is None:
            front = _prepared[key] = ServerContext(key[1], listener.name)
        try:
            front.install(load(listener.tls, listener.protocols))
        except pem.PemError:
            pass


def context_for(listener, previous: ssl.SSLContext | None = None) -> ServerContext:
    """The front for `listener` (a model.Listener with tls) with its files loaded now: the
    previous tables' front when its shape still fits (the same listening server goes on), else
    one made before the fork, else a new one. Raises pem.PemError, except in a worker's first
    link (no previous front) when the front made before the fork has certificates: those were
    the last good ones, and they serve on (see `prepare`)."""
    shape = shape_of(listener.tls)
    inherited = _prepared.get((listener.name, shape))
    if isinstance(previous, ServerContext) and previous.shape == shape:
        front = previous
    else:
        front = inherited or ServerContext(shape, listener.name)
    try:
        front.install(load(listener.tls, listener.protocols))
    except pem.PemError as error:
        if previous is not None or front is not inherited or front.selection is None:
            raise
        log.warning("listener %s: %s; serving the certificates loaded before", listener.name,
                    error)
    return front


def reload_all(config, fronts: Mapping[str, ssl.SSLContext | None]) -> int:
    """A certificate reload: re-read the files of every TLS listener of `config` whose front is
    in `fronts` (listener name -> the context it is served with), and install the new
    certificates only once all of them loaded. Returns how many listeners were reloaded; raises
    pem.PemError (and changes nothing)."""
    staged = []
    for listener in config.listeners:
        front = fronts.get(listener.name)
        if listener.tls is not None and isinstance(front, ServerContext):
            staged.append((front, load(listener.tls, listener.protocols)))
    for front, selection in staged:
        front.install(selection)
    return len(staged)


# -- what the supervisor needs: files to watch, checks, expiry dates ---------------------------


def files_of(config) -> list[tuple[Loc, str]]:
    """(config location, path) of every TLS file the listeners of `config` name."""
    out: list[tuple[Loc, str]] = []
    for i, listener in enumerate(config.listeners):
        if listener.tls is None:
            continue
        for j, item in enumerate(listener.tls.certificates):
            base = ("listeners", i, "tls", "certificates", j)
            out += [((*base, "cert"), item.cert), ((*base, "key"), item.key)]
        if listener.tls.client_ca is not None:
            out.append((("listeners", i, "tls", "client_ca"), listener.tls.client_ca))
    return out


def problems(config) -> list[tuple[Loc, str]]:
    """The TLS files of `config` checked again, as the model checks them (before a certificate
    reload): `(location, "PATH: reason")` for each file that cannot be used now."""
    out: list[tuple[Loc, str]] = []
    for i, listener in enumerate(config.listeners):
        if listener.tls is None:
            continue
        for j, item in enumerate(listener.tls.certificates):
            try:
                pem.check_pair(item.cert, item.key)
            except pem.PemError as error:
                which = "key" if error.path == item.key else "cert"
                out.append((("listeners", i, "tls", "certificates", j, which), str(error)))
        if listener.tls.client_ca is not None:
            try:
                pem.certificates(listener.tls.client_ca, "CA certificate")
            except pem.PemError as error:
                out.append((("listeners", i, "tls", "client_ca"), str(error)))
    return out


def expiry(config) -> dict[tuple[str, str], float]:
    """(listener name, file) -> notAfter in seconds since the epoch, for each certificate of
    each TLS listener and for its client CA bundle (the earliest of its certificates). A file
    that cannot be read now is left out (its reload was refused: see the supervisor)."""
    out: dict[tuple[str, str], float] = {}
    for listener in config.listeners:
        if listener.tls is None:
            continue
        for item in listener.tls.certificates:
            try:
                out[(listener.name, item.cert)] = pem.certificates(item.cert).not_after
            except pem.PemError:
                pass
        if listener.tls.client_ca is not None:
            try:
                bundle = pem.certificates(listener.tls.client_ca, "CA certificate")
            except pem.PemError:
                continue
            out[(listener.name, listener.tls.client_ca)] = min(
                c.not_valid_after_utc.timestamp() for c in bundle.chain)
    return out
