"""Power manager against real hw-sim sysfs trees: discovery, actuation, RAPL metering, learning, refusals."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from qrad_agent.config import PowerConfig
from qrad_agent.power.cgroup import MIN_QUOTA_US, online_cpus
from qrad_agent.power.cpufreq import CpufreqActuator, Policy
from qrad_agent.power.curve import PowerCurve
from qrad_agent.power.manager import PowerManager
from qrad_agent.power.rapl import RaplEnergyMeter, discover_zones, energy_delta_uj
from qrad_hwsim.board import Board, BoardSpec

IDLE_W, MAX_W = 50.0, 500.0
PERIOD_US = 100_000
NOBODY = 65534
EINVAL_TARGET = Path("/proc/self/oom_score_adj")
"""A file whose writes the kernel refuses with EINVAL for any value outside -1000..1000 (every kHz value)."""


def make_board(root: Path, **spec_fields) -> tuple[Board, PowerConfig]:
    """A hw-sim board under ``root`` and the PowerConfig that points the agent at it."""
    spec = BoardSpec(**spec_fields)
    board = Board(root, spec)
    cgroup = {"v2": root / "fs/cgroup/qrad-jobs", "v1": root / "fs/cgroup/cpu/qrad-jobs"}.get(spec.cgroup)
    cfg = PowerConfig(sysfs_root=root, jobs_cgroup=cgroup, idle_w=IDLE_W, max_w=MAX_W,
                      platform_overhead_w=spec.platform_overhead_w)
    return board, cfg


def demand_for(level: float) -> float:
    """The demand (W) the untrained (linear) curve maps to ``level``."""
    return IDLE_W + level * (MAX_W - IDLE_W)


def policy_dir(root: Path, n: int) -> Path:
    return root / f"devices/system/cpu/cpufreq/policy{n}"


def zone_dir(root: Path, n: int) -> Path:
    return root / f"class/powercap/intel-rapl:{n}"


def refuse_with_einval(path: Path) -> None:
    path.unlink()
    path.symlink_to(EINVAL_TARGET)


def errors_of(logs: list[dict]) -> list[dict]:
    return [entry for entry in logs if entry["log_level"] == "error"]


# --- discovery ---------------------------------------------------------------------------------------


def test_full_board_discovers_cpufreq_rapl_cgroup_in_order(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    assert manager.chain_names() == ["cpufreq", "rapl", "cgroup"]
    assert manager.meter is not None


def test_quota_counts_the_cpus_of_the_configured_tree_not_the_host(tmp_path: Path) -> None:
    board, cfg = make_board(tmp_path, n_packages=3, cores_per_package=4)
    manager = PowerManager(cfg)
    quota = manager.actuators[-1]
    assert quota.cpus == board.spec.n_cores_total == 12
    # the top of the quota range gives the jobs every core of the board
    assert quota.quota_us(1.0) == 12 * PERIOD_US


def test_online_cpus_parses_kernel_cpu_lists(tmp_path: Path) -> None:
    cpu = tmp_path / "devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text("0-3,6,8-9\n")
    assert online_cpus(tmp_path) == 7
    (cpu / "online").write_text("0\n")
    assert online_cpus(tmp_path) == 1
    assert online_cpus(tmp_path / "absent") is None


def test_intel_pstate_cap_is_interpolated_in_khz(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path, freq_list=False)
    manager = PowerManager(cfg)
    cpufreq = manager.actuators[0]
    assert cpufreq.name == "cpufreq" and cpufreq.steps == 0
    # level 0.6 = quota share 0.2 + half of the P-state range
    manager.set_demand(demand_for(0.6), 0.0)
    assert set(manager.readback()["cpufreq"].values()) == {800_000 + (2_400_000 - 800_000) // 2}
    manager.set_demand(demand_for(0.2 + 0.8 * 0.25), 1.0)
    assert set(manager.readback()["cpufreq"].values()) == {1_200_000}


def test_without_cpufreq_and_rapl_the_quota_carries_the_whole_range(tmp_path: Path) -> None:
    board, cfg = make_board(tmp_path, rapl=False)
    shutil.rmtree(tmp_path / "devices/system/cpu/cpufreq")
    manager = PowerManager(cfg)
    assert manager.chain_names() == ["cgroup"]
    assert manager.meter is None
    manager.set_demand(demand_for(0.5), 0.0)
    assert manager.readback() == {"cgroup": {"cpu.max": f"{8 * PERIOD_US} {PERIOD_US}"}}
    assert board.step(1.0, 20.0).util == pytest.approx(0.5)
    manager.set_demand(0.0, 1.0)
    assert manager.readback()["cgroup"]["cpu.max"] == f"{MIN_QUOTA_US} {PERIOD_US}"
    manager.set_demand(MAX_W, 2.0)
    assert manager.readback()["cgroup"]["cpu.max"] == f"max {PERIOD_US}"


def test_cgroup_v1_writes_cfs_quota_us(tmp_path: Path) -> None:
    board, cfg = make_board(tmp_path, rapl=False, cgroup="v1")
    shutil.rmtree(tmp_path / "devices/system/cpu/cpufreq")
    manager = PowerManager(cfg)
    quota_file = tmp_path / "fs/cgroup/cpu/qrad-jobs/cpu.cfs_quota_us"
    manager.set_demand(demand_for(0.25), 0.0)
    assert quota_file.read_text().strip() == str(4 * PERIOD_US)
    assert board.step(1.0, 20.0).util == pytest.approx(0.25)
    manager.set_demand(0.0, 1.0)
    assert quota_file.read_text().strip() == str(MIN_QUOTA_US)
    manager.set_demand(MAX_W, 2.0)
    assert quota_file.read_text().strip() == "-1"
    assert board.step(1.0, 20.0).util == 1.0


# --- set_demand --------------------------------------------------------------------------------------


def test_level_zero_is_every_minimum_and_level_one_every_maximum(tmp_path: Path) -> None:
    board, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    manager.set_demand(0.0, 0.0)
    state = manager.readback()
    assert set(state["cpufreq"].values()) == {800_000}  # cpuinfo_min_freq = smallest table entry
    assert state["cgroup"] == {"cpu.max": f"{MIN_QUOTA_US} {PERIOD_US}"}
    low = board.step(1.0, 20.0).power_w
    manager.set_demand(MAX_W, 1.0)
    state = manager.readback()
    assert set(state["cpufreq"].values()) == {2_400_000}
    assert state["cgroup"] == {"cpu.max": f"max {PERIOD_US}"}
    assert set(state["rapl"].values()) == {120_000_000}  # released: no limit below the TDP
    assert board.step(1.0, 20.0).power_w == pytest.approx(MAX_W)
    assert low < IDLE_W + 5


@pytest.mark.parametrize("steps", [1, 5, 16, 27, 32])
def test_intermediate_demand_deals_table_steps_over_policies(tmp_path: Path, steps: int) -> None:
    _, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    manager.set_demand(demand_for(0.2 + 0.8 * steps / 32), 0.0)  # 4 policies x 8 table steps
    per_policy = [(khz - 800_000) // 200_000 for khz in manager.readback()["cpufreq"].values()]
    assert sum(per_policy) == steps
    assert max(per_policy) - min(per_policy) <= 1
    assert manager.readback()["cgroup"]["cpu.max"] == f"max {PERIOD_US}"


def test_policies_with_different_tables_reach_every_step(tmp_path: Path) -> None:
    big = Policy(tmp_path / "policy0", 800_000, 2_400_000, tuple(range(800_000, 2_400_001, 200_000)))
    small = Policy(tmp_path / "policy1", 800_000, 1_000_000, (800_000, 1_000_000))
    actuator = CpufreqActuator([big, small])
    assert actuator.steps == 9
    assert actuator.targets_khz(1.0) == [2_400_000, 1_000_000]
    for budget in range(10):
        khz = actuator.targets_khz(budget / 9)
        assert big.table_khz.index(khz[0]) + small.table_khz.index(khz[1]) == budget


# --- RAPL energy meter -------------------------------------------------------------------------------


@pytest.mark.parametrize(("e1", "e2", "top", "delta"), [
    (10, 30, 100, 20),
    (30, 30, 100, 0),
    (90, 5, 100, 16),  # 90 -> 100 is 10, 100 -> 0 is 1 (modulus top + 1), 0 -> 5 is 5
    (100, 0, 100, 1),
    (0, 100, 100, 100),
])
def test_energy_delta_uj(e1: int, e2: int, top: int, delta: int) -> None:
    assert energy_delta_uj(e1, e2, top) == delta


def test_rapl_power_from_the_third_read(tmp_path: Path) -> None:
    """The first read's phase against the counter updates is unknown: the first change seen anchors."""
    board, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    manager.set_demand(300.0, 0.0)
    assert manager.measure(0.0) is None
    board.step(10.0, 20.0)
    assert manager.measure(10.0) is None
    step = board.step(10.0, 20.0)
    assert manager.measure(20.0) == pytest.approx(step.power_w, rel=0.01)
    assert step.power_w > 200


