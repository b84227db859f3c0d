"""CO2 and particles against what occupancy explains."""

from __future__ import annotations

from qrad_agent.fire.co2 import Co2Detector
from qrad_agent.fire.config import Co2Config


def run(persons_l_min: float, present: bool, minutes: float = 20.0, pm: float | None = None) -> float:
    cfg = Co2Config()
    det, c = Co2Detector(cfg), 450.0
    worst = 0.0
    for k in range(int(minutes * 60 / 5)):
        c += 5 * (persons_l_min / 60000 / cfg.room_volume_m3 * 1e6 - cfg.air_changes_per_h / 3600 * (c - 420))
        co2, _ = det.update(5.0 * k, c, pm, present)
        worst = max(worst, co2.confidence)
    return worst


def test_a_crowd_that_is_present_is_explained() -> None:
    assert run(28 * 0.3, present=True, minutes=120) == 0.0


def test_a_gas_hob_with_people_is_explained() -> None:
    assert run(12 + 2 * 0.3, present=True) == 0.0


def test_the_same_generation_in_an_empty_room_at_night_is_evidence() -> None:
    assert run(12.0, present=False) > 0.5


def test_a_flaming_fire_is_evidence_even_with_people() -> None:
    assert run(45.0, present=True, minutes=5) > 0.5


def test_particles_floor_depends_on_presence() -> None:
    det = Co2Detector(Co2Config())
    _, present = det.update(0.0, 500.0, 250.0, True)
    _, absent = det.update(5.0, 500.0, 250.0, False)
    assert present.confidence == 0.0 and absent.confidence > 0.0
