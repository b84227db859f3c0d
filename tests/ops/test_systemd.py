"""The unit file passes `systemd-analyze verify`, and its exposure stays at or below the recorded figure."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "qrad-agent.service"
EXPOSURE_CEILING = 3.7
"""`systemd-analyze security --offline=true` of the unit as shipped (README, "Service"); lower is better."""

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def _installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's console script (verify checks that it exists)."""
    agent = Path(sys.executable).with_name("qrad-agent")
    text = UNIT.read_text().replace("/opt/qrad-agent/venv/bin/qrad-agent", str(agent))
    copy = tmp_path / "qrad-agent.service"
    copy.write_text(text)
    return copy


def test_unit_verifies_clean(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(_installed_copy(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def test_unit_exposure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(_installed_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    with capsys.disabled():
        print(f"\nsystemd-analyze security exposure of qrad-agent.service: {exposure}")
    assert exposure <= EXPOSURE_CEILING
