"""An update bundle: the agent's wheel, its dependencies' wheels and a signed manifest.

A bundle is a directory, or a tar archive of one (plain or gzip), holding ``manifest.json``,
``manifest.sig`` (the release key's raw 64-byte Ed25519 signature over the exact bytes of manifest.json)
and the files the manifest lists. The release key is not the jobs key: a key that may sign a job must not
be able to replace the agent. The manifest:

    {"version": "0.2.0", "files": {"qrad_agent-0.2.0-py3-none-any.whl": "<sha256 hex>", ...},
     "agent_wheel": "qrad_agent-0.2.0-py3-none-any.whl", "allow_downgrade": false}

`verify` checks, in this order, that nothing is left to chance: manifest and signature present and
well-formed, signature valid, every listed file present with its SHA-256, no unlisted file, the agent wheel
listed, every file a ``.whl``, and the version a PEP 440 version. Any failure raises `UpdateRefused`
with a machine code and a specific message; the archive is unpacked into a fresh staging directory that
the caller removes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from packaging.version import InvalidVersion, Version

from qrad_agent.errors import AgentError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILES = 256
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}\.whl$")


class UpdateRefused(AgentError):
    """A bundle or an update refused before anything changed; ``code`` is machine-readable."""

    def __init__(self, code: str, detail: str) -> None:
        self.code, self.detail = code, detail
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True)
class UpdateManifest:
    """What the release key signs: version, wheel file -> SHA-256, the agent's own wheel, downgrade permission."""

    version: str
    files: dict[str, str]
    agent_wheel: str
    allow_downgrade: bool = False

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)


def _parse_manifest(data: bytes) -> UpdateManifest:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise UpdateRefused("malformed_manifest", f"manifest.json is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) - {"version", "files", "agent_wheel", "allow_downgrade"}:
        raise UpdateRefused("malformed_manifest", "manifest.json must be an object with version, files, "
                            "agent_wheel and optionally allow_downgrade")
    version, files, wheel = raw.get("version"), raw.get("files"), raw.get("agent_wheel")
    allow = raw.get("allow_downgrade", False)
    if not isinstance(version, str) or not isinstance(files, dict) or not isinstance(wheel, str) \
            or not isinstance(allow, bool):
        raise UpdateRefused("malformed_manifest", "version and agent_wheel must be strings, files an object, "
                            "allow_downgrade a boolean")
    try:
        Version(version)
    except InvalidVersion as exc:
        raise UpdateRefused("malformed_manifest", f"version {version!r} is not a PEP 440 version") from exc
    if not files or len(files) > MAX_FILES:
        raise UpdateRefused("malformed_manifest", f"files must list 1..{MAX_FILES} wheels")
    for name, digest in files.items():
        if not FILE_NAME_RE.fullmatch(name):
            raise UpdateRefused("malformed_manifest", f"file {name!r} must be a plain .whl file name")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise UpdateRefused("malformed_manifest", f"{name}: sha256 must be 64 lowercase hex digits")
    if wheel not in files:
        raise UpdateRefused("malformed_manifest", f"agent_wheel {wheel!r} is not among the files")
    return UpdateManifest(version, dict(files), wheel, allow)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack(source: Path, staging: Path) -> Path:
    """Copy a bundle directory, or extract a tar archive (regular files at the top level only), into the
    new directory ``staging``; return it. Raises UpdateRefused (bad_bundle)."""
    staging.mkdir(mode=0o700)
    if source.is_dir():
        for path in source.iterdir():
            if not path.is_file() or path.is_symlink():
                raise UpdateRefused("bad_bundle", f"{path.name}: only regular files belong in a bundle")
            shutil.copyfile(path, staging / path.name)
        return staging
    try:
        with tarfile.open(source) as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("./")
                if name in ("", "."):
                    continue
                if not member.isfile() or "/" in name or name.startswith("."):
                    raise UpdateRefused("bad_bundle", f"archive member {member.name!r}: only regular files "
                                        "at the top level belong in a bundle")
                extracted = archive.extractfile(member)
                assert extracted is not None
                with extracted, (staging / name).open("wb") as out:
                    shutil.copyfileobj(extracted, out)
    except (tarfile.TarError, OSError) as exc:
        raise UpdateRefused("bad_bundle", f"{source}: not a readable bundle directory or tar archive: {exc}") from exc
    return staging


def verify(staging: Path, release_key: Ed25519PublicKey) -> UpdateManifest:
    """Check the unpacked bundle in ``staging`` (module docstring). Raises UpdateRefused."""
    manifest_path, sig_path = staging / MANIFEST, staging / SIGNATURE
    if not manifest_path.is_file():
        raise UpdateRefused("malformed_manifest", "manifest.json missing")
    if not sig_path.is_file():
        raise UpdateRefused("unsigned", "manifest.sig missing: the bundle is not signed")
    data = manifest_path.read_bytes()
    if len(data) > MAX_MANIFEST_BYTES:
        raise UpdateRefused("malformed_manifest", f"manifest.json over {MAX_MANIFEST_BYTES} bytes")
    try:
        release_key.verify(sig_path.read_bytes(), data)
    except InvalidSignature as exc:
        raise UpdateRefused("bad_signature", "manifest.sig does not verify with the release key") from exc
    manifest = _parse_manifest(data)
    present = {p.name for p in staging.iterdir()} - {MANIFEST, SIGNATURE}
    unlisted = sorted(present - set(manifest.files))
    if unlisted:
        raise UpdateRefused("unlisted_file", f"files not in the manifest: {unlisted}")
    for name, digest in manifest.files.items():
        path = staging / name
        if not path.is_file():
            raise UpdateRefused("missing_file", f"{name} is listed but missing")
        actual = _sha256(path)
        if actual != digest:
            raise UpdateRefused("file_mismatch", f"{name}: SHA-256 {actual[:12]}..., manifest says {digest[:12]}...")
    return manifest


def build_bundle(directory: Path, wheels: list[Path], version: str, agent_wheel: str, key: Ed25519PrivateKey,
                 allow_downgrade: bool = False) -> Path:
    """The release side (tests, release tooling): copy ``wheels`` into ``directory``, write and sign the
    manifest. Returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for wheel in wheels:
        shutil.copyfile(wheel, directory / wheel.name)
        files[wheel.name] = _sha256(directory / wheel.name)
    data = json.dumps({"version": version, "files": files, "agent_wheel": agent_wheel,
                       "allow_downgrade": allow_downgrade}, indent=1, sort_keys=True).encode()
    (directory / MANIFEST).write_bytes(data)
    (directory / SIGNATURE).write_bytes(key.sign(data))
    return directory
