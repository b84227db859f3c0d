"""Simulated cpufreq policy directory, laid out as Linux does under /sys.

``devices/system/cpu/cpufreq/policyN/`` per package, with ``devices/system/cpu/cpuK/cpufreq``
symlinks to the policy of the CPU's package (kernel Documentation/admin-guide/pm/cpufreq.rst, "Policy
Interface in sysfs"; see /work/shared/notes/protocols.md). All frequencies are in kHz.
``scaling_available_frequencies`` (descending, as acpi-cpufreq lists it) exists only for a driver
with a frequency table; intel_pstate has none and accepts any frequency between the limits.

The model ignores the governor and scaling_min_freq: the compute jobs keep the cores busy, so every
governor runs at scaling_max_freq.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .sysfs_io import PublishedFile, read_int, write_files

GOVERNORS = {"acpi-cpufreq": ("schedutil", "conservative ondemand userspace powersave performance schedutil"),
             "intel_pstate": ("powersave", "performance powersave")}


@dataclass(frozen=True)
class FreqTable:
    """Hardware frequency range (kHz); ``listed`` True for a driver with a frequency table."""

    f_min_khz: int
    f_max_khz: int
    f_step_khz: int
    listed: bool

    @property
    def driver(self) -> str:
        """The scaling driver this kind of table belongs to."""
        return "acpi-cpufreq" if self.listed else "intel_pstate"

    def frequencies_khz(self) -> list[int]:
        """Table entries, descending."""
        return list(range(self.f_max_khz, self.f_min_khz - 1, -self.f_step_khz))

    def resolve_khz(self, requested_khz: int) -> int:
        """Frequency run for a scaling_max_freq request: clamped to the hardware range, then, with a
        table, the highest entry not above it (cpufreq relation "L" on the upper limit)."""
        f = max(self.f_min_khz, min(self.f_max_khz, requested_khz))
        if not self.listed:
            return f
        return next((e for e in self.frequencies_khz() if e <= f), self.f_min_khz)


class CpufreqPolicy:
    """One policyN directory; reads the agent's scaling_max_freq, publishes scaling_cur_freq."""

    def __init__(self, sys_root: Path, index: int, cpus: list[int], table: FreqTable) -> None:
        self.table = table
        self.dir = sys_root / "devices/system/cpu/cpufreq" / f"policy{index}"
        self._max_khz = table.f_max_khz
        cpu_list = " ".join(str(c) for c in cpus)
        governor, available = GOVERNORS[table.driver]
        files: dict[str, object] = {
            "cpuinfo_min_freq": table.f_min_khz, "cpuinfo_max_freq": table.f_max_khz,
            "cpuinfo_transition_latency": 10000 if table.listed else 0,
            "scaling_min_freq": table.f_min_khz, "scaling_max_freq": table.f_max_khz,
            "scaling_cur_freq": table.f_max_khz, "scaling_driver": table.driver,
            "scaling_governor": governor, "scaling_available_governors": available,
            "affected_cpus": cpu_list, "related_cpus": cpu_list,
        }
        if table.listed:
            files["scaling_available_frequencies"] = " ".join(str(f) for f in table.frequencies_khz())
        write_files(self.dir, files)
        self._max_path = self.dir / "scaling_max_freq"
        self._cur_file = PublishedFile(self.dir / "scaling_cur_freq", str(table.f_max_khz))
        for cpu in cpus:
            cpu_dir = sys_root / "devices/system/cpu" / f"cpu{cpu}"
            cpu_dir.mkdir(parents=True, exist_ok=True)
            link = cpu_dir / "cpufreq"
            if not link.is_symlink():
                link.symlink_to(Path("../cpufreq") / f"policy{index}")

    def requested_khz(self) -> int:
        """Frequency the policy allows now, kHz (from scaling_max_freq; garbage keeps the last value)."""
        self._max_khz = read_int(self._max_path, self._max_khz)
        return self.table.resolve_khz(self._max_khz)

    def publish_cur_khz(self, f_khz: float) -> None:
        """Write scaling_cur_freq, kHz."""
        self._cur_file.publish(int(round(f_khz)))
