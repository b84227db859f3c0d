"""Fusion: score with persistence, the state machine, the latch, FAULT and explanations."""

from __future__ import annotations

import json

from qrad_agent.fire.config import FusionConfig
from qrad_agent.fire.evidence import Evidence, missing
from qrad_agent.fire.fusion import FireFusion, FireState


def ev(heat: float = 0.0, co2: float = 0.0, pm: float = 0.0, t: float = 0.0) -> list[Evidence]:
    return [Evidence("heat", heat, {"temp_c": 30.0}, "h", t), Evidence("co2", co2, {}, "c", t),
            Evidence("particles", pm, {}, "p", t)]


def test_persistence_then_alarm_latches_until_authorised_reset() -> None:
    f = FireFusion(FusionConfig())
    assert f.update(0.0, ev(heat=1.0)).state is FireState.NORMAL  # not yet held
    assert f.update(5.0, ev(heat=1.0)).state is FireState.ALARM
    d = f.update(6.0, ev())
    assert d.state is FireState.ALARM and "latched" in d.reason
    assert f.reset(authorised=False) is False and f.update(7.0, ev()).state is FireState.ALARM
    assert f.reset(authorised=True, who="technician")
    assert f.update(8.0, ev()).state is FireState.NORMAL


def test_co2_alone_is_pre_alarm_with_particles_alarm() -> None:
    f = FireFusion(FusionConfig())
    states = [f.update(t, ev(co2=1.0)).state for t in range(0, 90, 5)]
    assert FireState.PRE_ALARM in states and FireState.ALARM not in states
    states = [f.update(t, ev(co2=1.0, pm=1.0)).state for t in range(90, 100, 2)]
    assert states[-1] is FireState.ALARM


def test_a_blip_shorter_than_persistence_does_nothing() -> None:
    f = FireFusion(FusionConfig())
    f.update(0.0, ev(heat=1.0))
    assert f.update(2.0, ev()).state is FireState.NORMAL
    assert f.update(4.5, ev(heat=1.0)).state is FireState.NORMAL


def test_fault_when_a_needed_input_is_missing_and_alarm_beats_fault() -> None:
    f = FireFusion(FusionConfig())
    d = f.update(0.0, [missing("heat", 0.0, "no fresh room temperature")], needed=("heat",))
    assert d.state is FireState.FAULT and "no fresh room temperature" in d.reason
    d = f.update(1.0, [missing("heat", 1.0, "x")], needed=())
    assert d.state is FireState.NORMAL
    for t in (2.0, 7.0):
        d = f.update(t, [missing("heat", t, "x"), Evidence("sound", 1.0, {}, "T3", t)], needed=("heat",))
    assert d.state is FireState.ALARM


def test_decision_explains_itself_in_plain_json() -> None:
    f = FireFusion(FusionConfig())
    f.update(0.0, ev(heat=0.8, co2=0.5))
    d = f.update(5.0, ev(heat=0.8, co2=0.5))
    payload = json.loads(json.dumps(d.as_dict()))
    assert payload["state"] == "alarm" and payload["score"] == 1.1
    assert {e["detector"] for e in payload["evidence"]} == {"heat", "co2"}
    assert "heat 0.80" in d.reason


def test_sound_held_since_its_first_cycle_needs_no_further_persistence() -> None:
    """A T3 alarm confirmed over two cycles (confidence 1) says since when it sounds: the ALARM persistence
    counts from then, so the second cycle's confirmation is an ALARM at once; without ``since_s`` it waits."""
    f = FireFusion(FusionConfig())
    sound = Evidence("sound", 1.0, {}, "T3", 10.0, since_s=5.0)
    assert f.update(10.0, [sound]).state is FireState.ALARM
    g = FireFusion(FusionConfig())
    assert g.update(10.0, [Evidence("sound", 1.0, {}, "T3", 10.0)]).state is FireState.NORMAL
    h = FireFusion(FusionConfig())  # since_s only counts for evidence that alone reaches the alarm score
    assert h.update(10.0, [Evidence("co2", 1.0, {}, "c", 10.0, since_s=0.0)]).state is FireState.NORMAL


def test_pre_alarm_clears_only_after_the_off_delay() -> None:
    """Smoke that dips below the threshold for a while (cooking: rising, saturating, decaying) stays one
    PRE_ALARM; it clears once the score has been below for pre_alarm_clear_s."""
    f = FireFusion(FusionConfig(pre_alarm_clear_s=300.0))
    states = [f.update(float(t), ev(pm=1.0)).state for t in range(0, 120, 2)]
    assert states[-1] is FireState.PRE_ALARM
    dip = [f.update(float(t), ev()) for t in range(120, 400, 2)]
    assert all(d.state is FireState.PRE_ALARM for d in dip) and "clears after 300 s" in dip[-1].reason
    assert f.update(400.0, ev(pm=1.0)).state is FireState.PRE_ALARM  # back above: the same event
    later = [f.update(float(t), ev()).state for t in range(402, 720, 2)]
    assert later[-1] is FireState.NORMAL and FireState.NORMAL not in later[: 290 // 2]
