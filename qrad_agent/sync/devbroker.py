"""A throwaway mosquitto for tests, benchmarks and demos: its own CA, certificates, config, ACL and port.

Not used on a heater. `make_pki` writes a CA, a server certificate for 127.0.0.1/localhost and one client
certificate per identity (CN = identity, which mosquitto's ``use_identity_as_username`` makes the
username). `DevBroker` writes a config with mutual TLS, the ACL of deploy/mosquitto and persistence, and
starts, stops (SIGTERM, so it saves its sessions) and restarts mosquitto on the same port.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def acl_text(prefix: str = "qrad/v1", platform_user: str = "platform") -> str:
    """The broker ACL: each heater (certificate CN = %u) confined to its own subtree; the platform to all."""
    return f"""# Heaters: %u is the certificate's CN (use_identity_as_username). mosquitto refuses pattern access to
# a username or client id containing + or # (CVE-2017-7650).
pattern write {prefix}/%u/telemetry
pattern write {prefix}/%u/state
pattern write {prefix}/%u/events
pattern write {prefix}/%u/alarms
pattern write {prefix}/%u/jobs
pattern write {prefix}/%u/availability
pattern write {prefix}/%u/resp/#
pattern read {prefix}/%u/cmd

# The platform's account: the whole tree.
user {platform_user}
topic readwrite {prefix}/#
"""


@dataclass
class Pki:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def client(self, name: str) -> tuple[Path, Path]:
        """(cert, key) of ``name``, issued on first use."""
        if name not in self.clients:
            self.clients[name] = _issue(self.directory, name, self._ca_key(), self._ca_cert(), server=False)
        return self.clients[name]

    def _ca_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca.read_bytes())


def make_pki(directory: Path, clients: tuple[str, ...] = ()) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and localhost, and the named client certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qrad throwaway test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(key, hashes.SHA256()))
    (directory / "ca.key").write_bytes(_pem_key(key))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = _issue(directory, "localhost", key, ca, server=True)
    pki = Pki(directory, directory / "ca.crt", server_cert, server_key)
    for client in clients:
        pki.client(client)
    return pki


def _issue(directory: Path, cn: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
           server: bool) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    stem = "server" if server else f"client-{cn}"
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevBroker:
    """mosquitto with mutual TLS, the ACL and persistence, on its own port, owned by the caller."""

    def __init__(self, directory: Path, pki: Pki, port: int | None = None, prefix: str = "qrad/v1") -> None:
        self.directory = directory
        self.pki = pki
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (directory / "data").mkdir(parents=True, exist_ok=True)
        (directory / "acl").write_text(acl_text(prefix))
        user = "root" if os.geteuid() == 0 else ""
        (directory / "mosquitto.conf").write_text(f"""per_listener_settings false
allow_anonymous false
acl_file {directory / 'acl'}
persistence true
persistence_location {directory / 'data'}/
autosave_interval 3600
max_queued_messages 1000000
max_inflight_messages 100
message_size_limit 262144
log_dest file {directory / 'mosquitto.log'}
log_type error
log_type warning
log_type notice
log_type information
{f'user {user}' if user else ''}
listener {self.port} 127.0.0.1
cafile {pki.ca}
certfile {pki.server_cert}
keyfile {pki.server_key}
require_certificate true
use_identity_as_username true
""")

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.directory / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {err} {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistent sessions), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
