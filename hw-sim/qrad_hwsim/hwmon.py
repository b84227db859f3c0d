"""hwmon directories under ``class/hwmon`` and the coretemp device of each CPU package.

Layout and units from kernel Documentation/hwmon/sysfs-interface.rst (see protocols.md): one value per
file, temperatures in millidegree Celsius. coretemp shows the package as temp1 ("Package id N") and
each core as temp2.. ("Core k"); here every core reads the package temperature. Like the real
driver, coretemp reports whole degrees (multiples of 1000 m°C).
"""

from __future__ import annotations

from pathlib import Path

from .sysfs_io import PublishedFile, write_files

CORETEMP_MAX_MC = 80_000
CORETEMP_CRIT_MC = 100_000


def allocate_hwmon_dir(sys_root: Path) -> Path:
    """Create and return the first free ``class/hwmon/hwmonK`` (K from 0)."""
    base = sys_root / "class/hwmon"
    base.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        folder = base / f"hwmon{index}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            index += 1


def millidegrees(temp_c: float) -> int:
    """°C to the integer m°C of a hwmon tempN_input file."""
    return int(round(temp_c * 1000.0))


class CoretempDevice:
    """coretemp hwmon device of one package."""

    def __init__(self, sys_root: Path, package: int, n_cores: int, temp_c: float) -> None:
        self.dir = allocate_hwmon_dir(sys_root)
        self.n_cores = n_cores
        files: dict[str, object] = {"name": "coretemp"}
        for channel in range(1, n_cores + 2):
            label = f"Package id {package}" if channel == 1 else f"Core {channel - 2}"
            files |= {f"temp{channel}_label": label,
                      f"temp{channel}_max": CORETEMP_MAX_MC, f"temp{channel}_crit": CORETEMP_CRIT_MC,
                      f"temp{channel}_crit_alarm": 0}
        write_files(self.dir, files)
        self._inputs = [PublishedFile(self.dir / f"temp{c}_input")
                        for c in range(1, n_cores + 2)]
        self.publish(temp_c)

    def publish(self, temp_c: float) -> None:
        """Write the package and core temperatures, °C, rounded to whole degrees."""
        value_mc = int(round(temp_c)) * 1000
        for input_file in self._inputs:
            input_file.publish(value_mc)
