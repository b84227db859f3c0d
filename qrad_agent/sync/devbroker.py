"""A throwaway mosquitto for tests, benchmarks and demos: its own CA, certificates, config, ACL and port.

Not used on a heater. `make_pki` writes two CAs (the heaters' and the platform's), a server certificate for
127.0.0.1/localhost and one client certificate per identity (CN = identity, which mosquitto's
``use_identity_as_username`` makes the username); identities named ``platform...`` are issued by the
platform CA. It issues any CN it is given (a test can make the certificate a careless CA would);
`qrad_agent.sync.provision` is the checked issuer for real heaters.

`DevBroker` writes the layout of deploy/mosquitto: a heater listener (``port``: heater CA, client id
replaced by the certificate's CN, so one heater cannot take over another's session) and a platform
listener (``platform_port``: platform CA only, client ids free so several workers connect), the ACL,
persistence; it starts, stops (SIGTERM, so it saves its sessions) and restarts mosquitto on the same ports.
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


HEATER_LEAVES = ("telemetry", "state", "events", "alarms", "jobs", "availability", "cmd")
"""The topic levels under a heater's own ``{prefix}/{device}/`` other than its ``resp`` subtree."""


def acl_text(prefix: str = "qrad/v1", platform_user: str = "platform") -> str:
    """The broker ACL: each heater (certificate CN = %u) confined to its own subtree; the platform to all.

    The deny lines close what a CN with '/' (issued by a careless CA) could reach through the patterns:
    a CN ``heater-2/resp`` turns ``%u/telemetry`` into ``heater-2/resp/telemetry``, a topic of heater-2's
    response subtree. A heater's topics are 4 levels (``prefix/id/leaf``) or 5 under ``resp``; a CN with k
    slashes only makes topics of 4 + k levels or more, so denying 6 levels and more, and the heater leaves
    one level under ``resp``, leaves such a certificate nothing in another heater's subtree.
    """
    denies = "\n".join(f"pattern deny {prefix}/+/resp/{leaf}" for leaf in (*HEATER_LEAVES, "resp"))
    return f"""# Heaters: %u is the certificate's CN (use_identity_as_username). mosquitto refuses pattern access to
# a username or client id containing + or # (CVE-2017-7650); a CN with '/' is refused by the issuing
# command (qrad_agent.sync.provision) and, should one exist, reaches nothing through the deny lines:
# it could only make topics deeper than a heater's own, or a heater leaf name one level under resp/.
pattern deny {prefix}/+/+/+/+/#
{denies}
pattern write {prefix}/%u/telemetry
pattern write {prefix}/%u/state
pattern write {prefix}/%u/forecast
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


PLATFORM_PREFIX = "platform"
"""Identities whose name starts with this are the platform's: issued by the platform CA."""


@dataclass
class Pki:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    platform_ca: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def client(self, name: str) -> tuple[Path, Path]:
        """(cert, key) of ``name``, issued on first use (by the platform CA for ``platform...`` names).
        Any CN is issued, even one `qrad_agent.sync.provision` refuses: tests make hostile ones."""
        if name not in self.clients:
            which = "platform-ca" if name.startswith(PLATFORM_PREFIX) else "ca"
            self.clients[name] = issue(self.directory, name, self._ca_key(which), self._ca_cert(which),
                                       server=False)
        return self.clients[name]

    def _ca_key(self, which: str) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key((self.directory / f"{which}.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _ca_cert(self, which: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.directory / f"{which}.crt").read_bytes())


def make_ca(directory: Path, stem: str, title: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A throwaway CA valid two days: ``{stem}.key`` (0600) and ``{stem}.crt`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, title)])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(key, hashes.SHA256()))
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    (directory / f"{stem}.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return key, ca


def make_pki(directory: Path, clients: tuple[str, ...] = ()) -> Pki:
    """Throwaway heater and platform CAs, a server certificate for 127.0.0.1 and localhost (heater CA), and
    the named client certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    key, ca = make_ca(directory, "ca", "qrad throwaway heater CA")
    make_ca(directory, "platform-ca", "qrad throwaway platform CA")
    server_cert, server_key = issue(directory, "localhost", key, ca, server=True)
    pki = Pki(directory, directory / "ca.crt", server_cert, server_key, directory / "platform-ca.crt")
    for client in clients:
        pki.client(client)
    return pki


def issue(directory: Path, cn: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
          server: bool, days: float = 2.0) -> tuple[Path, Path]:
    """A key and a certificate with CN ``cn`` signed by ``ca``: ``client-{cn}.crt/.key`` (or ``server.*``)
    in ``directory``, the key 0600. No check of ``cn`` (see `qrad_agent.sync.provision`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                                        critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    stem = "server" if server else "client-" + cn.replace("/", "%2F")
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
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

    def __init__(self, directory: Path, pki: Pki, port: int | None = None, prefix: str = "qrad/v1",
                 platform_port: int | None = None) -> None:
        self.directory = directory
        self.pki = pki
        self.port = port or free_port()
        self.platform_port = platform_port or free_port()
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
use_username_as_clientid true

listener {self.platform_port} 127.0.0.1
cafile {pki.platform_ca}
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
                for port in (self.port, self.platform_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
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
