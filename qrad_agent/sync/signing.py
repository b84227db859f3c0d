"""Ed25519 signatures of platform documents (job manifests, alarm resets), verified with `cryptography`.

The signed bytes are the canonical JSON of the document: keys sorted, no spaces, UTF-8, so the platform
and the heater agree byte for byte. Signatures travel base64-encoded.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from qrad_agent.errors import AgentError


class SigningError(AgentError):
    """A public key that cannot be loaded."""


def canonical(document: Any) -> bytes:
    """The bytes that are signed: compact, key-sorted JSON."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file or a file of the raw 32 bytes. Raises SigningError."""
    try:
        data = path.read_bytes()
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError) as exc:
        raise SigningError(f"platform public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"platform public key {path}: not an Ed25519 key")
    return key


class Verifier:
    """Checks base64 Ed25519 signatures of documents against the platform's public key."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    def verify(self, document: Any, signature_b64: str) -> bool:
        """True only for a well-formed signature of ``canonical(document)``; never raises."""
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            self._key.verify(signature, canonical(document))
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            return False
        return True


def sign(key: Ed25519PrivateKey, document: Any) -> str:
    """The platform side: base64 signature of ``canonical(document)`` (hw-sim, tests)."""
    return base64.b64encode(key.sign(canonical(document))).decode()
