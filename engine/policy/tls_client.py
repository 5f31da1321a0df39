"""TLS origination: the client side of a cluster's `tls` block (CONFIG.md, issue 9 item 8).

Theory of operation
-------------------
Two jobs, one module, so the checks `sluice validate` makes are exactly what serving needs:

* `check(tls)` reads the PEM files a cluster names and says, per field, what is wrong with them
  (`/x/y.key: key does not match certificate /x/y.crt`). The model calls it, so a bad file is a
  config error naming the file and its config path, at validate, compile, start and reload.
* `ClientContexts.resolve(clusters)` builds the `ssl.SSLContext` of every cluster with `tls`, for
  `link`. A context is *the* TLS identity of a pool's connections, so it is cached by a
  fingerprint of the settings and of the files' bytes: one context is shared by all endpoints
  of a cluster (and by clusters with the same settings), and a reload that changes neither the
  settings nor the files gets the same context object back. `link` puts that fingerprint in its
  pool key, so the pools, with their warm TLS connections, survive such a reload, while a
  rotated CA, client certificate or changed `sni` gets new pools (and new handshakes).

The context: TLS 1.2 minimum, Python's default cipher list (forward-secret AEAD suites first, no
SHA-1 or static RSA key exchange at OpenSSL security level 2), the CA file or else
the system's default trust store, `check_hostname` on, a client certificate when configured, and
ALPN from the cluster's `protocol`: `http/1.1`, or `h2` alone for `protocol: http2` (RFC 9113
section 3.2: h2 over TLS is chosen by ALPN; offering http/1.1 too would let an endpoint answer a
connection the pool then cannot use). The ALPN list is part of the fingerprint, so a cluster
that changes protocol gets a new context and new pools. `insecure_skip_verify: true` turns
certificate and name verification off, and only that: the connection is still encrypted.

The name checked (and sent as SNI) is `server_hostname(tls, host)`: `sni` when set, else the
endpoint's host. For an endpoint written as an IP address with no `sni`, that is the IP: Python
then sends no SNI (RFC 6066 section 3 allows names only) and verifies the certificate's IP SAN.

File paths arrive absolute (`fields.FilePath`: a relative one is relative to the config file's
directory).

Certificate rotation: the supervisor watches `files` beside the listeners' files and checks
them again (`problems`) when one changes; each worker then relinks its tables. An unchanged
cluster keeps its fingerprint, context and pools; a cluster whose CA, certificate or key bytes
changed gets a new context and new pools, so new connections use the new files while exchanges
in flight finish on the old ones.

Who calls it: `model.ClusterTLS` (check), `link` (resolve, server_hostname), the supervisor
(files, problems). It imports no compiled module (`engine.policy` runs without a compiler).
"""
from __future__ import annotations

import hashlib
import ipaddress
import ssl
from collections.abc import Iterable

from . import pem

# the ALPN protocol IDs offered for a cluster's `protocol` (a client offers exactly one)
ALPN = {"http1": ("http/1.1",), "http2": ("h2",)}
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

# -- checking the files ------------------------------------------------------------------------


def check(tls) -> list[tuple[tuple[str, ...], str]]:
    """Problems with the files of a cluster's `tls` block, as (field, reason) pairs; [] when
    every file is usable. `tls` has `ca`, `cert`, `key` (paths or None); the model has already
    refused a cert without its key and the reverse. The PEM checks are `pem`'s (shared with the
    listeners); OpenSSL then gets the last word, loading the files as `build_context` will."""
    problems: list[tuple[tuple[str, ...], str]] = []
    if tls.ca is not None:
        # OpenSSL alone judges a CA bundle: system bundles hold old roots that `cryptography`
        # parses only with a deprecation warning (negative serial numbers), or not at all
        try:
            if pem.CERT_MARKER not in pem.read(tls.ca):
                raise pem.PemError(tls.ca, "not a PEM CA bundle (no '-----BEGIN CERTIFICATE-----' "
                                           "line)")
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=tls.ca)
        except pem.PemError as error:
            problems.append((("ca",), str(error)))
        except ssl.SSLError as error:
            problems.append((("ca",), f"{tls.ca}: OpenSSL refuses it as a CA bundle "
                                      f"({error.reason or error})"))
    if tls.cert is not None and tls.key is not None:
        try:
            pem.certificates(tls.cert)
        except pem.PemError as error:
            problems.append((("cert",), str(error)))
            return problems
        try:
            pem.check_pair(tls.cert, tls.key)     # the certificate is fine: this is the key
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(tls.cert, tls.key)
        except pem.PemError as error:
            problems.append((("key",), str(error)))
        except ssl.SSLError as error:
            problems.append((("cert",), f"{tls.cert}: OpenSSL refuses the certificate and key "
                                        f"({error.reason or error})"))
    return problems


