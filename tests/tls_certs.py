"""Throwaway certificates for the TLS tests, made with `cryptography`: a CA, server certificates
for DNS names, client certificates with a SPIFFE URI SAN, written as PEM files in a test's
directory. Nothing here is secret: every key is made for one test run and deleted with its
directory.

    ca = CA(tmp_path, "test-ca")
    cert, key = ca.issue("server", dns=["localhost", "*.example.test"])
    cert, key = ca.issue("client", uri="spiffe://td/ns/shop/sa/web", client=True)
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_key(key, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class CA:
    """A self-signed CA whose certificate is `self.cert_path`."""

    def __init__(self, directory: Path, name: str = "sluice-test-ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = _key()
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = write_cert(self.cert, self.dir / f"{name}.crt")

    def issue(self, stem: str, dns: list[str] = (), uri: str | None = None,
              client: bool = False, not_after: datetime.datetime | None = None,
              ip: list[str] = ("127.0.0.1",)) -> tuple[Path, Path]:
        """(cert path, key path) of a new leaf certificate `stem`.crt / `stem`.key."""
        key = _key()
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip]
        if uri is not None:
            names.append(x509.UniformResourceIdentifier(uri))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        end = not_after or NOW + 10 * DAY
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(dns[0] if dns else stem)).issuer_name(self.cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(min(NOW - DAY, end - DAY)).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return (write_cert(cert, self.dir / f"{stem}.crt"), write_key(key, self.dir / f"{stem}.key"))


def not_after(path: Path) -> float:
    """The expiry of the (first) certificate in `path`, in seconds since the epoch."""
    cert = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
    return cert.not_valid_after_utc.timestamp()
