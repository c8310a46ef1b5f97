"""Issue and read X.509 certificates with `cryptography`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = CertificateIssuerPrivateKeyTypes


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return pem(self.cert)

    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @classmethod
    def load(cls, crt: Path, key: Path) -> Issued:
        """A certificate and its key from PEM files."""
        return cls(x509.load_pem_x509_certificate(crt.read_bytes()),
                   serialization.load_pem_private_key(key.read_bytes(), None))  # type: ignore[arg-type]


def key_pem(key: PrivateKey) -> bytes:
    """A private key as unencrypted PEM, in the traditional format OpenShift writes."""
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def new_key(kind: str = "ec") -> PrivateKey:
    """ECDSA P-256 by default (fast to make); "rsa" gives RSA-2048 like the 4.3 agent."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _validity(days: float, not_before: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    return start, start + dt.timedelta(days=days)


def self_signed_ca(common_name: str, *, days: float = 3650,
                   not_before: dt.datetime | None = None, key_kind: str = "ec") -> Issued:
    key = new_key(key_kind)
    return Issued(_ca_certificate(_name(common_name), key, None, days, not_before), key)


def issue_ca(ca: Issued, common_name: str, *, days: float,
             not_before: dt.datetime | None = None, key_kind: str = "rsa") -> Issued:
    """An intermediate CA signed by `ca` (as the csr-signer is, under csr-signer-signer)."""
    key = new_key(key_kind)
    return Issued(_ca_certificate(_name(common_name), key, ca, days, not_before), key)


def _ca_certificate(subject: x509.Name, key: PrivateKey, issuer: Issued | None, days: float,
                    not_before: dt.datetime | None) -> x509.Certificate:
    start, end = _validity(days, not_before)
    signing_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def subject_alt_names(dns_names: Iterable[str],
                      ip_addresses: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
    return names


def sign(ca: Issued, *, subject: x509.Name, public_key: object,
         alt_names: Sequence[x509.GeneralName], days: float,
         not_before: dt.datetime | None = None, client: bool = True,
         server: bool = True) -> x509.Certificate:
    """Sign a leaf certificate for `public_key` with `ca` (used by issue() and the signer)."""
    start, end = _validity(days, not_before)
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                          crl_sign=False, content_commitment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue(ca: Issued, *, common_name: str, organizations: Sequence[str] = (),
          dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
          days: float = 365, not_before: dt.datetime | None = None,
          client: bool = True, server: bool = True, key_kind: str = "ec") -> Issued:
    key = new_key(key_kind)
    cert = sign(ca, subject=_name(common_name, organizations), public_key=key.public_key(),
                alt_names=subject_alt_names(dns_names, ip_addresses), days=days,
                not_before=not_before, client=client, server=server)
    return Issued(cert, key)


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; [] when there is none."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return []
    return x509.load_pem_x509_certificates(pem)


def certificates_in_tree(directory: Path) -> list[tuple[Path, x509.Certificate]]:
    """Every certificate in the PEM files under `directory` (keys and other files skipped)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" in data:
            found += [(path, c) for c in load_certificates(data)]
    return found
