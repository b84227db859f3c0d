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
        raise ApiError("identify: count must be 1..600")
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


def fire_test(agent: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The alarm path in test mode: the local alarm output for ``seconds`` and a "fire_test" event to the
    platform; with ``cut_power`` the safety layer also holds minimum power for that time (jobs frozen)."""
    seconds = float(params.get("seconds", 5.0))
    if not 0 < seconds <= 300:
        raise ApiError("fire-test: seconds must be in (0, 300]")
    cut = bool(params.get("cut_power", False))
    output = agent.safety.alarm_output_path()
    if output is not None and not output.exists():
        raise ApiError(f"fire-test: the alarm output line {agent.cfg.safety.alarm_gpio_line} is missing ({output}): "
                       "export it as an output (or fix safety.alarm_gpio_line)")
    asyncio.get_running_loop().create_task(_fire_test(agent, seconds, cut), name="fire-test")
    return {"test": "started", "seconds": seconds, "cut_power": cut,
            "alarm_output": agent.cfg.safety.alarm_gpio_line}


async def _fire_test(agent: Any, seconds: float, cut: bool) -> None:
    log.warning("fire test started", seconds=seconds, cut_power=cut)
    agent.safety.alarm_output(True)
    if cut:
        agent.safety.enter_safe_state("fire_test", "technician's fire test")
    if agent.sync is not None:
        from qrad_agent.sync.contract import EventMessage, Kind

        await agent.sync.enqueue(Kind.EVENT, EventMessage(name="fire_test",
                                                             detail={"seconds": seconds, "cut_power": cut}))
    try:
        await asyncio.sleep(seconds)
    finally:
        agent.safety.alarm_output("fire_alarm" in agent.safety.conditions)
        agent.safety.clear("fire_test")
        log.warning("fire test ended")
