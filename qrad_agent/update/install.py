"""A release's own virtual environment, built offline from the bundle's wheels.

``python -m venv`` (with pip, from the interpreter's bundled wheel: no network), then the new venv's pip
installs the agent's wheel with ``--no-index --find-links <bundle>``: dependencies come from the bundle's
wheels, never from an index. With ``base_site_packages`` (lab, tests) a .pth line makes that directory's
packages importable and the wheel is installed with ``--no-deps``. Blocking: the updater is its own process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qrad_agent.update.bundle import UpdateManifest, UpdateRefused

PIP_TIMEOUT_S = 600


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateRefused("install_failed", f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UpdateRefused("install_failed", f"{what} exited {done.returncode}: {' | '.join(tail)}")


def build_venv(release_dir: Path, bundle_dir: Path, manifest: UpdateManifest, python: Path,
               base_site_packages: Path | None) -> Path:
    """Create ``release_dir/venv`` and install the bundle into it; returns the venv. Raises UpdateRefused."""
    venv = release_dir / "venv"
    _run([str(python), "-m", "venv", str(venv)], "python -m venv")
    vpython = venv / "bin" / "python"
    if base_site_packages is not None:
        site = subprocess.run([str(vpython), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, timeout=60, check=False).stdout.strip()
        if not site:
            raise UpdateRefused("install_failed", "the new venv's site-packages not found")
        Path(site, "qrad-base-packages.pth").write_text(f"{base_site_packages}\n")
    cmd = [str(vpython), "-m", "pip", "install", "--quiet", "--no-index", "--disable-pip-version-check",
           "--find-links", str(bundle_dir)]
    if base_site_packages is not None:
        cmd.append("--no-deps")
    _run([*cmd, str(bundle_dir / manifest.agent_wheel)], "pip install")
    if not (venv / "bin" / "qrad-agent").exists():
        raise UpdateRefused("install_failed", "the agent wheel installed no qrad-agent command")
    return venv


def this_python() -> Path:
    """The interpreter the running agent's venv was made from (a default for tests and labs)."""
    return Path(getattr(sys, "_base_executable", sys.executable))
