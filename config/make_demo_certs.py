"""Make THROWAWAY certificates for the TLS example (config/tls.yaml), for trying sluice out only:

    python3 config/make_demo_certs.py config/tls

writes into the directory (created if needed):
    ca.crt                    a new self-signed CA ("sluice demo CA"), valid 30 days; its key is
                              not kept, so it can sign nothing else
    server.crt, server.key    a certificate for localhost and 127.0.0.1, signed by that CA
    client.crt, client.key    a client certificate with the SPIFFE ID
                              spiffe://demo.local/ns/demo/sa/curl (for trying mutual TLS)

Then `curl --cacert config/tls/ca.crt https://localhost:8443/...` trusts sluice's certificate.
Nothing here is for production: use certificates from your own CA (cert-manager, Vault, SPIRE,
or your organisation's PKI). Needs the `cryptography` package (a dependency of sluice).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAYS = 30


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _write(path: str, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    print(f"wrote {path}")


def _issue(ca_key, ca_name, subject: str, names: list, usage, path: str) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(path + ".crt", cert.public_bytes(serialization.Encoding.PEM))
    _write(path + ".key", key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()), private=True)


def main(directory: str) -> int:
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("sluice demo CA (throwaway)")
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write(os.path.join(directory, "ca.crt"), ca.public_bytes(serialization.Encoding.PEM))
    _issue(ca_key, ca_name, "localhost",
           [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
           ExtendedKeyUsageOID.SERVER_AUTH, os.path.join(directory, "server"))
    _issue(ca_key, ca_name, "curl",
           [x509.UniformResourceIdentifier("spiffe://demo.local/ns/demo/sa/curl")],
           ExtendedKeyUsageOID.CLIENT_AUTH, os.path.join(directory, "client"))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
