# What the hot path reads of a TLS connection (see tls.pyx).

# (peer SPIFFE ID or None, peer subject or None, x-forwarded-client-cert element or None)
cpdef tuple peer_identity(object sslobj, bytes own_uri)