def test_rapl_power_across_counter_wraps(tmp_path: Path) -> None:
    board, cfg = make_board(tmp_path, max_energy_range_uj=1_000_000)
    zones = discover_zones(tmp_path)
    meter = RaplEnergyMeter(zones)
    manager = PowerManager(cfg)
    manager.set_demand(400.0, 0.0)
    t, dt = 0.0, 0.004  # ~90 W a package: 0.36 J a step, the 1 J counter wraps every third step
    for _ in range(2):  # the first read, then the first change seen: the anchor
        meter.sample(t)
        manager.measure(t)
        board.step(dt, 20.0)
        t += dt
    meter.sample(t)
    manager.measure(t)
    wraps = 0
    for _ in range(30):
        before = [int((z.path / "energy_uj").read_text()) for z in zones]
        step = board.step(dt, 20.0)
        t += dt
        after = [int((z.path / "energy_uj").read_text()) for z in zones]
        wraps += sum(a < b for a, b in zip(after, before))
        assert meter.sample(t) == pytest.approx(sum(step.package_power_w), rel=0.01)
        assert manager.measure(t) == pytest.approx(step.power_w, rel=0.01)
    assert wraps >= 20


def test_a_short_interval_after_a_counter_update_is_not_a_multiple_of_the_power(tmp_path: Path) -> None:
    """The 5688 W on a 500 W heater after an autotune abort: the simulator updates the RAPL counters once
    per 10 s step; the step test sampled every 10 s, then the thermostat's step 1 s later read a whole
    step's energy over 1 s. The meter leaves such a short interval unevaluated and covers it by the next."""
    board, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    manager.set_demand(cfg.max_w, 0.0)
    t, powers = 0.0, []
    manager.measure(t)
    for _ in range(6):  # the step test: a sample every 10 s, the counters move every 10 s
        powers.append(board.step(10.0, 20.0).power_w)
        t += 10.0
        manager.measure(t)
    last_w = manager.measured_w
    powers.append(board.step(10.0, 20.0).power_w)  # the simulator steps ...
    assert manager.measure(t + 1.0) is None  # ... and the thermostat samples 1 s after the test's last
    assert manager.measured_w == last_w and manager.measured_w <= 1.5 * cfg.max_w
    powers.append(board.step(10.0, 20.0).power_w)
    assert manager.measure(t + 20.0) == pytest.approx(powers[-1], rel=0.01)  # its next covers both steps


