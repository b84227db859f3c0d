"""Simulated RAPL package zones under ``class/powercap`` (intel-rapl), as Linux lays them out.

``class/powercap/intel-rapl/enabled`` for the control type, and ``class/powercap/intel-rapl:N/`` per
package (name "package-N"): energy_uj (cumulative µJ, wrapping to 0 past max_energy_range_uj, so the
modulus is max_energy_range_uj + 1), constraint_0 "long_term" and constraint_1 "short_term" limits in
µW (kernel Documentation/power/powercap/powercap.rst; /work/shared/notes/protocols.md).
Only constraint_0 is enforced (the long-term average is what heats the room); a zone or control type
whose ``enabled`` reads 0 enforces nothing. Defaults: 28 s long-term and 2.44 ms short-term windows,
typical of Intel server parts.
"""

from __future__ import annotations

from pathlib import Path

from .sysfs_io import read_int, publish_text, write_files

LONG_TERM_WINDOW_US = 27_983_872
SHORT_TERM_WINDOW_US = 2_440


class RaplZone:
    """One ``intel-rapl:N`` package zone."""

    def __init__(self, sys_root: Path, index: int, tdp_w: float, max_energy_range_uj: int,
                 initial_energy_uj: int = 0) -> None:
        self.control_dir = sys_root / "class/powercap/intel-rapl"
        self.dir = sys_root / "class/powercap" / f"intel-rapl:{index}"
        self.max_energy_range_uj = int(max_energy_range_uj)
        self._energy_uj = float(initial_energy_uj % (self.max_energy_range_uj + 1))
        self._limit_path = self.dir / "constraint_0_power_limit_uw"
        self._enabled_path = self.dir / "enabled"
        self._control_enabled_path = self.control_dir / "enabled"
        self._energy_path = self.dir / "energy_uj"
        tdp_uw = int(tdp_w * 1e6)
        self._limit_uw = tdp_uw
        self._enabled = 1
        self._control_enabled = 1
        write_files(self.control_dir, {"enabled": 1})
        write_files(self.dir, {
            "name": f"package-{index}", "enabled": 1,
            "energy_uj": int(self._energy_uj), "max_energy_range_uj": self.max_energy_range_uj,
            "constraint_0_name": "long_term", "constraint_0_power_limit_uw": tdp_uw,
            "constraint_0_max_power_uw": tdp_uw, "constraint_0_time_window_us": LONG_TERM_WINDOW_US,
            "constraint_1_name": "short_term", "constraint_1_power_limit_uw": int(tdp_uw * 1.2),
            "constraint_1_max_power_uw": int(tdp_uw * 1.2),
            "constraint_1_time_window_us": SHORT_TERM_WINDOW_US,
        })

    def cap_w(self) -> float | None:
        """Enforced long-term limit, W, or None when disabled (garbage keeps the last value)."""
        self._limit_uw = read_int(self._limit_path, self._limit_uw)
        self._enabled = read_int(self._enabled_path, self._enabled)
        self._control_enabled = read_int(self._control_enabled_path, self._control_enabled)
        if not (self._enabled and self._control_enabled):
            return None
        return max(0, self._limit_uw) / 1e6

    def add_energy(self, power_w: float, dt_s: float) -> int:
        """Accumulate ``power_w`` over ``dt_s`` s, wrap, write energy_uj; return the new count, µJ."""
        self._energy_uj = (self._energy_uj + power_w * dt_s * 1e6) % (self.max_energy_range_uj + 1)
        value = int(self._energy_uj)
        publish_text(self._energy_path, str(value))
        return value
