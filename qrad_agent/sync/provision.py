"""Issue a heater's client certificate, refusing any identity but the one strict device-id form.

    python -m qrad_agent.sync.provision issue --ca-cert CA.crt --ca-key CA.key --device heater-12 --out DIR

The broker turns the certificate's CN into the username its ACL patterns use (``%u``) and into the client
id (deploy/mosquitto), so the CN must be a single topic level that cannot collide with anything: `CN_PATTERN`
(letters, digits, '-'; 1-63 characters, starting and ending with a letter or digit, as a DNS label).
``platform`` and ``platform-*`` are reserved for the platform's own certificates (a separate CA). A
refused name exits 2 with the reason; nothing is written. The key is written 0600 next to the certificate
(``DIR/{device}.key``, ``DIR/{device}.crt``); existing files are never overwritten (exit 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import stat
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qrad_agent.envvars import DEVICE_ID_PATTERN
from qrad_agent.errors import AgentError

CN_PATTERN = DEVICE_ID_PATTERN
"""A heater certificate's CN: the device id form, one DNS-label-like MQTT topic level."""
RESERVED = re.compile(r"^platform(-.*)?$", re.IGNORECASE)
DEFAULT_DAYS = 825
"""Validity of a heater certificate: 825 days, the longest the CA/Browser Forum allowed TLS certificates
(2018-2020 Baseline Requirements); heaters are re-provisioned before then."""


class ProvisionError(AgentError):
    """A CN that may not be issued, or a CA that cannot be used."""


def check_cn(cn: str) -> str:
    """``cn`` if it is an acceptable heater CN; raises ProvisionError naming the problem."""
    if not re.fullmatch(CN_PATTERN, cn):
        bad = sorted({c for c in cn if not (c.isascii() and (c.isalnum() or c == "-"))})
        detail = f"characters not allowed: {''.join(bad)!r}" if bad else "1-63 characters, no leading/trailing '-'"
        raise ProvisionError(f"device id {cn!r} refused: only A-Z a-z 0-9 and '-' ({detail})")
    if RESERVED.fullmatch(cn):
        raise ProvisionError(f"device id {cn!r} refused: reserved for the platform's certificates")
    return cn


def certificate_cn(path: Path) -> str:
    """The subject CN of the PEM certificate at ``path``. Raises ProvisionError (unreadable, no CN)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"certificate {path}: {exc}") from exc
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ProvisionError(f"certificate {path}: {len(names)} common names, expected one")
    value = names[0].value
    return value if isinstance(value, str) else value.decode(errors="replace")


def check_certificate_identity(cert_file: Path, device_id: str) -> None:
    """The agent's side: its client certificate's CN must be its device id, in the strict form. Raises
    ProvisionError naming both (the broker would otherwise confine it to another identity's subtree)."""
    cn = certificate_cn(cert_file)
    if cn != device_id:
        raise ProvisionError(f"certificate {cert_file} is for CN {cn!r}, not this heater's device id {device_id!r}")
    check_cn(cn)


def check_key_mode(key_file: Path) -> None:
    """The heater's private key must not be readable or writable by other users, nor writable by its group
    (0600, or 0640 for a group that reads it). Raises ProvisionError naming the mode."""
    try:
        mode = stat.S_IMODE(key_file.stat().st_mode)
    except OSError as exc:
        raise ProvisionError(f"key {key_file}: {exc.strerror or exc}") from exc
    if mode & 0o027:
        raise ProvisionError(f"key {key_file} is mode {mode:04o}: other users can read or change it "
                             f"(chmod 600 {key_file})")


def issue_heater(ca_cert: Path, ca_key: Path, device: str, out: Path, days: int = DEFAULT_DAYS) -> tuple[Path, Path]:
    """Write ``out/{device}.crt`` and ``out/{device}.key`` (0600) signed by the CA; returns (cert, key).
    Raises ProvisionError (refused CN, unusable CA) or FileExistsError."""
    check_cn(device)
    try:
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ProvisionError(f"CA: {exc}") from exc
    if not isinstance(signer, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ProvisionError("CA key: not an EC, RSA or Ed25519 private key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{device}.crt", out / f"{device}.key"
    if cert_path.exists():
        raise FileExistsError(f"{cert_path} exists")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def main(argv: list[str] | None = None) -> int:
    """``issue``: 0 issued, 1 files exist or CA unusable, 2 refused device id or usage."""
    parser = argparse.ArgumentParser(prog="python -m qrad_agent.sync.provision",
                                     description="Issue a heater's MQTT client certificate (CN = device id).")
    sub = parser.add_subparsers(dest="command", required=True)
    issue = sub.add_parser("issue", help="issue one heater certificate")
    issue.add_argument("--ca-cert", type=Path, required=True)
    issue.add_argument("--ca-key", type=Path, required=True)
    issue.add_argument("--device", required=True, help="the heater's device id = the certificate's CN")
    issue.add_argument("--out", type=Path, required=True, help="directory for DEVICE.crt and DEVICE.key")
    issue.add_argument("--days", type=int, default=DEFAULT_DAYS)
    args = parser.parse_args(argv)
    try:
        check_cn(args.device)
    except ProvisionError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 2
    try:
        cert, key = issue_heater(args.ca_cert, args.ca_key, args.device, args.out, args.days)
    except (ProvisionError, OSError) as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1
    print(f"issued {cert} and {key} (CN={args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
