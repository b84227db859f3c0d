"""Job bundles: stage a directory or tar archive, verify its signature, files and limits, or reject it.

Everything is checked on a private staging copy (never on the submitted files, which could change after
the check): the Ed25519 signature over the exact ``manifest.json`` bytes, the manifest's schema, the
heater's limits, then every listed file's SHA-256; a file that is missing, different or not listed
rejects the bundle. A rejected bundle leaves nothing behind but the caller's status record.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import tarfile
import time
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import ValidationError

from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.model import JobRejected, Manifest, RejectReason
from qrad_agent.jobs.tree import TreeWalk, remove_tree

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST_BYTES = 1 << 20
MAX_BUNDLE_DEPTH = 32
"""Directory levels a bundle may have (well under tree.MAX_DEPTH, the bound on a job's output)."""


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file or a raw 32-byte file."""
    data = path.read_bytes()
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    key = load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def sign_manifest(bundle_dir: Path, key: Ed25519PrivateKey) -> None:
    """Write ``manifest.sig`` for the bundle's manifest (the platform's side; tests and examples use it)."""
    (bundle_dir / SIGNATURE).write_bytes(key.sign((bundle_dir / MANIFEST).read_bytes()))


def replay_fields(devices: list[str], lifetime_s: float = 86400.0) -> dict:
    """The fields a signed manifest must carry (the platform's side): the devices it is for, a fresh
    random nonce and an expiry ``lifetime_s`` from now."""
    return {"devices": list(devices), "nonce": secrets.token_hex(16), "expires_at": time.time() + lifetime_s}


def write_manifest(bundle_dir: Path, fields: dict) -> Path:
    """Write ``manifest.json`` with ``files`` filled from the bundle's regular files."""
    files = {}
    for path in sorted(bundle_dir.rglob("*")):
        rel = path.relative_to(bundle_dir).as_posix()
        if path.is_file() and rel not in (MANIFEST, SIGNATURE):
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    target = bundle_dir / MANIFEST
    target.write_text(json.dumps({**fields, "files": files}, indent=1))
    return target


class StagedBundle:
    """A verified bundle in its staging directory, ready to be moved into the job's directory."""

    def __init__(self, manifest: Manifest, signed: bool, path: Path) -> None:
        self.manifest, self.signed, self.path = manifest, signed, path

    def discard(self) -> None:
        _discard(self.path)


def stage(source: Path, cfg: JobsConfig, key: Ed25519PublicKey | None, staging_root: Path) -> StagedBundle:
    """Copy ``source`` into a new staging dir under ``staging_root`` and verify it. Raises JobRejected."""
    staging = staging_root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True, mode=0o700)
    try:
        _copy_in(source, staging, cfg.max_bundle_mb << 20)
        raw = _read_manifest(staging)
        signed = _check_signature(staging, raw, key, cfg.allow_unsigned)
        manifest = _parse(raw)
        if signed and None in (manifest.devices, manifest.nonce, manifest.expires_at):
            raise JobRejected(RejectReason.MALFORMED_MANIFEST, "a signed manifest must name devices, nonce and "
                              "expires_at (replay protection)")
        check_limits(manifest, cfg)
        _check_files(staging, manifest)
        (staging / SIGNATURE).unlink(missing_ok=True)
        return StagedBundle(manifest, signed, staging)
    except BaseException:
        _discard(staging)
        raise


def _copy_in(source: Path, staging: Path, max_bytes: int) -> None:
    if source.is_dir():
        total = 0
        walk = TreeWalk(source, MAX_BUNDLE_DEPTH)
        for entry in walk:  # no recursion, no symbolic link followed, names as the bundle has them
            mode = entry.st.st_mode
            rel = os.fsdecode(entry.rel)
            if stat.S_ISDIR(mode):
                (staging / rel).mkdir(exist_ok=True)
            elif stat.S_ISREG(mode):
                total += entry.st.st_size
                if total > max_bytes:
                    raise JobRejected(RejectReason.BAD_BUNDLE, f"bundle larger than {max_bytes} bytes")
                fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=entry.dir_fd)
                with os.fdopen(fd, "rb") as src, open(staging / rel, "xb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                raise JobRejected(RejectReason.BAD_BUNDLE, f"{_shown(entry.rel)}: only regular files and "
                                  "directories")
        if walk.too_deep:
            raise JobRejected(RejectReason.BAD_BUNDLE, f"directories nested deeper than {MAX_BUNDLE_DEPTH} levels")
    elif source.is_file():
        _extract(source, staging, max_bytes)
    else:
        raise JobRejected(RejectReason.BAD_BUNDLE, f"{source}: no such bundle")