def test_a_sampler_faster_than_the_counter_updates_reads_the_mean_between_updates(tmp_path: Path) -> None:
    """A 1 s control period on a simulator stepping every 10 s: no 0 W, then 10x, but the step's power."""
    board, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    manager.set_demand(cfg.max_w, 0.0)
    t = 0.0
    manager.measure(t)
    for _ in range(5):
        power_w = board.step(10.0, 20.0).power_w
        for k in range(10):  # ten samples a step: the counters moved before the first of them
            reading = manager.measure(t + 1.0 + k)
            assert reading is None or reading == pytest.approx(power_w, rel=0.11)
        t += 10.0
    assert manager.measured_w == pytest.approx(power_w, rel=0.11)


# --- learning ----------------------------------------------------------------------------------------

DEMANDS_W = (80.0, 120.0, 250.0, 400.0)


def within(measured_w: float, demand_w: float) -> bool:
    return abs(measured_w - demand_w) <= max(0.05 * demand_w, 10.0)


def delivered_w(board: Board, manager: PowerManager, demand_w: float, t: float,
                n: int) -> tuple[list[float], float]:
    """Closed loop for ``n`` steps of 10 s at ``demand_w``; (board power of the last 4 steps, t)."""
    powers = []
    for _ in range(n):
        manager.set_demand(demand_w, t)
        powers.append(board.step(10.0, 20.0).power_w)
        t += 10.0
        manager.measure(t)
    return powers[-4:], t


