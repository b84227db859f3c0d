"""cpufreq P-state actuator: caps ``scaling_max_freq`` on every policy.

Source: kernel Documentation/admin-guide/pm/cpufreq.rst, "Policy Interface in sysfs". Frequencies are in
kHz. Drivers with a frequency table (acpi-cpufreq) list ``scaling_available_frequencies``; intel_pstate and
amd-pstate (active mode) have no list, and any value between ``cpuinfo_min_freq`` and ``cpuinfo_max_freq``
is accepted. To lower both limits write min first; we only move the max, which stays >= scaling_min_freq
as long as it stays >= cpuinfo_min_freq (the driver clamps scaling_min_freq to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qrad_agent.errors import ActuatorError
from qrad_agent.power.sysfs import read_int, read_text, write_text


@dataclass(frozen=True)
class Policy:
    """One cpufreq policy: its directory and the frequencies (kHz, ascending) it can run at."""

    path: Path
    min_khz: int
    max_khz: int
    table_khz: tuple[int, ...]  # empty when the driver has no frequency table


def discover_policies(sysfs_root: Path) -> list[Policy]:
    """Every ``policyN`` under ``<sysfs_root>/devices/system/cpu/cpufreq``, by N. Raises ActuatorError."""
    base = sysfs_root / "devices" / "system" / "cpu" / "cpufreq"
    policies = []
    for path in sorted(base.glob("policy*"), key=lambda p: int(p.name[6:] or 0)):
        table: tuple[int, ...] = ()
        listing = path / "scaling_available_frequencies"
        if listing.exists():
            table = tuple(sorted(int(f) for f in read_text(listing).split()))
        low, high = read_int(path / "cpuinfo_min_freq"), read_int(path / "cpuinfo_max_freq")
        policies.append(Policy(path, low, high, table))
    return policies


class CpufreqActuator:
    """Sets a power level in [0, 1] as P-state caps spread over the policies.

    With frequency tables, level 0 puts every policy at its lowest frequency and level 1 at its highest;
    in between, the ``n_policies * (n_steps - 1)`` table steps are dealt out one policy at a time, so four
    policies of nine frequencies give 32 distinct heat levels. Without a table the cap is interpolated
    linearly in kHz between cpuinfo_min_freq and cpuinfo_max_freq on all policies.
    """

    name = "cpufreq"

    def __init__(self, policies: list[Policy]) -> None:
        if not policies:
            raise ActuatorError("no cpufreq policy found")
        self.policies = policies

    @property
    def steps(self) -> int:
        """Distinct settings above the minimum (0 = continuous)."""
        if all(p.table_khz for p in self.policies):
            return sum(len(p.table_khz) - 1 for p in self.policies)
        return 0

    def targets_khz(self, level: float) -> list[int]:
        """The scaling_max_freq (kHz) each policy gets for ``level`` in [0, 1]."""
        level = min(1.0, max(0.0, level))
        if not self.steps:
            return [round(p.min_khz + level * (p.max_khz - p.min_khz)) for p in self.policies]
        budget = round(level * self.steps)
        shares = [0] * len(self.policies)
        # smallest tables first, so a policy that cannot take its share leaves it to the larger ones
        order = sorted(range(len(self.policies)), key=lambda i: len(self.policies[i].table_khz))
        for rank, index in enumerate(order):
            remaining = len(order) - rank
            shares[index] = min(len(self.policies[index].table_khz) - 1, -(-budget // remaining))
            budget -= shares[index]
        return [p.table_khz[share] for p, share in zip(self.policies, shares)]

    def apply(self, level: float) -> None:
        """Write the caps for ``level`` on every policy, even past one that refuses (so the minimum
        reaches all the others); then raises ActuatorError naming the first path that refused."""
        errors = []
        for policy, khz in zip(self.policies, self.targets_khz(level)):
            try:
                write_text(policy.path / "scaling_max_freq", str(khz))
            except ActuatorError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def release(self) -> None:
        """Remove the cap (every policy at its highest frequency)."""
        self.apply(1.0)

    def expected(self, level: float) -> dict[str, int]:
        """What `readback` must show after ``apply(level)``."""
        return {p.path.name: khz for p, khz in zip(self.policies, self.targets_khz(level))}

    def readback(self) -> dict[str, int]:
        """Applied ``scaling_max_freq`` per policy (kHz), read back from sysfs."""
        return {p.path.name: read_int(p.path / "scaling_max_freq") for p in self.policies}
