"""`identify` (blink the front LED so a technician finds the right heater) and `fire-test` (drive the
alarm path end to end in test mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from qrad_agent.api.server import ApiError

log = structlog.get_logger(component="field")

BLINK_S = 0.5


def _gpio_value(agent: Any, line: int) -> Path:
    return agent.cfg.power.sysfs_root / "class" / "gpio" / f"gpio{line}" / "value"


def identify(agent: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Blink the identify line ``count`` times (default 10) in the background."""
    line = agent.cfg.safety.identify_gpio_line
    if line is None:
        raise ApiError("identify: no safety.identify_gpio_line configured")
    count = int(params.get("count", 10))
    if not 1 <= count <= 600:
        raise ApiError("identify: count must be 1..600", usage=True)
    asyncio.get_running_loop().create_task(_blink(_gpio_value(agent, line), count), name="identify")
    return {"blinking": count, "line": line}


async def _blink(path: Path, count: int) -> None:
    try:
        for _ in range(count):
            path.write_text("1")
            await asyncio.sleep(BLINK_S)
            path.write_text("0")
            await asyncio.sleep(BLINK_S)
    except OSError as exc:
        log.error("identify line write failed", path=str(path), error=str(exc))


class FireTest:
    """The alarm path in test mode, one test at a time: `start` runs it in the background and `status`
    reports it step by step (alarm output on and read back, power held at minimum, event queued, alarm
    output off again), so the CLI can wait for and print the result."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.task: asyncio.Task | None = None
        self.result: dict[str, Any] | None = None

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """``seconds`` (0, 300] of test, ``cut_power``: also hold compute power at minimum. Raises ApiError."""
        agent = self.agent
        try:
            seconds = float(params.get("seconds", 5.0))
        except (TypeError, ValueError) as exc:
            raise ApiError(f"fire-test: seconds: {exc}", usage=True) from exc
        if not 0 < seconds <= 300:
            raise ApiError("fire-test: seconds must be in (0, 300]", usage=True)
        cut = bool(params.get("cut_power", False))
        output = agent.safety.alarm_output_path()
        if output is not None and not output.exists():
            raise ApiError(f"fire-test: the alarm output line {agent.cfg.safety.alarm_gpio_line} is missing "
                           f"({output}): export it as an output (or fix safety.alarm_gpio_line)")
        if self.task is not None and not self.task.done():
            raise ApiError("fire-test: a test is already running")
        self.result = {"running": True, "ok": None, "seconds": seconds, "cut_power": cut,
                       "alarm_output": agent.cfg.safety.alarm_gpio_line, "steps": []}
        self.task = asyncio.get_running_loop().create_task(self._run(seconds, cut), name="fire-test")
        return self.result

    def status(self) -> dict[str, Any]:
        """The running or last test: ``running``, ``ok`` (None while running), ``steps`` [{name, ok, detail}]."""
        return self.result if self.result is not None else {"running": False, "ok": None, "steps": []}

    def _step(self, name: str, ok: bool, detail: str) -> None:
        assert self.result is not None
        self.result["steps"].append({"name": name, "ok": ok, "detail": detail})

    async def _run(self, seconds: float, cut: bool) -> None:
        agent = self.agent
        log.warning("fire test started", seconds=seconds, cut_power=cut)
        try:
            self._output_step(True)
            if cut:
                agent.safety.enter_safe_state("fire_test", "technician's fire test")
                forced = agent.power.forced_reason
                self._step("compute power at minimum", forced is not None, forced or "not held")
            if agent.sync is not None:
                from qrad_agent.sync.contract import EventMessage, Kind

                await agent.sync.enqueue(Kind.EVENT, EventMessage(name="fire_test",
                                                                     detail={"seconds": seconds, "cut_power": cut}))
                self._step("fire_test event queued for the platform", True, "in the outbox")
            await asyncio.sleep(seconds)
        finally:
            latched = "fire_alarm" in agent.safety.conditions
            self._output_step(latched, ending=True)
            agent.safety.clear("fire_test")
            if cut:
                self._step("safety condition cleared", "fire_test" not in agent.safety.conditions,
                           "the thermostat drives the power again" if not agent.safety.conditions else
                           "still held by: " + ", ".join(agent.safety.conditions))
            assert self.result is not None
            self.result["running"] = False
            self.result["ok"] = all(step["ok"] for step in self.result["steps"])
            log.warning("fire test ended", ok=self.result["ok"])

    def _output_step(self, on: bool, ending: bool = False) -> None:
        agent = self.agent
        written = agent.safety.alarm_output(on)
        name = f"alarm output {'on' if on else 'off'}" + (" (a real alarm is latched)" if ending and on else "")
        if written is None:
            self._step(name, True, "no alarm output configured (safety.alarm_gpio_line)")
            return
        path = agent.safety.alarm_output_path()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            self._step(name, False, f"{path}: {exc.strerror or exc}")
            return
        self._step(name, bool(written) and value == ("1" if on else "0"), f"{path} reads {value}")