def _extract(archive: Path, staging: Path, max_bytes: int) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            if any(not (m.isreg() or m.isdir()) for m in members):
                raise JobRejected(RejectReason.BAD_BUNDLE, "archive members must be files or directories")
            if any(m.name.count("/") >= MAX_BUNDLE_DEPTH for m in members):
                raise JobRejected(RejectReason.BAD_BUNDLE, f"directories nested deeper than {MAX_BUNDLE_DEPTH} "
                                  "levels")
            if sum(m.size for m in members) > max_bytes:
                raise JobRejected(RejectReason.BAD_BUNDLE, f"bundle larger than {max_bytes} bytes")
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise JobRejected(RejectReason.BAD_BUNDLE, f"{archive.name}: {exc}") from exc


def _read_manifest(staging: Path) -> bytes:
    path = staging / MANIFEST
    if not path.is_file():
        raise JobRejected(RejectReason.MALFORMED_MANIFEST, "no manifest.json")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise JobRejected(RejectReason.MALFORMED_MANIFEST, "manifest.json larger than 1 MiB")
    return path.read_bytes()


def _check_signature(staging: Path, raw: bytes, key: Ed25519PublicKey | None, allow_unsigned: bool) -> bool:
    sig_path = staging / SIGNATURE
    if not sig_path.is_file():
        if allow_unsigned:
            return False
        raise JobRejected(RejectReason.UNSIGNED, "no manifest.sig and unsigned jobs are not allowed")
    if key is None:
        raise JobRejected(RejectReason.BAD_SIGNATURE, "signed bundle but no public key configured")
    try:
        key.verify(sig_path.read_bytes(), raw)
    except InvalidSignature as exc:
        raise JobRejected(RejectReason.BAD_SIGNATURE, "manifest.sig does not match manifest.json") from exc
    return True


def _parse(raw: bytes) -> Manifest:
    try:
        return Manifest.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(str(p) for p in first["loc"]) + ": " + first["msg"] if first else str(exc)
        raise JobRejected(RejectReason.MALFORMED_MANIFEST, where) from exc


def check_limits(manifest: Manifest, cfg: JobsConfig) -> None:
    """Reject a manifest asking for more than this heater gives a job."""
    asks = {"cores": (manifest.cores, min(cfg.max_cores, cfg.total_slots)),
            "memory_mb": (manifest.memory_mb, cfg.max_memory_mb),
            "walltime_s": (manifest.walltime_s, cfg.max_walltime_s),
            "output_mb": (manifest.output_mb, cfg.max_output_mb),
            "pids": (manifest.pids, cfg.max_pids)}
    over = [f"{name} {asked} > {limit}" for name, (asked, limit) in asks.items() if asked > limit]
    if over:
        raise JobRejected(RejectReason.LIMITS_EXCEEDED, "; ".join(over))


def _check_files(staging: Path, manifest: Manifest) -> None:
    for rel, digest in manifest.files.items():
        path = staging / rel
        if not path.is_file() or path.is_symlink():
            raise JobRejected(RejectReason.MISSING_FILE, rel)
        if _sha256(path) != digest:
            raise JobRejected(RejectReason.FILE_MISMATCH, f"{rel}: sha256 differs from the manifest")
    walk = TreeWalk(staging, MAX_BUNDLE_DEPTH)
    for entry in walk:
        rel = os.fsdecode(entry.rel)
        if not stat.S_ISDIR(entry.st.st_mode) and rel not in manifest.files and rel not in (MANIFEST, SIGNATURE):
            raise JobRejected(RejectReason.UNLISTED_FILE, _shown(entry.rel))
    if walk.too_deep:
        raise JobRejected(RejectReason.BAD_BUNDLE, f"directories nested deeper than {MAX_BUNDLE_DEPTH} levels")


def _discard(path: Path) -> None:
    """Delete a staging directory (any depth); a failure leaves it for the disk check, never raises."""
    try:
        remove_tree(path)
    except OSError:
        pass


def _shown(rel: bytes) -> str:
    """A bundle path for a message: bytes that are not UTF-8 as \\xNN escapes."""
    return rel.decode("utf-8", errors="backslashreplace")[:300]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
