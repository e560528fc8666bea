"""Test certificates, made at run time (never committed): a CA, and server /
client certificates it signs, written as PEM files into a directory."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Certs:
    dir: str
    ca: str
    cert: str          # server + client use (signed by the CA)
    key: str
    other_ca: str      # a CA nobody trusts
    other_cert: str    # signed by other_ca
    other_key: str

    def server_args(self, auth_clients: str = "yes") -> list[str]:
        return ["--tls-cert-file", self.cert, "--tls-key-file", self.key,
                "--tls-ca-cert-file", self.ca, "--tls-auth-clients", auth_clients]

    def cli_args(self) -> list[str]:
        return ["--tls", "--cacert", self.ca, "--cert", self.cert, "--key", self.key]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: str, key, password: bytes | None = None) -> None:
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    with open(path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8, enc))


def _write_cert(path: str, cert) -> None:
    with open(path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(cn: str, ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def make(directory: str, key_password: bytes | None = None) -> Certs:
    """A CA and a certificate it signs (and an untrusted pair) in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    ca_key, ca = _ca("pynode test CA")
    key, cert = _leaf("localhost", ca_key, ca)
    oca_key, oca = _ca("someone else's CA")
    okey, ocert = _leaf("localhost", oca_key, oca)
    _write_cert(p("ca.crt"), ca)
    _write_cert(p("node.crt"), cert)
    _write_key(p("node.key"), key, key_password)
    _write_cert(p("other-ca.crt"), oca)
    _write_cert(p("other.crt"), ocert)
    _write_key(p("other.key"), okey)
    return Certs(directory, p("ca.crt"), p("node.crt"), p("node.key"), p("other-ca.crt"),
                 p("other.crt"), p("other.key"))
