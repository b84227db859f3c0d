"""Board: the sysfs tree, and how the agent's writes (frequency, RAPL cap, quota) move the power."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_hwsim.board import Board, BoardSpec

CPUFREQ = "devices/system/cpu/cpufreq"


def policy(root: Path, n: int) -> Path:
    return root / CPUFREQ / f"policy{n}"


def write_all_policies(root: Path, name: str, value: object, n: int = 4) -> None:
    for p in range(n):
        (policy(root, p) / name).write_text(f"{value}\n")


def write_all_zones(root: Path, name: str, value: object, n: int = 4) -> None:
    for p in range(n):
        (root / f"class/powercap/intel-rapl:{p}" / name).write_text(f"{value}\n")


def read_int(path: Path) -> int:
    return int(path.read_text())


def test_tree_layout(tmp_path: Path) -> None:
    Board(tmp_path, BoardSpec())
    pol = policy(tmp_path, 3)
    assert read_int(pol / "cpuinfo_max_freq") == 2_400_000
    assert read_int(pol / "cpuinfo_min_freq") == 800_000
    assert (pol / "scaling_driver").read_text().strip() == "acpi-cpufreq"
    assert (pol / "affected_cpus").read_text().split() == ["12", "13", "14", "15"]
    freqs = [int(f) for f in (pol / "scaling_available_frequencies").read_text().split()]
    assert freqs == list(range(2_400_000, 799_999, -200_000))
    assert (tmp_path / "devices/system/cpu/cpu13/cpufreq/scaling_max_freq").exists()
    zone = tmp_path / "class/powercap/intel-rapl:2"
    assert (zone / "name").read_text().strip() == "package-2"
    assert (zone / "constraint_0_name").read_text().strip() == "long_term"
    assert (zone / "constraint_1_name").read_text().strip() == "short_term"
    assert (tmp_path / "class/powercap/intel-rapl/enabled").read_text().strip() == "1"
    for k in range(4):
        hwmon = tmp_path / f"class/hwmon/hwmon{k}"
        assert (hwmon / "name").read_text().strip() == "coretemp"
        assert (hwmon / "temp1_label").read_text().strip() == f"Package id {k}"
        temp_mc = read_int(hwmon / "temp1_input")
        assert read_int(hwmon / "temp1_crit") > read_int(hwmon / "temp1_max") > temp_mc > 0
    assert (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").read_text().strip() == "max 100000"


def test_full_load_and_idle_power(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    full = board.step(10.0, 20.0)
    assert full.power_w == pytest.approx(500.0)
    assert full.compute_core_equiv == pytest.approx(16 * 2.4 / 2.0)
    assert read_int(policy(tmp_path, 0) / "scaling_cur_freq") == 2_400_000
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("1000 100000\n")
    idle = board.step(10.0, 20.0)  # the smallest quota the kernel takes: 1 ms per 100 ms
    assert 40.0 <= idle.power_w <= 60.0
    assert idle.compute_core_equiv == pytest.approx(19.2 * 1000 / 1_600_000)


def test_lower_scaling_max_freq_lowers_power_snapped_to_table(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    full_w = board.step(10.0, 20.0).power_w
    write_all_policies(tmp_path, "scaling_max_freq", 1_900_000)
    step = board.step(10.0, 20.0)
    assert step.package_freq_khz == (1_800_000,) * 4
    assert read_int(policy(tmp_path, 1) / "scaling_cur_freq") == 1_800_000
    assert step.power_w < full_w
    write_all_policies(tmp_path, "scaling_max_freq", 800_000)
    assert board.step(10.0, 20.0).power_w < step.power_w


def test_rapl_cap_throttles(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    write_all_zones(tmp_path, "constraint_0_power_limit_uw", 60_000_000)
    step = board.step(10.0, 20.0)
    assert all(p == pytest.approx(60.0, abs=0.01) for p in step.package_power_w)
    assert all(800_000 < f < 2_400_000 for f in step.package_freq_khz)
    assert read_int(policy(tmp_path, 0) / "scaling_cur_freq") < 2_400_000


def test_rapl_cap_never_goes_below_min_freq(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    write_all_zones(tmp_path, "constraint_0_power_limit_uw", 1_000_000)
    step = board.step(10.0, 20.0)
    min_power_w = board.model.power_w(800_000, 1.0)
    assert step.package_freq_khz == (800_000,) * 4
    assert step.package_power_w == pytest.approx((min_power_w,) * 4)


def test_rapl_disabled_zone_does_not_cap(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    write_all_zones(tmp_path, "constraint_0_power_limit_uw", 60_000_000)
    write_all_zones(tmp_path, "enabled", 0)
    assert board.step(10.0, 20.0).power_w == pytest.approx(500.0)


def test_quota_reduces_util_and_power_v2(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("800000 100000\n")
    step = board.step(10.0, 20.0)
    assert step.util == pytest.approx(0.5)
    assert step.power_w == pytest.approx(30.0 + 4 * (5.0 + 0.5 * 112.5))
    assert step.compute_core_equiv == pytest.approx(0.5 * 19.2)
    stat_text = (tmp_path / "fs/cgroup/qrad-jobs/cpu.stat").read_text()
    usage = dict(line.split() for line in stat_text.splitlines())
    assert int(usage["usage_usec"]) == 80_000_000  # 8 cores busy for 10 s
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("max 100000\n")
    assert board.step(10.0, 20.0).util == 1.0


@pytest.mark.parametrize("refused", ["0 100000", "500 100000", "50000 999", "50000 2000000", "-5", "max x"])
def test_quota_the_kernel_refuses_keeps_the_previous(tmp_path: Path, refused: str) -> None:
    board = Board(tmp_path, BoardSpec())
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("400000 100000\n")
    assert board.step(10.0, 20.0).util == pytest.approx(0.25)
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text(refused + "\n")
    assert board.step(10.0, 20.0).util == pytest.approx(0.25)


def test_quota_v1(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec(cgroup="v1"))
    folder = tmp_path / "fs/cgroup/cpu/qrad-jobs"
    assert read_int(folder / "cpu.cfs_quota_us") == -1
    assert read_int(folder / "cpu.cfs_period_us") == 100_000
    (folder / "cpu.cfs_quota_us").write_text("400000\n")
    assert board.step(10.0, 20.0).util == pytest.approx(0.25)
    (folder / "cpu.cfs_quota_us").write_text("10\n")  # below 1000 µs: refused
    assert board.step(10.0, 20.0).util == pytest.approx(0.25)
    (folder / "cpu.cfs_quota_us").write_text("-1\n")
    assert board.step(10.0, 20.0).util == 1.0


def test_no_cgroup_no_rapl_variant(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec(rapl=False, cgroup=None))
    assert not (tmp_path / "class/powercap").exists()
    assert not (tmp_path / "fs").exists()
    assert board.step(10.0, 20.0).power_w == pytest.approx(500.0)


def test_intel_pstate_has_no_list_and_any_frequency(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec(freq_list=False))
    assert not (policy(tmp_path, 0) / "scaling_available_frequencies").exists()
    assert (policy(tmp_path, 0) / "scaling_driver").read_text().strip() == "intel_pstate"
    write_all_policies(tmp_path, "scaling_max_freq", 1_900_000)
    assert board.step(10.0, 20.0).package_freq_khz == (1_900_000,) * 4
    write_all_policies(tmp_path, "scaling_max_freq", 100)
    assert board.step(10.0, 20.0).package_freq_khz == (800_000,) * 4


def test_energy_wraps_and_agent_delta_gives_power(tmp_path: Path) -> None:
    max_range_uj = 2_000_000_000  # 2 kJ: one 117.5 W package wraps every 17 s
    board = Board(tmp_path, BoardSpec(max_energy_range_uj=max_range_uj))
    zone = tmp_path / "class/powercap/intel-rapl:0"
    assert read_int(zone / "max_energy_range_uj") == max_range_uj
    wraps = 0
    for _ in range(10):
        e1 = read_int(zone / "energy_uj")
        step = board.step(10.0, 20.0)
        e2 = read_int(zone / "energy_uj")
        assert 0 <= e2 <= max_range_uj
        delta_uj = e2 - e1
        if delta_uj < 0:
            wraps += 1
            delta_uj += max_range_uj + 1
        assert delta_uj / 1e6 / 10.0 == pytest.approx(step.package_power_w[0], abs=1e-5)
    assert wraps >= 3


def test_garbage_keeps_previous_values(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec())
    write_all_policies(tmp_path, "scaling_max_freq", 1_600_000)
    write_all_zones(tmp_path, "constraint_0_power_limit_uw", 100_000_000)
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("1600000 100000\n")
    before = board.step(10.0, 20.0)
    write_all_policies(tmp_path, "scaling_max_freq", "banana")
    write_all_zones(tmp_path, "constraint_0_power_limit_uw", "")
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("lots 12 x\n")
    after = board.step(10.0, 20.0)
    assert after.package_freq_khz == before.package_freq_khz == (1_600_000,) * 4
    assert after.power_w == pytest.approx(before.power_w)
    (policy(tmp_path, 0) / "scaling_max_freq").unlink()
    assert board.step(10.0, 20.0).package_freq_khz[0] == 1_600_000


def test_cpu_temperature_follows_power_and_air(tmp_path: Path) -> None:
    board = Board(tmp_path, BoardSpec(), air_c=20.0)
    for _ in range(30):
        step = board.step(10.0, 20.0)
    assert step.cpu_temp_c[0] == pytest.approx(20.0 + 0.45 * 117.5, abs=0.01)
    hwmon = tmp_path / "class/hwmon/hwmon0/temp1_input"
    assert read_int(hwmon) == round(step.cpu_temp_c[0]) * 1000  # coretemp: whole degrees


@settings(max_examples=20, deadline=None)
@given(low=st.integers(0, 3_000_000), high=st.integers(0, 3_000_000))
def test_power_is_monotonic_in_requested_frequency(tmp_path_factory: pytest.TempPathFactory,
                                                   low: int, high: int) -> None:
    low, high = sorted((low, high))
    root = tmp_path_factory.mktemp("board")
    board = Board(root, BoardSpec(n_packages=1))
    table = set(range(800_000, 2_400_001, 200_000))
    write_all_policies(root, "scaling_max_freq", low, n=1)
    slow = board.step(1.0, 20.0)
    write_all_policies(root, "scaling_max_freq", high, n=1)
    fast = board.step(1.0, 20.0)
    assert slow.package_freq_khz[0] in table and fast.package_freq_khz[0] in table
    assert slow.power_w <= fast.power_w
