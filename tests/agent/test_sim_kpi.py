"""KPI definitions on hand-made series, and `qrad-agent sim` end to end on a short run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qrad_agent.cli import main
from qrad_agent.kpi import compute_kpis, overshoot_k


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


def test_sim_command_prints_plausible_kpis(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    plot = tmp_path / "run.png"
    assert main(["sim", "--days", "0.5", "--json", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    kpis = json.loads(out[: out.rindex("}") + 1])
    assert kpis["days"] == pytest.approx(0.5, abs=0.01)
    assert kpis["energy_kwh"] == pytest.approx(kpis["mean_power_w"] * 12 / 1000, rel=0.01)
    assert 100 < kpis["mean_power_w"] < 500  # January in Lyon: heating, not saturated
    assert kpis["rms_error_k"] < 0.5
    assert plot.stat().st_size > 10_000
