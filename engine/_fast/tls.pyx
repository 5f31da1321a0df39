# cython: language_level=3
"""The peer of a TLS client connection, as the proxy's policy sees it.

Theory of operation
-------------------
Contexts are built by the policy layer (engine/policy/tls_server.py, tls_client.py) when a
snapshot is linked, and the handshake is the event loop's (uvloop's SSL transport). What is
left for the data plane is, once per connection after the handshake, who the client is: the
verified certificate's SPIFFE ID (its `spiffe://` URI SAN) for `match.client_identity` and
Python filters, its subject (RFC 4514), and the x-forwarded-client-cert element an upstream
gets under `forward_client_cert: sanitize_set`, in Envoy's format:

    By=<our certificate's URI SAN>;Hash=<SHA-256 of the peer's DER, hex>;Subject="<subject>";URI=<peer's URI SAN>

A connection whose client sent no certificate (a listener without client_ca) has no identity:
the three are None. Never per request: the result is kept on the connection.
"""

import hashlib

from cryptography import x509


cdef str _quote(str value):
    """An XFCC value: double-quoted (with \\ and " escaped) when it holds , ; = or " (Envoy)."""
    if any(c in value for c in ',;="'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


cpdef tuple peer_identity(object sslobj, bytes own_uri):
    der = sslobj.getpeercert(True)
    if not der:
        return (None, None, None)
    cert = x509.load_der_x509_certificate(der)
    subject = cert.subject.rfc4514_string()
    uri = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for u in san.get_values_for_type(x509.UniformResourceIdentifier):
            if u.startswith("spiffe://"):
                uri = u
                break
    except x509.ExtensionNotFound:
        pass
    parts = []
    if own_uri:
        parts.append("By=" + _quote(own_uri.decode("latin-1")))
    parts.append("Hash=" + hashlib.sha256(der).hexdigest())
    parts.append('Subject="' + subject.replace("\\", "\\\\").replace('"', '\\"') + '"')
    if uri is not None:
        parts.append("URI=" + _quote(uri))
    return (uri.encode("latin-1") if uri is not None else None,
            subject.encode("utf-8"),
            ";".join(parts).encode("utf-8"))
