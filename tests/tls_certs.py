"""Certificates for the TLS tests, made with `cryptography` into a directory (no network, no
fixtures checked in, so nothing expires in the repository).

    ca = make_ca(tmp_path)                                    # a CA: ca.cert, ca.key (paths)
    leaf = make_cert(ca, dns=["api.internal"], ip=["127.0.0.1"])   # leaf.cert, leaf.key
    client = make_cert(ca, uris=["spiffe://td/ns/shop/sa/web"], client=True)

Paths are `pathlib.Path`s; `str()` them for a config. A leaf's `cert` file holds the leaf only
(`chain` holds leaf + CA). `days` (negative for an expired certificate) sets the validity.
"""
from __future__ import annotations

import datetime
import ipaddress
import itertools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_serial = itertools.count(1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, written as PEM files."""

    cert: Path
    key: Path
    chain: Path
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    directory: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key, chain_extra=()) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path, chain_path = (directory / f"{stem}.crt", directory / f"{stem}.key",
                                       directory / f"{stem}-chain.crt")
    cert_path.write_bytes(pem)
    chain_path.write_bytes(pem + b"".join(c.public_bytes(serialization.Encoding.PEM)
                                          for c in chain_extra))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Issued(cert_path, key_path, chain_path, cert, key, directory)


def make_ca(directory: Path, name: str = "sluice test CA") -> Issued:
    """A self-signed CA (files `<name>.crt`/`.key`, spaces as dashes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(next(_serial) << 32 | 1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return _write(Path(directory), name.replace(" ", "-"), cert, key)


def make_cert(ca: Issued, dns: list[str] = (), uris: list[str] = (), ip: list[str] = (),
              name: str | None = None, client: bool = False, days: int = 30,
              directory: Path | None = None) -> Issued:
    """A leaf signed by `ca` with these SANs, for a server (default) or a client (`client`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    common = name or next(iter([*dns, *uris, *ip]), "sluice test leaf")
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)) \
        if days > 0 else (now + datetime.timedelta(days=days - 1), now + datetime.timedelta(days=days))
    sans = ([x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
            + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip])
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common)).issuer_name(ca.certificate.subject)
               .public_key(key.public_key()).serial_number(next(_serial) << 32 | 2)
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
                   critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.private_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.private_key, hashes.SHA256())
    stem = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in common)[:60]
    stem = f"{stem}-{cert.serial_number:x}"
    return _write(Path(directory or ca.directory), stem, cert, key, (ca.certificate,))