def test_learned_curve_delivers_the_demand(tmp_path: Path) -> None:
    board, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    prior = {d: delivered_w(board, PowerManager(cfg), d, 0.0, 1)[0] for d in DEMANDS_W}
    t = 0.0
    manager.measure(t)
    for _ in range(2):
        for demand in DEMANDS_W:
            _, t = delivered_w(board, manager, demand, t, 50)
    learned = {}
    for demand in DEMANDS_W:
        learned[demand], t = delivered_w(board, manager, demand, t, 8)
    # every step, not a mean: dithering between two far-apart powers must not pass
    assert all(within(w, d) for d in DEMANDS_W for w in learned[d]), learned
    assert not all(within(w, d) for d in DEMANDS_W for w in prior[d]), prior
    assert list(manager.curve.watts) == sorted(manager.curve.watts)


# --- refused writes ----------------------------------------------------------------------------------


def test_einval_drops_cpufreq_once_and_rapl_takes_over(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    refused = policy_dir(tmp_path, 0) / "scaling_max_freq"
    refuse_with_einval(refused)
    with capture_logs() as logs:
        manager.set_demand(250.0, 0.0)
    errors = errors_of(logs)
    assert len(errors) == 1
    assert errors[0]["interface"] == "cpufreq"
    assert str(refused) in errors[0]["error"] and "EINVAL" in errors[0]["error"]
    assert manager.chain_names() == ["rapl", "cgroup"]
    low = manager.readback()["rapl"]
    with capture_logs() as logs:
        manager.set_demand(400.0, 1.0)
    assert errors_of(logs) == []
    high = manager.readback()["rapl"]
    assert all(high[z] > low[z] for z in high)
    assert "cpufreq" in manager.status()["failed"]


def test_dropped_cpufreq_no_longer_caps_the_policies_it_could_write(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    refuse_with_einval(policy_dir(tmp_path, 2) / "scaling_max_freq")
    manager.set_demand(200.0, 0.0)
    assert manager.chain_names() == ["rapl", "cgroup"]
    for n in (0, 1, 3):
        assert (policy_dir(tmp_path, n) / "scaling_max_freq").read_text().strip() == "2400000"


@contextlib.contextmanager
def as_unprivileged() -> Iterator[None]:
    """Run the block without root's right to write read-only files (skip if that cannot be arranged)."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(NOBODY)
    except OSError as exc:
        pytest.skip(f"seteuid({NOBODY}) failed: {exc}")
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A tree that an unprivileged euid can reach (tmp_path's parents are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="qrad-power-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_eacces_on_rapl_limit_falls_back_to_the_quota(shared_root: Path) -> None:
    _, cfg = make_board(shared_root)
    cfg = cfg.model_copy(update={"interfaces": ["rapl", "cgroup"]})
    manager = PowerManager(cfg)
    if os.geteuid() == 0:
        for dirpath, _, files in os.walk(shared_root):
            os.chown(dirpath, NOBODY, NOBODY)
            for name in files:
                os.chown(os.path.join(dirpath, name), NOBODY, NOBODY, follow_symlinks=False)
    limit = zone_dir(shared_root, 1) / "constraint_0_power_limit_uw"
    limit.chmod(0o444)
    with capture_logs() as logs, as_unprivileged():
        manager.set_demand(demand_for(0.5), 0.0)
    errors = errors_of(logs)
    assert len(errors) == 1 and "EACCES" in errors[0]["error"] and str(limit) in errors[0]["error"]
    assert manager.chain_names() == ["cgroup"]
    assert manager.readback()["cgroup"]["cpu.max"] == f"{8 * PERIOD_US} {PERIOD_US}"


def test_missing_rapl_limit_file_falls_back_to_the_quota(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path)
    cfg = cfg.model_copy(update={"interfaces": ["rapl", "cgroup"]})
    manager = PowerManager(cfg)
    missing = zone_dir(tmp_path, 0) / "constraint_0_power_limit_uw"
    missing.unlink()
    with capture_logs() as logs:
        manager.set_demand(demand_for(0.25), 0.0)
    errors = errors_of(logs)
    assert len(errors) == 1 and "ENOENT" in errors[0]["error"] and str(missing) in errors[0]["error"]
    assert manager.chain_names() == ["cgroup"]
    assert manager.readback()["cgroup"]["cpu.max"] == f"{4 * PERIOD_US} {PERIOD_US}"


# --- force_minimum -----------------------------------------------------------------------------------


def test_force_minimum_never_raises_when_every_interface_refuses(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    for n in range(4):
        refuse_with_einval(policy_dir(tmp_path, n) / "scaling_max_freq")
        (zone_dir(tmp_path, n) / "constraint_0_power_limit_uw").unlink()
    cpu_max = tmp_path / "fs/cgroup/qrad-jobs/cpu.max"
    cpu_max.unlink()
    cpu_max.mkdir()  # EISDIR on open for writing
    with capture_logs() as logs:
        manager.force_minimum("test: overheat")
    failed = {entry["interface"] for entry in errors_of(logs)}
    assert failed == {"cpufreq", "rapl", "cgroup"}
    assert manager.level == 0.0 and manager.forced_reason == "test: overheat"


def test_force_minimum_reaches_every_file_that_still_works(tmp_path: Path) -> None:
    _, cfg = make_board(tmp_path)
    manager = PowerManager(cfg)
    manager.set_demand(MAX_W, 0.0)
    refuse_with_einval(policy_dir(tmp_path, 0) / "scaling_max_freq")
    (zone_dir(tmp_path, 0) / "constraint_0_power_limit_uw").unlink()
    manager.force_minimum("test: smoke")
    for n in (1, 2, 3):
        assert (policy_dir(tmp_path, n) / "scaling_max_freq").read_text().strip() == "800000"
        assert (zone_dir(tmp_path, n) / "constraint_0_power_limit_uw").read_text().strip() == "5000000"
    assert (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").read_text().strip() == f"{MIN_QUOTA_US} {PERIOD_US}"


# --- PowerCurve --------------------------------------------------------------------------------------

increments = st.lists(st.floats(0.5, 200.0), min_size=16, max_size=16)


def curve_from(idle_w: float, steps_w: list[float]) -> PowerCurve:
    curve = PowerCurve(idle_w, idle_w + sum(steps_w))
    curve.restore({"watts": [idle_w + sum(steps_w[:i]) for i in range(17)], "samples": 1})
    return curve


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 100.0), increments, st.floats(0.0, 1.0))
def test_level_for_inverts_power_w(idle_w: float, steps_w: list[float], level: float) -> None:
    curve = curve_from(idle_w, steps_w)
    assert curve.level_for(curve.power_w(level)) == pytest.approx(level, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 2000.0)), min_size=1, max_size=40))
def test_learning_keeps_the_curve_non_decreasing(samples: list[tuple[float, float]]) -> None:
    curve = PowerCurve(IDLE_W, MAX_W)
    for level, measured_w in samples:
        curve.learn(level, measured_w)
        assert all(b >= a for a, b in zip(curve.watts, curve.watts[1:]))
    assert curve.samples == len(samples)


def test_learning_moves_the_curve_towards_the_measurement() -> None:
    curve = PowerCurve(IDLE_W, MAX_W, learning_rate=0.5)
    before = curve.power_w(0.5)
    curve.learn(0.5, 200.0)
    assert 200.0 < curve.power_w(0.5) < before


def test_restore_refuses_wrong_sizes_and_non_finite_values() -> None:
    curve = PowerCurve(IDLE_W, MAX_W)
    prior = list(curve.watts)
    curve.restore({"watts": [1.0] * 16, "samples": 5})
    curve.restore({"watts": prior[:-1] + [math.nan], "samples": 5})
    curve.restore({"watts": prior[:-1] + [math.inf], "samples": 5})
    assert list(curve.watts) == prior and curve.samples == 0
    curve.restore({"watts": [60.0 + i for i in range(16)] + [10.0], "samples": 7})
    assert curve.samples == 7 and curve.watts[-1] == 75.0  # made non-decreasing


def test_level_for_clamps_outside_the_curve() -> None:
    curve = PowerCurve(IDLE_W, MAX_W)
    assert curve.level_for(0.0) == 0.0
    assert curve.level_for(10_000.0) == 1.0
    assert curve.level_for(demand_for(0.3)) == pytest.approx(0.3)
