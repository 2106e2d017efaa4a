"""A cluster's worth of certificates: CA, serving certs, client certs, SA key.

Generated once per state dir with `cryptography`, as kubeadm would: the
apiserver and the kubelet serve TLS signed by our CA, every client
authenticates with a certificate whose CN/O are its user/groups, and the
service-account token signer has its own key.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Client:
    """A client certificate: the API server reads CN as user, O as groups."""

    file: str
    user: str
    groups: tuple[str, ...] = ()


CLIENTS = (
    Client("admin", "lineage-hub-admin", ("system:masters",)),
    Client("controller-manager", "system:kube-controller-manager"),
    Client("scheduler", "system:kube-scheduler"),
    Client("node-local", "system:node:local", ("system:nodes",)),
    Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
    # The operator runs as its own user, bound to the generated least-privilege ClusterRole.
    Client("operator", "lineage-hub-operator"),
    # The aggregation layer's proxy identity (requestheader auth).
    Client("front-proxy-client", "front-proxy-client"),
)

LOOPBACK_SANS = ("localhost", "127.0.0.1")
#: Serving certificates: file name -> SANs.
SERVERS: dict[str, tuple[str, ...]] = {
    "apiserver": (),  # filled below
    "kubelet": LOOPBACK_SANS,
    "controller-manager-serving": LOOPBACK_SANS,
    "scheduler-serving": LOOPBACK_SANS,
}

APISERVER_SANS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "127.0.0.1",
    "10.0.0.1",
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _sans(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def create(cls) -> CertificateAuthority:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        name = _name("lineage-hub-local-ca")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self, cn: str, orgs: tuple[str, ...] = (), sans: tuple[str, ...] = (), server: bool = False
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if sans:
            builder = builder.add_extension(_sans(sans), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lineage-hub-local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert_pem),
                    "client-key-data": b64(key_pem),
                },
            }
        ],
        "contexts": [
            {"name": "lineage-hub-local", "context": {"cluster": "lineage-hub-local", "user": user}}
        ],
        "current-context": "lineage-hub-local",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def ensure_pki(pki_dir: Path, apiserver_url: str) -> None:
    """Write every certificate and kubeconfig once; a complete dir is left alone."""
    marker = pki_dir / ".complete"
    if marker.exists():
        return
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create()
    ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)
    _write(pki_dir / "ca.crt", ca_pem)
    _write(pki_dir / "ca.key", _pem_key(ca.key), private=True)

    for name, sans in {**SERVERS, "apiserver": APISERVER_SANS}.items():
        key, cert = ca.issue(name, sans=sans, server=True)
        _write(pki_dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        _write(pki_dir / f"{name}.key", _pem_key(key), private=True)

    for client in CLIENTS:
        key, cert = ca.issue(client.user, client.groups)
        cert_pem, key_pem = cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)
        _write(pki_dir / f"{client.file}.crt", cert_pem)
        _write(pki_dir / f"{client.file}.key", key_pem, private=True)
        config = kubeconfig(apiserver_url, ca_pem, cert_pem, key_pem, client.user)
        _write(pki_dir / f"{client.file}.kubeconfig", config.encode(), private=True)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki_dir / "sa.key", _pem_key(sa_key), private=True)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pki_dir / "sa.pub", sa_pub)
    marker.touch()
