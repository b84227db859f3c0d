"""Job bundles fetched from the platform's bundle store by their SHA-256 (content addressing).

A ``submit_job`` command names its bundle by ``image_sha256``. When the bundle is not already on the heater,
`BundleFetcher.fetch` downloads ``{bundle_url}/{sha256}`` over HTTPS with this heater's client certificate
(the same mutual TLS identity as MQTT), streams it to a hidden partial file while hashing, refuses it past
``max_bytes`` or when the digest differs, and renames it into place only when it matched: a bundle on disk
is always the one the platform signed. The job runner then verifies the bundle's own signed manifest as for
any bundle. Blocking (urllib, stdlib): run it in a thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from qrad_agent.errors import AgentError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 16


class BundleError(AgentError):
    """A bundle could not be fetched (network, HTTP status, size, digest); the message says which."""


class BundleFetcher:
    """Downloads bundles into ``dest_dir`` (one file per SHA-256).

    ``base_url``: ``https://...`` (``http://`` only when ``allow_http``, for a lab); ``ca_file``,
    ``cert_file``, ``key_file``: PEM paths of the platform CA and this heater's client identity."""

    def __init__(self, base_url: str, dest_dir: Path, max_bytes: int, ca_file: Path | None = None,
                 cert_file: Path | None = None, key_file: Path | None = None, timeout_s: float = 60.0,
                 allow_http: bool = False) -> None:
        if not (base_url.startswith("https://") or (allow_http and base_url.startswith("http://"))):
            raise BundleError(f"bundle_url {base_url!r} must be https://")
        self.base_url = base_url.rstrip("/")
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._context: ssl.SSLContext | None = None
        if base_url.startswith("https://"):
            self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if cert_file is not None and key_file is not None:
                self._context.load_cert_chain(str(cert_file), str(key_file))

    def path(self, sha256: str) -> Path:
        return self.dest_dir / sha256

    def fetch(self, sha256: str) -> Path:
        """The bundle's path, downloaded if missing. Raises BundleError (nothing is left behind then)."""
        if not SHA256_RE.fullmatch(sha256):
            raise BundleError(f"not a SHA-256: {sha256!r}")
        final = self.path(sha256)
        if final.is_file():
            return final
        self.dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.dest_dir / f".partial-{sha256}-{uuid.uuid4().hex[:8]}"
        digest = hashlib.sha256()
        size = 0
        try:
            with urllib.request.urlopen(f"{self.base_url}/{sha256}", context=self._context,
                                        timeout=self.timeout_s) as response, partial.open("wb") as out:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise BundleError(f"bundle {sha256[:12]}: {declared} bytes over the {self.max_bytes} limit")
                for block in iter(lambda: response.read(CHUNK), b""):
                    size += len(block)
                    if size > self.max_bytes:
                        raise BundleError(f"bundle {sha256[:12]}: more than {self.max_bytes} bytes")
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise BundleError(f"bundle {sha256[:12]}: content has SHA-256 {digest.hexdigest()[:12]}")
            os.replace(partial, final)
            return final
        except urllib.error.HTTPError as exc:
            raise BundleError(f"bundle {sha256[:12]}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            raise BundleError(f"bundle {sha256[:12]}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
