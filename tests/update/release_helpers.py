"""Test releases of the agent: this checkout's sources as a wheel of any version, optionally broken.

The wheel is built here (zip + dist-info, PEP 427), not by pip: no build backend or network needed, and it
is small (the agent's and the drivers' sources only). Dependencies are not in it: the release venv takes
them from the test venv's site-packages (update.base_site_packages), as the issue allows for tests.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

BREAKS = {
    # Each break is appended to its module, rebinding a name the rest of the code looks up at call time.
    # the self-test fails: the agent runs, but never reports healthy
    "selftest": ("qrad_agent/ops/selftest.py", None,
                 ("\n\n_run_selftest = run_selftest\n\n\n"
                  "def run_selftest(agent, *args):  # test release: one check always fails\n"
                  "    failing = Check(\"test release\", False, \"built to fail its health check\")\n"
                  "    return [*_run_selftest(agent, *args), failing]\n")),
    # the process exits at once, every time: a crash loop
    "crash": ("qrad_agent/cli.py", None,
              "\n\ndef cmd_run(*args, **kwargs):  # test release: crashes at start\n    raise SystemExit(70)\n"),
}


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_agent_wheel(out_dir: Path, version: str, breaks: str | None = None) -> Path:
    """``qrad_agent-<version>-py3-none-any.whl`` in ``out_dir`` from this checkout's sources."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for package, source in (("qrad_agent", PROJECT / "qrad_agent"), ("qrad_drivers", PROJECT / "drivers")):
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed", ".json"):
                files[f"{package}/{path.relative_to(source).as_posix()}"] = path.read_bytes()
    init = "qrad_agent/__init__.py"
    files[init] = files[init].replace(b'__version__ = "0.1.0"', f'__version__ = "{version}"'.encode())
    if breaks is not None:
        name, old, new = BREAKS[breaks]
        text = files[name].decode()
        if old is None:  # appended: the module's name is rebound before anyone imports it
            files[name] = (text + new).encode()
        else:
            assert old in text, f"{name} changed: the {breaks} break no longer applies"
            files[name] = text.replace(old, new, 1).encode()
    dist = f"qrad_agent-{version}.dist-info"
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: qrad-agent\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: qrad-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = b"[console_scripts]\nqrad-agent = qrad_agent.cli:main\n"
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out_dir / f"qrad_agent-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel
