"""Sensor hub cost: CPU and memory of the whole agent with every channel polled at its nominal period and
the microphone streaming at 16 kHz, against the same agent with no sensors (the baseline), in one run.

Starts `qrad-hwsim serve` (every device emulated, real time) and the agent as a subprocess per case, lets
it settle, then samples the agent process with psutil over ``--seconds`` of real time.
Goal (issue 3): under 2 % of one core and under 60 MB RSS for the whole agent.

    python benchmarks/sensors.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import psutil

EXAMPLE = Path(__file__).resolve().parents[1] / "hw-sim" / "qrad_hwsim" / "agent.toml"
BIN = Path(sys.executable).parent


def _config(tmp: Path, root: Path, all_sensors: bool) -> Path:
    text = EXAMPLE.read_text().replace("/tmp/qrad-hwsim-state", str(tmp / "state"))
    text = text.replace("/tmp/qrad-hwsim", str(root)).replace('level = "info"', 'level = "warning"')
    if not all_sensors:  # baseline: the room temperature sensor only (the thermostat needs one), every
        # other section ([jobs], [safety], [fire]) as in the example
        parts = text.split("[[sensors]]")
        lines = parts[-1].splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if i > 0 and line.startswith("["))
        text = parts[0] + "[[sensors]]" + parts[1] + "".join(lines[start:])
        text = text.replace('room_channels = ["room_temp", "room_temp_ds18b20", "room_temp_bme280"]',
                            'room_channels = ["room_temp"]')
    tomllib.loads(text)
    path = tmp / f"agent-{'all' if all_sensors else 'baseline'}.toml"
    path.write_text(text)
    return path


def measure(all_sensors: bool, seconds: float) -> dict[str, float]:
    """CPU % of one core and peak RSS (MB) of the agent over ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "sys"
        sim = subprocess.Popen([BIN / "qrad-hwsim", "serve", "--root", str(root), "--speed", "1",
                                "--initial-air-c", "20"], stdout=subprocess.PIPE, text=True)
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        agent = subprocess.Popen([BIN / "qrad-agent", "run", "--config", str(_config(tmp, root, all_sensors))],
                                 stderr=subprocess.DEVNULL)
        try:
            time.sleep(5)  # start-up: imports, first polls, audio pipeline primed
            proc = psutil.Process(agent.pid)
            cpu0 = proc.cpu_times()
            start = time.monotonic()
            peak_rss = 0
            while time.monotonic() - start < seconds:
                time.sleep(1)
                peak_rss = max(peak_rss, proc.memory_info().rss)
            cpu1 = proc.cpu_times()
            elapsed = time.monotonic() - start
            used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            return {"cpu_pct": 100 * used / elapsed, "rss_mb": peak_rss / 2**20}
        finally:
            for p in (agent, sim):
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    base = measure(False, args.seconds)
    full = measure(True, args.seconds)
    print(f"agent over {args.seconds:g} s of real time (CPU in % of one core)")
    print(f"{'case':<42}{'CPU %':>8}{'peak RSS MB':>14}")
    print(f"{'baseline: room temperature only':<42}{base['cpu_pct']:>8.2f}{base['rss_mb']:>14.1f}")
    print(f"{'all 29 channels + audio at 16 kHz':<42}{full['cpu_pct']:>8.2f}{full['rss_mb']:>14.1f}")
    print(f"{'sensors cost (difference)':<42}{full['cpu_pct'] - base['cpu_pct']:>8.2f}"
          f"{full['rss_mb'] - base['rss_mb']:>14.1f}")
    ok = full["cpu_pct"] < 2.0 and full["rss_mb"] < 60.0
    print(f"goal < 2 % of one core and < 60 MB for the whole agent: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
