"""``qrad-hwsim`` as a real subprocess: READY line, files, trace, fault injection, clean SIGTERM."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from qrad_hwsim.cli import TRACE_COLUMNS, main

pytestmark = pytest.mark.slow
READY_TIMEOUT_S = 20.0


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` every 20 ms until true (fails after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_serve_ready_files_fault_and_sigterm(tmp_path: Path, weather_path: Path,
                                              project_root: Path, capsys) -> None:
    root, trace = tmp_path / "sys", tmp_path / "trace.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qrad_hwsim.cli", "serve", "--root", str(root), "--speed", "600",
        "--start", "01-15", "--weather", str(weather_path), "--trace", str(trace), "--cgroup", "v1",
        "--no-freq-list", stdout=asyncio.subprocess.PIPE, cwd=project_root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
        assert line.decode().strip() == f"READY root={root.resolve()}"
        policy = root / "devices/system/cpu/cpufreq/policy0"
        assert (policy / "scaling_driver").read_text().strip() == "intel_pstate"
        assert not (policy / "scaling_available_frequencies").exists()
        assert (root / "fs/cgroup/cpu/qrad-jobs/cpu.cfs_quota_us").exists()
        sensor_input = root / "class/hwmon/hwmon4/temp1_input"
        assert (root / "class/hwmon/hwmon4/name").read_text().strip() == "sht4x"
        energy = root / "class/powercap/intel-rapl:0/energy_uj"
        first_uj = int(energy.read_text())
        await wait_until(lambda: int(energy.read_text()) != first_uj)

        capsys.readouterr()
        assert main(["fault", "--root", str(root), "--sensor", "missing"]) == 0
        said = capsys.readouterr().out
        assert said.startswith("room sensor: missing (") and f"(pid {proc.pid})" in said, said
        await wait_until(lambda: not sensor_input.exists())
        assert main(["fault", "--root", str(root), "--sensor", "ok"]) == 0
        await wait_until(sensor_input.exists)

        def device_fault(*argv: str) -> int:  # waits for the simulator's answer
            return main(["fault", "--root", str(root), *argv])

        assert await asyncio.to_thread(device_fault, "--device", "co2", "--kind", "garbage") == 0
        assert await asyncio.to_thread(device_fault, "--device", "co2", "--kind", "nonsense") == 2
        assert await asyncio.to_thread(device_fault, "--device", "nosuch", "--kind", "garbage") == 2
        assert await asyncio.to_thread(device_fault, "--device", "co2", "--kind", "ok") == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(proc.wait(), 10.0)
    assert returncode == 0
    with trace.open() as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == TRACE_COLUMNS
    assert len(rows) > 2 and float(rows[-1][0]) > 10.0


def test_fault_without_a_tree_fails(tmp_path: Path) -> None:
    assert main(["fault", "--root", str(tmp_path / "absent"), "--sensor", "stuck"]) == 2


def test_sensor_fault_says_what_it_set_without_a_running_simulator(tmp_path: Path, capsys) -> None:
    assert main(["fault", "--root", str(tmp_path), "--sensor", "stuck"]) == 0
    assert capsys.readouterr().out == (f"room sensor: stuck ({tmp_path / '.hwsim' / 'sensor_fault'}); no simulator "
                                       "is running there now (a new one starts without it)\n")


def test_device_fault_without_a_running_simulator_says_so(tmp_path: Path, capsys) -> None:
    assert main(["fault", "--root", str(tmp_path), "--device", "co2", "--kind", "garbage", "--wait", "0.3"]) == 69
    assert "no simulator is running" in capsys.readouterr().err


def test_serve_bad_start_fails_before_building(tmp_path: Path) -> None:
    assert main(["serve", "--root", str(tmp_path / "sys"), "--start", "02-31"]) == 2
    assert not (tmp_path / "sys").exists()