def problems(config) -> list[tuple[tuple, str]]:
    """`check` for every cluster of `config`, with locations from the file's root (the
    supervisor's re-check before a certificate reload)."""
    return [(("clusters", i, "tls", *loc), reason)
            for i, cluster in enumerate(config.clusters) if cluster.tls is not None
            for loc, reason in check(cluster.tls)]


def files(clusters: Iterable) -> list[str]:
    """Every TLS file the clusters read, once each, in config order: what a watcher must watch
    so that a rotated CA or client certificate is relinked (a new fingerprint, new pools)."""
    out: dict[str, None] = {}
    for cluster in clusters:
        tls = getattr(cluster, "tls", None)
        if tls is not None:
            out.update((path, None) for path in (tls.ca, tls.cert, tls.key) if path is not None)
    return list(out)


# -- the client contexts -----------------------------------------------------------------------


def server_hostname(tls, host: str) -> str:
    """The name a connection to `host` verifies and sends as SNI (see the module docstring)."""
    if tls.sni is not None:
        return tls.sni
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.rstrip(".")


def fingerprint(tls, protocol: str = "http1") -> str:
    """What makes two `tls` blocks the same TLS identity: the settings, the ALPN offer of the
    cluster's `protocol`, and the files' bytes."""
    digest = hashlib.sha256()
    for part in (tls.ca, tls.cert, tls.key, tls.sni, bool(tls.insecure_skip_verify),
                 ALPN[protocol]):
        digest.update(repr(part).encode() + b"\0")
    for path in (tls.ca, tls.cert, tls.key):
        if path is not None:
            digest.update(hashlib.sha256(pem.read(path)).digest())
    return digest.hexdigest()[:32]


def build_context(tls, protocol: str = "http1") -> ssl.SSLContext:
    """A new client context for a `tls` block of a cluster speaking `protocol` (raises
    pem.PemError or ssl.SSLError)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # CERT_REQUIRED and check_hostname
    ctx.minimum_version = MINIMUM_VERSION
    if tls.ca is not None:
        ctx.load_verify_locations(cafile=tls.ca)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert is not None:
        ctx.load_cert_chain(tls.cert, tls.key)
    ctx.set_alpn_protocols(list(ALPN[protocol]))
    return ctx


class ClientContexts:
    """The client contexts of a process, kept from one link to the next (see the module
    docstring). `resolve` returns, per cluster name, `(fingerprint, context)` and forgets the
    contexts no cluster uses any more."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[str, ssl.SSLContext] = {}

    def resolve(self, clusters: Iterable) -> dict[str, tuple[str, ssl.SSLContext]]:
        out: dict[str, tuple[str, ssl.SSLContext]] = {}
        kept: dict[str, ssl.SSLContext] = {}
        for cluster in clusters:
            tls = getattr(cluster, "tls", None)
            if tls is None:
                continue
            protocol = getattr(cluster, "protocol", "http1")
            try:
                key = fingerprint(tls, protocol)
                ctx = kept.get(key) or self._by_fingerprint.get(key) \
                    or build_context(tls, protocol)
            except (pem.PemError, ssl.SSLError) as error:
                # validation read these files; they changed or vanished since
                raise ValueError(f"cluster '{cluster.name}': tls: {error}") from None
            kept[key] = ctx
            out[cluster.name] = (key, ctx)
        self._by_fingerprint = kept
        return out

    def __len__(self) -> int:
        return len(self._by_fingerprint)


# The process's cache: link() uses it unless given another.
CONTEXTS = ClientContexts()
