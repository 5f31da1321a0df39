"""The PEM files a config names (certificates, private keys, CA bundles): read and check them when
the config is validated, so that a missing, unreadable, non-PEM or mismatched file is a config
error naming the file, and never a handshake that fails for every client once serving.

Who calls it: the model's validators (`engine.policy.model`, at every validation: `sluice
validate`, start, reload, `PUT /snapshot`), `tls_server` (the names a certificate answers for by
SNI, our own URI SAN) and the supervisor (expiry dates for the metrics, and the re-check before a
certificate reload). Pure: paths in, parsed objects out, and every failure a `PemError` whose
message starts with the file's path (`/etc/tls/api.key: key does not match certificate`), which
the model places at the config field that names the file.

What it checks, and what it leaves to OpenSSL: a certificate file holds at least one PEM
certificate (the first is the leaf, the rest its chain, as nginx's `ssl_certificate`); a key file
holds one unencrypted PEM private key whose public key is the leaf's; a CA bundle holds at least
one certificate. Expiry is not an error here (a certificate that expires tomorrow still serves
today; the expiry metric is how operators see it coming); chain order and the issuer signatures
are OpenSSL's business at handshake time.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
KEY_MARKER = b"PRIVATE KEY-----"
MAX_FILE = 1 << 20       # a certificate chain of a megabyte is not a certificate chain


class PemError(ValueError):
    """A file that cannot be used; `str()` is `PATH: reason`."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class CertificateFile:
    """What a loaded certificate file holds that the rest of sluice needs."""

    path: str
    chain: tuple[x509.Certificate, ...]      # the leaf first

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_after(self) -> float:
        """The leaf's expiry, in seconds since the epoch."""
        return self.leaf.not_valid_after_utc.timestamp()

    def dns_names(self) -> tuple[str, ...]:
        """The leaf's DNS subject alternative names, lowercase (wildcards as written)."""
        return tuple(name.lower() for name in _san(self.leaf, x509.DNSName))

    def uris(self) -> tuple[str, ...]:
        """The leaf's URI subject alternative names (a SPIFFE ID is one)."""
        return tuple(_san(self.leaf, x509.UniformResourceIdentifier))

    def expired(self, now: datetime.datetime | None = None) -> bool:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return self.leaf.not_valid_after_utc < now


def read(path: str) -> bytes:
    """The bytes of `path`, or PemError saying why they cannot be had."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE + 1)
    except IsADirectoryError:
        raise PemError(path, "is a directory, not a file") from None
    except OSError as error:
        raise PemError(path, f"cannot read the file: {error.strerror or error}") from None
    if len(data) > MAX_FILE:
        raise PemError(path, f"larger than {MAX_FILE} bytes: not a PEM file")
    return data


def certificates(path: str, what: str = "certificate") -> CertificateFile:
    """Every certificate of a PEM file (at least one), or PemError."""
    data = read(path)
    if CERT_MARKER not in data:
        hint = " (this is a private key: swap cert and key?)" if KEY_MARKER in data else ""
        raise PemError(path, f"not a PEM {what} (no '-----BEGIN CERTIFICATE-----' line){hint}")
    try:
        chain = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as error:
        raise PemError(path, f"not a valid PEM {what}: {error}") from None
    return CertificateFile(path, chain)


def private_key(path: str) -> PrivateKeyTypes:
    """The one unencrypted private key of a PEM file, or PemError."""
    data = read(path)
    if KEY_MARKER not in data:
        hint = " (this is a certificate: swap cert and key?)" if CERT_MARKER in data else ""
        raise PemError(path, f"not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' "
                             f"line){hint}")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise PemError(path, "the key is encrypted: sluice loads keys unattended, so it needs an "
                             "unencrypted one (openssl pkey -in KEY -out KEY.plain)") from None
    except (ValueError, serialization.UnsupportedAlgorithm) as error:
        raise PemError(path, f"not a valid PEM private key: {error}") from None


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: CertificateFile, key: PrivateKeyTypes) -> bool:
    return _public_der(cert.leaf.public_key()) == _public_der(key.public_key())


def check_pair(cert_path: str, key_path: str) -> CertificateFile:
    """The certificate file, after checking that `key_path` holds its private key. Raises
    PemError; `error.path` tells which of the two files is to blame."""
    cert = certificates(cert_path)
    key = private_key(key_path)
    if not key_matches(cert, key):
        raise PemError(key_path, f"key does not match certificate {cert_path}")
    return cert


def _san(cert: x509.Certificate, kind) -> list:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(kind)
