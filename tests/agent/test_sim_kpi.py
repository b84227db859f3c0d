"""KPI definitions on hand-made series, and `qrad-agent sim` end to end on a short run."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qrad_agent.cli import main
from qrad_agent.kpi import compute_kpis, overshoot_k
from qrad_agent.progress import BAR_WIDTH, ProgressBar
from qrad_agent.sim import check_plot_path, plot, plot_title, run_sim, window_mean


def test_discomfort_counts_only_outside_the_band() -> None:
    air = np.array([20.0, 20.4, 21.0, 19.0, 20.0, 20.0])
    sp = np.full(6, 20.0)
    k = compute_kpis(3600.0, air, sp, np.full(6, 100.0), np.ones(6), 1.0)
    assert k.discomfort_kh == pytest.approx(0.5 + 0.5)  # 21.0 and 19.0 are 0.5 K outside ±0.5 K, 1 h each
    assert k.rms_error_k == pytest.approx(np.sqrt((0.16 + 1 + 1) / 6))
    assert k.energy_kwh == pytest.approx(0.6)


def test_overshoot_only_after_steps_up() -> None:
    sp = np.array([18.0, 18.0, 20.0, 20.0, 20.0, 19.0, 19.0])
    air = np.array([18.0, 18.5, 19.0, 20.25, 20.1, 19.9, 19.2])
    assert overshoot_k(air, sp) == pytest.approx(0.25)
    assert overshoot_k(air, np.full(7, 20.0)) is None


def test_compute_cycles_count_restarts() -> None:
    compute = np.array([10, 10, 0, 0, 10, 0, 10, 10], dtype=float)
    k = compute_kpis(10.0, np.zeros(8), np.zeros(8), np.zeros(8), compute, 10.0)
    assert k.compute_cycles == 2


def test_sim_command_prints_plausible_kpis(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "run.png"
    assert main(["sim", "--days", "0.5", "--start", "01-05", "--json", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    kpis = report["kpis"]
    assert kpis["days"] == pytest.approx(0.5, abs=0.01)
    assert kpis["energy_kwh"] == pytest.approx(kpis["mean_power_w"] * 12 / 1000, rel=0.01)
    assert 100 < kpis["mean_power_w"] < 500  # January in Lyon: heating, not saturated
    assert kpis["rms_error_k"] < 0.5
    params = report["parameters"]
    assert params["algorithm"] == "pid" and params["days"] == 0.5 and params["seed"] == 0
    assert params["start"] == "2026-01-05T00:00:00" and params["end"] == "2026-01-05T12:00:00"
    assert Path(params["weather_file"]).is_file()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    # Off a terminal: no progress bar; a normal start and stop log no warning.
    assert "\r" not in captured.err and "%" not in captured.err
    assert "warning" not in captured.err and "plot written to" in captured.err


@pytest.mark.parametrize("name, message", [
    ("missing-dir/x.png", "does not exist"),
    ("x.txt", "must end in one of"),
    (".", "is a directory"),
    ("file/x.png", "is not a directory"),
])
def test_sim_plot_path_is_refused_before_the_run(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 name: str, message: str) -> None:
    (tmp_path / "file").write_text("")
    assert main(["sim", "--days", "0.01", "--plot", str(tmp_path / name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no KPI table: the run never started
    assert message in captured.err and "Traceback" not in captured.err


def test_sim_refuses_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    for days in ("0", "-1", "nan", "inf"):
        assert main(["sim", "--days", days]) == 2
        assert "--days must be a number > 0" in capsys.readouterr().err
    for flag in ("--warmup-days", "--forecast-error"):  # negative ones once shortened the run quietly
        for value in ("-2", "nan"):
            assert main(["sim", "--days", "1", flag, value]) == 2
            assert f"{flag} must be a number >= 0" in capsys.readouterr().err


def test_window_mean_keeps_a_short_last_window() -> None:
    assert window_mean(np.array([1.0, 3.0, 5.0, 7.0, 10.0]), 2).tolist() == [2.0, 6.0, 10.0]
    assert window_mean(np.array([]), 30).size == 0
    with pytest.raises(ValueError):
        window_mean(np.ones(3), 0)


def test_progress_bar_draws_on_a_terminal_only() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=True) as tty:
            bar = ProgressBar(tty, "simulating")
            for i in range(1001):
                bar.update(i / 1000)
            bar.close()
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 0)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the slave end is closed and drained
                break
            if not data:
                break
            chunks.append(data)
        drawn = b"".join(chunks).decode()
    finally:
        os.close(master)
    assert drawn.count("\r[") == 101  # one redraw per whole percent, not per update
    assert "[" + "#" * BAR_WIDTH + "] 100 %  simulating" in drawn
    assert drawn.endswith("\r\x1b[2K")  # the line is erased for the command's own output

    pipe = io.StringIO()
    off = ProgressBar(pipe, "simulating")
    for i in range(11):
        off.update(i / 10)
    off.close()
    assert pipe.getvalue() == ""


def test_run_reports_progress_and_the_plot_names_algorithm_dates_and_kpis(tmp_path: Path) -> None:
    fractions: list[float] = []
    result = run_sim(days=0.25, start="2026-03-02", thermostat={"algorithm": "hysteresis"}, seed=3,
                     progress=fractions.append)
    assert fractions == sorted(fractions) and 0.99 <= fractions[-1] <= 1.0 + 1e-9
    assert result.parameters.as_dict() | {"weather_file": None} == {
        "algorithm": "hysteresis", "controller": "agent", "start": "2026-03-02T00:00:00",
        "end": "2026-03-02T06:00:00", "days": 0.25, "seed": 3, "weather_file": None, "step_s": 30.0,
        "predict": True, "warmup_days": 0.0, "forecast_error_k": 0.0, "dr_event": None}
    title = plot_title(result)
    assert title.startswith("HYSTERESIS thermostat, 0.25 day(s), Mon 02 Mar 2026")
    assert f"RMS error {result.kpis.rms_error_k:.3f} K" in title
    assert f"energy {result.kpis.energy_kwh:.1f} kWh" in title
    path = tmp_path / "run.svg"  # any format matplotlib writes, chosen by the suffix
    check_plot_path(path)
    plot(result, path)
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml") and "Mon 02 Mar" in svg  # the midnight tick's label


def _read_until(fd: int, marker: bytes, timeout_s: float) -> bytes:
    """Bytes from ``fd`` until ``marker`` shows up, the writer closes, or ``timeout_s`` passes."""
    seen, deadline = b"", time.monotonic() + timeout_s
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other end is closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.slow
def test_sim_on_a_terminal_draws_its_progress_and_ends_quietly_on_ctrl_c() -> None:
    master, slave = os.openpty()
    agent = Path(sys.executable).with_name("qrad-agent")
    # Ctrl-C's default disposition, as on a terminal (a CI runner started in the background ignores SIGINT,
    # and a child that inherits "ignored" never sees a KeyboardInterrupt).
    proc = subprocess.Popen([str(agent), "sim", "--days", "7"], stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    try:
        drawn = _read_until(master, b"]   1 %  simulating 7 day(s)", 120)  # ready: the run is under way
        assert b"]   1 %" in drawn, drawn
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(120)
        rest = _read_until(master, b"no KPIs", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert returncode == 130
    assert b"interrupted; no KPIs" in rest and b"Traceback" not in drawn + rest


def test_discomfort_split_cold_warm_floor_and_arrivals() -> None:
    # 1 h steps: a raise to 20 °C met at 19.8 (within 0.3 K), one met at 19.0 (1 K short, 0.5 K·h cold),
    # then 21 °C with the heater at its floor (0.5 K·h too warm at the floor) and 21 °C heating (0.5 K·h)
    setpoint = np.array([19.0, 20.0, 19.0, 20.0, 20.0, 20.0])
    air = np.array([19.0, 19.8, 19.0, 19.0, 21.0, 21.0])
    power = np.array([300.0, 300.0, 300.0, 500.0, 50.0, 200.0])
    k = compute_kpis(3600.0, air, setpoint, power, power / 50.0, 10.0, floor_w=50.0)
    assert k.discomfort_cold_kh == pytest.approx(0.5) and k.discomfort_warm_kh == pytest.approx(1.0)
    assert k.discomfort_warm_floor_kh == pytest.approx(0.5) and k.discomfort_actionable_kh == pytest.approx(1.0)
    assert k.discomfort_kh == pytest.approx(k.discomfort_cold_kh + k.discomfort_warm_kh)
    assert (k.arrivals, k.arrival_within_frac, k.arrival_error_k) == (2, 0.5, pytest.approx(-0.6))


def test_sim_runs_a_demand_response_event_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    """`sim --dr-event`: the platform's request is sent 8 h ahead and answered; a bad date is refused first."""
    assert main(["sim", "--days", "0.5", "--start", "01-05", "--json", "--dr-event", "2026-01-05 09:00",
                 "--dr-hours", "1", "--dr-limit-w", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["demand_forecast"]["forecasts"] == 0  # half a day: no forecast can be scored
    assert report["parameters"]["dr_event"] == {"start": "2026-01-05T09:00:00", "hours": 1.0, "limit_w": 50.0,
                                                "notice_h": 8.0}
    assert report["parameters"]["forecast_error_k"] == 0.0
    dr = report["demand_response"]
    assert dr["answer"]["accepted"] is True and dr["answer"]["expected_discomfort_kh"] is None  # not learnt yet
    # measured at the mains: the board draws a little above a 50 W demand (its idle floor is 50 W)
    assert dr["outcome"]["request_id"] == "sim-dr" and dr["outcome"]["energy_in_window_wh"] <= 60.0
    assert main(["sim", "--days", "0.5", "--dr-event", "tomorrow"]) == 2
    assert "--dr-event must be YYYY-MM-DD HH:MM" in capsys.readouterr().err
    # an event the run never reaches, and a window's shape without an event, are refused before the run
    assert main(["sim", "--days", "0.5", "--start", "01-05", "--dr-event", "2026-03-01 18:00"]) == 2
    refused = capsys.readouterr().err
    assert "2026-03-01 18:00 is outside the simulated run, 2026-01-05 00:00 to 2026-01-05 12:00" in refused
    assert main(["sim", "--days", "0.5", "--dr-hours", "2"]) == 2
    assert "give one" in capsys.readouterr().err
