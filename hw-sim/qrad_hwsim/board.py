"""A compute module ("board") of the heater: CPU packages seen through a real sysfs tree.

Everything the agent touches is a plain file under ``sys_root`` (the directory standing for /sys):
cpufreq policies (cpufreq.py), RAPL zones (rapl.py), coretemp hwmon devices (hwmon.py) and the
jobs' CPU cgroup (cgroup.py). Each ``step`` reads the limits the agent wrote, computes every
package's frequency and power (power.py), then publishes the readings.

Electrical power = platform overhead (PSU loss, memory, fans, board; always drawn) + the sum of the
package powers. Every watt of it ends up as heat in the room.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cgroup import JobCgroup
from .cpufreq import CpufreqPolicy, FreqTable
from .hwmon import CoretempDevice
from .power import PackagePowerModel
from .rapl import RaplZone

TYPICAL_MAX_ENERGY_RANGE_UJ = 262_143_328_850  # 2^32 x 61 µJ, protocols.md


@dataclass(frozen=True)
class BoardSpec:
    """What the board is (counts, kHz, W, V, K/W, s).

    Default: 4 packages x 4 cores, 800 000..2 400 000 kHz in 200 000 kHz steps, base 2 000 000 kHz;
    5 W package floor, 112.5 W dynamic per package at full load and top frequency, 30 W platform
    overhead: 500 W flat out, 50 W idle (power.py explains the choice). CPU thermal path: 0.45 K/W
    package-to-air, 20 s time constant (typical of a heatsink in a fan-assisted radiator; chosen).
    """

    n_packages: int = 4
    cores_per_package: int = 4
    f_min_khz: int = 800_000
    f_max_khz: int = 2_400_000
    f_step_khz: int = 200_000
    f_nominal_khz: int = 2_000_000
    freq_list: bool = True
    rapl: bool = True
    cgroup: str | None = "v2"
    max_energy_range_uj: int = TYPICAL_MAX_ENERGY_RANGE_UJ
    p_idle_pkg_w: float = 5.0
    p_dyn_pkg_max_w: float = 112.5
    platform_overhead_w: float = 30.0
    v_min_v: float = 0.75
    v_max_v: float = 1.2
    tdp_pkg_w: float = 120.0
    r_th_k_w: float = 0.45
    tau_cpu_s: float = 20.0

    @property
    def n_cores_total(self) -> int:
        """Cores on the board."""
        return self.n_packages * self.cores_per_package

    def power_model(self) -> PackagePowerModel:
        """The per-package power model this spec describes."""
        return PackagePowerModel(self.cores_per_package, self.f_min_khz, self.f_max_khz,
                                 self.p_idle_pkg_w, self.p_dyn_pkg_max_w, self.v_min_v, self.v_max_v)


@dataclass(frozen=True)
class BoardStep:
    """Result of one board step: W, kHz, core-equivalents, °C (tuples: one entry per package).

    ``compute_core_equiv`` = sum over cores of util x f_eff / f_nominal: the paid work rate in
    cores at base frequency.
    """

    power_w: float
    package_power_w: tuple[float, ...]
    package_freq_khz: tuple[float, ...]
    util: float
    compute_core_equiv: float
    cpu_temp_c: tuple[float, ...]


class Board:
    """The simulated board; creates its sysfs files under ``sys_root`` on construction."""

    def __init__(self, sys_root: Path, spec: BoardSpec, air_c: float = 20.0,
                 rng: np.random.Generator | None = None) -> None:
        self.spec = spec
        self.root = Path(sys_root)
        self.model = spec.power_model()
        rng = rng if rng is not None else np.random.default_rng(0)
        table = FreqTable(spec.f_min_khz, spec.f_max_khz, spec.f_step_khz, spec.freq_list)
        n = spec.cores_per_package
        self.policies = [CpufreqPolicy(self.root, p, list(range(p * n, (p + 1) * n)), table)
                         for p in range(spec.n_packages)]
        online = f"0-{spec.n_cores_total - 1}"
        for name in ("online", "present", "possible"):
            (self.root / "devices/system/cpu" / name).write_text(online + "\n")
        self.zones = [RaplZone(self.root, p, spec.tdp_pkg_w, spec.max_energy_range_uj,
                               int(rng.integers(0, spec.max_energy_range_uj)))
                      for p in range(spec.n_packages)] if spec.rapl else []
        start_c = air_c + spec.r_th_k_w * spec.p_idle_pkg_w
        self.cpu_temp_c = [start_c] * spec.n_packages
        self.r_th_k_w = spec.r_th_k_w  # package-to-air now: the heater raises it when its cooling fails
        self.coretemps = [CoretempDevice(self.root, p, n, start_c) for p in range(spec.n_packages)]
        self.cgroup = JobCgroup(self.root, spec.cgroup, spec.n_cores_total) if spec.cgroup else None
        self.package_loads: Callable[[], list[float]] | None = None
        """Per-package dynamic-power fraction (0..1) when jobs differ per package (job_energy.py)."""

    def _package(self, index: int, util: float) -> tuple[float, float]:
        """(frequency kHz, power W) of package ``index`` under the agent's current limits."""
        f_khz = float(self.policies[index].requested_khz())
        cap_w = self.zones[index].cap_w() if self.zones else None
        f_khz = self.model.throttled_khz(f_khz, util, cap_w)
        return f_khz, self.model.power_w(f_khz, util)

    def step(self, dt_s: float, air_c: float) -> BoardStep:
        """Advance ``dt_s`` s with the room air at ``air_c`` °C; read limits, publish readings."""
        spec = self.spec
        util = self.cgroup.util() if self.cgroup else 1.0
        loads = self.package_loads() if self.package_loads is not None else [util] * spec.n_packages
        freqs, powers = zip(*(self._package(p, loads[p]) for p in range(spec.n_packages)), strict=True)
        decay = math.exp(-dt_s / spec.tau_cpu_s) if spec.tau_cpu_s > 0 else 0.0
        for p, (f_khz, p_w) in enumerate(zip(freqs, powers, strict=True)):
            target_c = air_c + self.r_th_k_w * p_w
            self.cpu_temp_c[p] = target_c + (self.cpu_temp_c[p] - target_c) * decay
            self.policies[p].publish_cur_khz(f_khz)
            self.coretemps[p].publish(self.cpu_temp_c[p])
            if self.zones:
                self.zones[p].add_energy(p_w, dt_s)
        if self.package_loads is not None:
            self.cgroup.account(util, dt_s, freqs)  # type: ignore[union-attr, call-arg]
        elif self.cgroup:
            self.cgroup.account(util, dt_s)
        core_equiv = sum(util * spec.cores_per_package * f / spec.f_nominal_khz for f in freqs)
        return BoardStep(
            power_w=spec.platform_overhead_w + sum(powers),
            package_power_w=tuple(powers),
            package_freq_khz=tuple(freqs),
            util=util,
            compute_core_equiv=core_equiv,
            cpu_temp_c=tuple(self.cpu_temp_c),
        )
