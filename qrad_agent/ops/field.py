"""`identify` (blink the front LED so a technician finds the right heater) and `fire-test` (drive the
alarm path end to end in test mode)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import structlog

from qrad_agent.errors import Refused as ApiError
from qrad_agent.ops.operations import Operations
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer

log = structlog.get_logger(component="field")

BLINK_S = 0.5


class EventOutbox(Protocol):
    """Where the fire test's event goes to the platform (the sync client's outbox)."""

    def enqueue(self, kind: Any, message: Any) -> Coroutine[Any, Any, Any]: ...


def gpio_value(sysfs_root: Path, line: int) -> Path:
    """The sysfs GPIO value file of ``line`` (Documentation/ABI/obsolete/sysfs-gpio)."""
    return sysfs_root / "class" / "gpio" / f"gpio{line}" / "value"


class Identify:
    """Blink the identify line (``line`` under ``sysfs_root``; None: not fitted) as the ``identify``
    operation of ``operations``."""

    def __init__(self, sysfs_root: Path, line: int | None, operations: Operations) -> None:
        self.sysfs_root = sysfs_root
        self.line = line
        self.operations = operations

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """Blink ``count`` times (1..600, default 10) in the background. Raises Refused."""
        if self.line is None:
            raise ApiError("identify: no safety.identify_gpio_line configured")
        try:
            count = int(params.get("count", 10))
        except (TypeError, ValueError) as exc:
            raise ApiError(f"identify: count: {exc}", usage=True) from exc
        if not 1 <= count <= 600:
            raise ApiError(f"identify: count must be 1..600 (got {count})", usage=True)
        self.operations.start("identify", _blink(gpio_value(self.sysfs_root, self.line), count))
        return {"blinking": count, "line": self.line}


async def _blink(path: Path, count: int) -> None:
    """``count`` blinks of BLINK_S on, BLINK_S off; the line ends off, also when cancelled (stop)."""
    try:
        for _ in range(count):
            path.write_text("1")
            await asyncio.sleep(BLINK_S)
            path.write_text("0")
            await asyncio.sleep(BLINK_S)
    except OSError as exc:
        log.error("identify line write failed", path=str(path), error=str(exc))
    finally:
        try:
            path.write_text("0")
        except OSError:
            pass


class FireTest:
    """The alarm path in test mode, one test at a time: `start` runs it in the background and `status`
    reports it step by step (alarm output on and read back, power held at minimum, event queued, alarm
    output off again), so the CLI can wait for and print the result."""

    def __init__(self, safety: SafetyLayer, power: PowerManager, alarm_line: int | None,
                 events: Callable[[], EventOutbox | None], operations: Operations) -> None:
        self.safety = safety
        self.power = power
        self.alarm_line = alarm_line
        self.events = events
        self.operations = operations
        self.task: asyncio.Task | None = None
        self.result: dict[str, Any] | None = None

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """``seconds`` (0, 300] of test, ``cut_power``: also hold compute power at minimum. Raises Refused."""
        try:
            seconds = float(params.get("seconds", 5.0))
        except (TypeError, ValueError) as exc:
            raise ApiError(f"fire-test: seconds: {exc}", usage=True) from exc
        if not 0 < seconds <= 300:
            raise ApiError("fire-test: seconds must be in (0, 300]", usage=True)
        cut = bool(params.get("cut_power", False))
        output = self.safety.alarm_output_path()
        if output is not None and not output.exists():
            raise ApiError(f"fire-test: the alarm output line {self.alarm_line} is missing "
                           f"({output}): export it as an output (or fix safety.alarm_gpio_line)")
        if self.task is not None and not self.task.done():
            raise ApiError("fire-test: a test is already running")
        self.result = {"running": True, "ok": None, "seconds": seconds, "cut_power": cut,
                       "alarm_output": self.alarm_line, "steps": []}
        self.task = self.operations.start("fire-test", self._run(seconds, cut))
        return self.result

    def status(self) -> dict[str, Any]:
        """The running or last test: ``running``, ``ok`` (None while running), ``steps`` [{name, ok, detail}]."""
        return self.result if self.result is not None else {"running": False, "ok": None, "steps": []}

    def _step(self, name: str, ok: bool, detail: str) -> None:
        assert self.result is not None
        self.result["steps"].append({"name": name, "ok": ok, "detail": detail})

    async def _run(self, seconds: float, cut: bool) -> None:
        safety = self.safety
        log.warning("fire test started", seconds=seconds, cut_power=cut)
        try:
            self._output_step(True)
            if cut:
                safety.enter_safe_state("fire_test", "technician's fire test")
                forced = self.power.forced_reason
                self._step("compute power at minimum", forced is not None, forced or "not held")
            outbox = self.events()
            if outbox is not None:
                from qrad_agent.sync.contract import EventMessage, Kind

                await outbox.enqueue(Kind.EVENT, EventMessage(name="fire_test",
                                                                     detail={"seconds": seconds, "cut_power": cut}))
                self._step("fire_test event queued for the platform", True, "in the outbox")
            await asyncio.sleep(seconds)
        finally:
            latched = "fire_alarm" in safety.conditions
            self._output_step(latched, ending=True)
            safety.clear("fire_test")
            if cut:
                self._step("safety condition cleared", "fire_test" not in safety.conditions,
                           "the thermostat drives the power again" if not safety.conditions else
                           "still held by: " + ", ".join(safety.conditions))
            assert self.result is not None
            self.result["running"] = False
            self.result["ok"] = all(step["ok"] for step in self.result["steps"])
            log.warning("fire test ended", ok=self.result["ok"])

    def _output_step(self, on: bool, ending: bool = False) -> None:
        written = self.safety.alarm_output(on)
        name = f"alarm output {'on' if on else 'off'}" + (" (a real alarm is latched)" if ending and on else "")
        if written is None:
            self._step(name, True, "no alarm output configured (safety.alarm_gpio_line)")
            return
        path = self.safety.alarm_output_path()
        assert path is not None  # written is not None: the line is configured
        try:
            value = path.read_text().strip()
        except OSError as exc:
            self._step(name, False, f"{path}: {exc.strerror or exc}")
            return
        self._step(name, bool(written) and value == ("1" if on else "0"), f"{path} reads {value}")
